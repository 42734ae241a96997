"""Fault injection: records survive kills, full disks and a misbehaving endpoint (issue 15).

What is injected, and what must hold after each fault:

- **kills**: ``baorl rollout`` and ``baorl eval`` subprocesses are SIGKILLed at random points (while
  episodes are written, during start-up, during a resume), then rerun until done; and the atomic
  rewrite of a resume (dropping a torn tail and ``simulator_error`` records) is killed at random
  instants by a timer in a forked child;
- **a file-size limit** (``RLIMIT_FSIZE`` in the subprocess): a rerun of a complete run, and a run
  that hits the limit half-way;
- **a faulty endpoint** (`faulty_endpoint.FaultyEndpoint`, on 127.0.0.1) as the user simulator of
  Telepathy and as an ``openai:`` agent: garbage bodies, HTTP 500, hangs past the timeout, lone
  surrogates, a reply nested 5,000 levels deep, U+2028/U+2029/U+0085.

Invariants: no finished episode is lost, none is recorded twice, every file stays readable, and the
final records equal a clean run's byte for byte (scripted agents and the endpoint are
deterministic). Simulator failures end only their episode, as ``simulator_error``, are left out of
the metrics and are played again by a rerun; agent endpoint failures stop the run with one clear
error and keep what was written.

The figures (trials, episodes checked, lost, duplicated, differing) are printed at the end of the
module whatever pytest's capture mode, and asserted to be zero. ``BAORL_FAULT_SEED`` fixes the
random kill points (default: a fresh seed, printed with the figures).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from faulty_endpoint import FaultyEndpoint

from baorl.agents.base import AgentError
from baorl.evaluation.run import evaluate, load_run
from baorl.records import Episode, read_episodes, write_episodes
from baorl.runs.runner import finished_task_ids, run_rollout

SEED = int(os.environ.get("BAORL_FAULT_SEED", random.SystemRandom().randrange(10**6)))
RNG = random.Random(SEED)
#: what every test adds to; printed and asserted at the end of the module
FIGURES: dict[str, int] = {"kill trials": 0, "size-limit trials": 0, "endpoint trials": 0, "episodes checked": 0,
                           "lost": 0, "duplicated": 0, "differing": 0}
#: where the subprocess kills landed
KILLS: dict[str, int] = {"before any new record": 0, "mid-run": 0, "after the end": 0}
N_ROLLOUT = 16  # Function tasks of the kill trials (the solver takes ~0.1 s an episode: kills land mid-run)
N_EVAL = 10     # Telepathy tasks of the eval trials (the simulator is the faulty endpoint)
SIM_OPTIONS = {"max_retries": 1, "backoff": 0.01, "timeout": 0.3}  # a failing simulator costs ~0.3 s, not ~8 s
AGENT_OPTIONS = {"max_retries": 1, "backoff": 0.01, "timeout": 0.3}


@pytest.fixture(scope="module", autouse=True)
def figures(request: pytest.FixtureRequest):
    t0 = time.perf_counter()
    yield FIGURES
    line = (f"fault injection (seed {SEED}, {time.perf_counter() - t0:.0f} s): "
            + ", ".join(f"{k} {v}" for k, v in FIGURES.items())
            + " (subprocess kills: " + ", ".join(f"{v} {k}" for k, v in KILLS.items()) + ")")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line, file=sys.__stderr__)
        return
    with capture.global_and_fixture_disabled():  # shown with and without -s
        reporter.write_line("")
        reporter.write_line(line)


@pytest.fixture(scope="module")
def endpoint():
    fake = FaultyEndpoint(lifetime=300, hang_s=1.0)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def clean_rollout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The clean run the kill trials are compared with: task id -> its record's line."""
    out = tmp_path_factory.mktemp("clean") / "eps.jsonl"
    run_rollout(agent="scripted:function-solver", gym="function", out=out, limit=N_ROLLOUT, concurrency=1)
    return lines_by_task(out)


