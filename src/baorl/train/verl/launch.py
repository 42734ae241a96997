"""`baorl train CONFIG --engine verl`: verl's configuration and data from a baorl config, then verl.

The launcher writes, under ``RUN/verl/``:

- ``train.parquet`` / ``val.parquet``: one row per task (``agent_name: baorl``; the gym and the
  task's JSON in ``extra_info``, which `BaorlAgentLoop` plays; ``prompt`` only names the task, as
  verl's dataset wants one: the agent loop renders the gym's own prompt);
- ``agent_loops.yaml``: the ``baorl`` agent loop;

and ``RUN/config.yaml`` (the resolved baorl config, which the agent loop reads), then runs
``python -m verl.trainer.main_ppo`` with the Hydra overrides of `verl_overrides`. Every BAO
setting maps onto a verl key (batch geometry, optimiser, clip, estimator, loss, validation,
checkpoints); anything verl-specific can be added with ``--verl-arg key=value``.

This module imports neither verl nor TRL: the overrides and data are checked in baorl's own test
suite; verl runs in its own environment (``make verl-env``), named by ``--verl-python``.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from baorl.config import save_config
from baorl.gyms import Task, gym_class
from baorl.train.config import TrainConfig

__all__ = ["write_dataset", "verl_overrides", "check_extra_overrides", "launch_verl", "VERL_PYTHON"]

#: the interpreter of the environment `make verl-env` builds
VERL_PYTHON = ".venv-verl/bin/python"


def write_dataset(tasks: Sequence[Task], gym: str, path: Path) -> Path:
    """One parquet row per task, as verl's ``RLHFDataset`` reads it and `BaorlAgentLoop` plays it."""
    from datasets import Dataset

    cls = gym_class(gym)
    rows = []
    for i, task in enumerate(tasks):
        rows.append({
            "data_source": f"baorl/{cls.name}",
            "agent_name": "baorl",
            # a placeholder for verl's dataset; the agent loop renders the gym's real prompt
            "prompt": [{"role": "user", "content": f"{cls.name} task {task.id}"}],
            "reward_model": {"style": "baorl", "ground_truth": ""},
            "extra_info": {"gym": cls.name, "task": task.model_dump_json(), "task_id": task.id, "index": i},
        })
    if not rows:
        raise ValueError(f"{path.name}: no tasks to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows).to_parquet(str(path))
    return path


def _q(value: object) -> str:
    """A Hydra override value (strings with special characters quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(_q(v) for v in value) + "]"
    text = str(value)
    return json.dumps(text) if any(c in text for c in " ,=[]{}:'\"") else text


def verl_overrides(cfg: TrainConfig, run_dir: Path, *, n_train_tasks: int, n_gpus_per_node: int = 1,
                   nnodes: int = 1, model_path: str | None = None) -> list[str]:
    """Hydra overrides of verl's ``ppo_trainer`` config that express `cfg` (see the module docstring)."""
    from baorl.train.tasks import rollout_steps, rollout_steps_per_epoch

    r, b, t, lo = cfg.rollout, cfg.bao, cfg.train, cfg.loss
    # verl counts rollout batches (one `ppo_mini_batch_size` split per batch), and stops at whichever
    # comes first of total_training_steps and total_epochs x batches per epoch: set both
    steps = rollout_steps(cfg, n_train_tasks)
    epochs = math.ceil(steps / rollout_steps_per_epoch(cfg, n_train_tasks))
    # shaping (penalties, effort cost) happens in the agent loop, which reads RUN/config.yaml
    verl_dir = run_dir / "verl"
    a = "actor_rollout_ref"
    kv: dict[str, object] = {
        "data.train_files": str(verl_dir / "train.parquet"),
        "data.val_files": str(verl_dir / "val.parquet"),
        "data.train_batch_size": t.tasks_per_step,
        "data.max_prompt_length": r.max_prompt_tokens,
        "data.max_response_length": r.max_response_tokens,
        "data.return_raw_chat": True,
        "data.truncation": "left",
        "data.filter_overlong_prompts": False,
        "data.shuffle": True,
        "data.seed": t.seed,
        f"{a}.model.path": model_path or cfg.model.path,
        f"{a}.actor.ppo_mini_batch_size": t.mini_batch_tasks or t.tasks_per_step,
        f"{a}.actor.ppo_micro_batch_size_per_gpu": t.micro_batch_size,
        f"{a}.actor.ppo_epochs": 1,
        f"{a}.actor.optim.lr": t.learning_rate,
        f"{a}.actor.optim.weight_decay": t.weight_decay,
        f"{a}.actor.optim.lr_warmup_steps_ratio": t.warmup_ratio,
        f"{a}.actor.grad_clip": t.max_grad_norm,
        f"{a}.actor.use_kl_loss": False,
        f"{a}.actor.entropy_coeff": 0.0,
        f"{a}.actor.loss_agg_mode": "token-mean",
        f"{a}.actor.clip_ratio_low": lo.clip_low,
        f"{a}.actor.clip_ratio_high": lo.clip_high,
        # dual_clip: null (off) is a dual-clip constant no ratio reaches
        f"{a}.actor.clip_ratio_c": lo.dual_clip if lo.dual_clip is not None else 1e9,
        f"{a}.actor.policy_loss.loss_mode": "bao",
        f"{a}.rollout.name": "vllm",
        f"{a}.rollout.n": t.rollouts_per_task,
        f"{a}.rollout.temperature": r.temperature,
        f"{a}.rollout.top_p": r.top_p,
        f"{a}.rollout.calculate_log_probs": True,
        f"{a}.rollout.val_kwargs.temperature": 0.0,
        f"{a}.rollout.val_kwargs.do_sample": False,
        f"{a}.rollout.val_kwargs.n": 1,
        f"{a}.rollout.agent.default_agent_loop": "baorl",
        f"{a}.rollout.agent.agent_loop_config_path": str(verl_dir / "agent_loops.yaml"),
        "algorithm.adv_estimator": "bao",
        "algorithm.use_kl_in_reward": False,
        "algorithm.gamma": b.gamma,
        "trainer.total_training_steps": steps,
        "trainer.total_epochs": epochs,
        # the v1 (TransferQueue) trainer: the legacy one drops the per-turn shaped rewards (see launch_verl)
        "trainer.use_v1": True,
        "trainer.save_freq": t.save_steps,
        "trainer.test_freq": t.val_every if t.val_every > 0 else -1,
        "trainer.val_before_train": t.val_at_start,
        "trainer.default_local_dir": str(verl_dir / "checkpoints"),
        "trainer.max_actor_ckpt_to_keep": t.save_total_limit,
        "trainer.resume_mode": "auto",
        "trainer.logger": ["console", "tensorboard"] + (["wandb"] if "wandb" in t.report_to else []),
        "trainer.project_name": "baorl",
        "trainer.experiment_name": cfg.name,
        "trainer.n_gpus_per_node": n_gpus_per_node,
        "trainer.nnodes": nnodes,
    }
    if cfg.model.lora.enabled:
        kv[f"{a}.model.lora_rank"] = cfg.model.lora.r
        kv[f"{a}.model.lora_alpha"] = cfg.model.lora.alpha
        kv[f"{a}.model.target_modules"] = cfg.model.lora.target_modules
    out = [f"{k}={_q(v)}" for k, v in kv.items()]
    # new keys (Hydra's "+"): BAO's estimator settings and the baorl config the agent loop reads
    out += [f"+algorithm.bao.{k}={_q(getattr(b, k))}" for k in ("score", "credit", "gamma", "eps")]
    out.append(f"+baorl.config={_q(str(run_dir / 'config.yaml'))}")
    return out


#: why verl's legacy trainer is refused (see `check_extra_overrides`)
LEGACY_TRAINER = (
    "trainer.use_v1=false selects verl's legacy trainer, which rebuilds rm_scores from each episode's final "
    "score and drops the per-turn shaped rewards BAO's advantages are computed from (bao.md §3); baorl "
    "runs on verl's v1 trainer only: remove the override")


def check_extra_overrides(extra: Sequence[str]) -> None:
    """Refuse, before any work, ``--verl-arg`` overrides that would silently change what BAO trains on."""
    for item in extra:
        key, _, value = item.partition("=")
        if key.lstrip("+~") == "trainer.use_v1" and value.strip().lower() in ("false", "0", "no", "off", "null"):
            raise ValueError(LEGACY_TRAINER)


def launch_verl(cfg: TrainConfig, *, python: str | None = None, ray_address: str | None = None,
                n_gpus_per_node: int = 1, nnodes: int = 1, extra: Sequence[str] = (), dry_run: bool = False) -> int:
    """Write the run's verl files and run verl (or, with `dry_run`, print the command); returns its exit code."""
    from baorl.models.loading import resolve_model
    from baorl.train.tasks import training_tasks, validation_tasks

    check_extra_overrides(extra)
    run_dir = Path(cfg.output_dir).resolve()
    verl_dir = run_dir / "verl"
    train, val = training_tasks(cfg), validation_tasks(cfg)
    write_dataset(train, cfg.data.gym, verl_dir / "train.parquet")
    write_dataset(val, cfg.data.gym, verl_dir / "val.parquet")
    (verl_dir / "agent_loops.yaml").write_text(
        "- name: baorl\n  _target_: baorl.train.verl.agent_loop.BaorlAgentLoop\n")
    save_config(cfg, run_dir / "config.yaml")
    model = str(resolve_model(cfg.model.path))
    python = python or (VERL_PYTHON if Path(VERL_PYTHON).exists() else sys.executable)
    cmd = [python, "-m", "verl.trainer.main_ppo",
           *verl_overrides(cfg, run_dir, n_train_tasks=len(train), n_gpus_per_node=n_gpus_per_node,
                           nnodes=nnodes, model_path=model), *extra]
    env = dict(os.environ, VERL_USE_EXTERNAL_MODULES="baorl.train.verl.plugin")
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    (verl_dir / "command.sh").write_text(
        ("export RAY_ADDRESS=" + shlex.quote(ray_address) + "\n" if ray_address else "")
        + "VERL_USE_EXTERNAL_MODULES=baorl.train.verl.plugin " + shlex.join(cmd) + "\n")
    if dry_run:
        print(shlex.join(cmd))
        return 0
    return subprocess.call(cmd, env=env)
