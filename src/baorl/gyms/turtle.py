"""Turtle: lateral-thinking "turtle soup" stories (spec: gyms.md, "Turtle").

The agent reads a short, puzzling story (the surface), asks yes/no questions about what really
happened, and finally explains the hidden story (the bottom). A judge scores the explanation
against a weighted rubric; the episode's return is the best rubric score reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, model_validator

from baorl.gyms.base import Gym, Outcome, Task
from baorl.gyms.taskfile import load_records, select_split
from baorl.users.base import SimulatorError

DATA = Path(__file__).with_name("data") / "turtle_stories.json"
#: allowed slack when checking that rubric weights sum to 1
WEIGHT_TOLERANCE = 1e-6
_ANSWERS = ("Yes", "No", "Maybe")
_JUDGEMENTS = (0.0, 0.5, 1.0)


class RubricItem(BaseModel):
    """One key point of the hidden story, with its weight in the score."""

    statement: str = Field(min_length=1, description="a fact the explanation must state")
    score: float = Field(ge=0.0, le=1.0, description="the weight of this point; a rubric's weights sum to 1")


class TurtleTask(Task):
    """A story: title and surface (shown), bottom and rubric (hidden)."""

    new_title: str = Field(min_length=1, description="the story's title (shown)")
    new_surface: str = Field(min_length=1, description="the puzzling situation (shown)")
    new_bottom: str = Field(min_length=1, description="what really happened (hidden)")
    evaluation: list[RubricItem] = Field(min_length=1, description="the rubric the judge scores against")

    @model_validator(mode="after")
    def _weights_sum_to_one(self) -> TurtleTask:
        total = sum(item.score for item in self.evaluation)
        if abs(total - 1.0) > WEIGHT_TOLERANCE:
            raise ValueError(f"rubric weights must sum to 1, got {total:.6f}")
        return self


class TurtleGym(Gym):
    """Explain a lateral-thinking story by questioning the user who knows it.

    Description:
        The user knows a short story with a surprising explanation. The agent sees only its title
        and a puzzling summary (the *surface*); the full story (the *bottom*) and a rubric of 1–5
        weighted key points stay hidden. The agent asks yes/no questions, then explains the story.

    Actions:
        - ``action``: a yes/no question about the story. The user answers Yes (consistent with the
          hidden story), No (contradicts it, or far off) or Maybe (irrelevant or cannot tell).
        - ``answer``: a full explanation of what happened. The judge scores every rubric point
          0, 0.5 or 1 against it, demanding explicit evidence in the text.

    Observation:
        The task prompt shows the title and the surface. Feedback to a question is the user's
        answer; feedback to an explanation says how many key points it covers and which ones
        (by number, fully or partly), never their text or the bottom.

    Rewards:
        Questions earn 0. An explanation with rubric score ``s = Σ weight_i · judgement_i`` earns
        ``max(0, s − best)``, where ``best`` is the best score so far, which is then updated. The
        rewards of an episode therefore sum to its best score. `info` carries ``score``,
        ``best_score`` and ``judgements``.

    User-involved choices:
        ``answer`` (the user must judge the explanation). Questions are answered by the same
        simulator but, as in the BAO paper, do not count as user effort.

    Episode end:
        Terminates (``solved``) when an explanation scores at least `success_threshold`; the agent
        may explain again after a partial score. Truncated at the turn limit (T = 15) or when the
        simulator fails (``simulator_error``).

    Arguments:
        task: a `TurtleTask` (or a dict with its fields).
        user: a `baorl.users.TurtleUser`, e.g. ``make_user("turtle", "offline")``.
        max_turns: the turn limit (default 15, the paper's T).
        reward_in_obs: append the step reward to the observation (training only).
        success_threshold: the score that ends the episode as solved (default 1.0, the paper's).

    Version history:
        - v0: initial version, following UserRL's Turtle gym.

    Example episode (embedded story ``emb-t01``, offline user; rubric weights 0.3, 0.4, 0.3)::

        [action] Was the theatre closed to the public?   -> "Yes"                       reward 0
        [action] Was the actor drunk?                    -> "No"                        reward 0
        [answer] A storm closed the theatre, but the play was streamed live on the internet.
            -> "Your explanation covers 2 of 3 key points: point 1 fully, point 2 fully; point 3 is
               missing. Keep asking or explain again."                                 reward 0.7
        [answer] ... A film director watched the stream and offered him a role.
            -> "Correct: your explanation covers all 3 key points of the story."        reward 0.3
    """

    name: ClassVar[str] = "turtle"
    version: ClassVar[int] = 0
    task_model: ClassVar[type[Task]] = TurtleTask
    user_choices: ClassVar[frozenset[str]] = frozenset({"answer"})
    choices: ClassVar[tuple[str, ...]] = ("action", "answer")
    default_max_turns: ClassVar[int] = 15
    needs_user: ClassVar[bool] = True

    task: TurtleTask

    def __init__(
        self,
        task: TurtleTask | dict[str, Any],
        *,
        user: Any = None,
        max_turns: int | None = None,
        reward_in_obs: bool = False,
        success_threshold: float = 1.0,
    ) -> None:
        if not 0.0 < success_threshold <= 1.0:
            raise ValueError(f"success_threshold must be in (0, 1], got {success_threshold}")
        super().__init__(task, user=user, max_turns=max_turns, reward_in_obs=reward_in_obs)
        self.success_threshold = success_threshold
        self.best_score = 0.0

    # ---- prompts -------------------------------------------------------------------------------
    def system_prompt(self) -> str:
        return (
            "You are playing a lateral-thinking story game. The user knows the full story behind a "
            "short, puzzling situation; you see only the situation and must work out what really "
            "happened.\n"
            "Use the tool interact_with_env once per turn:\n"
            "- choice 'action': ask ONE yes/no question about the story. The user replies Yes, No or "
            "Maybe (Maybe means irrelevant or impossible to tell).\n"
            "- choice 'answer': give your full explanation of the story in plain sentences. The user "
            "checks it against the key points of the true story and tells you how many you covered; "
            "you may explain again to cover more. Only explicit, specific statements earn credit.\n"
            f"You have at most {self.max_turns} turns. Think inside <think>...</think> before each call."
        )

    def task_prompt(self) -> str:
        return (
            f"Title: {self.task.new_title}\n"
            f"Situation: {self.task.new_surface}\n"
            "Ask yes/no questions to find out what really happened, then explain the whole story."
        )

    def _reset_state(self) -> None:
        self.best_score = 0.0

    # ---- one call ------------------------------------------------------------------------------
    async def handle(self, choice: str, content: str) -> Outcome:
        if choice == "action":
            reply = await self.user.answer(self.task, content)
            if reply not in _ANSWERS:
                raise SimulatorError(f"turtle user answered {reply!r}; expected one of {_ANSWERS}")
            return Outcome(feedback=reply, info={"user_answer": reply})

        raw = await self.user.judge(self.task, content)
        rubric = self.task.evaluation
        try:
            judgements = [float(j) for j in raw]
        except (TypeError, ValueError):
            judgements = []
        if len(judgements) != len(rubric) or any(j not in _JUDGEMENTS for j in judgements):
            raise SimulatorError(
                f"turtle judge returned {raw!r}; expected {len(rubric)} values in {_JUDGEMENTS}"
            )
        score = round(sum(item.score * j for item, j in zip(rubric, judgements, strict=True)), 10)
        reward = max(0.0, round(score - self.best_score, 10))
        self.best_score = max(self.best_score, score)
        solved = score >= self.success_threshold - 1e-9
        info = {"score": score, "best_score": self.best_score, "judgements": judgements}
        return Outcome(
            feedback=coverage_feedback(judgements, solved), reward=reward, solved=solved, info=info
        )

    # ---- data ----------------------------------------------------------------------------------
    @classmethod
    def load_tasks(cls, path: str | Path) -> list[TurtleTask]:
        """Load UserRL's native story file: a JSON object id -> record (the key is the task id)."""
        return load_records(path, TurtleTask, dict, what="stories (id -> record), as UserRL's stories.json")

    @classmethod
    def embedded_tasks(cls, split: str = "test") -> list[TurtleTask]:
        """The stories baorl ships (written for baorl): ``train`` (7), ``test`` (3) or ``all``."""
        return select_split(load_records(DATA, TurtleTask, dict), split, "Turtle")


def coverage_feedback(judgements: list[float], solved: bool) -> str:
    """Say which rubric points an explanation covered, by number only (no statement text).

    >>> print(coverage_feedback([1.0, 0.5, 0.0, 0.0], solved=False))  # doctest: +ELLIPSIS
    Your explanation covers 2 of 4 key points: point 1 fully, point 2 partly; points 3, 4 are missing. ...
    >>> coverage_feedback([1.0, 1.0], solved=True)
    'Correct: your explanation covers all 2 key points of the story.'
    """
    n = len(judgements)
    covered = [i for i, j in enumerate(judgements, 1) if j > 0]
    if solved and len(covered) == n and all(j == 1.0 for j in judgements):
        return f"Correct: your explanation covers all {n} key points of the story."
    if not covered:
        return (
            f"Your explanation covers none of the {n} key points of the story. Keep asking or explain again."
        )
    parts = [f"point {i} {'fully' if judgements[i - 1] == 1.0 else 'partly'}" for i in covered]
    missing = [str(i) for i in range(1, n + 1) if i not in covered]
    text = f"Your explanation covers {len(covered)} of {n} key points: {', '.join(parts)}"
    if len(missing) == 1:
        text += f"; point {missing[0]} is missing"
    elif missing:
        text += f"; points {', '.join(missing)} are missing"
    if solved:
        return text + ". That is enough: the story is solved."
    return text + ". Keep asking or explain again."
