"""Rollout throughput: the batched engine against the naive loop, and against the CPU's roofline.

Workload (identical for every configuration): Function tasks of the embedded test split, the
embedded SmolLM2-135M-Instruct (in ``--dtype``, float32 by default), greedy decoding, ``--turns`` turns per episode. So that
every configuration generates exactly the same tokens, each turn's output is *forced* to one
fixed, valid tool call (a short think block and a probe) by a logits processor: the model still
runs its full forward pass for every token, only the choice of token is fixed. (The untrained
135M model rarely calls the tool by itself, which would end every episode after one turn.)

- engine: `baorl.rollout.engine.RolloutEngine` at batch 1, 8, 32 and 64 (N episodes = max(batch, 4)).
- naive: what UserRL's evaluation loop does: one episode at a time; every turn re-renders the
  whole conversation with the chat template, re-tokenises it and calls `model.generate` on it
  (prefilling the whole context again), one call per episode turn.
- roofline: matmul FLOP/s measured here with torch in the precision of the run (``--dtype``); one
  generated token costs 2 x params FLOPs, so roofline tokens/s = FLOP/s / (2 x params). (On CPUs
  without bf16 units, bfloat16 matmuls are far slower than float32, and so is its roofline.)

Each configuration runs in a fresh subprocess, so its peak resident memory is its own.

    python bench/rollout.py [--turns 3] [--batches 1 8 32 64] [--configs engine32 engine64] [--repeats 2]
                            [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch

FORCED = ('<think>probe a new point</think>\n<tool_call>\n{"name": "interact_with_env", "arguments": '
          '{"choice": "action", "content": "1 2 3 4"}}\n</tool_call>')


def _setup(turns: int, dtype: str = "float32"):
    from baorl.gyms import gym_class, load_tasks
    from baorl.models import load_model

    model, tok = load_model("embedded", dtype=dtype)
    forced = tok(FORCED, add_special_tokens=False).input_ids + [tok.convert_tokens_to_ids("<|im_end|>")]
    tasks = load_tasks("function", split="test")
    cls = gym_class("function")
    return model, tok, forced, tasks, cls


def _turn_position(ids: list[int], start_id: int) -> int:
    """Tokens generated so far in this turn: those after the last ``<|im_start|>assistant\\n``."""
    for k in range(len(ids) - 1, -1, -1):
        if ids[k] == start_id:
            return len(ids) - k - 2  # <|im_start|> assistant \n
    return 0


def run_engine(batch: int, turns: int, dtype: str = "float32") -> dict:
    from baorl.rollout.engine import EngineConfig, RolloutEngine

    model, tok, forced, tasks, cls = _setup(turns, dtype)
    start_id = tok.convert_tokens_to_ids("<|im_start|>")

    def force(contexts: list[list[int]], logits: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(logits, -1e9)
        for r, ids in enumerate(contexts):
            out[r, forced[min(_turn_position(ids, start_id), len(forced) - 1)]] = 0.0
        return out

    n = max(batch, 4)
    cfg = EngineConfig(temperature=0.0, batch_size=batch, max_turns=turns, max_new_tokens_per_turn=len(forced) + 8,
                       max_kv_gib=None)
    engine = RolloutEngine(model, tok, cfg, name="hf:embedded", logits_processor=force)
    gyms = [cls(tasks[i % len(tasks)]) for i in range(n)]
    t0 = time.perf_counter()
    trajs = engine.run(gyms)
    secs = time.perf_counter() - t0
    generated = sum(sum(t.response_mask) for t in trajs)
    assert all(len(t.episode.turns) == turns for t in trajs), "every episode must play all its turns"
    return {"kind": "engine", "batch": batch, "episodes": n, "generated": generated,
            "seconds": secs, "stats": {k: round(v, 2) for k, v in engine.stats.items()}}


def run_naive(turns: int, episodes: int = 4, dtype: str = "float32") -> dict:
    from transformers import LogitsProcessor, LogitsProcessorList

    from baorl.gyms.parser import parse_action
    from baorl.gyms.tool import INTERACT_TOOL
    from baorl.models import chat_template

    model, tok, forced, tasks, cls = _setup(turns, dtype)
    template = chat_template(tok, "auto")

    class Force(LogitsProcessor):
        def __init__(self, prompt_len: int) -> None:
            self.prompt_len = prompt_len

        def __call__(self, input_ids, scores):
            k = min(input_ids.shape[1] - self.prompt_len, len(forced) - 1)
            out = torch.full_like(scores, -1e9)
            out[:, forced[k]] = 0.0
            return out

    generated, t0 = 0, time.perf_counter()
    for i in range(episodes):
        gym = cls(tasks[i % len(tasks)])
        obs, info = gym.reset(seed=0)
        messages = [{"role": "system", "content": info["system_prompt"]}, {"role": "user", "content": obs}]
        for _ in range(turns):
            ids = tok.apply_chat_template(messages, tools=[INTERACT_TOOL], chat_template=template,
                                          add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=len(forced),
                                 min_new_tokens=len(forced), do_sample=False,
                                 logits_processor=LogitsProcessorList([Force(ids.shape[1])]),
                                 pad_token_id=tok.pad_token_id)
            new = out[0, ids.shape[1]:].tolist()
            generated += len(new)
            text = tok.decode(new, skip_special_tokens=True)
            obs, _r, term, trunc, _ = gym.step(parse_action(text))
            messages += [{"role": "assistant", "content": text}, {"role": "tool", "content": obs}]
            if term or trunc:
                break
    return {"kind": "naive", "batch": 1, "episodes": episodes, "generated": generated,
            "seconds": time.perf_counter() - t0}


def matmul_flops(seconds: float = 3.0, n: int = 1024, dtype: str = "float32") -> float:
    a, b = torch.randn(n, n, dtype=getattr(torch, dtype)), torch.randn(n, n, dtype=getattr(torch, dtype))
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def one(args: argparse.Namespace) -> None:
    res = run_naive(args.turns, dtype=args.dtype) if args.one == "naive" else run_engine(args.batch, args.turns,
                                                                                          args.dtype)
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=3, help="turns per episode")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64],
                    help="engine batch sizes to run (with the naive loop), unless --configs is given")
    ap.add_argument("--configs", nargs="+", metavar="CONFIG",
                    help="configurations to run instead, in order: naive, engine1, engine8, engine32, ... "
                         "(e.g. --configs engine32 engine64)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run the list of configurations this many times in turn (alternating, for A/B checks)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="precision of the model weights and of the roofline's matmul")
    ap.add_argument("--one", choices=["engine", "naive"], help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args)
    configs = [("naive", 1)] + [("engine", b) for b in args.batches]
    if args.configs:
        configs = []
        for c in args.configs:
            if c == "naive":
                configs.append(("naive", 1))
            elif c.startswith("engine") and c[6:].isdigit() and int(c[6:]) > 0:
                configs.append(("engine", int(c[6:])))
            else:
                ap.error(f"unknown configuration {c!r}: naive or engineN (N the batch size)")

    from baorl.models import load_model

    model, _ = load_model("embedded", dtype=args.dtype)
    params = sum(p.numel() for p in model.parameters())
    del model
    flops = matmul_flops(dtype=args.dtype)
    roof = flops / (2 * params)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"load average {load}")
    print(f"model: SmolLM2-135M-Instruct, precision {args.dtype}, {params / 1e6:.1f}M parameters; {args.dtype} matmul "
          f"{flops / 1e9:.1f} GFLOP/s -> {args.dtype} roofline {roof:.0f} tokens/s")
    rows = []
    for rep in range(args.repeats):
        for kind, batch in configs:
            cmd = [sys.executable, __file__, "--one", kind, "--batch", str(batch), "--turns", str(args.turns),
                   "--dtype", args.dtype]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            rows.append(json.loads(out))
            r = rows[-1]
            print(f"  done: {kind} batch {batch}{f' (repeat {rep + 1})' if args.repeats > 1 else ''}: "
                  f"{r['generated'] / r['seconds']:.1f} tokens/s", flush=True)
    naive = [r["generated"] / r["seconds"] for r in rows if r["kind"] == "naive"]
    base = sum(naive) / len(naive) if naive else None
    roof_col = f"% {'fp32' if args.dtype == 'float32' else 'bf16'} roof"
    print(f"\nprecision {args.dtype}; roofline {roof:.0f} tokens/s ({args.dtype} matmul {flops / 1e9:.1f} GFLOP/s)")
    print(f"{'config':<16} {'episodes':>8} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'vs naive':>9} "
          f"{roof_col:>13} {'peak RSS':>10}")
    for r in rows:
        tps = r["generated"] / r["seconds"]
        name = "naive loop" if r["kind"] == "naive" else f"engine b={r['batch']}"
        vs = f"{tps / base:>8.2f}x" if base else f"{'-':>9}"
        print(f"{name:<16} {r['episodes']:>8} {r['generated']:>7} {r['seconds']:>8.1f} {tps:>9.1f} "
              f"{vs} {tps / roof:>12.1%} {r['peak_rss_mib']:>7.0f} MiB")
    print("\nengine counters (seconds in decoding / feeding forward passes, sampling, regrouping):")
    for r in rows:
        if "stats" in r:
            st = r["stats"]
            print(f"  {r['kind']} b={r['batch']}: " + ", ".join(
                f"{k} {st[k]}" for k in ("decode_steps", "decode_s", "feed_s", "sample_s", "gather_s", "fed",
                                         "prefilled")))
    if hasattr(os, "getloadavg"):
        print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
