"""GPU smoke check: baorl's rollout engine and one `baorl train` step on CUDA, inside a fixed time box.

The GPU machine lent to this project has no network and receives only a 64 MiB copy of the working
tree, so nothing can be downloaded there: no model weights, no vLLM. What can run is baorl's own
path: a Qwen3-architecture model built from a config (random weights, bf16, on the GPU) with the
embedded SmolLM2 tokenizer, the batched rollout engine, and TRL's trainer through ``run_train``.

Stages, in order, for each shape in ``--shapes`` (default ``1.7b 4b``; ``tiny`` is the CPU test's):

1. ``build``: the model from its config, randomly initialised on the device (bf16 on CUDA, fp32 on
   CPU), vocabulary = the tokenizer's (49,152), one warm-up forward pass;
2. ``rollout b=N`` for each of ``--batches`` (default 32 and 128): the workload of
   ``bench/rollout.py`` (Function test tasks, ``--turns`` turns, greedy, each turn forced to the
   same valid tool call), N episodes decoded together: generated tokens/s, peak memory, the most
   episodes live at once and the preemptions (the engine's default memory cap, ``max_kv_gib:
   auto``); ``--kv-admission turn budget`` repeats them under the older admission rule
   (``rollout b=N budget``); ``--profile 32 128`` adds ``profile b=N``: one turn of N episodes
   under torch's profiler, reporting the share of the wall time during which a GPU kernel ran and
   the kernels per decoding step (is decoding bound by the GPU or by launching its work?);
3. ``train``: one BAO step through ``baorl train``'s own code (``resolve_run`` + ``run_train`` on a
   YAML config this script writes: ``--train-tasks`` x ``--train-rollouts`` episodes sampled at
   temperature 1, at most ``--train-response`` response tokens each, no validation), the random
   model saved first as the run's starting checkpoint: rollout and update seconds, tokens/s, loss,
   grad norm, peak memory. (A random policy solves nothing: every episode scores the same, so the
   advantages and the loss are 0; the forward, backward and optimiser step still run in full.)

Peak memory is ``torch.cuda.max_memory_allocated`` per stage on CUDA, the process's peak RSS so far
on CPU. Each stage runs in its own try/except (an error string replaces its figures, the table goes
on). Before a stage starts, the time left to ``--deadline`` must cover its estimate (the same
stage's time at the previous shape, scaled by parameters); otherwise it is recorded as skipped.
A watchdog ends the process at ``--hard-stop`` seconds whatever happens, marking the running stage
``killed``. The table is rewritten after every stage to ``--out`` (``$OUT`` when set): a directory
gets ``gpu_smoke.json`` and ``gpu_smoke.txt``; a ``*.json`` path is the JSON file itself.

    python bench/gpu_smoke.py [--shapes 1.7b 4b] [--batches 32 128] [--kv-admission turn budget]
                              [--profile 32 128] [--deadline 360] [--out DIR]
    python bench/gpu_smoke.py pack [--dir .cache/gpu-pack]     # `make gpu-smoke-pack`

``pack`` prepares what the GPU machine lacks (README "Benchmarks", GPU smoke check): the wheels
of the packages baorl needs that are not installed there (TRL, datasets, pydantic, rich,
gymnasium, ... for CPython 3.12 manylinux x86_64, the versions of this environment) and the
tokenizer files of the embedded GGUF (not its weights).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
DEFAULT_PACK = ROOT / ".cache" / "gpu-pack"
GIB = 2**30

# Qwen3 shapes (the released configs' layer geometry; the vocabulary is the tokenizer's)
SHAPES: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16},
    "0.6b": {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
             "num_key_value_heads": 8, "head_dim": 128},
    "1.7b": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
             "num_key_value_heads": 8, "head_dim": 128},
    "4b": {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32,
           "num_key_value_heads": 8, "head_dim": 128},
}

# What the GPU machine (Python 3.12; torch 2.11, transformers 5.17, accelerate, peft, pyarrow and their
# own dependencies) lacks for baorl's engine and trainer, at this environment's versions: pure-Python
# wheels plus the few compiled ones (pandas, pydantic-core, xxhash, charset-normalizer) for cp312
# manylinux x86_64. transformers travels too: baorl pins 5.23.0 and its trainer passes
# `activation_checkpointing`, a TrainingArguments field 5.17 does not have (GRPOConfig raises a
# TypeError there). huggingface-hub is pinned to 1.33.0, the newest 1.x: transformers 5.23 and
# datasets 5.2 need >= 1.31, and 2.x (this environment's) needs httpx2, which the machine lacks.
PACK_DISTS = (
    "transformers", "huggingface-hub==1.33.0",
    "trl", "datasets", "dill", "multiprocess", "xxhash", "fsspec", "pandas", "python-dateutil", "tzdata",
    "requests", "charset-normalizer", "urllib3",
    "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions",
    "rich", "markdown-it-py", "mdurl", "pygments",
    "gymnasium", "cloudpickle", "farama-notifications",
)
PACK_LIMIT_BYTES = 40 * 2**20
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


# ---- the stage runner -------------------------------------------------------------------------------
@dataclass
class Stage:
    """One row of the table: ``fn()`` returns its figures; ``kind`` and ``scale`` drive the estimate."""

    name: str
    fn: Callable[[], dict[str, Any]]
    kind: str = ""
    scale: float = 1.0
    needs: str | None = None  # the stage whose success this one depends on
    result: dict[str, Any] = field(default_factory=dict)


class Runner:
    """Runs stages in order inside a deadline, recording each one's status; writes the table as it goes.

    A stage starts only if the time left before `deadline` covers its estimate: the measured time of
    the last finished stage of the same `kind`, multiplied by the ratio of their `scale` (parameters)
    and 1.25; a stage with nothing to go by starts whenever time is left. A watchdog thread ends the
    process at `hard_stop` seconds (from `start`), writing the table first.
    """

    def __init__(self, out: Path | None, *, deadline: float, hard_stop: float | None, start: float = START,
                 header: dict[str, Any] | None = None) -> None:
        self.out = out
        self.deadline = deadline
        self.hard_stop = hard_stop
        self.start = start
        self.header = header or {}
        self.stages: list[Stage] = []
        self.lock = threading.RLock()
        self._timer: threading.Timer | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def estimate(self, stage: Stage) -> float:
        done = [s for s in self.stages if s.kind == stage.kind and s.result.get("status") == "ok"
                and s is not stage]
        if not stage.kind or not done:
            return 0.0
        last = done[-1]
        return last.result["seconds"] * max(stage.scale / max(last.scale, 1e-12), 1.0) * 1.25

    def run(self, stages: list[Stage]) -> list[dict[str, Any]]:
        self.stages = stages
        for s in stages:
            s.result = {"stage": s.name, "status": "pending"}
        if self.hard_stop is not None:
            self._timer = threading.Timer(max(self.hard_stop - self.elapsed(), 0.0), self._kill)
            self._timer.daemon = True
            self._timer.start()
        try:
            for s in stages:
                self._run_one(s)
                self.write()
        finally:
            if self._timer is not None:
                self._timer.cancel()
        return [s.result for s in stages]

    def _run_one(self, s: Stage) -> None:
        by_name = {x.name: x for x in self.stages}
        if s.needs is not None and by_name[s.needs].result.get("status") != "ok":
            s.result.update(status="skipped", reason=f"{s.needs} did not succeed")
            return
        left, est = self.deadline - self.elapsed(), self.estimate(s)
        if left <= 0 or est > left:
            s.result.update(status="skipped", reason=f"deadline: {max(left, 0):.0f} s left"
                            + (f", needs ~{est:.0f} s" if est else ""))
            return
        with self.lock:
            s.result.update(status="running", started_s=round(self.elapsed(), 1))
        print(f"[{self.elapsed():6.1f} s] {s.name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            figures = s.fn()
        except Exception as e:  # one stage's failure must not lose the table
            with self.lock:
                s.result.update(status="error", seconds=round(time.perf_counter() - t0, 2),
                                error=f"{type(e).__name__}: {e}"[:2000],
                                traceback=traceback.format_exc(limit=-10)[-4000:])
            print(f"  error: {type(e).__name__}: {e}", flush=True)
        else:
            with self.lock:
                s.result.update(status="ok", seconds=round(time.perf_counter() - t0, 2), **_rounded(figures))
        finally:
            _free_memory()

    def _kill(self) -> None:
        """The watchdog: mark the running stage killed and the rest skipped, write, exit now."""
        with self.lock:
            for s in self.stages:
                if s.result.get("status") == "running":
                    s.result.update(status="killed", seconds=round(self.elapsed() - s.result["started_s"], 1),
                                    error=f"hard stop at {self.hard_stop:.0f} s")
                elif s.result.get("status") == "pending":
                    s.result.update(status="skipped", reason=f"hard stop at {self.hard_stop:.0f} s")
            self.write()
            print(f"hard stop at {self.elapsed():.0f} s", flush=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(3)

    def table(self) -> dict[str, Any]:
        return {**self.header, "elapsed_s": round(self.elapsed(), 1), "deadline_s": self.deadline,
                "hard_stop_s": self.hard_stop, "stages": [dict(s.result) for s in self.stages]}

    def write(self) -> dict[str, Any]:
        with self.lock:
            data = self.table()
            text = format_table(data)
            if self.out is not None:
                json_path, txt_path = output_paths(self.out)
                json_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = json_path.with_name(json_path.name + ".tmp")
                tmp.write_text(json.dumps(data, indent=1, default=str))
                tmp.replace(json_path)
                txt_path.write_text(text + "\n")
            return data


def _rounded(x: Any) -> Any:
    """Floats to 3 decimals, recursively (the JSON is read by people)."""
    if isinstance(x, float):
        return round(x, 3)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def output_paths(out: Path) -> tuple[Path, Path]:
    """``DIR`` -> DIR/gpu_smoke.json + .txt; ``FILE.json`` -> itself + FILE.txt."""
    if out.suffix == ".json":
        return out, out.with_suffix(".txt")
    return out / "gpu_smoke.json", out / "gpu_smoke.txt"


def _num(v: Any, fmt: str = ",.0f") -> str:
    return "-" if v is None else format(v, fmt)


def format_table(data: dict[str, Any]) -> str:
    m = data.get("machine", {})
    lines = [f"baorl GPU smoke check: {m.get('device_name', '?')} · torch {m.get('torch', '?')} · transformers "
             f"{m.get('transformers', '?')} · trl {m.get('trl', '?')} · {data['elapsed_s']:.0f} s "
             f"(deadline {data['deadline_s']:.0f} s)"]
    head = f"{'stage':<20} {'status':<8} {'seconds':>8} {'tokens':>8} {'tokens/s':>9} {'peak mem':>10}  notes"
    lines += [head, "-" * len(head)]
    for r in data["stages"]:
        peak = r.get("peak_mem_gib")
        note = r.get("note") or r.get("reason") or r.get("error") or ""
        lines.append(f"{r['stage']:<20} {r['status']:<8} {_num(r.get('seconds'), '.1f'):>8} "
                     f"{_num(r.get('tokens')):>8} {_num(r.get('tokens_per_s'), ',.1f'):>9} "
                     f"{(_num(peak, '.2f') + ' GiB') if peak is not None else '-':>10}  {note}")
        if r.get("stage", "").startswith("train") and r.get("status") == "ok":
            lines.append(f"{'':<20} rollout {r['rollout_s']:.1f} s ({_num(r.get('rollout_tokens'))} tokens, "
                         f"{_num(r.get('rollout_tokens_per_s'), ',.1f')}/s) · update {r['update_s']:.1f} s "
                         f"({_num(r.get('update_tokens'))} tokens, {_num(r.get('update_tokens_per_s'), ',.1f')}/s) · "
                         f"checkpoint save {_num(r.get('save_s'), '.1f')} s · loss {r.get('loss')} · "
                         f"grad norm {r.get('grad_norm')}")
    return "\n".join(lines)


# ---- helpers ------------------------------------------------------------------------------------------
def _free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")  # only if a stage has loaded it
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    """Peak GPU memory allocated since the last reset, or the process's peak RSS on CPU."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        return round(torch.cuda.max_memory_allocated() / GIB, 2)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 2)


