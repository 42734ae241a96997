"""What a simulated user (and judge) must do for each gym.

Users are stateless with respect to the episode: everything they need (the hidden task and the
agent's message) is passed in, and their reply is returned; the gym keeps the episode's state.
Every method is async because an LLM user waits on the network; offline users just return.

Failures: a user that cannot produce a reply raises `SimulatorError`. The gym turns that into a
truncated step with ``termination="simulator_error"`` so the episode is recorded as failed by the
simulator, never silently scored 0 as if the agent had failed.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from baorl.gyms.base import SimulatorError as SimulatorError  # defined by the gyms, which catch it

YesNo = Literal["Yes", "No", "Maybe"]


@runtime_checkable
class User(Protocol):
    #: what episode records store in their `simulator` field: "offline" or the model's name
    label: str
    #: one line on what this simulator can judge, e.g. "approximate: sentence-embedding similarity"
    detail: str


@runtime_checkable
class TelepathyUser(User, Protocol):
    async def answer(self, task: Any, question: str) -> YesNo:
        """Answer a yes/no question about the hidden entity truthfully."""
        ...

    async def judge_guess(self, task: Any, guess: str) -> bool:
        """True iff `guess` names the hidden entity or a clear synonym of it."""
        ...


@runtime_checkable
class TurtleUser(User, Protocol):
    async def answer(self, task: Any, question: str) -> YesNo:
        """Answer a yes/no question against the hidden story (the bottom)."""
        ...

    async def judge(self, task: Any, explanation: str) -> list[float]:
        """Judge each rubric statement 0, 0.5 or 1 against `explanation` (one value per statement)."""
        ...


@runtime_checkable
class IntentionUser(User, Protocol):
    async def reply(self, task: Any, question: str, remaining: list[int]) -> tuple[str, list[int]]:
        """Answer a clarifying question as the requester.

        `remaining` are the indices (into ``task.missing_details``) not yet covered. Returns the
        reply text and the subset of `remaining` that this question uncovered (empty if off-task).
        """
        ...
