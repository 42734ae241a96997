"""The BAO RL run configuration (`baorl train CONFIG.yaml`): every coefficient of bao.md is a key here.

A config is one YAML file with these sections (unknown keys fail before any work, naming the key):

- ``model``: the policy to start from and how to hold it (dtype, LoRA, chat template);
- ``data``: the gym, its task source and splits, the user simulator;
- ``rollout``: episode limits and sampling (the rollout engine's settings);
- ``bao``: shaping, trajectory score and turn credit (bao.md §3), i.e. BAO vs the UserRL baseline;
- ``loss``: the PPO clip settings;
- ``train``: batch geometry, optimiser, schedule, validation, checkpoints, logging.

The presets in ``configs/`` set these; ``--set section.key=value`` overrides any of them.

The SFT config (`baorl.train.sft.SFTRunConfig`) shares this vocabulary and these definitions:
`ModelSection` (with ``lora`` inside it) and `OptimSection` (TRL's words: ``learning_rate``,
``lr_scheduler_type``, ``warmup_ratio``, ``weight_decay``, ``max_grad_norm``, ``save_steps``,
``save_total_limit``, ``gradient_checkpointing``, ``use_cpu``, ``bf16`` …) are defined here once; the
episode limits of ``rollout`` are `baorl.rollout.episode.EpisodeLimits`, which the rollout engine's
`EngineConfig` and the ``hf:`` command-line options share. Old keys are refused with their new name
(`baorl.config.RENAMED`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from baorl.config import ConfigError, StrictModel
from baorl.models.precision import Bf16
from baorl.rollout.episode import EpisodeLimits

__all__ = ["TrainConfig", "ModelSection", "RLModelSection", "DataSection", "RolloutSection", "BAOSection",
           "LossSection", "OptimSection", "TrainSection", "LoraSection", "use_cuda"]


class LoraSection(StrictModel):
    """Low-rank adapters instead of a full fine-tune (merged into the weights when saved); SFT and RL."""

    enabled: bool = Field(False, description="train LoRA adapters instead of all weights")
    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = Field("all-linear", description="module names, or 'all-linear'")

    def peft_config(self) -> Any:
        """peft's `LoraConfig` for a causal LM, or None when LoRA is off."""
        if not self.enabled:
            return None
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, task_type="CAUSAL_LM")


class ModelSection(StrictModel):
    """The policy to start from and how to hold it; SFT and RL."""

    path: str = Field("embedded", description="'embedded' (SmolLM2-135M-Instruct), a local checkpoint, or a "
                      "model id already in the local Hugging Face cache")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype the weights are loaded and trained in (mixed precision: train.bf16)")
    chat_template: str = Field("auto", description="auto, native, chatml-tools or qwen3: the template the "
                               "rollout engine plays the policy with")
    lora: LoraSection = Field(default_factory=LoraSection)


class RLModelSection(ModelSection):
    """`ModelSection` for RL: chat-template variables, and no LoRA dropout by default (the update's
    log-probabilities should be the rollout's)."""

    template_kwargs: dict = Field(default_factory=dict, description="extra chat-template variables")
    lora: LoraSection = Field(default_factory=lambda: LoraSection(dropout=0.0))


class DataSection(StrictModel):
    gym: str = Field("function", description="gym name or id")
    path: str | None = Field(None, description="UserRL task file (default: baorl's embedded set)")
    train_split: Literal["train", "test", "all"] = "train"
    val_split: Literal["train", "test", "all"] = "test"
    val_path: str | None = Field(None, description="a separate validation task file (default: `path`)")
    max_train_tasks: int | None = Field(None, ge=1, description="use only the first N training tasks")
    max_val_tasks: int | None = Field(None, ge=1, description="validate on the first N tasks only")
    simulator: str | None = Field(None, description="'offline' or 'openai:MODEL' (gyms with users)")
    simulator_base_url: str | None = None


