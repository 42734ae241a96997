"""Agents: scripted policies, people, API models and local models behind one interface.

Agents are named by one string (spec: metrics.md): ``scripted:NAME``, ``hf:PATH_OR_ID``
(``hf:embedded`` for the shipped SmolLM2-135M-Instruct) and ``openai:MODEL``.

>>> make_agent("scripted:random").name
'scripted:random'
"""

from __future__ import annotations

import importlib
from typing import Any

from baorl.agents.base import Agent, AgentError, tool_call_text

__all__ = ["Agent", "AgentError", "tool_call_text", "make_agent", "SCRIPTED"]

#: scripted agents by name, as "module:Class"
SCRIPTED: dict[str, str] = {
    "random": "baorl.agents.scripted:RandomAgent",
    "function-solver": "baorl.agents.function_solver:FunctionSolver",
    "telepathy-questioner": "baorl.agents.telepathy_questioner:TelepathyQuestioner",
}


def make_agent(name: str, **kwargs: Any) -> Agent:
    """Build a text-level agent from its spec string."""
    kind, _, arg = name.partition(":")
    if kind == "scripted":
        if arg not in SCRIPTED:
            raise ValueError(f"unknown scripted agent {arg!r}; available: {', '.join(sorted(SCRIPTED))}")
        mod, _, cls = SCRIPTED[arg].partition(":")
        return getattr(importlib.import_module(mod), cls)(**kwargs)
    if kind == "openai" and arg:
        from baorl.agents.openai_agent import OpenAIAgent

        return OpenAIAgent(arg, **kwargs)
    if kind == "hf":
        raise ValueError("hf: agents are local models played by the batched rollout engine (`baorl rollout`)")
    raise ValueError(f"unknown agent {name!r}: use scripted:NAME, hf:PATH_OR_ID or openai:MODEL")
