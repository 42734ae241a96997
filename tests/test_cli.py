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


# ---- option checks, turn limits, simulator client options (in process) ----------------------------
@pytest.mark.parametrize("argv", [
    ("rollout", "--agent", "scripted:random", "--gym", "function", "--out", "x.jsonl", "--concurrency", "0"),
    ("rollout", "--agent", "scripted:random", "--gym", "function", "--out", "x.jsonl", "--concurrency", "-3"),
    ("rollout", "--agent", "scripted:random", "--gym", "function", "--out", "x.jsonl", "--n", "-2"),
    ("eval", "--agent", "scripted:random", "--gym", "function", "--out", "d", "--concurrency", "0"),
    ("eval", "--agent", "scripted:random", "--gym", "function", "--out", "d", "--n", "0"),
    ("teach", "--gym", "function", "--teacher", "function-solver", "--out", "t.jsonl", "--concurrency", "0"),
    ("rollout", "--agent", "scripted:random", "--gym", "function", "--out", "x.jsonl", "--max-turns", "0"),
])
def test_counts_below_one_are_refused_by_the_parser(argv, capsys):
    """`--concurrency 0` once hung forever, `-3` gave a bare asyncio error, `--n -2` played all but 2 tasks."""
    from baorl.cli.main import build_parser

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(list(argv))
    assert e.value.code == 2
    assert "must be an integer >= 1" in capsys.readouterr().err


def test_the_library_refuses_them_too(tmp_path):
    import asyncio

    from baorl.runs.play import aplay_many
    from baorl.runs.runner import run_rollout

    with pytest.raises(ValueError, match=r"task limit \(--n\) must be an integer >= 1, got -2"):
        run_rollout(agent="scripted:random", gym="function", out=tmp_path / "r.jsonl", limit=-2)
    with pytest.raises(ValueError, match="concurrency must be an integer >= 1, got 0"):
        run_rollout(agent="scripted:random", gym="function", out=tmp_path / "r.jsonl", concurrency=0)
    with pytest.raises(ValueError, match="concurrency must be an integer >= 1"):
        asyncio.run(aplay_many(lambda t: None, [1], lambda: None, concurrency=0))
    assert not (tmp_path / "r.jsonl").exists()


def test_max_turns_applies_to_scripted_agents(tmp_path, capsys):
    from baorl.cli.main import main
    from baorl.records import read_episodes

    out = tmp_path / "r.jsonl"
    assert main(["rollout", "--agent", "scripted:random", "--gym", "function", "--n", "6", "--max-turns", "2",
                 "--out", str(out)]) == 0
    eps = read_episodes(out)
    assert len(eps) == 6 and all(len(e.turns) <= 2 for e in eps)
    assert any(e.termination == "turn_limit" and len(e.turns) == 2 for e in eps)
    # local-model options would be ignored by a scripted agent: refused, naming them
    assert main(["rollout", "--agent", "scripted:random", "--gym", "function", "--n", "1", "--batch-size", "4",
                 "--out", str(tmp_path / "b.jsonl")]) == 2
    assert "--batch-size applies to hf: agents only" in " ".join(capsys.readouterr().err.split())


def test_simulator_timeout_and_retries_reach_the_client(tmp_path, capsys):
    from baorl.cli.main import _make_user, build_parser, main

    args = build_parser().parse_args(["play", "telepathy", "--simulator", "openai:sim", "--simulator-base-url",
                                      "http://127.0.0.1:9/v1", "--simulator-timeout", "2.5",
                                      "--simulator-retries", "1"])
    client = _make_user("telepathy", args).client
    assert (client.timeout, client.max_retries, client.base_url) == (2.5, 1, "http://127.0.0.1:9/v1")
    for bad in (["--simulator-timeout", "0"], ["--simulator-timeout", "-1"], ["--simulator-retries", "-1"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["play", "telepathy", "--simulator", "openai:sim", *bad])
    capsys.readouterr()
    # an offline simulator has no endpoint: the options are refused, not ignored
    assert main(["rollout", "--agent", "scripted:random", "--gym", "telepathy", "--n", "1", "--out",
                 str(tmp_path / "t.jsonl"), "--simulator-timeout", "5"]) == 2
    assert "--simulator-timeout applies to openai: simulators only" in " ".join(capsys.readouterr().err.split())


def test_a_hung_simulator_costs_what_the_options_say(tmp_path, monkeypatch):
    """A simulator that accepts connections and never answers: 2 attempts x 0.5 s, then simulator_error."""
    import socket
    import time

    from baorl.cli.main import main
    from baorl.records import read_episodes

    monkeypatch.setenv("BAORL_CACHE_DIR", str(tmp_path / "cache"))
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # the kernel completes the handshakes; nobody ever reads or replies
        url = f"http://127.0.0.1:{hung.getsockname()[1]}/v1"
        out = tmp_path / "t.jsonl"
        start = time.monotonic()
        code = main(["rollout", "--agent", "scripted:telepathy-questioner", "--gym", "telepathy", "--n", "1",
                     "--out", str(out), "--simulator", "openai:sim", "--simulator-base-url", url,
                     "--simulator-timeout", "0.5", "--simulator-retries", "1"])
        took = time.monotonic() - start
    assert code == 0
    (ep,) = read_episodes(out)
    assert ep.termination == "simulator_error"
    assert took < 20, took  # was 5 x 60 s per question
