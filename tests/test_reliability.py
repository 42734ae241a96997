"""Records that survive anything (issue 15), one test per failure, fast and offline.

1. U+2028, U+2029 and U+0085 in any field: JSON Lines are split on "\\n" only, and written escaped.
2. Resuming never endangers finished work: a complete run is not rewritten; rewrites are atomic;
   an append that fails is undone.
3. Bad model or simulator text (deep nesting, lone surrogates) never escapes as an exception.
4. ``simulator_error`` episodes are left out of the metrics, counted, and played again on a rerun.
5. A records file or run directory knows what it holds: another run's resume is refused.

The fault-injection suite (kills, file-size limits, a faulty endpoint) is test_faults.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from baorl.records import Episode, RecordFileError, Turn, read_episodes, write_episodes

RAW = "a\u2028b\u2029c\x85d"  # the three characters str.splitlines() splits at and JSON keeps raw


def ep(task: str, *, text: str = RAW, termination: str = "turn_limit", **kw) -> Episode:
    turns = [Turn(choice="action", content=text, think=text, feedback=text)]
    return Episode.from_turns(turns=turns, gym="function", task_id=task, termination=termination,
                              policy="scripted:random", **kw)


def limited(limit: int):
    """preexec_fn: a file-size limit of `limit` bytes (writes past it fail with EFBIG; Python ignores SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def python(code: str, *args: str, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          preexec_fn=limited(limit) if limit else None, env={**os.environ, "OMP_NUM_THREADS": "1"})


# ---- 1. line separators -----------------------------------------------------------------------------
def test_line_separators_in_any_field_keep_a_records_file_readable(tmp_path: Path) -> None:
    from baorl.evaluation.run import load_run
    from baorl.runs.runner import finished_task_ids

    path = tmp_path / "episodes.jsonl"
    write_episodes(path, [ep("t0"), ep("t1")])
    text = path.read_text(encoding="utf-8")
    assert not any(ch in text for ch in "\u2028\u2029\x85") and text.count("\n") == 2  # written escaped
    # another tool may write them raw (valid JSON): the readers split on "\n" only
    raw = "".join(json.dumps(e.model_dump(), ensure_ascii=False) + "\n" for e in (ep("t2"), ep("t3")))
    assert "\u2028" in raw
    with path.open("a", encoding="utf-8") as f:
        f.write(raw)
    eps = read_episodes(path)
    assert [e.task_id for e in eps] == ["t0", "t1", "t2", "t3"]
    assert all(e.turns[0].content == e.turns[0].think == e.turns[0].feedback == RAW for e in eps)
    assert [e.task_id for e in load_run(tmp_path).episodes] == ["t0", "t1", "t2", "t3"]  # score, report
    before = path.read_bytes()
    assert finished_task_ids(path) == {"t0", "t1", "t2", "t3"}  # resume: nothing is dropped or redone
    assert path.read_bytes() == before


def test_training_logs_with_line_separators_survive_a_resume(tmp_path: Path) -> None:
    from baorl.cli.sft import _losses
    from baorl.evaluation.run import load_train_metrics
    from baorl.train.callbacks import keep_steps

    rollouts = tmp_path / "rollouts.jsonl"
    rows = [{**ep(f"t{i}").model_dump(), "step": i} for i in range(4)]
    rollouts.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    keep_steps(rollouts, lambda step: step < 3)  # `train --resume` from the checkpoint of step 3
    kept = [json.loads(line) for line in rollouts.read_text(encoding="utf-8").split("\n") if line]
    assert [r["step"] for r in kept] == [0, 1, 2] and all(r["turns"][0]["content"] == RAW for r in kept)
    os.utime(rollouts, ns=(10**9, 10**9))
    keep_steps(rollouts, lambda step: step < 3)  # a second resume from the same step: nothing to drop, no write
    assert rollouts.stat().st_mtime_ns == 10**9

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 1, "loss": 0.5, "note": RAW}, ensure_ascii=False) + "\n"
                       + json.dumps({"step": 2, "loss": 0.25}) + "\n" + '{"step": 3, "lo', encoding="utf-8")
    assert [r["step"] for r in load_train_metrics(metrics)] == [1, 2]  # the torn tail of a live run is dropped
    assert _losses(metrics) == [0.5, 0.25]


def test_jsonl_writer_escapes_separators_and_replaces_lone_surrogates(tmp_path: Path) -> None:
    from baorl.records import jsonl_line

    line = jsonl_line({"t": RAW + " é \ud800"})
    assert line.endswith("\n") and line.count("\n") == 1 and "é" in line
    assert json.loads(line) == {"t": RAW + " é \ufffd"}
    bad = ep("t\udc00", text="x\ud800y")
    write_episodes(tmp_path / "e.jsonl", [bad])
    write_episodes(tmp_path / "e.jsonl", [bad], append=True)
    back = read_episodes(tmp_path / "e.jsonl")
    assert [e.task_id for e in back] == ["t\ufffd"] * 2 and back[0].turns[0].content == "x\ufffdy"


