"""Evaluation throughput (episodes per minute): batched/concurrent evaluation against a sequential loop.

Workload (the same for every row): the first ``--n`` tasks of a gym's embedded test split
(default Telepathy, with its offline simulator), the embedded SmolLM2-135M-Instruct (fp32, CPU),
greedy decoding, at most ``--max-new-tokens`` tokens per turn, the gym's own turn limit. The
untrained model seldom calls the tool, so most episodes end after one generation
(``no_tool_call``); the table prints turns per episode so that the rows' workloads can be compared.

- embedded, sequential: the rollout engine of ``baorl eval --agent hf:embedded``, one episode at a
  time (the baseline of the local rows).
- embedded, batched: the same engine given all ``--n`` episodes at once, as ``baorl eval`` runs them.
- endpoint, sequential: ``baorl serve embedded`` in a subprocess, and `baorl.evaluation.evaluate`
  with ``openai:embedded`` (an `OpenAIAgent`) at concurrency 1: one request at a time.
- endpoint, concurrent: the same at concurrency ``--n`` (the server batches up to ``--n`` requests).

Model loading and server start-up are not timed. Ratios are against the embedded sequential row,
and for the endpoint rows also against the endpoint's own sequential row. The load average is
printed before and after: numbers taken while other jobs load the CPU are slower and noisier.

    python bench/eval.py [--n 4] [--max-new-tokens 32] [--gym telepathy]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _serving import wait_healthy  # bench/ is the script's directory


def _gyms(name: str, n: int) -> list:
    from baorl.gyms import gym_class, load_tasks
    from baorl.users import make_user

    cls = gym_class(name)
    user = make_user(cls.name, "offline") if cls.needs_user else None
    return [cls(t, user=user) for t in load_tasks(name, split="test")[:n]]


def _row(kind: str, eps: list, seconds: float, tokens: int | None = None) -> dict:
    return {"kind": kind, "episodes": len(eps), "turns": sum(len(e.turns) for e in eps), "seconds": seconds,
            "tokens": tokens, "tool_calls": sum(t.choice is not None for e in eps for t in e.turns)}


def bench_embedded(gym: str, n: int, max_new: int) -> list[dict]:
    from baorl.rollout.engine import EngineConfig
    from baorl.rollout.hf import HFPolicy

    policy = HFPolicy("hf:embedded", EngineConfig(temperature=0.0, max_new_tokens_per_turn=max_new, batch_size=n))
    policy.rollout(_gyms(gym, 1))  # warm-up (first-call allocations), not timed
    rows = []
    t0 = time.perf_counter()
    trajs = [policy.rollout([g])[0] for g in _gyms(gym, n)]
    rows.append(_row("embedded, sequential", [t.episode for t in trajs], time.perf_counter() - t0,
                     sum(sum(t.response_mask) for t in trajs)))
    t0 = time.perf_counter()
    trajs = policy.rollout(_gyms(gym, n))
    rows.append(_row(f"embedded, batched (b={n})", [t.episode for t in trajs], time.perf_counter() - t0,
                     sum(sum(t.response_mask) for t in trajs)))
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_endpoint(gym: str, n: int, max_new: int) -> list[dict]:
    from baorl.evaluation.run import evaluate
    from baorl.records import read_episodes

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "baorl", "serve", "embedded", "--port", str(port), "--max-batch", str(n),
         "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_healthy(server, port, "baorl serve", log=lambda: server.stderr.read() if server.stderr else "")
        opts = {"base_url": base, "max_tokens": max_new, "timeout": 1800.0, "max_retries": 0}
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            evaluate("openai:embedded", gym, Path(tmp) / "warm", limit=1, agent_options=opts, n_boot=0, report=False)
            for conc, kind in ((1, "endpoint, sequential"), (n, f"endpoint, concurrent (c={n})")):
                out = Path(tmp) / f"c{conc}"
                t0 = time.perf_counter()
                evaluate("openai:embedded", gym, out, limit=n, concurrency=conc, agent_options=opts, n_boot=0,
                         report=False)
                rows.append(_row(kind, read_episodes(out / "episodes.jsonl"), time.perf_counter() - t0))
        return rows
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gym", default="telepathy", help="gym (its embedded test split; offline simulator)")
    ap.add_argument("--n", type=int, default=4, help="episodes per row (the first N tasks)")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="token cap per turn")
    ap.add_argument("--skip-endpoint", action="store_true", help="only the embedded rows")
    args = ap.parse_args()

    load0 = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; load average {load0:.2f} at start", flush=True)
    print(f"workload: {args.n} {args.gym} test tasks (offline simulator), SmolLM2-135M-Instruct fp32, greedy, "
          f"<= {args.max_new_tokens} new tokens per turn", flush=True)
    rows = bench_embedded(args.gym, args.n, args.max_new_tokens)
    for r in rows:
        print(f"  done: {r['kind']}: {r['seconds']:.1f} s", flush=True)
    if not args.skip_endpoint:
        rows += bench_endpoint(args.gym, args.n, args.max_new_tokens)
        for r in rows[2:]:
            print(f"  done: {r['kind']}: {r['seconds']:.1f} s", flush=True)
    load1 = os.getloadavg()[0]

    base = rows[0]["episodes"] / rows[0]["seconds"]
    print(f"\n{'configuration':<30} {'episodes':>8} {'turns':>6} {'tool calls':>10} {'tokens':>7} {'seconds':>8} "
          f"{'episodes/min':>12} {'vs embedded seq':>15} {'vs own seq':>10}")
    for i, r in enumerate(rows):
        rate = r["episodes"] / r["seconds"]
        own = rows[2 if i >= 2 else 0]
        own_rate = own["episodes"] / own["seconds"]
        tokens = "-" if r["tokens"] is None else str(r["tokens"])
        print(f"{r['kind']:<30} {r['episodes']:>8} {r['turns']:>6} {r['tool_calls']:>10} {tokens:>7} "
              f"{r['seconds']:>8.1f} {rate * 60:>12.2f} {rate / base:>14.2f}x {rate / own_rate:>9.2f}x")
    print(f"\nload average {load0:.2f} at start, {load1:.2f} at end on {os.cpu_count()} CPUs"
          + (" (other jobs were loading the CPU: figures are slower and noisier than on an idle machine)"
             if max(load0, load1) > (os.cpu_count() or 1) else ""))


if __name__ == "__main__":
    main()
