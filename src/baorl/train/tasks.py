"""What a run trains and validates on, and its user simulator: shared by the TRL and verl engines."""

from __future__ import annotations

import math
from typing import Any

from baorl.gyms import Task, load_tasks
from baorl.train.config import TrainConfig

__all__ = ["make_user_for", "training_tasks", "validation_tasks", "rollout_steps_per_epoch", "rollout_steps",
           "total_steps"]


def make_user_for(cfg: TrainConfig) -> Any:
    """The user simulator the gym needs (None for gyms without one)."""
    from baorl.users import user_for

    opts = {"base_url": cfg.data.simulator_base_url} if cfg.data.simulator_base_url else {}
    return user_for(cfg.data.gym, cfg.data.simulator, **opts)


def training_tasks(cfg: TrainConfig) -> list[Task]:
    tasks = load_tasks(cfg.data.gym, cfg.data.path, cfg.data.train_split)[: cfg.data.max_train_tasks]
    if not tasks:
        raise ValueError(f"data: no training tasks in {cfg.data.path or cfg.data.train_split + ' split'}")
    return tasks


def validation_tasks(cfg: TrainConfig) -> list[Task]:
    path = cfg.data.val_path or cfg.data.path
    tasks = load_tasks(cfg.data.gym, path, cfg.data.val_split)[: cfg.data.max_val_tasks]
    if not tasks:
        raise ValueError(f"data: no validation tasks in {path or cfg.data.val_split + ' split'}")
    return tasks


def rollout_steps_per_epoch(cfg: TrainConfig, n_tasks: int) -> int:
    """Full rollout batches in one pass over `n_tasks` tasks: the last partial batch is dropped, as
    verl's dataloader (``drop_last``) and TRL's ``RepeatSampler`` both do (460 tasks / 128 = 3)."""
    per_epoch = n_tasks // cfg.train.tasks_per_step
    if per_epoch < 1:
        raise ValueError(f"data: {n_tasks} training tasks make no full rollout batch of train.tasks_per_step="
                         f"{cfg.train.tasks_per_step} (a partial batch is dropped); lower train.tasks_per_step "
                         f"or use more tasks")
    return per_epoch


def rollout_steps(cfg: TrainConfig, n_tasks: int) -> int:
    """Rollout batches of the run (verl's ``total_training_steps``): ``ceil(max_steps / updates per
    rollout)``, or ``epochs`` passes of `rollout_steps_per_epoch` (the paper: 30 x 3 = 90)."""
    if cfg.train.max_steps is not None:
        return math.ceil(cfg.train.max_steps / cfg.updates_per_rollout)
    return max(1, math.floor(cfg.train.epochs * rollout_steps_per_epoch(cfg, n_tasks) + 1e-9))


def total_steps(cfg: TrainConfig, n_tasks: int) -> int:
    """Optimiser steps of the run (TRL's ``max_steps``): ``max_steps``, or `rollout_steps` times the
    optimiser steps per rollout batch (the paper: 90 x 128/16 = 720)."""
    if cfg.train.max_steps is not None:
        return cfg.train.max_steps
    return rollout_steps(cfg, n_tasks) * cfg.updates_per_rollout
