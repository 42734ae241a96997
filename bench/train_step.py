"""One BAO training step, split into rollout, scoring and update; and BAO's overhead over plain TRL GRPO.

Workload: the embedded SmolLM2-135M-Instruct (fp32, CPU) on the embedded Function training tasks,
``--tasks`` tasks x ``--rollouts`` rollouts per step, ``--turns`` turns per episode. As in
bench/rollout.py, each turn's output is forced to one fixed valid tool call (a think block and a
probe) by a logits processor, so every configuration sees exactly the same tokens; the model still
computes every forward pass.

- rollout: the batched engine playing one step's episodes (measured once);
- scoring: BAO's shaping, scores, group advantages and token-advantage rows (`baorl.train.episodes`);
- update: TRL's log-prob forward passes, the loss, backward and the optimiser step.

Overhead: the same rollout batch is replayed (not re-generated) into (a) `BAOTrainer` and (b) a
plain `trl.GRPOTrainer` with the same ``rollout_func`` output, the same batch geometry, and TRL's own
``dapo`` loss and scalar advantages; both run ``--steps`` optimiser steps, alternating, and the
ratio of their mean step times (rollout excluded) is BAO's overhead. Update throughput is set against
the CPU's roofline: fp32 matmul FLOP/s measured here / (6 x parameters) tokens per second.

    python bench/train_step.py [--tasks 4 --rollouts 4 --turns 3 --steps 3]

Precision (``--compare-precision``): the same step (rollout + update, identical forced tokens) in
fp32 and in bf16 — rollouts on a bf16 copy of the weights (`baorl.models.precision.RolloutWeights`,
its refresh timed with the rollout), the update under bf16 autocast over the fp32 master — the two
alternating, ``--steps`` of each; prints both, the ratio, both matmul rates and what ``auto`` picks here.

    python bench/train_step.py --compare-precision [--tasks 2 --rollouts 4 --turns 3 --steps 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rollout import FORCED, _turn_position, matmul_flops  # noqa: E402

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def record_rollouts(model, tok, tasks, args) -> tuple[list, float]:
    from baorl.gyms import gym_class
    from baorl.rollout.engine import EngineConfig, RolloutEngine

    forced = tok(FORCED, add_special_tokens=False).input_ids + [tok.convert_tokens_to_ids("<|im_end|>")]
    start_id = tok.convert_tokens_to_ids("<|im_start|>")

    def force(contexts, logits):
        out = torch.full_like(logits, -1e9)
        for r, ids in enumerate(contexts):
            out[r, forced[min(_turn_position(ids, start_id), len(forced) - 1)]] = 0.0
        return out

    cfg = EngineConfig(temperature=1.0, batch_size=64, max_turns=args.turns, max_new_tokens_per_turn=len(forced) + 8,
                       max_kv_gib=None,
                       chat_template="chatml-tools")
    engine = RolloutEngine(model, tok, cfg, logits_processor=force)
    cls = gym_class("function")
    gyms = [cls(t) for t in tasks for _ in range(args.rollouts)]
    t0 = time.perf_counter()
    trajs = engine.run(gyms)
    return trajs, time.perf_counter() - t0


class Timer:
    """Trainer callback: wall time of each optimiser step."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self

        class _CB(TrainerCallback):
            def on_step_begin(self, *a, **k):
                timer.t0 = time.perf_counter()

            def on_step_end(self, *a, **k):
                timer.steps.append(time.perf_counter() - timer.t0)

        self.steps: list[float] = []
        self.callback = _CB()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--compare-precision", action="store_true",
                    help="time whole steps in fp32 and bf16 (rollout copy + autocast update) instead")
    args = ap.parse_args()
    torch.manual_seed(0)

    from trl import GRPOTrainer

    from baorl.config import build_config
    from baorl.gyms import load_tasks
    from baorl.models import load_model
    from baorl.train.config import TrainConfig
    from baorl.train.episodes import advantage_rows, batch_advantages, score_episode
    from baorl.train.trainer import BAOTrainer, grpo_args

    model, tok = load_model("embedded")
    params = sum(p.numel() for p in model.parameters())
    tasks = load_tasks("function", split="train")[: args.tasks]
    if args.compare_precision:
        return compare_precision(model, tok, tasks, args)
    trajs, rollout_s = record_rollouts(model, tok, tasks, args)
    generated = sum(sum(t.response_mask) for t in trajs)
    cfg = build_config(TrainConfig, {
        "model": {"chat_template": "chatml-tools"},
        "rollout": {"max_turns": args.turns},
        "train": {"tasks_per_step": args.tasks, "rollouts_per_task": args.rollouts, "micro_batch_size": args.micro,
                  "learning_rate": 1e-6, "report_to": [], "val_every": 0, "save_steps": 10_000,
                  "skip_null_passes": False},  # forced identical episodes: every pass would be null
    })

    # scoring, alone
    t0 = time.perf_counter()
    reps = 20
    for _ in range(reps):
        scored = [score_episode(t, cfg.bao, max_turns=args.turns) for t in trajs]
        adv = batch_advantages([e.score for e in scored], args.rollouts)
        for e, a in zip(scored, adv, strict=True):
            e.advantage = a
        advantage_rows(scored, max(len(t.response_ids) for t in trajs))
    scoring_s = (time.perf_counter() - t0) / reps

    replay = {"prompt_ids": [t.prompt_ids for t in trajs], "completion_ids": [t.response_ids for t in trajs],
              "logprobs": [t.logprobs for t in trajs], "env_mask": [t.response_mask for t in trajs],
              "bao_episode": scored}
    tokens_per_step = sum(len(t.prompt_ids) + len(t.response_ids) for t in trajs)

    class ReplayEngine:
        stats = {"generated": generated}

        def run(self, gyms, **kw):
            return trajs

    def plain_reward(prompts, completions, **kw):
        return [t.episode.score for t in trajs]

    from datasets import Dataset

    times: dict[str, list[float]] = {"bao": [], "trl": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.steps):
            for kind in ("bao", "trl"):
                timer = Timer()
                out = Path(tmp) / f"{kind}{rep}"
                run_cfg = cfg.model_copy(update={"output_dir": str(out)})
                run_cfg.train.max_steps = 1
                if kind == "bao":
                    tr = BAOTrainer(run_cfg, model, tok, tasks, out, max_steps=1, callbacks=[timer.callback])
                    tr._engine = ReplayEngine()
                else:
                    gargs = grpo_args(run_cfg, out, max_steps=1)
                    tr = GRPOTrainer(model=model, reward_funcs=[plain_reward], args=gargs,
                                     train_dataset=Dataset.from_dict({"prompt": [t.id for t in tasks]}),
                                     processing_class=tok, callbacks=[timer.callback],
                                     rollout_func=lambda prompts, trainer: dict(replay))
                tr.train()
                times[kind].append(timer.steps[0])

    def med(xs):
        return statistics.median(xs)

    flops = matmul_flops()
    bao, trl = med(times["bao"]), med(times["trl"])
    update_tok_s = tokens_per_step / trl
    roof = flops / (6 * params)
    n = len(trajs)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    print(f"workload: SmolLM2-135M, update precision {'bf16' if gargs_bf16(cfg) else 'fp32'} "
          f"({params / 1e6:.1f} M params), {args.tasks} tasks x {args.rollouts} rollouts "
          f"= {n} episodes of {args.turns} turns, {generated} policy tokens, {tokens_per_step} tokens per update, "
          f"micro-batch {args.micro}; medians of {args.steps} steps per trainer")
    print(f"{'phase':<34}{'seconds':>10}{'share':>8}")
    total = rollout_s + scoring_s + bao
    for name, s in (("rollout (engine, once)", rollout_s), ("scoring (BAO shaping+advantages)", scoring_s),
                    ("update (BAOTrainer step, replayed)", bao)):
        print(f"{name:<34}{s:>10.3f}{s / total:>8.1%}")
    print(f"plain TRL GRPO step (same batch)  {trl:>10.3f}   BAO / TRL = {bao / trl:.3f}x (target <= 1.15x)")
    print(f"update throughput: {tokens_per_step / bao:.0f} tokens/s (BAO), {update_tok_s:.0f} (TRL); roofline "
          f"{roof:.0f} tokens/s from {flops / 1e9:.1f} GFLOP/s fp32 -> {tokens_per_step / bao / roof:.1%} of roofline")
    print(f"step times (s): bao {[round(x, 2) for x in times['bao']]}, trl {[round(x, 2) for x in times['trl']]}")


