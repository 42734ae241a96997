"""The agent interface at the text level.

An agent threads its state explicitly: ``start(system_prompt, task_prompt) -> state``, then
``respond(observation, state) -> (output, state)`` once per turn (``arespond`` for agents that
wait on the network). `output` is what the agent
"generated": text with an optional ``<think>`` block and one tool call (Hermes ``<tool_call>`` JSON
or a bracket string), or an OpenAI tool-call object. Scripted agents, people at a terminal and
API models all fit; token-level model agents are driven by the rollout engine instead.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from baorl.gyms.tool import TOOL_NAME


class AgentError(RuntimeError):
    """The agent could not produce a turn (e.g. its model endpoint failed): the run stops, and the
    episode is not recorded as an agent failure."""


def tool_call_text(choice: str, content: str, think: str | None = None) -> str:
    """Render one `interact_with_env` call in the Hermes/Qwen text format, with a think block.

    >>> tool_call_text("answer", "42", "sure")
    '<think>sure</think>\\n<tool_call>\\n{"name": "interact_with_env", "arguments": {"choice": "answer", "content": "42"}}\\n</tool_call>'
    """
    call = json.dumps({"name": TOOL_NAME, "arguments": {"choice": choice, "content": content}})
    head = f"<think>{think}</think>\n" if think is not None else ""
    return f"{head}<tool_call>\n{call}\n</tool_call>"


class Agent(ABC):
    """A text-level agent. `name` is its spec string (``scripted:random``)."""

    name: str = "agent"

    def start(self, system_prompt: str, task_prompt: str, info: dict[str, Any]) -> Any:
        """Begin an episode; returns the initial state."""
        return {"system": system_prompt, "history": []}

    @abstractmethod
    def respond(self, observation: str, state: Any) -> tuple[Any, Any]:
        """Produce this turn's output given the latest observation (the task prompt on turn 1)."""

    async def arespond(self, observation: str, state: Any) -> tuple[Any, Any]:
        """`respond` as a coroutine; agents that wait on I/O (API models) override this."""
        return self.respond(observation, state)
