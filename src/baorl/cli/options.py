"""Command-line options shared by the commands that play episodes with a local model."""

from __future__ import annotations

import argparse
from typing import Any

#: option name -> `EngineConfig` field
_ENGINE_FIELDS = {
    "batch_size": "batch_size", "temperature": "temperature", "max_new_tokens": "max_new_tokens_per_turn",
    "max_prompt_tokens": "max_prompt_tokens", "max_response_tokens": "max_response_tokens",
    "chat_template": "chat_template", "max_turns": "max_turns",
}


def add_local_model_args(parser: argparse.ArgumentParser, temperature_help: str) -> None:
    """The `hf:` agents' engine options (`baorl eval`, `baorl rollout`)."""
    g = parser.add_argument_group("local models (hf:...)")
    g.add_argument("--batch-size", type=int, default=None, help="episodes decoded together")
    g.add_argument("--temperature", type=float, default=None, help=temperature_help)
    g.add_argument("--max-new-tokens", type=int, default=None, help="token cap per turn")
    g.add_argument("--max-prompt-tokens", type=int, default=None,
                   help="episode budget: most prompt tokens (default 1,152, the paper's)")
    g.add_argument("--max-response-tokens", type=int, default=None,
                   help="episode budget: most tokens after the prompt, policy and observations (default 7,000, "
                   "the paper's; use a training run's budget to evaluate it under its own conditions)")
    g.add_argument("--max-turns", type=int, default=None, help="override the gym's turn limit")
    g.add_argument("--chat-template", default=None, help="auto, native, chatml-tools or qwen3")


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `EngineConfig` overrides given on the command line."""
    return {field: getattr(args, opt) for opt, field in _ENGINE_FIELDS.items() if getattr(args, opt) is not None}