class RolloutSection(EpisodeLimits, StrictModel):
    """The episode limits (`EpisodeLimits`, as the rollout engine's) and sampling of training rollouts."""

    temperature: float = Field(1.0, gt=0.0, description="rollout sampling temperature (validation is greedy)")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    batch_size: int = Field(64, ge=1, description="episodes decoded together")
    max_kv_gib: float | Literal["auto"] | None = Field("auto", description="KV-cache memory cap of the engine "
                                                       "(see EngineConfig.max_kv_gib)")
    kv_admission: Literal["turn", "budget"] = Field("turn", description="what max_kv_gib counts per episode: "
                                                    "its next turn (preempting if needed) or its full budget "
                                                    "(see EngineConfig.kv_admission)")
    backend: Literal["auto", "hf", "vllm"] = Field(
        "auto", description="hf: baorl's batched engine; vllm: TRL's colocated vLLM on each GPU (gpu extra); "
        "auto: vllm when vLLM is installed and a GPU is present, else hf")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0.0, lt=1.0, description="vLLM's share of GPU memory")
    bf16: Bf16 = Field("auto", description="rollouts (and validation) on a bf16 copy of the policy, refreshed "
                       "before each rollout (hf backend); auto: where the device has bf16 units "
                       "(baorl.models.precision)")


class BAOSection(StrictModel):
    """bao.md §3; the UserRL baseline is ``score: mean, credit: equalized, penalties: false``."""

    penalties: bool = Field(True, description="apply the information-seeking and over-thinking regularisers")
    c_rep: float = Field(0.005, ge=0.0, description="information-seeking penalty per repeated answer")
    c_len: float = Field(0.05, ge=0.0, description="over-thinking penalty per missing turn")
    effort_cost: float = Field(0.0, ge=0.0, description="w: cost per user-involved turn, every episode")
    ending_penalty: float = Field(0.0, ge=0.0, description="e: cost on the last turn of every episode whose "
                                  "ending is in penalised_endings (decided here; 0: off)")
    penalised_endings: list[Literal["no_tool_call", "token_budget", "turn_limit", "finish"]] = Field(
        ["no_tool_call", "token_budget"], description="the endings ending_penalty applies to: no valid tool call, "
        "the token budget spent mid-episode (the turn limit and the agent's own finish are well-formed)")
    overthink_failed: Literal["nonpositive", "zero"] = Field(
        "nonpositive", description="failed episodes for the over-thinking regulariser: bao.md's sum of rewards "
        "<= 0, or the official code's == 0 (differ only where step rewards can be negative)")
    score: Literal["sum", "mean", "r2g"] = Field("sum", description="trajectory score S")
    credit: Literal["r2g", "equalized", "em"] = Field("r2g", description="turn credits")
    gamma: float = Field(0.8, gt=0.0, le=1.0, description="discount of r2g credits / score")
    eps: float = Field(1e-6, gt=0.0, description="group std epsilon")


class LossSection(StrictModel):
    clip_low: float = Field(0.2, ge=0.0, lt=1.0)
    clip_high: float = Field(0.2, ge=0.0)
    dual_clip: float | None = Field(3.0, gt=1.0, description="dual-clip constant (None: off)")
    rollout_correction: Literal["none", "tis"] = Field(
        "none", description="rollouts sampled in another precision than the update's: none = old log-probs "
        "recomputed in the update's precision (the ratio's reference); tis = that, and each token's loss also "
        "weighted by min(exp(old - sampled), tis_cap) (truncated importance sampling)")
    tis_cap: float = Field(2.0, ge=1.0, description="truncation of the importance weights (rollout_correction: tis)")


