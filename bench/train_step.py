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
    trajs, rollout_s = record_rollouts(model, tok, tasks, args)
    generated = sum(sum(t.response_mask) for t in trajs)
    cfg = build_config(TrainConfig, {
        "model": {"chat_template": "chatml-tools"},
        "rollout": {"max_turns": args.turns},
        "train": {"tasks_per_step": args.tasks, "rollouts_per_task": args.rollouts, "micro_batch_size": args.micro,
                  "learning_rate": 1e-6, "report_to": [], "val_every": 0, "save_steps": 10_000},
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
    print(f"workload: SmolLM2-135M fp32 ({params / 1e6:.1f} M params), {args.tasks} tasks x {args.rollouts} rollouts "
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


if __name__ == "__main__":
    main()
