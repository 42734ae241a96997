"""bench/gpu_smoke.py on the CPU: the same stages the GPU machine runs (a tiny Qwen3 instead of the
1.7B/4B shapes), the deadline and the watchdog, and what the pack carries."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_smoke  # noqa: E402

OFFLINE = ("TRL_EXPERIMENTAL_SILENCE", "TOKENIZERS_PARALLELISM", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
           "TRANSFORMERS_OFFLINE")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() sets these for the GPU machine; keep them out of the rest of the session."""
    for key in OFFLINE:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("OUT", raising=False)
    for key in OFFLINE:  # registered with monkeypatch, so undone at teardown
        monkeypatch.setenv(key, {"TOKENIZERS_PARALLELISM": "false"}.get(key, "1"))


def by_stage(data: dict) -> dict[str, dict]:
    return {r["stage"]: r for r in data["stages"]}


# ---- the real stages on a tiny model ---------------------------------------------------------------
def test_cpu_run_of_every_stage_on_a_tiny_qwen3(env: None, tmp_path: Path) -> None:
    from rollout import FORCED

    from baorl.models import load_tokenizer

    out = tmp_path / "smoke.json"
    data = gpu_smoke.main(["--shapes", "tiny", "--batches", "1", "2", "--turns", "2", "--train-tasks", "1",
                           "--train-rollouts", "2", "--train-response", "8", "--micro", "2", "--out", str(out),
                           "--kv-admission", "turn", "budget"], start=time.perf_counter())
    assert json.loads(out.read_text()) == data
    assert "train tiny" in out.with_suffix(".txt").read_text()
    assert data["machine"]["device"] == "cpu" and data["machine"]["trl"] != "missing"
    rows = by_stage(data)
    assert list(rows) == ["build tiny", "rollout tiny b=1", "rollout tiny b=2", "rollout tiny b=1 budget",
                          "rollout tiny b=2 budget", "train tiny"]
    assert data["workload"]["kv_admission"] == ["turn", "budget"]
    assert all(r["status"] == "ok" for r in rows.values()), [(r["stage"], r.get("error")) for r in rows.values()]

    build = rows["build tiny"]
    assert build["dtype"] == "float32" and build["peak_mem_gib"] > 0
    assert abs(build["params"] - gpu_smoke._approx_params("tiny")) / build["params"] < 0.05

    # the forced workload of bench/rollout.py: every episode plays every turn, the same tokens each turn
    # (the forced tool call, cut at the `</tool_call>` stop string)
    tok = load_tokenizer("embedded")
    forced = len(tok(FORCED, add_special_tokens=False).input_ids)
    per_turn = set()
    for b in (1, 2):
        r = rows[f"rollout tiny b={b}"]
        assert r["episodes"] == b and r["turns"] == 2
        assert r["tokens"] % (2 * b) == 0
        per_turn.add(r["tokens"] // (2 * b))
        assert r["tokens_per_s"] > 0 and r["peak_mem_gib"] > 0
        assert r["engine"]["generated"] == r["tokens"] and r["prompt_tokens"] > 500 * b
        assert r["engine"]["max_live"] == b and r["engine"]["preempted"] == 0 and f"live <= {b}," in r["note"]
        assert rows[f"rollout tiny b={b} budget"]["tokens"] == r["tokens"]  # the older admission rule: same work
    assert len(per_turn) == 1 and forced - 5 <= per_turn.pop() <= forced

    # one optimiser step of `baorl train`: sampled episodes, then an update over prompt + response tokens
    train = rows["train tiny"]
    assert train["episodes"] == 2 and train["checkpoint"] == ["checkpoint-1"]
    assert 0 < train["rollout_tokens"] <= 2 * 8 and train["rollout_tokens_per_s"] > 0
    assert train["update_tokens"] > train["rollout_tokens"] + 2 * 100  # the prompts are trained over too
    assert train["rollout_s"] > 0 and train["update_s"] > 0 and train["tokens_per_s"] > 0
    assert math.isfinite(train["loss"]) and math.isfinite(train["grad_norm"])
    assert train["save_s"] is not None and train["peak_mem_gib"] > 0
    assert not list(Path(train["workdir"]).glob("baorl-gpu-smoke-*")), "the stage's checkpoints must be removed"


def test_deadline_spent_skips_every_stage_and_still_writes_the_table(env: None, tmp_path: Path) -> None:
    data = gpu_smoke.main(["--shapes", "tiny", "--deadline", "0", "--out", str(tmp_path)], start=time.perf_counter())
    rows = data["stages"]
    assert [r["status"] for r in rows] == ["skipped"] * 4
    assert rows[0]["reason"].startswith("deadline") and rows[1]["reason"] == "build tiny did not succeed"
    assert json.loads((tmp_path / "gpu_smoke.json").read_text())["stages"] == rows


# ---- the runner: estimates, errors, dependencies, the watchdog ---------------------------------------
def test_runner_skips_stages_the_time_left_cannot_cover_and_survives_errors(tmp_path: Path) -> None:
    def boom() -> dict:
        raise ValueError("no kernel for this")

    def nap() -> dict:
        time.sleep(0.3)
        return {"tokens": 10, "tokens_per_s": 10 / 0.3}

    stages = [
        gpu_smoke.Stage("small", nap, kind="k", scale=1.0),
        gpu_smoke.Stage("big", nap, kind="k", scale=1000.0),      # ~0.3 s x 1000 x 1.25 > what is left
        gpu_smoke.Stage("other", lambda: {"tokens": 1}, kind="j"),  # nothing to go by: runs
        gpu_smoke.Stage("broken", boom),
        gpu_smoke.Stage("after", lambda: {}, needs="broken"),
    ]
    runner = gpu_smoke.Runner(tmp_path / "t.json", deadline=60.0, hard_stop=None, start=time.perf_counter())
    res = {r["stage"]: r for r in runner.run(stages)}
    assert res["small"]["status"] == "ok" and res["small"]["seconds"] >= 0.3 and res["small"]["tokens"] == 10
    assert res["big"]["status"] == "skipped" and re.match(r"deadline: \d+ s left, needs ~\d+ s", res["big"]["reason"])
    assert res["other"]["status"] == "ok"
    assert res["broken"]["status"] == "error" and res["broken"]["error"] == "ValueError: no kernel for this"
    assert "boom" in res["broken"]["traceback"]
    assert res["after"] == {"stage": "after", "status": "skipped", "reason": "broken did not succeed"}
    assert json.loads((tmp_path / "t.json").read_text())["stages"] == list(res.values())


def test_watchdog_ends_the_process_at_the_hard_stop_keeping_the_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = f"""
import sys, time
sys.path.insert(0, {str(ROOT / "bench")!r})
from pathlib import Path
import gpu_smoke as g
r = g.Runner(Path({str(out)!r}), deadline=60, hard_stop=1.5, start=time.perf_counter())
r.run([g.Stage("quick", lambda: {{"tokens": 1}}), g.Stage("stuck", lambda: time.sleep(60) or {{}}),
       g.Stage("later", lambda: {{}})])
print("not reached")
"""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - t0 < 30
    assert proc.returncode == 3 and "not reached" not in proc.stdout and "hard stop" in proc.stdout
    data = json.loads((out / "gpu_smoke.json").read_text())
    assert [r["status"] for r in data["stages"]] == ["ok", "killed", "skipped"]
    assert data["stages"][1]["error"] == "hard stop at 2 s" and data["stages"][2]["reason"] == "hard stop at 2 s"
    assert "stuck" in (out / "gpu_smoke.txt").read_text()


# ---- the pack ---------------------------------------------------------------------------------------
def test_pack_carries_baorls_pins_and_not_what_the_gpu_machine_has() -> None:
    specs = dict(s.split("==") for s in gpu_smoke.pack_specs())
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {name.lower(): v for name, v in (d.split("==") for d in deps)}
    for name, version in specs.items():
        if name in pins:
            assert version == pins[name], name
    for must in ("trl", "datasets", "transformers", "pydantic", "rich", "gymnasium"):
        assert must in specs
    for there in ("torch", "accelerate", "peft", "pyarrow", "numpy"):
        assert there not in specs
    assert specs["huggingface-hub"].startswith("1.")  # 2.x needs httpx2, which the machine lacks


@pytest.mark.slow
def test_pack_tokenizer_is_the_embedded_one(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from baorl.models import load_tokenizer

    files = gpu_smoke.extract_tokenizer(tmp_path / "tok")
    assert "tokenizer.json" in files and not any(f.endswith((".gguf", ".safetensors")) for f in files)
    packed, embedded = AutoTokenizer.from_pretrained(tmp_path / "tok"), load_tokenizer("embedded")
    text = '<|im_start|>assistant\n<think>x</think>\n<tool_call>\n{"name": "f"}\n</tool_call><|im_end|>'
    assert packed(text).input_ids == embedded(text).input_ids and len(packed) == len(embedded)
    assert (packed.eos_token, packed.pad_token) == (embedded.eos_token, embedded.pad_token)


def test_profile_stage_runs_one_turn_and_gpu_busy_is_the_union_of_kernel_intervals(env: None, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    data = gpu_smoke.main(["--shapes", "tiny", "--batches", "2", "--profile", "2", "--no-train", "--turns", "2",
                           "--out", str(tmp_path)], start=time.perf_counter())
    rows = by_stage(data)
    assert list(rows) == ["build tiny", "rollout tiny b=2", "profile tiny b=2"]
    prof = rows["profile tiny b=2"]
    assert prof["status"] == "ok" and prof["turns"] == 1 and prof["episodes"] == 2
    assert prof["tokens"] * 2 == rows["rollout tiny b=2"]["tokens"]  # one of the two forced turns
    assert prof["decode_steps"] > 0 and prof["wall_ms_per_step"] > 0
    assert prof["gpu_busy_s"] is None and prof["kernels"] == 0 and "no GPU kernels on cpu" in prof["note"]

    def event(start: float, end: float, device=DeviceType.CUDA) -> SimpleNamespace:
        return SimpleNamespace(device_type=device, time_range=SimpleNamespace(start=start, end=end))

    # kernels at 0-10 and 5-20 us overlap (20 us in all), 30-40 us is apart, a CPU op and an empty span do not count
    fake = SimpleNamespace(events=lambda: [event(30, 40), event(0, 10), event(5, 20), event(0, 100, DeviceType.CPU),
                                           event(50, 50)])
    busy, kernels = gpu_smoke._gpu_busy(fake)
    assert kernels == 3 and busy == pytest.approx(30e-6)
    assert gpu_smoke._gpu_busy(SimpleNamespace(events=lambda: [])) == (None, 0)
