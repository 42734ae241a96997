"""`baorl sft CONFIG`: the supervised warm start (see `baorl.train.sft`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any


def add_parsers(sub: Any) -> None:
    """Register ``baorl sft`` on a `baorl` subparsers object."""
    p = sub.add_parser(
        "sft", help="supervised warm start: fine-tune a model on teacher conversations (TRL SFTTrainer)",
        description="Fine-tune a model on an SFT file (JSONL conversations, as 'baorl teach' writes them), "
                    "loss on the assistant tokens only, rendered with the chat template the rollout engine "
                    "plays the policy with. Writes OUTPUT/model (load it as hf:OUTPUT/model), "
                    "OUTPUT/metrics.jsonl and OUTPUT/config.yaml. Presets: configs/sft-*.yaml.",
    )
    p.add_argument("config", metavar="CONFIG", help="YAML config (e.g. configs/sft-embedded.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=20 (repeatable)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue an interrupted run: from the latest checkpoint in OUTPUT/checkpoints, "
                        "or from the CHECKPOINT directory given")
    p.set_defaults(func=cmd_sft)


def cmd_sft(args: argparse.Namespace) -> int:
    from rich.console import Console

    from baorl.config import load_config
    from baorl.train.sft import SFTRunConfig, run_sft

    console = Console()
    cfg = load_config(SFTRunConfig, args.config, args.overrides)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("baorl").setLevel(logging.INFO)
    final = run_sft(cfg, resume=args.resume)
    losses = _losses(Path(cfg.output_dir) / "metrics.jsonl")
    if losses:
        console.print(f"train loss {losses[0]:.4f} (first step) → {losses[-1]:.4f} (last logged step)", highlight=False)
    console.print(f"model written to {final}; play it with: baorl rollout --agent hf:{final} --gym function "
                  f"--out {Path(cfg.output_dir) / 'rollout.jsonl'}", highlight=False)
    return 0


def _losses(path: Path) -> list[float]:
    if not path.is_file():
        return []
    from baorl.records import read_jsonl

    rows = [r for _, _, r in read_jsonl(path, torn_tail=True).rows]
    return [r["loss"] for r in rows if isinstance(r, dict) and "loss" in r]
