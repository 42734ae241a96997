"""The embedded-tier driver (experiments/embedded_tier.sh) against a stand-in `baorl`.

The driver runs for hours and is resumed across sessions, so what it decides must be right without
a real run: which config, seed, effort cost and gradient-checkpointing setting each run gets, that a
started run is resumed (never restarted) and a finished one skipped, and what `compare` is given.
The stand-in records every call and makes the files a real run leaves behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "experiments" / "embedded_tier.sh"

FAKE_BAORL = r"""#!/usr/bin/env bash
# records its arguments, one call per line, and leaves what a finished run or evaluation leaves
line=$(printf '%q ' "$@"); printf '%s\n' "$line" >>"$CALLS"  # one append per call: the lanes run at once
cmd=$1; shift
case $cmd in
    train)
        dir=""
        while [[ $# -gt 0 ]]; do
            case $1 in
                --resume) dir=$2; shift 2 ;;
                --set) [[ $2 == output_dir=* ]] && dir=${2#output_dir=}; shift 2 ;;
                *) shift ;;
            esac
        done
        mkdir -p "$dir"; touch "$dir/config.yaml"
        name=$(basename "$dir")
        if [[ " ${FAIL_ALWAYS:-} " == *" $name "* ]]; then exit 1; fi
        if [[ " ${FAIL_ONCE:-} " == *" $name "* && ! -f $dir/.failed ]]; then touch "$dir/.failed"; exit 137; fi
        mkdir -p "$dir/final"; echo '{}' >"$dir/final/config.json" ;;
    eval)
        while [[ $# -gt 0 ]]; do [[ $1 == --out ]] && mkdir -p "$2" && echo '{}' >"$2/metrics.json"; shift; done ;;
esac
"""


def _run(tmp_path: Path, *stages: str, rc: int = 0, **env_extra: str) -> list[list[str]]:
    fake = tmp_path / "baorl"
    fake.write_text(FAKE_BAORL)
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.unlink(missing_ok=True)
    env = {**os.environ, "BAORL": str(fake), "OUT": str(tmp_path / "out"), "CALLS": str(calls), "LANE_STAGGER": "0",
           **env_extra}
    proc = subprocess.run(["bash", str(DRIVER), *stages], env=env, capture_output=True, text=True, timeout=120)
    assert (proc.returncode == 0) == (rc == 0), proc.stdout + proc.stderr
    return [shlex.split(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def _sets(call: list[str]) -> dict[str, str]:
    return dict(call[i + 1].split("=", 1) for i, a in enumerate(call) if a == "--set")


def _trains(calls: list[list[str]]) -> dict[str, list[str]]:
    out = {}
    for c in calls:
        if c[0] != "train":
            continue
        name = Path(c[c.index("--resume") + 1]).name if "--resume" in c else _sets(c)["name"]
        assert name not in out, f"{name} trained twice in one pass"
        out[name] = c
    return out


def test_fresh_runs_get_their_config_seed_effort_cost_and_lane(tmp_path):
    trains = _trains(calls := _run(tmp_path, "runs"))
    names = {f"{p}-s{s}" for p in ("bao", "userrl", "effort") for s in (0, 1, 2)}
    assert set(trains) == names
    for name, call in trains.items():
        policy, seed = name.split("-s")
        sets = _sets(call)
        assert "--resume" not in call
        assert call[1] == f"configs/{'bao' if policy == 'bao' else 'userrl'}-embedded.yaml"
        assert sets["train.seed"] == seed and sets["name"] == name
        assert sets["output_dir"] == str(tmp_path / "out" / name)
        assert sets.get("bao.effort_cost") == ("0.05" if policy == "effort" else None)
        # lane A (no checkpointing): the BAO runs and the second effort run; lane B: the rest
        lane_a = policy == "bao" or name == "effort-s1"
        assert sets["train.gradient_checkpointing"] == ("false" if lane_a else "true"), name
    evals = [c for c in calls if c[0] == "eval"]
    assert sorted(Path(c[c.index("--out") + 1]).name for c in evals) == sorted(names)
    for c in evals:
        name = Path(c[c.index("--out") + 1]).name
        assert c[c.index("--agent") + 1] == f"hf:{tmp_path / 'out' / name / 'final'}"
        assert c[c.index("--split") + 1] == "test" and c[c.index("--max-response-tokens") + 1] == "1024"


def test_each_lane_runs_its_jobs_in_order(tmp_path):
    calls = _run(tmp_path, "runs")
    order = [n for n in (_sets(c).get("name") for c in calls if c[0] == "train") if n]
    lane_a = [n for n in order if n.startswith("bao") or n == "effort-s1"]
    lane_b = [n for n in order if n not in lane_a]
    assert lane_a == ["bao-s0", "bao-s1", "bao-s2", "effort-s1"]
    assert lane_b == ["userrl-s0", "userrl-s1", "userrl-s2", "effort-s0", "effort-s2"]


def test_started_runs_resume_and_finished_runs_are_skipped(tmp_path):
    out = tmp_path / "out"
    _run(tmp_path, "runs")
    (out / "bao-s1" / "final" / "config.json").unlink()  # started, stopped before its end
    (out / "effort-s0" / "final" / "config.json").unlink()
    (out / "userrl-s2" / "final" / "config.json").unlink()
    (out / "userrl-s2" / "config.yaml").unlink()  # never got its config: starts fresh
    trains = _trains(calls := _run(tmp_path, "runs"))
    assert set(trains) == {"bao-s1", "effort-s0", "userrl-s2"}
    assert trains["bao-s1"][1:3] == ["--resume", str(out / "bao-s1")]
    assert _sets(trains["bao-s1"]) == {"train.gradient_checkpointing": "false"}
    assert trains["effort-s0"][1:3] == ["--resume", str(out / "effort-s0")]
    assert _sets(trains["effort-s0"]) == {"train.gradient_checkpointing": "true", "bao.effort_cost": "0.05"}
    assert "--resume" not in trains["userrl-s2"] and _sets(trains["userrl-s2"])["train.seed"] == "2"
    assert len([c for c in calls if c[0] == "eval"]) == 9  # every evaluation is resumed (finished = a no-op)


def test_a_run_that_dies_is_resumed_and_one_that_keeps_failing_stops_its_lane(tmp_path):
    out = tmp_path / "out"
    calls = _run(tmp_path, "runs", FAIL_ONCE="bao-s1 userrl-s0")  # e.g. killed for memory mid-run
    for name in ("bao-s1", "userrl-s0"):
        mine = [c for c in calls if c[0] == "train" and f"{out / name} " in " ".join(c) + " "]
        assert len(mine) == 2 and "--resume" not in mine[0] and mine[1][1:3] == ["--resume", str(out / name)]
        assert (out / name / "final" / "config.json").exists()
    assert all((out / f"{p}-s{s}" / "final").exists() for p in ("bao", "userrl", "effort") for s in (0, 1, 2))

    (again := tmp_path / "again").mkdir()
    calls = _run(again, "runs", rc=1, FAIL_ALWAYS="bao-s0", ATTEMPTS="2")
    bao_s0 = [c for c in calls if c[0] == "train" and f"{again / 'out' / 'bao-s0'} " in " ".join(c) + " "]
    assert len(bao_s0) == 2  # two attempts, then lane A stops: nothing after bao-s0 in it runs
    names = {_sets(c).get("name") for c in calls if c[0] == "train"}
    assert not names & {"bao-s1", "bao-s2", "effort-s1"}
    assert {"userrl-s0", "userrl-s1", "userrl-s2", "effort-s0", "effort-s2"} <= names  # lane B is not held up


def test_compare_groups_the_seeds_and_pairs_bao_with_the_baseline(tmp_path):
    _run(tmp_path, "runs")
    (call,) = _run(tmp_path, "compare")
    out = tmp_path / "out" / "eval"
    groups = [call[i + 1] for i, a in enumerate(call) if a == "--group"]
    assert call[:2] == ["compare", str(out / "sft-start")]
    assert groups == [f"{label}={','.join(str(out / f'{p}-s{s}') for s in (0, 1, 2))}"
                      for label, p in (("BAO", "bao"), ("UserRL", "userrl"), ("UserRL+effort", "effort"))]
    pairs = [call[i + 1] for i, a in enumerate(call) if a == "--pair"]
    assert pairs == ["BAO,UserRL", "UserRL+effort,UserRL", "BAO,UserRL+effort"]


def test_compare_leaves_out_the_effort_group_until_every_seed_is_evaluated(tmp_path):
    _run(tmp_path, "runs")
    (tmp_path / "out" / "eval" / "effort-s2" / "metrics.json").unlink()  # an evaluation still running
    (call,) = _run(tmp_path, "compare")
    groups = [call[i + 1].split("=")[0] for i, a in enumerate(call) if a == "--group"]
    pairs = [call[i + 1] for i, a in enumerate(call) if a == "--pair"]
    assert groups == ["BAO", "UserRL"] and pairs == ["BAO,UserRL"]  # no pair names a missing group


def test_an_unknown_stage_fails(tmp_path):
    fake = tmp_path / "baorl"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    proc = subprocess.run(["bash", str(DRIVER), "nonsense"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "BAORL": str(fake), "OUT": str(tmp_path / "out")})
    assert proc.returncode != 0


def _fake_run(root: Path, name: str, steps: list[dict], provenance: list[dict]) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps) + '{"step": 9, "train_runtime": 1}\n')
    (d / "provenance.jsonl").write_text("".join(json.dumps(r) + "\n" for r in provenance))
    (d / "config.yaml").write_text("train:\n  gradient_checkpointing: true\n")


def _step(step: int, t: float, null: float, success: float = 0.0, rss: float = 3.0) -> dict:
    return {"step": step, "step_time": t, "time/rollout_s": t / 2, "update/null_pass_frac": null,
            "episode/score": success, "episode/success": success, "memory/peak_rss_gib": rss,
            "episode/user_rate": 0.25, "episode/shaped_penalty": 0.0, "episode/ended_token_budget": 0.0,
            "episode/turns": 4.0}


def test_the_cost_table_reads_each_step_once_and_names_the_code_of_every_segment(tmp_path):
    spec = importlib.util.spec_from_file_location("embedded_cost", REPO / "experiments" / "embedded_cost.py")
    cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cost)
    a = "a" * 40
    _fake_run(tmp_path, "bao-s0", [_step(1, 900, 0.25), _step(2, 500, 0.5, rss=11.0),
                                   _step(3, 999, 1.0), _step(3, 300, 0.0, success=0.0625, rss=12.5)],  # step 3 replayed
              [{"event": "start", "commit": a, "dirty": False, "argv": ["baorl", "train", "c.yaml"]},
               {"event": "resume", "commit": "b" * 40, "dirty": True, "from_step": 2,
                "argv": ["baorl", "train", "--resume", "x", "--set", "train.gradient_checkpointing=false"]}])
    s = cost.summarise(tmp_path / "bao-s0")
    assert s["steps"] == 3 and s["total_s"] == 1700 and s["later"] == (400, 300, 500)
    assert s["solved"] == 1 and s["episodes"] == 48 and s["peak_gib"] == 12.5 and s["null"] == [0.25, 0.5, 0.0]
    assert s["code"] == ["aaaaaaa from step 1, checkpointing on", "bbbbbbb+ from step 3, checkpointing off"]
    _fake_run(tmp_path, "userrl-s0", [_step(1, 100, 1.0)], [])
    (tmp_path / "bao-s0" / "final").mkdir()
    (tmp_path / "bao-s0" / "final" / "config.json").write_text("{}")  # finished; userrl-s0 still running
    text = cost.table(tmp_path)
    rows = text.split("\n\n")[0].splitlines()
    assert "read when the step is logged, after its update" in text  # says what the peak covers
    assert rows[2].startswith("| bao-s0 | 3 | ") and rows[3].startswith("| userrl-s0 | 1 (running) | ")
    assert [r.split(" | ")[0] for r in rows[2:]] == ["| bao-s0", "| userrl-s0"]
    assert "1,700 s" in rows[2] and "400 s [300, 500]" in rows[2] and "1 of 48" in rows[2]
    assert "| n/a |" in rows[3]  # one step: no later steps to average


def test_the_curves_figure_is_drawn_from_every_run_with_a_replayed_step_once(tmp_path):
    runs = tmp_path / "runs"
    _fake_run(runs, "bao-s0", [_step(1, 900, 0.25), _step(2, 999, 1.0), _step(2, 500, 0.5)], [])
    _fake_run(runs, "userrl-s1", [{**_step(1, 100, 1.0), "episode/ended_no_tool_call": 0.5}], [])
    (runs / "compare").mkdir()  # not a POLICY-sSEED run: ignored
    out = tmp_path / "doc" / "curves.png"
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "embedded_curves.py"), str(runs), "--out",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spec = importlib.util.spec_from_file_location("embedded_curves", REPO / "experiments" / "embedded_curves.py")
    curves = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "experiments"))
    try:
        spec.loader.exec_module(curves)
    finally:
        sys.path.remove(str(REPO / "experiments"))
    read = curves.read_runs(runs)
    assert sorted(read) == ["bao", "userrl"] and [r["step"] for r in read["bao"][0]] == [1, 2]
    assert read["bao"][0][1]["step_time"] == 500  # the replayed step counts once, its last run
    assert "episode/ended_no_tool_call" in dict(curves.PANELS)