def lines_by_task(path: Path, *, torn_ok: bool = False) -> dict[str, str]:
    """Task id -> record line, read independently of baorl's reader (lines end at "\\n" only, a torn
    last line allowed with `torn_ok`); duplicates counted into FIGURES and failed on."""
    raw = path.read_bytes().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    out: dict[str, str] = {}
    for i, line in enumerate(raw, 1):
        try:
            text = line.decode("utf-8")
            ep = Episode.model_validate(json.loads(text))
        except ValueError as e:
            if torn_ok and i == len(raw):
                break
            raise AssertionError(f"{path}:{i}: an unreadable record ({e})") from None
        if ep.task_id in out:
            FIGURES["duplicated"] += 1
            raise AssertionError(f"{path}:{i}: task {ep.task_id} recorded twice")
        out[ep.task_id] = text
    return out


def check(path: Path, reference: dict[str, str], *, complete: bool, before: dict[str, str] | None = None,
          same: Any = None) -> dict[str, str]:
    """After a fault: `path` readable (a torn last line allowed unless `complete`), no duplicate, no record
    of `before` lost, every record equal to the clean one (compared through `same`); returns its records."""
    got = lines_by_task(path, torn_ok=not complete) if path.exists() else {}
    same = same or (lambda a, b: a == b)
    FIGURES["episodes checked"] += len(got)
    lost = [t for t in (reference if complete else before or {}) if t not in got]
    differing = [t for t, text in got.items() if t not in reference or not same(text, reference[t])]
    FIGURES["lost"] += len(lost)
    FIGURES["differing"] += len(differing)
    assert not lost, f"{path}: lost {lost}"
    assert not differing, f"{path}: records differ from the clean run: {differing}"
    return got


def spawn(*args: str, env: dict[str, str] | None = None, limit: int | None = None) -> subprocess.Popen[bytes]:
    preexec = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))) if limit else None
    return subprocess.Popen([sys.executable, "-m", "baorl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", **(env or {})},
                            preexec_fn=preexec)


def run_killed(cmd: list[str], records: Path, *, env: dict[str, str] | None = None) -> None:
    """Run `cmd` and SIGKILL it at a random point: after a random delay (start-up, resume, playing) or
    once `records` has grown by a random number of lines. Counts where the kill landed in FIGURES."""
    FIGURES["kill trials"] += 1
    start = records.read_bytes().count(b"\n") if records.exists() else 0
    by_lines = RNG.random() < 0.6
    target, delay = start + RNG.randint(1, N_ROLLOUT // 2), RNG.uniform(0.0, 4.0)
    proc = spawn(*cmd, env=env)
    t0 = time.perf_counter()
    try:
        while proc.poll() is None:
            now = records.read_bytes().count(b"\n") if records.exists() else 0
            if (by_lines and now >= target) or (not by_lines and time.perf_counter() - t0 >= delay):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                KILLS["mid-run" if now > start else "before any new record"] += 1
                return
            if time.perf_counter() - t0 > 60:
                raise AssertionError(f"{cmd}: still running after 60 s")
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    KILLS["after the end"] += 1


def finish(cmd: list[str], *, env: dict[str, str] | None = None) -> str:
    proc = spawn(*cmd, env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    return " ".join(out.decode().split())


# ---- kills ------------------------------------------------------------------------------------------
def test_rollout_killed_at_random_points_loses_nothing(tmp_path: Path, clean_rollout: dict[str, str]) -> None:
    for trial in range(2):
        out = tmp_path / f"trial{trial}" / "eps.jsonl"
        cmd = ["rollout", "--agent", "scripted:function-solver", "--gym", "function", "--out", str(out),
               "--n", str(N_ROLLOUT), "--concurrency", "1"]
        before: dict[str, str] = {}
        for _ in range(2):  # killed once, then killed again while resuming
            run_killed(cmd, out)
            before = check(out, clean_rollout, complete=False, before=before)
        finish(cmd)
        check(out, clean_rollout, complete=True)


def test_eval_with_an_llm_simulator_killed_at_random_points(tmp_path: Path, endpoint: FaultyEndpoint) -> None:
    common = ["--agent", "scripted:telepathy-questioner", "--gym", "telepathy", "--n", str(N_EVAL),
              "--simulator", "openai:sim-ok", "--bootstrap", "0"]
    ref_dir = tmp_path / "clean"
    evaluate("scripted:telepathy-questioner", "telepathy", ref_dir, simulator="openai:sim-ok", limit=N_EVAL,
             simulator_options={"base_url": endpoint.base_url, "cache_dir": tmp_path / "cache-clean"},
             n_boot=0, report=False)
    reference = lines_by_task(ref_dir / "episodes.jsonl")
    out = tmp_path / "run"
    cmd = ["eval", *common, "--no-report", "--out", str(out), "--simulator-base-url", endpoint.base_url]
    env = {"BAORL_CACHE_DIR": str(tmp_path / "cache")}
    before: dict[str, str] = {}
    for _ in range(2):
        run_killed(cmd, out / "episodes.jsonl", env=env)
        before = check(out / "episodes.jsonl", reference, complete=False, before=before)
    finish(cmd, env=env)
    check(out / "episodes.jsonl", reference, complete=True)
    assert json.loads((out / "metrics.json").read_text())["overall"]["n"] == N_EVAL

    # a rerun of the complete evaluation under a file-size limit far below its records: nothing is rewritten
    data = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "metrics.json"}
    proc = spawn(*cmd, env=env, limit=2048)
    proc.communicate(timeout=120)
    FIGURES["size-limit trials"] += 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "metrics.json"} == data
    check(out / "episodes.jsonl", reference, complete=True)


