"""Command-line options shared by the commands that play episodes with a local model."""

from __future__ import annotations

import argparse
from typing import Any

#: option name -> engine option (an `EngineConfig` field, or the local model's dtype)
_ENGINE_FIELDS = {
    "batch_size": "batch_size", "temperature": "temperature", "max_new_tokens": "max_new_tokens_per_turn",
    "max_prompt_tokens": "max_prompt_tokens", "max_response_tokens": "max_response_tokens",
    "chat_template": "chat_template", "max_turns": "max_turns", "dtype": "dtype",
}


def add_local_model_args(parser: argparse.ArgumentParser, temperature_help: str) -> None:
    """The `hf:` agents' engine options (`baorl eval`, `baorl rollout`); the episode limits' defaults
    are `EpisodeLimits`' (the engine's and a train config's ``rollout`` section's)."""
    from baorl.rollout.episode import EpisodeLimits

    default = {name: f.default for name, f in EpisodeLimits.model_fields.items()}
    g = parser.add_argument_group("local models (hf:...)")
    g.add_argument("--batch-size", type=int, default=None, help="episodes decoded together")
    g.add_argument("--temperature", type=float, default=None, help=temperature_help)
    g.add_argument("--max-new-tokens", type=int, default=None,
                   help=f"token cap per turn (default {default['max_new_tokens_per_turn']:,})")
    g.add_argument("--max-prompt-tokens", type=int, default=None,
                   help=f"episode budget: most prompt tokens (default {default['max_prompt_tokens']:,}, the paper's)")
    g.add_argument("--max-response-tokens", type=int, default=None,
                   help=f"episode budget: most tokens after the prompt, policy and observations (default "
                   f"{default['max_response_tokens']:,}, the paper's; use a training run's budget to evaluate it "
                   "under its own conditions)")
    g.add_argument("--max-turns", type=positive_int, default=None,
                   help="override the gym's turn limit (applies to every agent, not only hf:)")
    g.add_argument("--chat-template", default=None, help="auto, native, chatml-tools or qwen3")
    g.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16"],
                   help="precision of the model's weights (default auto: bfloat16 where the CPU/GPU has bf16 "
                   "units, float32 elsewhere; said once)")


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `EngineConfig` overrides given on the command line."""
    return {field: getattr(args, opt) for opt, field in _ENGINE_FIELDS.items() if getattr(args, opt) is not None}


def check_engine_options(agent: str, engine: dict[str, Any]) -> None:
    """Refuse local-model options given with a text-level agent (they would be silently ignored).

    ``--max-turns`` is a gym limit and applies to every agent.
    """
    if agent.startswith("hf:"):
        return
    flags = {field: "--" + opt.replace("_", "-") for opt, field in _ENGINE_FIELDS.items()}
    given = [flags[f] for f in engine if f != "max_turns"]
    if given:
        raise ValueError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to hf: agents only "
                         f"(local models); {agent} does not use {'it' if len(given) == 1 else 'them'}")


def _int_at_least(low: int, note: str = "") -> Any:
    """An argparse type: an integer >= `low` (argparse prints the error and exits with status 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}{note}, got {text!r}")
        return value

    return parse


#: an integer >= 1 (``--n``, ``--concurrency``, ``--max-turns``)
positive_int = _int_at_least(1)
#: an integer >= 0 (``--simulator-retries``)
non_negative_int = _int_at_least(0)
_cap = _int_at_least(0, " (0: no cap)")


def char_cap(text: str) -> int | None:
    """An argparse type for a character cap: an integer >= 1, or 0 for no cap (None).

    >>> char_cap("0"), char_cap("12")
    (None, 12)
    """
    return _cap(text) or None


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_simulator_client_args(parser: argparse.ArgumentParser) -> None:
    """``--simulator-timeout`` and ``--simulator-retries``: the openai: simulator's endpoint client."""
    parser.add_argument("--simulator-timeout", type=positive_float, default=None, metavar="SECONDS",
                        help="openai: simulators: seconds per request before it counts as failed (default 60)")
    parser.add_argument("--simulator-retries", type=non_negative_int, default=None, metavar="N",
                        help="openai: simulators: retries of a failed or timed-out request (default 4, so a "
                        "hung simulator costs (N + 1) x timeout per question)")


def simulator_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The openai: simulator client's options given on the command line (None when none).

    Raises:
        ValueError: client options with a simulator that is not ``openai:MODEL``.
    """
    opts = {key: value for key, value in (("base_url", getattr(args, "simulator_base_url", None)),
                                          ("timeout", getattr(args, "simulator_timeout", None)),
                                          ("max_retries", getattr(args, "simulator_retries", None)))
            if value is not None}
    if opts and not (args.simulator or "").startswith("openai:"):
        flags = ", ".join("--simulator-" + {"base_url": "base-url", "max_retries": "retries"}.get(k, k)
                          for k in opts)
        raise ValueError(f"{flags} appl{'ies' if len(opts) == 1 else 'y'} to openai: simulators only "
                         f"(--simulator openai:MODEL); got --simulator {args.simulator or 'offline (default)'}")
    return opts or None