# ---- 2. resuming never endangers finished work ------------------------------------------------------
def test_a_rerun_of_a_complete_rollout_writes_nothing(tmp_path: Path) -> None:
    from baorl.runs.runner import run_rollout

    out = tmp_path / "eps.jsonl"
    assert len(run_rollout(agent="scripted:random", gym="function", out=out, limit=3)) == 3
    os.utime(out, ns=(10**9, 10**9))  # any write would move the modification time
    ino, data = out.stat().st_ino, out.read_bytes()
    assert run_rollout(agent="scripted:random", gym="function", out=out, limit=3) == []
    assert (out.stat().st_ino, out.stat().st_mtime_ns, out.read_bytes()) == (ino, 10**9, data)


_RESUME = "import sys; from pathlib import Path; from baorl.runs.runner import finished_task_ids; " \
          "print(sorted(finished_task_ids(Path(sys.argv[1]))))"


def test_a_resume_rewrite_that_cannot_finish_leaves_the_records(tmp_path: Path) -> None:
    """A rewrite (here: to drop a torn tail) killed or failing half-way used to truncate the file first."""
    path = tmp_path / "eps.jsonl"
    write_episodes(path, [ep(f"t{i}", text="x" * 200) for i in range(30)])
    whole = path.read_bytes()
    path.write_bytes(whole + whole[:100])  # a torn last line: the rewrite drops it
    r = python(_RESUME, str(path), limit=len(whole) // 3)  # the disk fills up a third of the way
    assert r.returncode != 0 and "File too large" in r.stderr
    assert [e.task_id for e in read_episodes(path, skip_partial_tail=True)] == [f"t{i}" for i in range(30)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eps.jsonl"]  # no temporary file left behind
    r = python(_RESUME, str(path))  # room again: the torn tail goes, the 30 records stay byte for byte
    assert r.returncode == 0, r.stderr
    assert path.read_bytes() == whole


def test_an_append_that_fails_leaves_no_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "eps.jsonl"
    write_episodes(path, [ep("t0")])
    size = path.stat().st_size
    code = ("import sys; from baorl.records import Episode, Turn, write_episodes; "
            "e = Episode(gym='function', task_id='t1', termination='finish', turns=[Turn(choice=None, content='y' * 500)]); "
            "write_episodes(sys.argv[1], [e], append=True)")
    r = python(code, str(path), limit=size + 100)
    assert r.returncode != 0 and "File too large" in r.stderr
    assert path.stat().st_size == size and [e.task_id for e in read_episodes(path)] == ["t0"]


def test_read_jsonl_tolerates_only_a_torn_last_line(tmp_path: Path) -> None:
    from baorl.records import read_jsonl

    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": 2}\n{"a": 3, "b": "\xc3')  # cut inside a UTF-8 character
    lines = read_jsonl(path, torn_tail=True)
    assert [v for _, _, v in lines.rows] == [{"a": 1}, {"a": 2}] and lines.torn and lines.unterminated
    with pytest.raises(RecordFileError, match=r"x.jsonl:4"):
        read_jsonl(path)
    path.write_bytes(b'{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(RecordFileError, match=r"x.jsonl:2"):
        read_jsonl(path, torn_tail=True)  # damage before the last line is never dropped silently


# ---- 3. bad model or simulator text -------------------------------------------------------------------
def test_the_parser_turns_deep_nesting_and_surrogates_into_feedback() -> None:
    from baorl.gyms.parser import parse_action

    deep = "[" * 5000 + "]" * 5000
    hermes = '<tool_call>{"name": "interact_with_env", "arguments": {"choice": "action", "content": ' + deep + "}}"
    call = {"type": "function", "function": {"name": "interact_with_env",
                                              "arguments": '{"choice": "action", "content": ' + deep + "}"}}
    for output in (hermes, call):
        parsed = parse_action(output)
        assert parsed.choice is None and "nested too deeply" in (parsed.error or "")
    call = {"type": "function", "function": {"name": "interact_with_env",
                                              "arguments": json.dumps({"choice": "answer", "content": "4\ud8002"})}}
    parsed = parse_action(call)
    assert parsed.choice == "answer" and parsed.content == "4\ufffd2"
    parsed = parse_action("<think>hm\udfff</think>[answer] 4\ud8002")
    assert (parsed.think, parsed.content) == ("hm\ufffd", "4\ufffd2")


def test_the_simulator_client_survives_surrogates_and_deep_replies(tmp_path: Path) -> None:
    from faulty_endpoint import FaultyEndpoint

    from baorl.users.base import SimulatorError
    from baorl.users.client import LLMClient

    fake = FaultyEndpoint(lifetime=60)
    try:
        def ask(model: str, question: str = "Is it alive?") -> object:
            client = LLMClient(model, fake.base_url, cache_dir=tmp_path / "cache", max_retries=1, backoff=0.0,
                               timeout=5)
            messages = [{"role": "system", "content": "host"}, {"role": "user", "content": question}]
            return asyncio.run(client.chat_json(messages, lambda o: o["answer"]))

        assert ask("sim-surrogate") in ("Yes", "No")  # the reply's surrogates: parsed, validated, cached
        cached = list((tmp_path / "cache").rglob("*.json"))
        assert len(cached) == 1 and "\ufffd" in cached[0].read_text(encoding="utf-8")
        assert ask("sim-ok", "agent text \ud800?") in ("Yes", "No")  # the agent's, quoted in the prompt
        with pytest.raises(SimulatorError, match="unusable reply"):
            ask("sim-deep")
    finally:
        fake.close()


# ---- 4. simulator errors ------------------------------------------------------------------------------
def test_simulator_errors_are_left_out_of_the_metrics_and_shown(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from baorl.cli.main import main
    from baorl.evaluation.metrics import score_episodes

    solved = Episode.from_turns(turns=[Turn(choice="answer", content="7", reward=1.0, user_involved=True)],
                                gym="function", task_id="a", termination="solved", success=True)
    failed = ep("b", termination="simulator_error", simulator_error="simulator 'x' failed after 5 attempt(s)")
    m = score_episodes([solved, failed, failed.model_copy(update={"task_id": "c"})], n_boot=0)
    f = m["gyms"]["function"]
    assert (f["n"], f["score"], f["success"], f["simulator_errors"]) == (1, 1.0, 1.0, 2)
    assert m["overall"]["simulator_errors"] == 2 and m["overall"]["n"] == 1
    write_episodes(tmp_path / "run" / "episodes.jsonl", [solved, failed])
    assert main(["score", str(tmp_path / "run"), "--bootstrap", "0"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "sim. errors" in out and "1 episode ended in simulator_error" in out


def test_a_rerun_plays_simulator_errors_again(tmp_path: Path) -> None:
    from baorl.runs.runner import finished_task_ids

    path = tmp_path / "eps.jsonl"
    write_episodes(path, [ep("t0", text="x"), ep("t1", text="x", termination="simulator_error"), ep("t2", text="x")])
    keep = [line for line in path.read_text(encoding="utf-8").split("\n") if '"t1"' not in line]
    assert finished_task_ids(path) == {"t0", "t2"}
    assert path.read_text(encoding="utf-8").split("\n") == keep  # dropped atomically, the rest byte for byte


# ---- 5. a run directory knows what it holds -----------------------------------------------------------
def test_eval_refuses_the_records_of_another_run(tmp_path: Path) -> None:
    from baorl.evaluation.run import evaluate
    from baorl.runs.runner import run_rollout

    out = tmp_path / "D"
    run_rollout(agent="scripted:function-solver", gym="function", out=out / "episodes.jsonl", limit=2)
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir())
    with pytest.raises(ValueError, match=r"agent 'scripted:function-solver', now 'scripted:random'.*another --out"):
        evaluate("scripted:random", "function", out, limit=2, n_boot=0, report=False)
    assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == before  # nothing written
    (out / "episodes.jsonl.meta.json").unlink()  # without the sidecar, the records' own fields tell
    with pytest.raises(ValueError, match=r"episodes.jsonl:1: a record of policy 'scripted:function-solver'"):
        evaluate("scripted:random", "function", out, limit=2, n_boot=0, report=False)
    m = evaluate("scripted:function-solver", "function", out, limit=2, n_boot=0, report=False)  # the same run
    assert m["overall"]["n"] == 2


def test_rollout_refuses_another_seed_agent_or_gym(tmp_path: Path) -> None:
    from baorl.runs.runner import run_rollout

    out = tmp_path / "eps.jsonl"
    run_rollout(agent="scripted:random", gym="function", out=out, limit=2)
    data = out.read_bytes()
    for kw, field in (({"seed": 1}, "seed 0, now 1"), ({"agent": "scripted:function-solver"}, "agent"),
                      ({"gym": "telepathy"}, "gym 'function', now 'telepathy'"),
                      ({"engine_options": {"max_turns": 3}}, "engine_options")):
        args = {"agent": "scripted:random", "gym": "function", "out": out, "limit": 2, **kw}
        with pytest.raises(ValueError, match=field) as e:
            run_rollout(**args)
        assert "another --out" in str(e.value)
    assert out.read_bytes() == data
    meta = json.loads((tmp_path / "eps.jsonl.meta.json").read_text())
    assert (meta["gym"], meta["agent"], meta["seed"], meta["split"]) == ("function", "scripted:random", 0, "test")
    # speed-only options and a larger --n are the same run
    assert len(run_rollout(agent="scripted:random", gym="function", out=out, limit=3,
                           engine_options={"batch_size": 4})) == 1


def test_eval_refuses_a_training_run_directory(tmp_path: Path) -> None:
    from baorl.evaluation.run import evaluate

    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "metrics.jsonl", "rollouts.jsonl"):
        (run / name).write_text("")
    with pytest.raises(ValueError, match="training run directory"):
        evaluate("scripted:random", "function", run, limit=1, n_boot=0, report=False)
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "metrics.jsonl", "rollouts.jsonl"]
    shutil.rmtree(run)
