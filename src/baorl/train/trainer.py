"""BAO on TRL: a `GRPOTrainer` whose rollouts are whole multi-turn episodes and whose advantages are BAO's.

TRL owns the loop: data sampling and GRPO grouping, batching and gradient accumulation, the
optimiser and scheduler, accelerate/DeepSpeed, PEFT, logging, checkpoints and resume. The trainer
owns its validation (a `Validation` callback it builds itself) and the best checkpoint.

One rollout batch, in order (all of it below, in this file):

1. ``_rollout`` (TRL's ``rollout_func``): each prompt names a task; the rollout engine plays the
   episodes (batched, token-exact), `score_episode` scores each one (shaped turn rewards, turn
   credits, trajectory score), and TRL gets the prompt ids, the response ids (policy tokens and
   the observations between turns), the sampled log-probs, an ``env_mask`` that is 1 exactly on
   the policy's tokens, and the scored episode itself as the extra column ``bao_episode``.
2. TRL pads the batch; its reward function `bao_score` reads each row's trajectory score (the
   run's logged ``reward``; None for a simulator error, so TRL leaves it out too).
3. ``_generate_and_score_completions``: TRL's group-normalised scalar advantage is replaced by
   BAO's per-token advantages: `batch_advantages` (group normalisation over the gathered batch,
   simulator errors excluded) and `advantage_rows` (turn credits over each turn's tokens).
4. ``_compute_loss``: TRL's loss types have no dual clip, so the loss is `baorl.bao.ppo_loss`
   (PPO clip + dual clip, token mean) on TRL's per-token log-probs, normalised over the tokens of
   the accumulation window as TRL's ``dapo`` does.

TRL 1.16.0 methods overridden (``trl==1.16.0`` is pinned for them; `tests/test_train.py` checks
they still exist with the arguments used): ``_generate_and_score_completions`` (3),
``_compute_loss`` (4), ``_get_train_sampler`` (an epoch-exact sampler on resume) and the public
``train`` (drops the rollout records of steps after the resumed checkpoint). Everything else is TRL's.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import RepeatSampler

from baorl.bao import ppo_loss, truncated_is_weights
from baorl.gyms import Task, gym_class
from baorl.models.precision import RolloutWeights, resolve_bf16
from baorl.records import write_episodes
from baorl.rollout.engine import EngineConfig, RolloutEngine
from baorl.rollout.episode import EpisodeLimits
from baorl.train.callbacks import Validation, keep_steps, save_policy, validation_metrics
from baorl.train.config import TrainConfig, use_cuda
from baorl.train.episodes import ScoredEpisode, advantage_rows, batch_advantages, score_episode

__all__ = ["BAOTrainer", "EpochRepeatSampler", "NonFiniteLossError", "grpo_args", "engine_config", "vllm_args"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops before the update, keeping the last checkpoint."""


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, in GiB (since it started: a resumed run counts anew)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20  # bytes on macOS, KiB on Linux


def bao_score(prompts: list, completions: list, bao_episode: list[ScoredEpisode], **_: Any) -> list[float | None]:
    """TRL reward function: the BAO trajectory score the rollout computed (logged as the run's reward);
    None for an episode not trained on (a simulator error), which TRL then leaves out of its statistics."""
    return [float(e.score) if e.trained else None for e in bao_episode]


def engine_config(cfg: TrainConfig, *, greedy: bool = False) -> EngineConfig:
    """The rollout engine's settings for training (sampled) or validation (greedy) episodes."""
    r = cfg.rollout
    limits = r.model_dump(include=set(EpisodeLimits.model_fields))
    return EngineConfig(
        **{**limits, "trailing_generation": r.trailing_generation and not greedy},
        temperature=0.0 if greedy else r.temperature, top_p=1.0 if greedy else r.top_p,
        batch_size=r.batch_size, max_kv_gib=r.max_kv_gib, kv_admission=r.kv_admission,
        chat_template=cfg.model.chat_template, template_kwargs=cfg.model.template_kwargs, seed=cfg.train.seed,
    )


