"""One checkpoint evaluated greedily in fp32 and in bf16: speed, and whether the outcomes agree.

``baorl eval``'s path (`baorl.runs.runner.run_rollout`, the batched engine) plays the first ``--n``
test tasks of a gym with ``--agent`` twice, ``--dtype float32`` then ``--dtype bfloat16`` (the
weights loaded in that precision), each in its own records file, and compares per task:

- outcome agreement: the same success and the same score (the issue's target: >= 95% of tasks);
- trajectory agreement: the same sequence of actions (choice and content of every turn), a
  stricter figure — greedy decoding in another precision may take another, equally good, path.

Model loading is not timed. Where the CPU has no bf16 matrix units, bf16 is slower here and
``auto`` would pick fp32 (the first line says which); the agreement figure holds either way.

    python bench/eval_precision.py --agent hf:runs/bao/final [--gym function --n 78 --batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def play(agent: str, gym: str, n: int, dtype: str, out: Path, engine: dict) -> tuple[list, float]:
    from baorl.runs.runner import run_rollout

    t0 = time.perf_counter()
    eps = run_rollout(agent=agent, gym=gym, out=out, limit=n, engine_options={**engine, "dtype": dtype})
    return eps, time.perf_counter() - t0


def actions(ep) -> list:
    return [(t.choice, t.content) for t in ep.turns]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="hf:embedded")
    ap.add_argument("--gym", default="function")
    ap.add_argument("--n", type=int, default=78)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-response-tokens", type=int, default=None)
    ap.add_argument("--max-new-tokens", type=int, default=None)
    args = ap.parse_args()
    from baorl.models.precision import precision_note

    engine = {"batch_size": args.batch_size}
    if args.max_response_tokens:
        engine["max_response_tokens"] = args.max_response_tokens
    if args.max_new_tokens:
        engine["max_new_tokens_per_turn"] = args.max_new_tokens
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {precision_note('cpu')}")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "bfloat16"):  # each leg's figures printed as soon as it ends
            runs[dtype] = eps, secs = play(args.agent, args.gym, args.n, dtype, Path(tmp) / f"{dtype}.jsonl", engine)
            print(f"{dtype}: {len(eps)} episodes in {secs:.1f} s, {sum(e.success for e in eps)} solved", flush=True)
    (f32, t32), (b16, t16) = runs["float32"], runs["bfloat16"]
    by_task = {e.task_id: e for e in b16}
    pairs = [(a, by_task[a.task_id]) for a in f32 if a.task_id in by_task]
    same_outcome = sum(a.success == b.success and a.score == b.score for a, b in pairs)
    same_path = sum(actions(a) == actions(b) for a, b in pairs)
    n = len(pairs)
    print(f"workload: {args.agent} on {n} {args.gym} test tasks, greedy, batch {args.batch_size}")
    print(f"{'precision':<12}{'seconds':>10}{'episodes/min':>14}{'success':>10}{'mean score':>12}")
    for name, eps, secs in (("float32", f32, t32), ("bfloat16", b16, t16)):
        print(f"{name:<12}{secs:>10.1f}{len(eps) / secs * 60:>14.1f}{sum(e.success for e in eps):>10}"
              f"{sum(e.score for e in eps) / max(len(eps), 1):>12.3f}")
    print(f"bf16 speed-up: {t32 / t16:.2f}x (target >= 2x where bf16 units exist)")
    print(f"outcome agreement (success and score): {same_outcome}/{n} = {same_outcome / max(n, 1):.1%} "
          f"(target >= 95%); same actions throughout: {same_path}/{n} = {same_path / max(n, 1):.1%}")


if __name__ == "__main__":
    main()
