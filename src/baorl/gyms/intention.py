"""Intention: clarify a vague request (spec: gyms.md, "Intention").

The user asks for something vague ("Plan a weekend trip for me."); a list of missing details,
each with an importance, stays hidden. The agent earns reward by asking the clarifying questions
that uncover those details, the important ones first, one detail per question.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from baorl.gyms.base import Gym, Outcome, SimulatorError, Task
from baorl.gyms.taskfile import load_records, select_split

DATA = Path(__file__).with_name("data") / "intention_tasks.json"
#: reward for a question by the highest importance among the details it newly covers
IMPORTANCE_REWARD: dict[str, float] = {"3": 1.0, "2": 0.7, "1": 0.4}
#: deducted for every further detail covered by the same question
EXTRA_DETAIL_PENALTY = 0.2


class MissingDetail(BaseModel):
    """One piece of information the vague request leaves out."""

    description: str = Field(min_length=1, description="what is missing, e.g. 'Budget for the trip'")
    importance: Literal["1", "2", "3"] = Field(description="'3' essential, '2' important, '1' nice to know")
    inquiry: str = Field(min_length=1, description="a question that would uncover it")
    options: list[str] = Field(min_length=1, description="plausible answers the user might give")

    @field_validator("importance", mode="before")
    @classmethod
    def _importance_as_text(cls, v: Any) -> Any:
        return str(v).strip() if isinstance(v, (int, str)) and not isinstance(v, bool) else v

    @field_validator("options")
    @classmethod
    def _strip_options(cls, v: list[str]) -> list[str]:
        options = [o.strip() for o in v if o.strip()]
        if not options:
            raise ValueError("options must hold at least one non-empty answer")
        return options


class IntentionTask(Task):
    """A vague request and the details it leaves out (hidden)."""

    category: str = Field(min_length=1, description="the request's domain (shown)")
    task: str = Field(min_length=1, description="the vague request (shown)")
    missing_details: list[MissingDetail] = Field(min_length=1, description="what the agent must uncover")


def question_reward(importances: list[str]) -> float:
    """Reward of one question from the importances of the details it newly covered.

    ``IMPORTANCE_REWARD[max importance] − 0.2 · (number covered − 1)``, at least 0; 0 if none.

    >>> question_reward(["3"])
    1.0
    >>> question_reward(["2", "1"])
    0.5
    >>> question_reward(["1", "1", "1"])
    0.0
    >>> question_reward([])
    0.0
    """
    if not importances:
        return 0.0
    best = max(IMPORTANCE_REWARD[i] for i in importances)
    return max(0.0, round(best - EXTRA_DETAIL_PENALTY * (len(importances) - 1), 10))


class IntentionGym(Gym):
    """Uncover the missing details of a vague request by asking the user.

    Description:
        The user makes a vague request in some category. Hidden from the agent is the list of
        details the request leaves out, each with an importance (3 essential, 2 important, 1 nice
        to know). The agent asks clarifying questions; after each one a simulator answers as the
        requester and a judge decides which remaining details the question uncovered.

    Actions (as in UserRL's Intention gym, whose system prompt offers only ``action``):
        - ``action``: one clarifying question to the user. Feedback is the user's reply.
        - ``answer``: accepted and treated exactly like ``action``: its content goes to the user
          as a question and earns the same reward. UserRL's gym strips either prefix and handles
          the text as a question; it has no separate "submit" step.
        - ``[finish]`` (the contract's) ends the episode with reward 0, UserRL's only way for the
          agent to stop early. ``search`` is not a choice here: it gets a format hint.

    Observation:
        The task prompt shows the category and the vague request. Feedback to a question is the
        user's natural reply; it never lists the details still missing.

    Rewards:
        Per question, by the highest importance among the details it newly covered:
        3 → 1.0, 2 → 0.7, 1 → 0.4, minus 0.2 for every further detail covered by the same question
        (at least 0); 0 if it covered none (an off-task or repeated question). Episode score is the
        sum, which can exceed 1. `info` carries ``covered`` (indices newly covered) and
        ``remaining`` (how many details are left).

    User-involved choices:
        ``action`` and ``answer`` (decided here): every question interrupts the user. Note that,
        unlike the other gyms, questions are how this gym is solved, so U(τ) measures how many
        questions it took.

    Episode end:
        Terminates (``solved``) when every missing detail is covered, or (``finish``) on
        ``[finish]``. Truncated at the turn limit or when the simulator fails
        (``simulator_error``).

    Arguments:
        task: an `IntentionTask` (or a dict with its fields).
        user: a `baorl.users.IntentionUser`, e.g. ``make_user("intention", "offline")``.
        max_turns: the turn limit. Default 15, as for UserRL's training: its rollout runs with
            ``multi_turn.max_turns=16`` and executes at most 15 tool calls (the 16th generation's
            call is never sent), and its environment manager's default for this gym is 15.
        reward_in_obs: append the step reward to the observation (training only).

    Version history:
        - v0: initial version, following UserRL's Intention gym. It first let ``answer`` submit a
          summary that ended the episode, with a turn limit of 10; both were decided here and
          are gone: ``answer`` is a question as in UserRL (``[finish]`` still ends an episode)
          and the limit is UserRL's 15.

    Example episode (embedded task ``emb-i01``, "Plan a weekend trip for me.", offline user)::

        [action] Where would you like to go?       -> "About destination or type of place: A nearby city."
                                                      reward 1.0 (importance 3)
        [answer] What's your budget?               -> "About budget for the trip: Under 200 dollars."
                                                      reward 0.7 (importance 2; answer = action)
        [action] Will you travel alone?            -> "About who is travelling: Alone."
                                                      reward 0.4 (importance 1); all covered: solved
    """

    name: ClassVar[str] = "intention"
    version: ClassVar[int] = 0
    task_model: ClassVar[type[Task]] = IntentionTask
    user_choices: ClassVar[frozenset[str]] = frozenset({"action", "answer"})
    choices: ClassVar[tuple[str, ...]] = ("action", "answer")
    default_max_turns: ClassVar[int] = 15
    needs_user: ClassVar[bool] = True

    task: IntentionTask

    def __init__(
        self,
        task: IntentionTask | dict[str, Any],
        *,
        user: Any = None,
        max_turns: int | None = None,
        reward_in_obs: bool = False,
    ) -> None:
        super().__init__(task, user=user, max_turns=max_turns, reward_in_obs=reward_in_obs)
        self.remaining: list[int] = list(range(len(self.task.missing_details)))

    # ---- prompts -------------------------------------------------------------------------------
    def system_prompt(self) -> str:
        return (
            "You are an assistant who must understand exactly what the user wants before doing it. "
            "The user's request is vague and leaves out details that matter.\n"
            "Use the tool interact_with_env once per turn, with choice 'action' and, as content, ONE "
            "clarifying question to the user. Ask about the most important missing information "
            "first, one topic per question, and do not repeat questions; keep asking until you "
            "know every detail the user cares about.\n"
            f"You have at most {self.max_turns} turns. Think inside <think>...</think> before each call."
        )

    def task_prompt(self) -> str:
        return (
            f"Category: {self.task.category}\n"
            f"Request: {self.task.task}\n"
            "Ask clarifying questions to find out what the user needs."
        )

    def format_hint(self) -> str:
        """Name only ``action``, the one choice the system prompt offers (``answer`` also works)."""
        return "Call the tool interact_with_env with choice 'action' and one clarifying question as content."

    def _reset_state(self) -> None:
        self.remaining = list(range(len(self.task.missing_details)))

    # ---- one call ------------------------------------------------------------------------------
    async def handle(self, choice: str, content: str) -> Outcome:
        # `action` and `answer` alike: the content is a question to the user (as in UserRL)
        result = await self.user.reply(self.task, content, list(self.remaining))
        if not _is_reply(result):
            raise SimulatorError(f"intention user returned {result!r}; expected (str, list[int])")
        text, covered = result
        new = [i for i in dict.fromkeys(covered) if i in self.remaining]
        reward = question_reward([self.task.missing_details[i].importance for i in new])
        self.remaining = [i for i in self.remaining if i not in new]
        info = {"covered": new, "remaining": len(self.remaining)}
        return Outcome(feedback=text, reward=reward, solved=not self.remaining, info=info)

    # ---- data ----------------------------------------------------------------------------------
    @classmethod
    def load_tasks(cls, path: str | Path) -> list[IntentionTask]:
        """Load UserRL's native intention file: a JSON list of task records."""
        return load_records(path, IntentionTask, list, what="task records, as UserRL's intentions.json")

    @classmethod
    def embedded_tasks(cls, split: str = "test") -> list[IntentionTask]:
        """The requests baorl ships (written for baorl): ``train`` (8), ``test`` (4) or ``all``."""
        return select_split(load_records(DATA, IntentionTask, list), split, "Intention")


def _is_reply(result: Any) -> bool:
    """Whether a user's result has the protocol's shape: (text, list of detail indices)."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return False
    text, covered = result
    return (
        isinstance(text, str)
        and isinstance(covered, (list, tuple))
        and all(isinstance(i, int) and not isinstance(i, bool) for i in covered)
    )