def _gpu_busy(prof: Any) -> tuple[float | None, int]:
    """Seconds during which at least one GPU kernel or copy ran (the union of their intervals) and
    how many ran, from a finished torch profiler; ``(None, 0)`` when it recorded none (a CPU run)."""
    from torch.autograd import DeviceType

    spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                   if e.device_type == DeviceType.CUDA and e.time_range.end > e.time_range.start)
    if not spans:
        return None, 0
    busy, (lo, hi) = 0.0, spans[0]
    for a, b in spans[1:]:
        if a > hi:
            busy, lo, hi = busy + hi - lo, a, b
        else:
            hi = max(hi, b)
    return (busy + hi - lo) / 1e6, len(spans)  # profiler times are in microseconds


def machine_info(device: str) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "transformers": transformers.__version__, "device": device,
                            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    for mod in ("trl", "datasets", "accelerate", "peft"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as e:  # recorded, not fatal: the stage that needs it will say more
            info[mod] = f"missing ({type(e).__name__})"
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(device_name=p.name, device_mem_gib=round(p.total_memory / GIB, 1), cuda=torch.version.cuda)
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info


def load_tok(path: str | None) -> Any:
    """The tokenizer: a directory (the pack's), else the embedded model's (baorl.models)."""
    if path is None and (DEFAULT_PACK / "tokenizer" / "tokenizer.json").is_file():
        path = str(DEFAULT_PACK / "tokenizer")
    if path is None:
        from baorl.models import load_tokenizer

        return load_tokenizer("embedded")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def build_model(shape: str, tok: Any, device: str, *, seed: int = 0) -> Any:
    """A Qwen3 model of `shape` over `tok`'s vocabulary, randomly initialised on `device`."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=len(tok), max_position_embeddings=40960, rms_norm_eps=1e-6,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id, **SHAPES[shape])
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


# ---- the stages -------------------------------------------------------------------------------------------
class Smoke:
    """The stages' shared state: the tokenizer, the current model, the options."""

    def __init__(self, args: argparse.Namespace, device: str) -> None:
        self.args = args
        self.device = device
        self.tok: Any = None
        self.model: Any = None
        self.params: dict[str, int] = {}

    def stages(self) -> list[Stage]:
        a = self.args
        out: list[Stage] = []
        for shape in a.shapes:
            scale = _approx_params(shape)
            build = f"build {shape}"
            out.append(Stage(build, lambda s=shape: self.build(s), kind="build", scale=scale))
            for mode in a.kv_admission:
                tag = "" if mode == "turn" else f" {mode}"
                for b in a.batches:
                    out.append(Stage(f"rollout {shape} b={b}{tag}", lambda s=shape, b=b, m=mode: self.rollout(s, b, m),
                                     kind=f"rollout b={b}{tag}", scale=scale * b, needs=build))
            for b in a.profile:
                out.append(Stage(f"profile {shape} b={b}", lambda s=shape, b=b: self.rollout(s, b, profile=True),
                                 kind=f"profile b={b}", scale=scale * b, needs=build))
            if a.train:
                out.append(Stage(f"train {shape}", lambda s=shape: self.train(s), kind="train", scale=scale,
                                 needs=build))
        return out

    def build(self, shape: str) -> dict[str, Any]:
        import torch

        self.model = None
        _free_memory()
        if self.tok is None:
            self.tok = load_tok(self.args.tokenizer)
        _reset_peak(self.device)
        self.model = build_model(shape, self.tok, self.device)
        with torch.inference_mode():  # warm-up: kernels, cuBLAS handles
            self.model(torch.arange(8, device=self.device)[None])
        n = sum(p.numel() for p in self.model.parameters())
        self.params[shape] = n
        c = self.model.config
        return {"params": n, "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
                "peak_mem_gib": _peak_gib(self.device),
                "note": f"{n / 1e9:.3f}B params, {c.num_hidden_layers} layers x {c.hidden_size}, vocab "
                        f"{c.vocab_size}, {self.device}"}

    def rollout(self, shape: str, batch: int, admission: str = "turn", *, profile: bool = False) -> dict[str, Any]:
        """The forced rollout workload; with `profile`, one turn under torch's profiler (see `_gpu_busy`)."""
        import torch

        if str(BENCH) not in sys.path:
            sys.path.insert(0, str(BENCH))
        from rollout import FORCED, _turn_position  # the workload of bench/rollout.py

        from baorl.gyms import gym_class, load_tasks
        from baorl.rollout.engine import EngineConfig, RolloutEngine

        tok, turns = self.tok, 1 if profile else self.args.turns
        forced = tok(FORCED, add_special_tokens=False).input_ids + [tok.convert_tokens_to_ids("<|im_end|>")]
        start_id = tok.convert_tokens_to_ids("<|im_start|>")

        def force(contexts: list[list[int]], logits: torch.Tensor) -> torch.Tensor:
            want = [forced[min(_turn_position(ids, start_id), len(forced) - 1)] for ids in contexts]
            out = torch.full_like(logits, -1e9)
            out[torch.arange(len(want), device=logits.device), torch.tensor(want, device=logits.device)] = 0.0
            return out

        cfg = EngineConfig(temperature=0.0, batch_size=batch, max_turns=turns,
                           max_new_tokens_per_turn=len(forced) + 8, chat_template="qwen3", kv_admission=admission)
        engine = RolloutEngine(self.model, tok, cfg, name=f"hf:qwen3-{shape}-random", logits_processor=force)
        tasks = load_tasks("function", split="test")
        cls = gym_class("function")
        gyms = [cls(tasks[i % len(tasks)]) for i in range(batch)]
        _reset_peak(self.device)
        prof = None
        if profile:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            # the GPU's activity only (CPU ops are not recorded there, so the wall time stays representative)
            acts = [ProfilerActivity.CUDA] if self.device == "cuda" else [ProfilerActivity.CPU]
            prof = torch_profile(activities=acts)
            prof.__enter__()
        t0 = time.perf_counter()
        try:
            trajs = engine.run(gyms)
            if self.device == "cuda":
                torch.cuda.synchronize()
            secs = time.perf_counter() - t0
        finally:
            if prof is not None:
                prof.__exit__(None, None, None)
        generated = sum(sum(t.response_mask) for t in trajs)
        played = [len(t.episode.turns) for t in trajs]
        if min(played) != turns:
            raise RuntimeError(f"an episode played {min(played)} of {turns} turns: the forced workload broke")
        st = engine.stats
        out = {"episodes": len(trajs), "turns": turns, "tokens": generated, "tokens_per_s": generated / secs,
               "peak_mem_gib": _peak_gib(self.device)}
        if prof is not None:
            busy_s, kernels = _gpu_busy(prof)
            steps = max(st["decode_steps"], 1)
            out.update(decode_steps=st["decode_steps"], wall_ms_per_step=1e3 * secs / steps, gpu_busy_s=busy_s,
                       kernels=kernels)
            if busy_s is None:
                out["note"] = f"{len(trajs)} episodes x 1 turn under the profiler; no GPU kernels on {self.device}"
            else:
                out["gpu_busy_share"] = busy_s / secs
                out["kernels_per_step"] = kernels / steps
                out["note"] = (f"{len(trajs)} episodes x 1 turn under the profiler: GPU busy {busy_s:.2f} of "
                               f"{secs:.2f} s ({100 * busy_s / secs:.0f}%), {kernels / steps:,.0f} kernels and "
                               f"{1e3 * busy_s / steps:.2f} ms of GPU time per decoding step")
            return out
        return {**out, "prompt_tokens": sum(len(t.prompt_ids) for t in trajs),
                "engine": {k: round(float(v), 3) for k, v in st.items()},
                "note": f"{len(trajs)} episodes x {turns} turns; decode {st['decode_s']:.1f} s, feed "
                        f"{st['feed_s']:.1f} s, sample {st['sample_s']:.1f} s; live <= {st['max_live']:.0f}, "
                        f"{st['decode_steps']:.0f} steps, {st['preempted']:.0f} preempted"}

    def train(self, shape: str) -> dict[str, Any]:
        a = self.args
        model, tok = self.model, self.tok
        n = self.params[shape]
        need = n * 2 * 6 if self.device == "cuda" else n * 4 * 6  # start + checkpoint (model, 2 Adam states) + final
        work = Path(tempfile.mkdtemp(prefix="baorl-gpu-smoke-", dir=pick_workdir(need)))
        try:
            t0 = time.perf_counter()
            model.save_pretrained(work / "model")
            tok.save_pretrained(work / "model")
            save_start_s = time.perf_counter() - t0
            self.model = model = None  # run_train loads the checkpoint itself
            _free_memory()
            config = write_train_config(work, shape=shape, device=self.device, tasks=a.train_tasks,
                                        rollouts=a.train_rollouts, response=a.train_response, micro=a.micro)
            _reset_peak(self.device)
            figures = run_train_timed(config)
            figures["peak_mem_gib"] = _peak_gib(self.device)
            figures["start_checkpoint_save_s"] = round(save_start_s, 2)
            figures["workdir"] = str(work.parent)
            return figures
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _approx_params(shape: str, vocab: int = 49152) -> float:
    s = SHAPES[shape]
    h, i, n = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"]
    q, kv = s["num_attention_heads"] * s["head_dim"], s["num_key_value_heads"] * s["head_dim"]
    return vocab * h + n * (h * (q + 2 * kv) + q * h + 3 * h * i)


def pick_workdir(need_bytes: float) -> str:
    """Where the train stage writes its checkpoints: RAM-backed /dev/shm when it has room, else the temp dir."""
    candidates = ["/dev/shm", tempfile.gettempdir()]
    for c in candidates:
        try:
            if os.path.isdir(c) and os.access(c, os.W_OK) and shutil.disk_usage(c).free > 1.3 * need_bytes:
                return c
        except OSError:
            continue
    free = {c: round(shutil.disk_usage(c).free / GIB, 1) for c in candidates if os.path.isdir(c)}
    raise RuntimeError(f"no room for the train stage's checkpoints ({need_bytes / GIB:.1f} GiB needed; free: {free})")


def write_train_config(work: Path, *, shape: str, device: str, tasks: int, rollouts: int, response: int,
                       micro: int) -> Path:
    """The run's YAML config, as `baorl train CONFIG` would read it."""
    import yaml

    cuda = device == "cuda"
    cfg = {
        "name": f"gpu-smoke-{shape}",
        "output_dir": str(work / "run"),
        "model": {"path": str(work / "model"), "dtype": "bfloat16" if cuda else "float32", "chat_template": "qwen3"},
        "data": {"gym": "function", "train_split": "train", "val_split": "test", "max_train_tasks": tasks,
                 "max_val_tasks": 1},
        "rollout": {"max_turns": 3, "max_prompt_tokens": 2048, "max_response_tokens": response,
                    "max_new_tokens_per_turn": response, "temperature": 1.0, "batch_size": tasks * rollouts,
                    "backend": "hf"},
        "train": {"tasks_per_step": tasks, "rollouts_per_task": rollouts, "micro_batch_size": micro,
                  "max_steps": 1, "learning_rate": 1e-6, "val_every": 0, "val_at_start": False, "val_at_end": False,
                  "save_steps": 1, "save_total_limit": 1, "report_to": [], "bf16": cuda,
                  "gradient_checkpointing": False, "seed": 0,
                  "skip_null_passes": False},  # time every pass, even where all advantages are 0
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_train_timed(config: Path) -> dict[str, Any]:
    """`baorl train CONFIG` in this process (the CLI's `resolve_run` + `run_train`), timing the step.

    run_train's progress bar is swapped for a subclass that also notes when the optimiser step
    begins and ends and when the checkpoint is saved; the run itself is untouched.
    """
    from baorl.train import run as run_mod

    marks: dict[str, float] = {}
    base = run_mod.RichProgress

    class Clock(base):  # type: ignore[misc, valid-type]
        def on_step_begin(self, args, state, control, **kw):
            marks.setdefault("step_begin", time.perf_counter())
            return super().on_step_begin(args, state, control, **kw)

        def on_step_end(self, args, state, control, **kw):
            marks["step_end"] = time.perf_counter()
            return super().on_step_end(args, state, control, **kw)

        def on_save(self, args, state, control, **kw):
            marks["saved"] = time.perf_counter()
            return super().on_save(args, state, control, **kw)

    cfg, _ = run_mod.resolve_run(str(config), [], None)
    run_mod.RichProgress = Clock
    t0 = time.perf_counter()
    try:
        summary = run_mod.run_train(cfg)
    finally:
        run_mod.RichProgress = base
    total = time.perf_counter() - t0
    run_dir = Path(cfg.output_dir)
    from baorl.records import read_jsonl  # lines end at "\n" only (str.splitlines also splits at U+2028)

    logs: dict[str, Any] = {}
    for _, _, row in read_jsonl(run_dir / "metrics.jsonl").rows:
        logs.update(row)
    if summary["steps"] != 1 or "loss" not in logs:
        raise RuntimeError(f"the run did not log one optimiser step: steps {summary['steps']}, logs {sorted(logs)}")
    step_s = marks["step_end"] - marks["step_begin"]
    rollout_s = float(logs.get("time/rollout_s", 0.0))
    rollout_tokens = round(float(logs.get("time/rollout_tokens_per_s", 0.0)) * rollout_s)
    update_s = step_s - rollout_s
    update_tokens = int(logs["num_tokens"]) if "num_tokens" in logs else None
    episodes = [row for _, _, row in read_jsonl(run_dir / "rollouts.jsonl").rows]
    loss, grad = float(logs["loss"]), float(logs.get("grad_norm", float("nan")))
    if not (math.isfinite(loss) and math.isfinite(grad)):
        raise RuntimeError(f"non-finite update: loss {loss}, grad norm {grad}")
    return {
        "episodes": len(episodes), "tokens": update_tokens,
        "tokens_per_s": (update_tokens / step_s) if update_tokens else None,
        "step_s": round(step_s, 2), "rollout_s": round(rollout_s, 2), "rollout_tokens": rollout_tokens,
        "rollout_tokens_per_s": rollout_tokens / max(rollout_s, 1e-9),
        "update_s": round(update_s, 2), "update_tokens": update_tokens,
        "update_tokens_per_s": (update_tokens / update_s) if update_tokens and update_s > 0 else None,
        "save_s": round(marks["saved"] - marks["step_end"], 2) if "saved" in marks else None,
        "run_train_s": round(total, 2), "loss": loss, "grad_norm": grad,
        "reward": logs.get("reward"), "advantage_abs_mean": logs.get("bao/group_adv_abs_mean"),
        "terminations": {k.split("ended_")[1]: v for k, v in logs.items() if k.startswith("episode/ended_")},
        "checkpoint": sorted(p.name for p in run_dir.glob("checkpoint-*")),
        "note": f"{len(episodes)} episodes; tokens = prompt + response tokens trained on, / whole step",
    }


# ---- the pack (prepared here, carried to the GPU machine) ---------------------------------------------
def extract_tokenizer(dest: Path) -> list[str]:
    """The embedded GGUF's tokenizer (no weights) as transformers files in `dest`."""
    from transformers import AutoTokenizer

    from baorl.models import loading

    tok = AutoTokenizer.from_pretrained(loading._gguf_dir(), gguf_file=loading._GGUF_FILE)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    tok.save_pretrained(dest)
    return sorted(p.name for p in dest.iterdir())


def pack_specs() -> list[str]:
    """``name==version`` of every packed distribution: the versions installed in this environment
    (which `make setup` installs from pyproject.toml's pins), unless `PACK_DISTS` pins one."""
    from importlib.metadata import PackageNotFoundError, version

    specs = []
    for name in PACK_DISTS:
        if "==" in name:
            specs.append(name)
            continue
        try:
            specs.append(f"{name}=={version(name)}")
        except PackageNotFoundError as e:
            raise SystemExit(f"{name} is not installed here; run `make setup` first") from e
    return specs


def download_wheels(dest: Path, specs: list[str], python_version: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    abi = "cp" + python_version.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", "--abi", abi, "--abi", "abi3",
           "--abi", "none", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
           "--platform", "manylinux2014_x86_64", "--platform", "any", "--dest", str(dest), *specs]
    subprocess.run(cmd, check=True)


def pack(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="gpu_smoke.py pack", description="prepare what the GPU machine lacks")
    ap.add_argument("--dir", type=Path, default=DEFAULT_PACK, help="the pack (an ignored folder: carry it)")
    ap.add_argument("--python-version", default="3.12", help="the GPU machine's Python (wheels' tag)")
    ap.add_argument("--no-wheels", action="store_true", help="the tokenizer only")
    a = ap.parse_args(argv)
    files = extract_tokenizer(a.dir / "tokenizer")
    manifest: dict[str, Any] = {"python_version": a.python_version, "tokenizer": files, "wheels": []}
    if not a.no_wheels:
        specs = pack_specs()
        download_wheels(a.dir / "wheels", specs, a.python_version)
        got = sorted((a.dir / "wheels").glob("*.whl"))
        manifest["specs"] = specs
        manifest["wheels"] = [{"file": p.name, "bytes": p.stat().st_size} for p in got]
        if len(got) != len(specs):
            raise SystemExit(f"expected {len(specs)} wheels, got {len(got)}")
    total = sum(p.stat().st_size for p in a.dir.rglob("*") if p.is_file())
    manifest["total_bytes"] = total
    (a.dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for w in manifest["wheels"]:
        print(f"  {w['bytes'] / 2**20:7.2f} MiB  {w['file']}")
    print(f"{a.dir}: {len(manifest['wheels'])} wheels + tokenizer ({', '.join(files)}): {total / 2**20:.1f} MiB")
    if total > PACK_LIMIT_BYTES:
        raise SystemExit(f"the pack is {total / 2**20:.1f} MiB, over {PACK_LIMIT_BYTES / 2**20:.0f} MiB")
    return 0


# ---- main -------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["1.7b", "4b"], choices=sorted(SHAPES))
    ap.add_argument("--batches", nargs="+", type=int, default=[32, 128], help="rollout batch sizes")
    ap.add_argument("--turns", type=int, default=3, help="turns per rollout episode")
    ap.add_argument("--kv-admission", nargs="+", default=["turn"], choices=["turn", "budget"],
                    help="the engine's kv_admission for the rollout stages; each listed runs every batch size "
                         "(stages of modes other than turn, the default, are named with the mode)")
    ap.add_argument("--profile", nargs="*", type=int, default=[], metavar="B",
                    help="batch sizes to profile: one turn of B episodes under torch's profiler, reporting how much "
                         "of the wall time a GPU kernel was running and the kernels per decoding step")
    ap.add_argument("--no-train", dest="train", action="store_false", help="skip the training step")
    ap.add_argument("--train-tasks", type=int, default=8)
    ap.add_argument("--train-rollouts", type=int, default=4)
    ap.add_argument("--train-response", type=int, default=512, help="response tokens per training episode")
    ap.add_argument("--micro", type=int, default=4, help="episodes per forward/backward pass")
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--tokenizer", help="tokenizer directory (default: the pack's, else the embedded model's)")
    ap.add_argument("--deadline", type=float, default=360.0,
                    help="seconds from start after which no stage starts (default 360)")
    ap.add_argument("--hard-stop", type=float, default=420.0,
                    help="seconds from start at which the process ends itself (default 420; 0: never)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output directory or .json file (default: $OUT, else runs/gpu-smoke)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None, *, start: float | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    for key, value in (("TRL_EXPERIMENTAL_SILENCE", "1"), ("TOKENIZERS_PARALLELISM", "false"),
                       ("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")):
        os.environ.setdefault(key, value)  # no network there: nothing may wait on one
    out = args.out or Path(os.environ.get("OUT") or ROOT / "runs" / "gpu-smoke")
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    header = {"machine": machine_info(device), "argv": sys.argv[1:] if argv is None else list(argv),
              "workload": {"shapes": args.shapes, "batches": args.batches, "turns": args.turns,
                           "kv_admission": args.kv_admission, "profile": args.profile,
                           "train": {"tasks": args.train_tasks, "rollouts": args.train_rollouts,
                                     "max_response_tokens": args.train_response, "micro_batch": args.micro}
                           if args.train else None}}
    runner = Runner(out, deadline=args.deadline, hard_stop=args.hard_stop or None,
                    start=START if start is None else start, header=header)
    smoke = Smoke(args, device)
    runner.run(smoke.stages())
    data = runner.write()
    print(format_table(data), flush=True)
    print(f"written: {output_paths(out)[0]}", flush=True)
    return data


if __name__ == "__main__":
    if sys.argv[1:2] == ["pack"]:
        sys.exit(pack(sys.argv[2:]))
    main()
