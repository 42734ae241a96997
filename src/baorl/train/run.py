"""`baorl train`: one BAO (or baseline) RL run from a config, resumable.

A run directory holds::

    config.yaml            the resolved config (a resume reads it back)
    checkpoint-N/          TRL/transformers checkpoints (model, optimiser, scheduler, RNG, sampler)
    rollouts.jsonl         every training episode (text fields, with its step)
    val/step_N/            greedy validation records and metrics; val/best.json
    best/                  the policy with the best validation score (hf:RUN/best)
    final/                 the policy at the end of the run
    metrics.jsonl          one record per logged step; tensorboard/ the same for TensorBoard
    summary.json           steps, wall time, best validation
    provenance.jsonl       the code (git commit) of each start and resume (`baorl.provenance`)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from baorl.config import load_config, save_config
from baorl.provenance import record_provenance
from baorl.train.callbacks import MetricsFile, RichProgress
from baorl.train.config import TrainConfig, use_cuda

__all__ = ["run_train", "resolve_run", "complete_checkpoint"]

console = Console(stderr=True)


def resolve_run(config: str | None, overrides: list[str], resume: str | None) -> tuple[TrainConfig, str | None]:
    """The config of a new run, or of the run being resumed (its saved config, then `overrides`)."""
    if resume is not None:
        saved = Path(resume) / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"--resume {resume}: no config.yaml there; is it a baorl run directory?")
        cfg = load_config(TrainConfig, config or saved, [*overrides, f"output_dir={resume}"])
        return cfg, resume
    if config is None:
        raise ValueError("give a config file (e.g. configs/bao-embedded.yaml) or --resume RUN_DIR")
    return load_config(TrainConfig, config, overrides), None


def resolve_backend(backend: str, use_cpu: bool | None = None) -> str:
    """``auto`` -> ``vllm`` when vLLM is installed and a GPU is present (and not forced to CPU), else ``hf``;
    an explicit ``vllm`` without both is an error."""
    import importlib.util

    import torch

    available = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available() and use_cpu is not True
    if backend == "auto":
        return "vllm" if available else "hf"
    if backend == "vllm" and not available:
        raise ValueError("rollout.backend: vllm needs a GPU and the gpu extra (pip install 'baorl[gpu]'); "
                         "use 'hf' (or 'auto') on CPU")
    return backend


def complete_checkpoint(run_dir: Path) -> str | None:
    """The newest whole checkpoint of a run: a ``checkpoint-N`` whose trainer state (written last by
    transformers), weights and optimiser state are all there. A checkpoint half-written when the run
    was killed is passed over, so the run resumes from the one before it."""
    steps = sorted((int(d.name.split("-")[-1]), d) for d in run_dir.glob("checkpoint-*")
                   if d.name.split("-")[-1].isdigit())
    for step, d in reversed(steps):
        if _is_whole(d):
            if step < steps[-1][0]:
                console.print(f"[yellow]checkpoint-{steps[-1][0]} is incomplete (killed while it was written); "
                              f"resuming from {d.name}[/]")
            return str(d)
    return None


def _is_whole(d: Path) -> bool:
    """A checkpoint with its weights, optimiser state and a readable trainer state."""
    weights = any((d / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json",
                                              "adapter_model.safetensors", "pytorch_model.bin"))
    if not (weights and (d / "optimizer.pt").is_file()):
        return False
    try:
        json.loads((d / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def run_train(cfg: TrainConfig, *, resume: str | None = None) -> dict[str, Any]:
    """Train; returns the run summary. `resume` continues the run in that directory.

    A new run that fails before its first checkpoint (a bad model path, a bad task file) removes
    the directory it created, so the corrected command is not refused as "not empty".
    """
    run_dir = Path(cfg.output_dir)
    created = resume is None and not run_dir.exists()
    try:
        return _run_train(cfg, resume=resume)
    except Exception:
        if created and run_dir.is_dir() and not any(run_dir.glob("checkpoint-*")):
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _run_train(cfg: TrainConfig, *, resume: str | None = None) -> dict[str, Any]:
    from baorl.models import load_model
    from baorl.train.tasks import make_user_for, total_steps, training_tasks, validation_tasks
    from baorl.train.trainer import BAOTrainer

    if cfg.engine != "trl":
        raise ValueError(f"engine {cfg.engine!r}: use `baorl train --engine verl` (see the README, scale-out)")
    cfg.rollout.backend = resolve_backend(cfg.rollout.backend, cfg.train.use_cpu)
    run_dir = Path(cfg.output_dir)
    checkpoint = complete_checkpoint(run_dir) if resume and run_dir.is_dir() else None
    if resume is None and run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"output_dir {run_dir} is not empty; resume it with --resume {run_dir} or pick another")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")

    tasks, val_tasks = training_tasks(cfg), validation_tasks(cfg)
    user = make_user_for(cfg)
    device = "cuda" if use_cuda(cfg.train.use_cpu) else "cpu"
    model, tokenizer = load_model(cfg.model.path, dtype=cfg.model.dtype, device=device)
    steps = total_steps(cfg, len(tasks))
    resume_step = int(Path(checkpoint).name.split("-")[-1]) if checkpoint else None
    callbacks = [MetricsFile(run_dir / "metrics.jsonl", resume_step=resume_step), RichProgress(console)]
    trainer = BAOTrainer(cfg, model, tokenizer, tasks, run_dir, max_steps=steps, user=user, val_tasks=val_tasks,
                         callbacks=callbacks, peft_config=cfg.model.lora.peft_config())
    console.print(f"[bold]{cfg.name}[/]: {cfg.data.gym} · {len(tasks)} training tasks, {len(val_tasks)} validation "
                  f"· {steps} optimiser steps of {cfg.rows_per_step // cfg.updates_per_rollout} episodes "
                  f"({cfg.train.tasks_per_step} tasks x {cfg.train.rollouts_per_task} per rollout batch) · "
                  f"score {cfg.bao.score}, credit {cfg.bao.credit}, penalties {'on' if cfg.bao.penalties else 'off'}"
                  + (f" · resuming from {checkpoint}" if checkpoint else ""), highlight=False)
    record_provenance(run_dir, "resume" if checkpoint else "start",
                      **({"from_step": resume_step} if checkpoint else {}))
    t0 = time.time()
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_policy_at(run_dir / "final")
    best = trainer.validation.best
    best_path = str(run_dir / "best") if best is not None else None
    summary = {"name": cfg.name, "steps": trainer.state.global_step, "wall_s": round(time.time() - t0, 1),
               "best": best, "final": str(run_dir / "final"), "best_path": best_path,
               "policy": best_path or str(run_dir / "final")}  # the one to evaluate
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
