"""`baorl train CONFIG [--set key=value ...] [--resume RUN_DIR] [--sweep key=v1,v2,...]`."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

console = Console()


def cmd_train(args: argparse.Namespace) -> int:
    from baorl.config import ConfigError
    from baorl.train.run import resolve_run, run_train

    overrides = list(args.set or [])
    if args.engine:
        overrides.append(f"engine={args.engine}")
    if args.sweep:
        if args.resume:
            raise ValueError("--sweep starts new runs; resume each run directory on its own")
        key, _, values = args.sweep.partition("=")
        if not values:
            raise ConfigError(f"--sweep {args.sweep!r} is not KEY=V1,V2,...")
        cfgs = []
        for v in values.split(","):
            cfg, _ = resolve_run(args.config, [*overrides, f"{key}={v}"], None)
            cfg.output_dir = f"{cfg.output_dir}/{key.split('.')[-1]}={v}"
            cfg.name = f"{cfg.name}-{key.split('.')[-1]}={v}"
            cfgs.append(cfg)  # every config validated before the first run starts
        for cfg in cfgs:
            summary = run_train(cfg)
            console.print(f"{cfg.name}: {summary['steps']} steps · best {summary['best']} · {cfg.output_dir}")
        return 0
    cfg, resume = resolve_run(args.config, overrides, args.resume)
    if cfg.engine == "verl":
        from baorl.train.verl.launch import launch_verl

        if resume is not None:
            raise ValueError("engine verl resumes by itself (trainer.resume_mode=auto): rerun the same command")
        return launch_verl(cfg, python=args.verl_python, ray_address=args.ray_address,
                           n_gpus_per_node=args.gpus_per_node, nnodes=args.nnodes, extra=args.verl_arg or [],
                           dry_run=args.dry_run)
    summary = run_train(cfg, resume=resume)
    best = summary["best"]
    validated = (f"best validation score {best['score']:.3f} at step {best['step']}" if best is not None
                 else "no validation (train.val_every 0)")
    console.print(f"done: {summary['steps']} steps in {summary['wall_s']:.0f} s · {validated} · "
                  f"policy: hf:{summary['policy']} · run: {cfg.output_dir}", highlight=False)
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="BAO reinforcement learning (or the UserRL baseline) from a config",
        description="Train a policy with BAO's behaviour-regularised multi-turn GRPO on TRL. Presets live in "
                    "configs/ (bao-embedded.yaml, userrl-embedded.yaml, ...). A killed run resumes from its last "
                    "checkpoint with --resume RUN_DIR.")
    p.add_argument("config", nargs="?", help="YAML config (optional with --resume: the run's saved config)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. bao.c_rep=0.01")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--sweep", metavar="KEY=V1,V2,...", help="one run per value, e.g. bao.effort_cost=0,0.05,0.1")
    p.add_argument("--engine", choices=["trl", "verl"], help="override the config's engine")
    v = p.add_argument_group("engine verl (Ray cluster; see README 'Scale-out')")
    v.add_argument("--verl-python", metavar="PY", help="interpreter of the verl environment "
                   "(default: .venv-verl/bin/python from `make verl-env`, else this one)")
    v.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster (default: a local one)")
    v.add_argument("--gpus-per-node", type=int, default=1, help="GPUs per node (default 1)")
    v.add_argument("--nnodes", type=int, default=1, help="nodes (default 1)")
    v.add_argument("--verl-arg", action="append", metavar="KEY=VALUE", help="any extra verl Hydra override")
    v.add_argument("--dry-run", action="store_true", help="write the verl files and print the command only")
    p.set_defaults(func=cmd_train)