def grpo_args(cfg: TrainConfig, run_dir: Path, *, max_steps: int) -> GRPOConfig:
    """TRL's configuration for a baorl run: the batch geometry of bao.md §3 in TRL's terms.

    A rollout batch is ``tasks_per_step x rollouts_per_task`` episodes (TRL's generation batch);
    it is cut into optimiser steps of ``mini_batch_tasks x rollouts_per_task`` episodes (one PPO
    epoch), each accumulated over micro-batches of ``micro_batch_size`` episodes.
    """
    t = cfg.train
    n = t.rollouts_per_task
    rows_per_update = (t.mini_batch_tasks or t.tasks_per_step) * n
    world = int(os.environ.get("WORLD_SIZE", "1"))  # processes launched by accelerate/torchrun
    per_pass = t.micro_batch_size * world
    if rows_per_update % per_pass or cfg.rows_per_step % per_pass:
        raise ValueError(f"train.micro_batch_size x {world} processes = {per_pass} must divide the episodes per "
                         f"optimiser step ({rows_per_update}) and per rollout batch ({cfg.rows_per_step})")
    use_cpu = not use_cuda(t.use_cpu)
    bf16 = resolve_bf16(t.bf16, "cpu" if use_cpu else "cuda", what="updates")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")  # transformers 5 reads it from here
    return GRPOConfig(
        output_dir=str(run_dir),
        per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=rows_per_update // per_pass,
        steps_per_generation=cfg.rows_per_step // per_pass,
        num_generations=n,
        num_iterations=1,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        max_completion_length=cfg.rollout.max_response_tokens,
        beta=0.0,
        epsilon=cfg.loss.clip_low,
        epsilon_high=cfg.loss.clip_high,
        loss_type="dapo",  # only its token normalisation is mirrored; the loss itself is baorl.bao.ppo_loss
        mask_truncated_completions=False,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,
        max_grad_norm=t.max_grad_norm,
        max_steps=max_steps,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        report_to=list(t.report_to),
        disable_tqdm=True,
        use_cpu=use_cpu,
        bf16=bf16,
        activation_checkpointing=t.gradient_checkpointing,
        deepspeed=t.deepspeed,
        shuffle_dataset=True,
        remove_unused_columns=False,
        log_completions=t.log_completions,
        **vllm_args(cfg),
    )


def vllm_args(cfg: TrainConfig) -> dict[str, Any]:
    """TRL's vLLM settings for ``rollout.backend: vllm``: a colocated engine per process, sized for
    one whole episode (prompt + response budget), handing back processed log-probabilities."""
    if cfg.rollout.backend != "vllm":
        return {}
    r = cfg.rollout
    return {"use_vllm": True, "vllm_mode": "colocate", "vllm_tensor_parallel_size": 1,
            "vllm_gpu_memory_utilization": r.vllm_gpu_memory_utilization,
            "vllm_max_model_length": r.max_prompt_tokens + r.max_response_tokens}