class OptimSection(StrictModel):
    """The optimisation keys SFT and RL share, in TRL's words (each subclass sets its own defaults)."""

    epochs: float = Field(1.0, gt=0.0, description="passes over the training data (ignored with max_steps)")
    max_steps: int | None = Field(None, ge=1, description="optimiser steps; overrides epochs (null: from epochs)")
    learning_rate: float = Field(1e-6, gt=0.0)
    lr_scheduler_type: str = Field("constant", description="transformers scheduler (constant, cosine, linear, …)")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of the steps with linear warm-up")
    weight_decay: float = Field(0.01, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    seed: int = 0
    save_steps: int = Field(1, ge=1, description="checkpoint (for --resume) every N optimiser steps")
    save_total_limit: int | None = Field(2, ge=1, description="rolling checkpoints kept (null: all)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: "
                                         "less memory, ~20-30% slower")
    bf16: Bf16 = Field("auto", description="bf16 autocast over fp32 master weights in the update; auto: where "
                       "the device has bf16 units (a bf16 GPU; a CPU with AMX/AVX512-BF16); null = auto")
    use_cpu: bool | None = Field(None, description="true: CPU; false: the GPU (an error without one); "
                                 "null: the GPU when there is one")

    @field_validator("bf16", mode="before")
    @classmethod
    def _null_is_auto(cls, v: Any) -> Any:
        return "auto" if v is None else v


def use_cuda(use_cpu: bool | None) -> bool:
    """Whether to train on the GPU for ``train.use_cpu``; false without a GPU is an error."""
    import torch

    if use_cpu is False and not torch.cuda.is_available():
        raise ConfigError("train.use_cpu: false asks for the GPU, but torch sees none")
    return use_cpu is not True and torch.cuda.is_available()


class TrainSection(OptimSection):
    tasks_per_step: int = Field(8, ge=1, description="tasks whose rollouts make one rollout batch")
    rollouts_per_task: int = Field(4, ge=1, description="GRPO group size n")
    mini_batch_tasks: int | None = Field(None, ge=1, description="tasks per optimiser step (None: all; "
                                         "fewer makes several updates per rollout batch, one epoch)")
    micro_batch_size: int = Field(4, ge=1, description="episodes per forward/backward pass")
    save_total_limit: int = Field(2, ge=1, description="rolling checkpoints kept (the best is kept apart)")
    val_every: int = Field(10, ge=0, description="validate every N optimiser steps (0: only at the end)")
    val_at_start: bool = Field(True, description="validate the starting policy before step 1")
    val_at_end: bool = Field(True, description="validate the final policy")
    report_to: list[Literal["tensorboard", "wandb"]] = Field(default_factory=lambda: ["tensorboard"])
    log_completions: bool = False
    deepspeed: str | None = Field(None, description="a DeepSpeed JSON config (multi-GPU runs via accelerate)")
    skip_null_passes: bool = Field(True, description="skip the forward/backward of a micro-batch whose "
                                   "advantages are 0 on every trained token (its gradient is exactly 0, so "
                                   "the update is unchanged); not with DeepSpeed or FSDP")


class TrainConfig(StrictModel):
    """One BAO (or UserRL-baseline) RL run."""

    name: str = Field("bao", description="run name (logs, report)")
    output_dir: str = Field("runs/bao", description="the run directory")
    engine: Literal["trl", "verl"] = Field("trl", description="trl: this node (TRL GRPOTrainer); verl: Ray")
    model: RLModelSection = Field(default_factory=RLModelSection)
    data: DataSection = Field(default_factory=DataSection)
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    bao: BAOSection = Field(default_factory=BAOSection)
    loss: LossSection = Field(default_factory=LossSection)
    train: TrainSection = Field(default_factory=TrainSection)

    @model_validator(mode="after")
    def _geometry(self) -> TrainConfig:
        t = self.train
        mini = t.mini_batch_tasks or t.tasks_per_step
        if mini > t.tasks_per_step or t.tasks_per_step % mini:
            raise ValueError(f"train.mini_batch_tasks ({mini}) must divide train.tasks_per_step ({t.tasks_per_step})")
        if t.max_steps is not None and t.max_steps % (t.tasks_per_step // mini):
            raise ValueError(f"train.max_steps ({t.max_steps}) must be a multiple of the optimiser steps per rollout "
                             f"batch (tasks_per_step / mini_batch_tasks = {t.tasks_per_step // mini}): a run ends "
                             f"on a whole rollout batch")
        rows = mini * t.rollouts_per_task
        if rows % t.micro_batch_size:
            raise ValueError(f"train.micro_batch_size ({t.micro_batch_size}) must divide the episodes per "
                             f"optimiser step (mini_batch_tasks x rollouts_per_task = {rows})")
        return self

    @property
    def rows_per_step(self) -> int:
        """Episodes in one rollout batch."""
        return self.train.tasks_per_step * self.train.rollouts_per_task

    @property
    def updates_per_rollout(self) -> int:
        """Optimiser steps per rollout batch."""
        return self.train.tasks_per_step // (self.train.mini_batch_tasks or self.train.tasks_per_step)