def test_a_resume_rewrite_killed_at_random_instants_loses_nothing(tmp_path: Path) -> None:
    """Dropping a torn tail and simulator_error records rewrites the file: kill that rewrite anywhere."""
    from baorl.records import Turn

    eps = [Episode.from_turns(turns=[Turn(choice="action", content="x" * 300)], gym="function", task_id=f"t{i:03d}",
                              termination="simulator_error" if i % 3 == 0 else "turn_limit", policy="p")
           for i in range(600)]
    src = tmp_path / "src.jsonl"
    write_episodes(src, eps)
    src.write_bytes(src.read_bytes() + b'{"gym": "function", "task_id": "t9')  # torn
    keep = {e.task_id for e in eps if e.termination != "simulator_error"}
    reference = {t: text for t, text in lines_by_task(src, torn_ok=True).items() if t in keep}
    probe = tmp_path / "probe.jsonl"
    shutil.copy(src, probe)
    t0 = time.perf_counter()
    assert finished_task_ids(probe) == keep
    span = time.perf_counter() - t0
    for _ in range(16):
        path = tmp_path / "eps.jsonl"
        shutil.copy(src, path)
        delay = RNG.uniform(0.3 * span, 1.1 * span)  # reading and checking come first: aim at the rest
        pid = os.fork()
        if pid == 0:  # the child: a timer kills it mid-resume
            try:
                signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGKILL))
                signal.setitimer(signal.ITIMER_REAL, max(delay, 1e-5))
                finished_task_ids(path)
                signal.setitimer(signal.ITIMER_REAL, 0)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        FIGURES["kill trials"] += 1
        # the old file (torn tail and simulator errors included) or the new one: never a kept record less
        got = {t: text for t, text in lines_by_task(path, torn_ok=True).items() if t in keep}
        lost = [t for t in keep if t not in got]
        differing = [t for t, text in got.items() if text != reference[t]]
        FIGURES["episodes checked"] += len(got)
        FIGURES["lost"] += len(lost)
        FIGURES["differing"] += len(differing)
        assert not lost and not differing
        for tmp in tmp_path.glob(".eps.jsonl.*.tmp"):  # a rewrite killed before its rename leaves its temporary
            tmp.unlink()