class EpochRepeatSampler(RepeatSampler):
    """TRL's `RepeatSampler` whose task order is a function of the epoch, so a resumed run sees the
    order the uninterrupted run saw.

    TRL's sampler draws each epoch's permutation from one generator as it goes; transformers, on
    resume, calls ``set_epoch`` rather than replaying the epochs before, so a run resumed in epoch
    ``e`` used to draw epoch 0's order again. Here the ``e``-th permutation is recomputed from the
    seed (the same sequence TRL's uninterrupted run draws).
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.epoch: int | None = None
        self._iterations = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Any:
        epoch = self._iterations if self.epoch is None else self.epoch
        self._iterations += 1
        if self.shuffle:
            self.generator = torch.Generator()
            if self.seed is not None:
                self.generator.manual_seed(self.seed)
            for _ in range(epoch):  # the permutations of the epochs before
                torch.randperm(self.num_samples, generator=self.generator)
        return super().__iter__()


class BAOTrainer(GRPOTrainer):
    """TRL's GRPO trainer with baorl's multi-turn rollouts and BAO's advantages and loss.

    Args:
        cfg: the run configuration.
        model: the policy (a transformers causal LM), already loaded.
        tokenizer: its tokenizer.
        tasks: the training tasks; each dataset row's prompt is a task id.
        run_dir: the run directory (checkpoints, records, metrics).
        max_steps: optimiser steps to run.
        user: the user simulator shared by the gyms (None where the gym needs none).
        val_tasks: the validation tasks, played greedily by the trainer's `Validation` callback
            (``train.val_every``, ``val_at_start``, ``val_at_end``); none: no validation.
        callbacks: extra `transformers.TrainerCallback` objects.
        peft_config: a peft config to train adapters instead of all weights.
    """

    def __init__(self, cfg: TrainConfig, model: Any, tokenizer: Any, tasks: Sequence[Task], run_dir: Path, *,
                 max_steps: int, user: Any = None, val_tasks: Sequence[Task] = (), callbacks: list | None = None,
                 peft_config: Any = None) -> None:
        from datasets import Dataset

        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.gym_cls = gym_class(cfg.data.gym)
        self.tasks = {t.id: t for t in tasks}
        self.val_tasks = list(val_tasks)
        self.user = user
        self._engine: RolloutEngine | None = None
        self._val_engine: RolloutEngine | None = None
        self._rollout_weights: RolloutWeights | None = None
        t = cfg.train
        self.validation = Validation(self.run_dir, self.validate, self.save_policy_at, log=self.log,
                                     every=t.val_every, at_start=t.val_at_start, at_end=t.val_at_end)
        callbacks = [self.validation, *(callbacks or [])] if self.val_tasks else list(callbacks or [])
        dataset = Dataset.from_dict({"prompt": [t.id for t in tasks]})
        super().__init__(
            model=model, reward_funcs=[bao_score], args=grpo_args(cfg, self.run_dir, max_steps=max_steps),
            train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks, peft_config=peft_config,
            rollout_func=self._rollout,
        )

    def train(self, resume_from_checkpoint: str | bool | None = None, **kw: Any) -> Any:
        """TRL's `train`; resuming first drops the rollout records of steps after the checkpoint.

        A run killed mid-step has already logged that step's episodes; the resumed run plays the
        step again (the same episodes: the sampling seed is derived from the step), so the stale
        records go, as does a torn last line.
        """
        if isinstance(resume_from_checkpoint, str):
            state = json.loads((Path(resume_from_checkpoint) / "trainer_state.json").read_text())
            done = int(state["global_step"])
            keep_steps(self.run_dir / "rollouts.jsonl", lambda step: step < done)  # rollout steps count from 0
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kw)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's `log`, with the step's peak memory read when the step is logged (after its update)
        rather than when its rollout ended, so that a step's figure includes its own update."""
        m = self._metrics["train"]
        if "memory/peak_rss_gib" in m:
            m["memory/peak_rss_gib"] = [peak_rss_gib()]
        super().log(logs, start_time)

    def _get_train_sampler(self, dataset: Any = None) -> Any:
        """TRL's sampler, made exact on resume at any epoch (`EpochRepeatSampler`)."""
        base = super()._get_train_sampler(dataset)
        return EpochRepeatSampler(
            data_source=dataset if dataset is not None else self.train_dataset,
            mini_repeat_count=base.mini_repeat_count, batch_size=base.batch_size,
            repeat_count=base.repeat_count, shuffle=base.shuffle, seed=base.seed)

    # ---- the policy as the rollout engine sees it ------------------------------------------------
    def policy_model(self) -> Any:
        """The bare transformers model (LoRA layers stay injected and active)."""
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def rollout_model(self) -> Any:
        """The weights rollouts and validation run on, current as of now: the live policy, or (with
        ``rollout.bf16``, when the policy is held in fp32) its bf16 copy, refreshed here."""
        if self._rollout_weights is None:
            model = self.policy_model()
            device = str(next(model.parameters()).device)
            # (not under DeepSpeed: a ZeRO-3 model's parameters are shards, not copyable weights)
            if (model.dtype == torch.float32 and self.cfg.train.deepspeed is None
                    and resolve_bf16(self.cfg.rollout.bf16, device, what="rollouts")):
                self._rollout_weights = RolloutWeights(model)
            else:
                return model
        return self._rollout_weights.refresh()

    def engine(self) -> Any:
        """The rollout backend: baorl's engine on `rollout_model`, or TRL's colocated vLLM (kept in
        sync with the policy by TRL before each rollout)."""
        if self._engine is None:
            if self.cfg.rollout.backend == "vllm":
                from baorl.rollout.vllm import VLLMRollout

                self._engine = VLLMRollout.from_trl(self, self.processing_class, engine_config(self.cfg),
                                                    name=f"vllm:{self.cfg.model.path}")
            else:
                self._engine = RolloutEngine(self.rollout_model(), self.processing_class, engine_config(self.cfg),
                                             name=f"hf:{self.cfg.model.path}")
        elif self.cfg.rollout.backend != "vllm":
            self.rollout_model()  # the bf16 copy, if any, refreshed to the current weights
        return self._engine

    def save_policy_at(self, path: Path) -> None:
        """Save the current policy as a loadable ``hf:PATH`` (LoRA merged into a copy)."""
        save_policy(self.accelerator.unwrap_model(self.model), self.processing_class, path)

    def validate(self, step: int) -> tuple[list[Any], dict[str, float]]:
        """Play the validation tasks greedily with the current policy: ``(episodes, metrics)``."""
        model = self.rollout_model()
        if self._val_engine is None:  # built once: construction scans the whole vocabulary
            self._val_engine = RolloutEngine(model, self.processing_class, engine_config(self.cfg, greedy=True))
        self._val_engine.name = f"hf:{self.cfg.model.path}@step{step}"
        trajs = self._val_engine.run([self.gym_cls(t, user=self.user) for t in self.val_tasks])
        episodes = [t.episode for t in trajs]
        return episodes, validation_metrics(episodes)

    def make_gyms(self, task_ids: Sequence[str]) -> list[Any]:
        missing = [p for p in task_ids if p not in self.tasks]
        if missing:
            raise KeyError(f"prompt {missing[0]!r} is not a task id of the training set")
        return [self.gym_cls(self.tasks[p], user=self.user) for p in task_ids]

    # ---- 1. rollouts -----------------------------------------------------------------------------
    def _rollout(self, prompts: list[str], trainer: Any) -> dict[str, list]:
        step = self.state.global_step
        engine = self.engine()
        t0 = time.perf_counter()
        trajs = engine.run(self.make_gyms(prompts), sample_seed=(self.cfg.train.seed * 1_000_003 + step) * 64
                           + self.accelerator.process_index)
        seconds = time.perf_counter() - t0
        scored = [score_episode(tr, self.cfg.bao, max_turns=self.cfg.rollout.max_turns) for tr in trajs]
        self._log_rollouts(scored, seconds, engine.stats)
        write_episodes(self.run_dir / "rollouts.jsonl",
                       [tr.episode.model_copy(update={"step": step}) for tr in trajs], append=True)
        # bao_episode travels with its row: TRL merges extra columns into the batch's inputs
        out: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "logprobs": [], "env_mask": [],
                                "bao_episode": scored}
        pad = self.processing_class.pad_token_id
        for tr, e in zip(trajs, scored, strict=True):
            out["prompt_ids"].append(list(tr.prompt_ids))
            if tr.response_ids:
                out["completion_ids"].append(list(tr.response_ids))
                out["logprobs"].append(list(tr.logprobs))
                # a simulator error is not the agent's doing: none of its tokens enter the loss
                out["env_mask"].append(list(tr.response_mask) if e.trained else [0] * len(tr.response_ids))
            else:  # an episode that ended before generating (prompt over budget): one inert token
                out["completion_ids"].append([pad])
                out["logprobs"].append([0.0])
                out["env_mask"].append([0])
        return out

    def _log_rollouts(self, scored: Sequence[ScoredEpisode], seconds: float, stats: dict[str, float]) -> None:
        m = self._metrics["train"]
        # simulator errors are counted, and kept out of the episode means (they are not the agent's)
        m["episode/simulator_errors"].append(float(sum(not e.trained for e in scored)))
        scored = [e for e in scored if e.trained]
        n = max(len(scored), 1)
        turns = sum(e.turns for e in scored)
        m["episode/score"].append(sum(e.raw_score for e in scored) / n)
        m["episode/success"].append(sum(e.success for e in scored) / n)
        m["episode/user_actions"].append(sum(e.user_actions for e in scored) / n)
        m["episode/user_rate"].append(sum(e.user_actions / e.turns for e in scored if e.turns) / n)
        m["episode/turns"].append(turns / n)
        for reason in ("no_tool_call", "token_budget", "turn_limit"):
            m[f"episode/ended_{reason}"].append(sum(e.termination == reason for e in scored) / n)
        m["episode/shaped_penalty"].append(
            sum(sum(e.shaped) - sum(e.rewards) for e in scored) / n)
        m["time/rollout_s"].append(seconds)
        m["time/rollout_tokens_per_s"].append(stats.get("generated", 0) / max(seconds, 1e-9))
        m["memory/peak_rss_gib"].append(peak_rss_gib())  # read again by `log`, after the update

    # ---- 2. BAO advantages -----------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        out = super()._generate_and_score_completions(inputs)  # plays the rollout (1) and pads the batch (2)
        t0 = time.perf_counter()
        local: list[ScoredEpisode] = [row["bao_episode"] for row in inputs]
        if len(local) != out["completion_ids"].size(0):
            raise RuntimeError("rollout rows and TRL's batch rows disagree; a TRL change broke the adapter")
        device = out["completion_ids"].device
        scores = self.accelerator.gather(torch.tensor([e.score for e in local], device=device, dtype=torch.float64))
        trained = self.accelerator.gather(torch.tensor([e.trained for e in local], device=device, dtype=torch.bool))
        adv = batch_advantages(scores.tolist(), self.num_generations, eps=self.cfg.bao.eps, trained=trained.tolist())
        start = self.accelerator.process_index * len(local)
        for i, e in enumerate(local):
            e.advantage = adv[start + i]
        out["advantages"] = advantage_rows(local, out["completion_ids"].size(1), device=device)
        m = self._metrics["train"]
        nonzero = out["advantages"] != 0
        m["bao/token_adv_nonzero_frac"].append(
            (nonzero.sum() / out["tool_mask"].sum().clamp(min=1)).item() if "tool_mask" in out else 0.0)
        m["bao/group_adv_abs_mean"].append(sum(abs(e.advantage) for e in local) / max(len(local), 1))
        m["time/advantages_s"].append(time.perf_counter() - t0)
        return out

    # ---- 3. the BAO loss -------------------------------------------------------------------------
    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        mask = completion_mask * inputs["tool_mask"] if "tool_mask" in inputs else completion_mask
        advantages = inputs["advantages"]  # per token, or per episode (then spread over its tokens)
        advantages = advantages.unsqueeze(1).expand_as(mask) if advantages.dim() == 1 else advantages
        null = self._null_pass(advantages, mask)
        self._metrics["train"]["update/null_pass_frac"].append(float(null))
        if null:
            # every trained token's advantage is 0, so is this micro-batch's gradient, exactly: give
            # every parameter its zero gradient without the forward and backward passes (the
            # optimiser, clipping and weight decay then see what the full pass would have given)
            return sum((p.sum() * 0.0 for p in model.parameters() if p.requires_grad),
                       torch.zeros((), device=completion_ids.device))
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logps, _, _ = self._get_per_token_logps_and_entropies(model, input_ids, attention_mask,
                                                             completion_ids.size(1))
        old = inputs.get("old_per_token_logps")
        old = logps.detach() if old is None else old  # the update's precision either way
        sampled = inputs.get("sampling_per_token_logps")  # the rollout's, in the rollout's precision
        if sampled is not None:
            self._log_rollout_agreement(logps.detach(), sampled, mask)
        lc = self.cfg.loss
        weights = None
        if lc.rollout_correction == "tis" and sampled is not None:
            weights = truncated_is_weights(old, sampled, mask, cap=lc.tis_cap)
        loss, stats = ppo_loss(logps, old, advantages, mask, clip_low=lc.clip_low, clip_high=lc.clip_high,
                               dual_clip=lc.dual_clip, weights=weights)
        # token mean over the whole accumulation window (as TRL's dapo): sum over this micro-batch's
        # tokens divided by the window's token count
        window = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
        window = window * self.current_gradient_accumulation_steps / self.args.steps_per_generation
        loss = loss * stats["tokens"].clamp(min=1) / window
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss became {loss.item()} at step {self.state.global_step + 1}; stopped before the update "
                f"(the last checkpoint in {self.run_dir} is intact)")
        m = self._metrics["train"]
        for key in ("clip_frac", "dual_clip_frac", "approx_kl", "ratio_mean"):
            m[f"loss/{key}"].append(float(stats[key]))
        if weights is not None:
            m["loss/tis_weight_mean"].append(float((weights * mask).sum() / mask.sum().clamp(min=1)))
        return loss

    def _null_pass(self, advantages: torch.Tensor, mask: torch.Tensor) -> bool:
        """Whether a micro-batch's loss has an exactly zero gradient: its advantages are 0 on every
        token the loss sees (e.g. a GRPO group whose episodes all scored the same). PPO's clipped
        objective is then ``-0 * ratio`` per token whatever the ratio, the dual clip included."""
        if not self.cfg.train.skip_null_passes or self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return False
        return not bool(((advantages != 0) & mask.bool()).any())

    def _log_rollout_agreement(self, logps: torch.Tensor, sampled: torch.Tensor, mask: torch.Tensor) -> None:
        """Rollout/update agreement, in the first optimiser step after each rollout (the weights are
        still the rollout's, so only the precision and the engine differ): ``r = exp(logp_update -
        logp_rollout)`` over the policy's tokens; ``rollout/ratio_mean``, ``rollout/ratio_std``,
        ``rollout/logp_abs_diff``."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self._step % generate_every >= self.current_gradient_accumulation_steps:
            return
        keep = mask.bool() & torch.isfinite(sampled)
        if not bool(keep.any()):
            return
        diff = (logps.float() - sampled.float())[keep]
        ratio = diff.exp()
        m = self._metrics["train"]
        m["rollout/ratio_mean"].append(ratio.mean().item())
        m["rollout/ratio_std"].append(ratio.std(correction=0).item())
        m["rollout/logp_abs_diff"].append(diff.abs().mean().item())
