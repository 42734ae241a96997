"""The `baorl` command line, driven as a user would, in a subprocess."""

import json
import os
import subprocess
import sys

import pytest


def baorl(*args, input=None):
    return subprocess.run([sys.executable, "-m", "baorl", *args], input=input, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


def test_help_lists_every_command():
    r = baorl("--help")
    assert r.returncode == 0
    for cmd in ("gyms", "play", "rollout", "serve", "teach", "behaviour", "sft", "train", "eval", "score", "compare",
                "report", "data", "quickstart"):
        assert cmd in r.stdout


def test_gyms_lists_the_registry():
    r = baorl("gyms")
    assert r.returncode == 0, r.stderr
    for gid in ("function-v0", "telepathy-v0", "turtle-v0", "intention-v0"):
        assert gid in r.stdout


def test_play_with_a_scripted_agent_writes_a_record(tmp_path):
    out = tmp_path / "eps.jsonl"
    r = baorl("play", "function", "--agent", "scripted:function-solver", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "termination: solved" in r.stdout and "interact_with_env" in r.stdout
    rec = json.loads(out.read_text())
    assert rec["gym"] == "function" and rec["success"] is True and rec["score"] == 1.0


def test_a_person_plays_through_stdin(tmp_path):
    r = baorl("play", "function", "--task", "gen-0000", input="[search] test\nhello\n[answer] 0.5\n[finish]\n")
    assert r.returncode == 0, r.stderr
    assert "Invalid action" in r.stdout and "termination: finish" in r.stdout


def test_play_on_userrl_data_and_generated_data(tmp_path, userrl):
    r = baorl("play", "function", "--data", str(userrl / "function/functions_train.json"), "--task", "func-486",
              "--agent", "scripted:function-solver")
    assert r.returncode == 0 and "termination: solved" in r.stdout, r.stdout + r.stderr
    f = tmp_path / "f.json"
    assert baorl("data", "function", "--n", "12", "--seed", "3", "--out", str(f)).returncode == 0
    assert len(json.loads(f.read_text())) == 12
    r = baorl("play", "function", "--data", str(f), "--agent", "scripted:function-solver")
    assert r.returncode == 0 and "termination: solved" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("args,needle", [
    (("play", "chess"), "unknown gym 'chess'"),
    (("play", "function", "--task", "nope"), "no task 'nope'"),
    (("play", "function", "--data", "/nonexistent.json"), "no such data file"),
    (("play", "function", "--simulator", "offline"), "needs no simulator"),
    (("play", "telepathy", "--simulator", "gpt4"), "unknown simulator"),
    (("play", "function", "--agent", "scripted:nope"), "unknown scripted agent"),
])
def test_user_errors_exit_2_with_a_clear_message(args, needle):
    r = baorl(*args, input="")
    assert r.returncode == 2, r.stdout + r.stderr
    assert needle in " ".join(r.stderr.split()), r.stderr
    assert "Traceback" not in r.stderr


def test_rollout_writes_records_and_resumes_after_a_kill(tmp_path):
    out = tmp_path / "eps.jsonl"
    r = baorl("rollout", "--agent", "scripted:function-solver", "--gym", "function", "--out", str(out), "--n", "4")
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(x)["success"] for x in lines)
    # a run killed mid-write leaves a torn last line: it is dropped and that task is redone
    out.write_text("\n".join(lines[:3]) + "\n" + lines[3][:50])
    r = baorl("rollout", "--agent", "scripted:function-solver", "--gym", "function", "--out", str(out), "--n", "6")
    assert r.returncode == 0, r.stderr
    ids = [json.loads(x)["task_id"] for x in out.read_text().splitlines()]
    assert len(ids) == 6 and len(set(ids)) == 6
    r = baorl("rollout", "--agent", "scripted:function-solver", "--gym", "function", "--out", str(out), "--n", "6")
    assert "nothing to do" in r.stdout


def test_rollout_with_an_unreachable_api_agent_fails_clearly(tmp_path):
    r = baorl("rollout", "--agent", "openai:some-model", "--agent-base-url", "http://127.0.0.1:9/v1",
              "--gym", "function", "--out", str(tmp_path / "e.jsonl"), "--n", "1")
    assert r.returncode == 2 and "some-model" in r.stderr and "Traceback" not in r.stderr
