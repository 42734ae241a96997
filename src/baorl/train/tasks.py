"""What a run trains and validates on, and its user simulator: shared by the TRL and verl engines."""

from __future__ import annotations

import math
from typing import Any

from baorl.gyms import Task, load_tasks
from baorl.train.config import TrainConfig

__all__ = ["make_user_for", "training_tasks", "validation_tasks", "total_steps"]


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


def total_steps(cfg: TrainConfig, n_tasks: int) -> int:
    """Optimiser steps of the run: ``max_steps``, or ``epochs`` passes over the tasks."""
    if cfg.train.max_steps is not None:
        return cfg.train.max_steps
    batches = math.ceil(cfg.train.epochs * n_tasks / cfg.train.tasks_per_step)
    return max(1, batches) * cfg.updates_per_rollout