def gargs_bf16(cfg) -> bool:
    from baorl.models.precision import resolve_bf16

    return resolve_bf16(cfg.train.bf16, "cpu", what="updates")


def matmul_rate(dtype: torch.dtype, reps: int = 20) -> float:
    """FLOP/s of the model's largest product shape (64 x 576 x 1,536) as a linear layer, in `dtype`."""
    import torch.nn.functional as F

    x, w = torch.randn(64, 576, dtype=dtype), torch.randn(1536, 576, dtype=dtype)
    for _ in range(3):
        F.linear(x, w)
    t0 = time.perf_counter()
    for _ in range(reps):
        F.linear(x, w)
    return 2 * 64 * 576 * 1536 * reps / (time.perf_counter() - t0)


def compare_precision(model, tok, tasks, args) -> None:
    """A whole step in fp32 and in bf16, alternating; prints both and the ratio."""
    from baorl.config import build_config
    from baorl.models.precision import RolloutWeights, precision_note
    from baorl.train.config import TrainConfig
    from baorl.train.trainer import BAOTrainer

    cfg = build_config(TrainConfig, {
        "model": {"chat_template": "chatml-tools"},
        "rollout": {"max_turns": args.turns, "bf16": False},
        "train": {"tasks_per_step": args.tasks, "rollouts_per_task": args.rollouts, "micro_batch_size": args.micro,
                  "learning_rate": 1e-6, "report_to": [], "val_every": 0, "save_steps": 10_000,
                  "skip_null_passes": False},  # forced identical episodes: every pass would be null
    })
    t0 = time.perf_counter()
    copy = RolloutWeights(model)
    copy_s = time.perf_counter() - t0
    rows: dict[str, dict[str, list[float]]] = {p: {"rollout": [], "update": []} for p in ("fp32", "bf16")}
    tokens = 0
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.steps):
            for prec in ("fp32", "bf16"):
                t0 = time.perf_counter()
                policy = copy.refresh() if prec == "bf16" else model
                refresh_s = time.perf_counter() - t0
                trajs, rollout_s = record_rollouts(policy, tok, tasks, args)
                tokens = sum(sum(t.response_mask) for t in trajs)

                class Replay:
                    stats = {"generated": tokens}

                    def run(self, gyms, _trajs=trajs, **kw):
                        return _trajs

                out = Path(tmp) / f"{prec}{rep}"
                run_cfg = build_config(TrainConfig, {**cfg.model_dump(), "output_dir": str(out)})
                run_cfg.train.bf16 = prec == "bf16"
                run_cfg.train.max_steps = 1
                timer = Timer()
                tr = BAOTrainer(run_cfg, model, tok, tasks, out, max_steps=1, callbacks=[timer.callback])
                tr._engine = Replay()
                tr.train()
                rows[prec]["rollout"].append(rollout_s + refresh_s)
                rows[prec]["update"].append(timer.steps[0])
    med = statistics.median
    f32, b16 = matmul_rate(torch.float32), matmul_rate(torch.bfloat16)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {precision_note('cpu')}")
    print(f"matmul 64x576x1536: fp32 {f32 / 1e9:.1f} GFLOP/s, bf16 {b16 / 1e9:.1f} GFLOP/s ({b16 / f32:.2f}x)")
    print(f"workload: SmolLM2-135M, {args.tasks} tasks x {args.rollouts} rollouts, {args.turns} turns, {tokens} policy "
          f"tokens per step, micro-batch {args.micro}; medians of {args.steps} steps per precision, alternating; "
          f"bf16 copy made once in {copy_s:.2f} s")
    print(f"{'phase':<30}{'fp32 s':>10}{'bf16 s':>10}{'bf16 speed-up':>15}")
    for phase in ("rollout", "update"):
        a, b = med(rows["fp32"][phase]), med(rows["bf16"][phase])
        print(f"{phase:<30}{a:>10.2f}{b:>10.2f}{a / b:>14.2f}x")
    a = med([r + u for r, u in zip(rows["fp32"]["rollout"], rows["fp32"]["update"], strict=True)])
    b = med([r + u for r, u in zip(rows["bf16"]["rollout"], rows["bf16"]["update"], strict=True)])
    print(f"{'whole step':<30}{a:>10.2f}{b:>10.2f}{a / b:>14.2f}x  (target >= 2x where bf16 units exist)")
    print(f"steps (s): {rows}")


if __name__ == "__main__":
    main()