# ---- a file-size limit --------------------------------------------------------------------------------
def test_a_run_that_hits_a_file_size_limit_keeps_whole_records(tmp_path: Path, clean_rollout: dict[str, str]) -> None:
    out = tmp_path / "eps.jsonl"
    cmd = ["rollout", "--agent", "scripted:function-solver", "--gym", "function", "--out", str(out),
           "--n", str(N_ROLLOUT), "--concurrency", "1"]
    full = sum(len(t) + 1 for t in clean_rollout.values())
    proc = spawn(*cmd, limit=full // 2)  # the disk fills up half-way
    _, err = proc.communicate(timeout=120)
    FIGURES["size-limit trials"] += 1
    assert proc.returncode != 0 and b"File too large" in err
    half = check(out, clean_rollout, complete=False)
    assert 0 < len(half) < N_ROLLOUT and out.read_bytes().endswith(b"\n")  # whole records, no torn line
    finish(cmd)  # room again
    check(out, clean_rollout, complete=True)
    data = out.read_bytes()
    proc = spawn(*cmd, limit=len(data) // 3)  # a rerun of the complete run under a limit below its size
    out_text, err = proc.communicate(timeout=120)
    FIGURES["size-limit trials"] += 1
    assert proc.returncode == 0 and b"nothing to do" in out_text, err.decode()
    assert out.read_bytes() == data


# ---- a faulty endpoint as the simulator --------------------------------------------------------------
@pytest.mark.parametrize("mode", ["500", "garbage", "hang", "deep"])
def test_a_failing_simulator_ends_only_its_episodes_and_is_replayed(mode: str, tmp_path: Path,
                                                                   endpoint: FaultyEndpoint) -> None:
    def run(out: Path, cache: str, **kw: Any) -> dict[str, Any]:
        return evaluate("scripted:telepathy-questioner", "telepathy", out, simulator="openai:sim", limit=3,
                        simulator_options={"base_url": endpoint.base_url, "cache_dir": tmp_path / cache,
                                           **SIM_OPTIONS}, n_boot=0, report=False, **kw)

    run(tmp_path / "clean", "cache-clean")
    reference = lines_by_task(tmp_path / "clean" / "episodes.jsonl")
    out = tmp_path / "run"
    endpoint.modes["sim"] = mode
    try:
        m = run(out, "cache")
    finally:
        del endpoint.modes["sim"]
    FIGURES["endpoint trials"] += 1
    assert (m["overall"]["n"], m["overall"]["simulator_errors"]) == (0, 3)  # not scored as agent failures
    eps = read_episodes(out / "episodes.jsonl")
    assert {e.termination for e in eps} == {"simulator_error"} and len(eps) == 3
    assert all("simulator 'sim'" in e.simulator_error and "failed after 2 attempt(s)" in e.simulator_error
               for e in eps)  # the final error, recorded
    played: list[str] = []
    m = run(out, "cache", on_done=lambda e: played.append(e.task_id))  # the simulator is healthy again
    assert sorted(played) == sorted(reference) and m["overall"]["simulator_errors"] == 0
    check(out / "episodes.jsonl", reference, complete=True)


@pytest.mark.parametrize("mode", ["surrogate", "u2028"])
def test_odd_simulator_text_is_played_through(mode: str, tmp_path: Path, endpoint: FaultyEndpoint) -> None:
    m = evaluate("scripted:telepathy-questioner", "telepathy", tmp_path / "run", simulator=f"openai:sim-{mode}",
                 limit=3, simulator_options={"base_url": endpoint.base_url, "cache_dir": tmp_path / "cache",
                                             **SIM_OPTIONS}, n_boot=0, report=False)
    FIGURES["endpoint trials"] += 1
    assert (m["overall"]["n"], m["overall"]["simulator_errors"]) == (3, 0)
    assert list((tmp_path / "cache").rglob("*.json"))  # its replies were cached
    FIGURES["episodes checked"] += len(load_run(tmp_path / "run").episodes)


def test_score_shows_simulator_errors(tmp_path: Path, endpoint: FaultyEndpoint,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from baorl.cli.main import main

    evaluate("scripted:telepathy-questioner", "telepathy", tmp_path / "run", simulator="openai:sim-500", limit=2,
             simulator_options={"base_url": endpoint.base_url, "cache_dir": tmp_path / "cache", **SIM_OPTIONS},
             n_boot=0, report=False)
    FIGURES["endpoint trials"] += 1
    for cmd in (["score", str(tmp_path / "run"), "--bootstrap", "0"], ["report", str(tmp_path / "run"),
                                                                       "--bootstrap", "0"]):
        assert main(cmd) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "2 episodes ended in simulator_error and are left out of the metrics" in out
    assert "simulator_error" in (tmp_path / "run" / "report.html").read_text(encoding="utf-8")


# ---- a faulty endpoint as the agent -------------------------------------------------------------------
def test_odd_agent_text_ends_only_its_episode(tmp_path: Path, endpoint: FaultyEndpoint) -> None:
    opts = {"base_url": endpoint.base_url, **AGENT_OPTIONS}
    for mode, termination, content in (("deep", "no_tool_call", ""), ("surrogate", "finish", "test \ufffd"),
                                       ("u2028", "finish", "te\u2028\u2029\x85st")):
        out = tmp_path / f"{mode}.jsonl"
        eps = run_rollout(agent=f"openai:agent-{mode}", gym="function", out=out, limit=3, agent_options=opts)
        FIGURES["endpoint trials"] += 1
        assert [e.termination for e in eps] == [termination] * 3
        back = read_episodes(out)
        FIGURES["episodes checked"] += len(back)
        assert [e.turns[0].content for e in back] == [content] * 3
        if mode == "deep":
            assert "nested too deeply" in back[0].turns[0].feedback
        if mode == "u2028":
            assert b"\xe2\x80\xa8" not in out.read_bytes() and back[0].turns[0].think == "plan\u2028\u2029\x85ahead"
        assert len(load_run(out).episodes) == 3  # scored and reported
        assert run_rollout(agent=f"openai:agent-{mode}", gym="function", out=out, limit=3, agent_options=opts) == []


@pytest.mark.parametrize("mode", ["500", "garbage", "hang"])
def test_a_failing_agent_endpoint_stops_the_run_and_keeps_the_records(mode: str, tmp_path: Path,
                                                                     endpoint: FaultyEndpoint) -> None:
    opts = {"base_url": endpoint.base_url, **AGENT_OPTIONS}
    out = tmp_path / "eps.jsonl"
    run_rollout(agent="openai:agent", gym="function", out=out, limit=2, agent_options=opts, concurrency=1)
    reference = lines_by_task(out)
    endpoint.modes["agent"] = mode
    try:
        with pytest.raises(AgentError, match=r"openai:agent at http://127\.0\.0\.1:\d+/v1 failed after 2 attempt"):
            run_rollout(agent="openai:agent", gym="function", out=out, limit=4, agent_options=opts, concurrency=1)
    finally:
        del endpoint.modes["agent"]
    FIGURES["endpoint trials"] += 1
    check(out, reference, complete=True)
    run_rollout(agent="openai:agent", gym="function", out=out, limit=4, agent_options=opts, concurrency=1)
    assert len(lines_by_task(out)) == 4


def test_zz_figures_are_zero() -> None:
    assert FIGURES["lost"] == FIGURES["duplicated"] == FIGURES["differing"] == 0
    assert FIGURES["kill trials"] >= 10 and FIGURES["size-limit trials"] >= 3 and FIGURES["endpoint trials"] >= 12
