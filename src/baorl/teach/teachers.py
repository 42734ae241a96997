"""Teachers: agents whose episodes become SFT data, behind one interface (spec: bao.md §2).

A `Teacher` is an agent spec plus how it is used: which gyms it can teach and whether it needs
an endpoint. `make_teacher` builds one from its name:

- ``function-solver``: the programmatic Function teacher (`baorl.agents.function_solver`): it
  keeps every candidate rule consistent with the observations, probes where the candidates'
  test values disagree most, answers only when the value is determined, and writes its true
  memory, hypotheses and plan in the think block. Function gym only. Options: its budget
  schedule (``deadline``, ``probes``, ``concise``; see `FunctionSolver`).
- ``telepathy-questioner``: the attribute-splitting questioner for the embedded Telepathy set
  (`baorl.agents.telepathy_questioner`). It knows the embedded entities and question banks, so it
  cannot teach on another entity file (``data``).
- ``openai:MODEL``: any OpenAI-compatible model, prompted with `baorl.teach.prompts` to show the
  behaviours in ``Memory:`` / ``Hypotheses:`` / ``Plan:`` sections (`LLMTeacherAgent`). Any gym.

``scripted:NAME`` is accepted for the programmatic teachers too.

>>> t = make_teacher("function-solver")
>>> t.name, t.kind, t.gyms, t.make_agent().name
('function-solver', 'programmatic', ('function',), 'scripted:function-solver')
>>> make_teacher("openai:gpt-4o", base_url="http://127.0.0.1:8000/v1").policy
'openai:gpt-4o'
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from baorl.agents.base import Agent
from baorl.agents.openai_agent import OpenAIAgent
from baorl.gyms import spec as gym_spec
from baorl.gyms.parser import extract_think
from baorl.teach.prompts import teacher_system_prompt

__all__ = ["Teacher", "make_teacher", "LLMTeacherAgent", "PROGRAMMATIC"]

#: programmatic teachers: name -> (agent spec, gyms it can teach, whether it works on a --data file)
PROGRAMMATIC: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "function-solver": ("scripted:function-solver", ("function",), True),
    "telepathy-questioner": ("scripted:telepathy-questioner", ("telepathy",), False),
}


#: the function-solver's budget schedule (`baorl.agents.function_solver.FunctionSolver`)
SCHEDULE_OPTIONS = {"deadline", "probes", "concise"}


class LLMTeacherAgent(OpenAIAgent):
    """An `OpenAIAgent` prompted to show the BAO behaviours, keeping its think text.

    Differences from `OpenAIAgent`:

    - the system prompt it sends is the gym's followed by `baorl.teach.prompts.behaviour_instructions`;
    - a reply that carries both message text and a tool call is returned as Hermes text with the
      message's ``<think>`` block (or, without tags, the whole text) as the think block, so the
      episode record keeps the teacher's reasoning (`OpenAIAgent` keeps only the call then).
    """

    def start(self, system_prompt: str, task_prompt: str, info: dict[str, Any]) -> dict[str, Any]:
        """Open the history with the behaviour-prompted system prompt and the task prompt."""
        system = teacher_system_prompt(system_prompt, str(info.get("gym", "")), int(info.get("max_turns", 15)))
        return super().start(system, task_prompt, info)

    async def arespond(self, observation: str, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """`OpenAIAgent.arespond`, with the message text's think block kept beside the tool call."""
        output, state = await super().arespond(observation, state)
        if not isinstance(output, dict):  # no tool call, or reasoning already put in a think block
            return output, state
        text = (state["messages"][-1].get("content") or "").strip()
        think = extract_think(text) if "<think>" in text else text
        if not think:
            return output, state
        fn = output["function"]
        raw = fn.get("arguments", "")
        try:
            args: Any = json.loads(raw) if isinstance(raw, str) and raw.strip() else raw
        except json.JSONDecodeError:
            args = raw  # still malformed in the Hermes form: the parser reports it the same way
        payload = json.dumps({"name": fn.get("name", ""), "arguments": args})
        return f"<think>{think}</think>\n<tool_call>\n{payload}\n</tool_call>", state


@dataclass(frozen=True)
class Teacher:
    """An agent that produces teacher episodes, and the rules for using it.

    Attributes:
        name: the teacher's name as given (``function-solver``, ``openai:gpt-4o``).
        kind: ``programmatic`` (exact, offline, free) or ``llm`` (an endpoint; may fail per episode).
        gyms: the gyms it can teach; None for any gym.
        policy: the agent spec written into each episode record's ``policy``.
        accepts_data: whether it can play tasks from a UserRL data file (``data=PATH``).
        build: makes a fresh agent for one episode.
        options: a programmatic teacher's options (recorded with each episode); empty for LLM
            teachers (their endpoint settings are not recorded).
    """

    name: str
    kind: Literal["programmatic", "llm"]
    gyms: tuple[str, ...] | None
    policy: str
    accepts_data: bool
    build: Callable[[], Agent] = field(repr=False, compare=False)
    options: dict[str, Any] = field(default_factory=dict)

    def make_agent(self) -> Agent:
        """A fresh agent for one episode."""
        return self.build()

    def check(self, gym: str, data: str | None = None) -> None:
        """Raise `ValueError` if this teacher cannot teach `gym` (from `data`)."""
        name = gym_spec(gym).name
        if self.gyms is not None and name not in self.gyms:
            raise ValueError(f"teacher {self.name!r} teaches only {', '.join(self.gyms)}, not {name!r}; "
                             "use an LLM teacher (openai:MODEL) for other gyms")
        if data is not None and not self.accepts_data:
            raise ValueError(f"teacher {self.name!r} knows only baorl's embedded {name} set; drop --data "
                             "(use --split) or use an LLM teacher (openai:MODEL)")


def make_teacher(name: str, **options: Any) -> Teacher:
    """Build a teacher from its name.

    Args:
        name: ``function-solver``, ``telepathy-questioner`` (``scripted:`` prefix optional) or
            ``openai:MODEL``.
        options: for LLM teachers, `OpenAIAgent`'s options (``base_url``, ``api_key``,
            ``temperature``, ``max_tokens``, ``max_retries``, ``backoff``, ``timeout``, ``extra_body``);
            ``function-solver``: its budget schedule (``deadline``, ``probes``, ``concise``); the
            other programmatic teachers take none.
    """
    key = name.removeprefix("scripted:")
    if key in PROGRAMMATIC:
        allowed = SCHEDULE_OPTIONS if key == "function-solver" else set()
        if set(options) - allowed:
            raise ValueError(f"teacher {name!r} takes {'only ' + ', '.join(sorted(allowed)) if allowed else 'no options'}, "
                             f"got {', '.join(sorted(options))}")
        from baorl.agents import make_agent

        agent_spec, gyms, accepts_data = PROGRAMMATIC[key]
        make_agent(agent_spec, **options)  # fail fast on bad values, before any episode
        return Teacher(key, "programmatic", gyms, agent_spec, accepts_data, lambda: make_agent(agent_spec, **options),
                       dict(options))
    kind, _, model = name.partition(":")
    if kind == "openai" and model.strip():
        LLMTeacherAgent(model, **options)  # fail fast on bad options, before any episode
        return Teacher(name, "llm", None, f"openai:{model.strip()}", True,
                       lambda: LLMTeacherAgent(model, **options))
    raise ValueError(f"unknown teacher {name!r}: use one of {', '.join(sorted(PROGRAMMATIC))} or openai:MODEL")
