"""Turtle: lateral-thinking "turtle soup" stories (spec: gyms.md, "Turtle").

The agent reads a short, puzzling story (the surface), asks yes/no questions about what really
happened, and finally explains the hidden story (the bottom). A judge scores the explanation
against a weighted rubric; the episode's return is the best rubric score reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, model_validator

from baorl.gyms.base import Gym, Outcome, SimulatorError, Task
from baorl.gyms.taskfile import load_records, select_split

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
        answer. Feedback to an explanation quotes, in rubric order, the text of every key point
        the judge scored fully covered (1); partly covered points (0.5) count in the score but are
        not named, missing points are never named, and the bottom is never shown. An explanation
        that fully covers nothing is told so. The text has the same shape whether or not the
        explanation solved the story, as in UserRL's Turtle gym (see `coverage_feedback`).

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
        - v0: initial version, following UserRL's Turtle gym. Its explanation feedback first named
          the covered points by number only; it now quotes the fully covered statements' text,
          as UserRL's (and BAO's) gym does, so an agent trained here sees what it would see there.

    Example episode (embedded story ``emb-t01``, rubric weights 0.3, 0.4, 0.3; judgements shown)::

        [action] Was the theatre closed to the public?   -> "Yes"                       reward 0
        [action] Was the actor drunk?                    -> "No"                        reward 0
        [answer] A storm closed the theatre, but the play was streamed live on the internet.
            judged 1, 1, 0 -> score 0.7                                                reward 0.7
            -> "Your explanation clearly covers these key points of the story:
                - The audience stayed away because a storm warning closed the theatre.
                - The performance was streamed live online.
                The story may hold more twists you have not covered yet. Keep asking questions
                about it and explain it again."   (shown as one line per point)
        [answer] ... A film director watched the stream and offered him a role.
            judged 1, 1, 1 -> score 1.0, solved                                         reward 0.3
            -> the same shape, listing all three statements
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
            "checks it against the key points of the true story and tells you which of them your "
            "explanation clearly covers; you may explain again to cover more. Only explicit, specific "
            "statements earn credit.\n"
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
        statements = [item.statement for item in rubric]
        return Outcome(
            feedback=coverage_feedback(judgements, statements), reward=reward, solved=solved, info=info
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


#: the first line of the feedback when at least one key point is fully covered
COVERED_HEADER = "Your explanation clearly covers these key points of the story:"
#: the last line of that feedback (the story may hold more than the agent has found)
COVERED_FOOTER = (
    "The story may hold more twists you have not covered yet. "
    "Keep asking questions about it and explain it again."
)
#: the whole feedback when no key point is fully covered
NOTHING_COVERED = "Your explanation does not clearly cover any of the story's key points."


def coverage_feedback(judgements: list[float], statements: list[str]) -> str:
    """The feedback to an explanation: the text of every rubric statement judged fully covered.

    Follows UserRL's Turtle gym (wording written for baorl, same shape): a header line, one line
    per statement judged 1 in rubric order, and a closing line inviting more questions; or one
    line saying nothing is covered. Statements judged 0.5 add to the score but are not listed,
    and missing statements are never named, so the feedback reveals only what the agent has
    already said. The text does not depend on whether the story is solved.

    >>> print(coverage_feedback([1.0, 0.5, 0.0], ["A storm closed it.", "It was streamed.", "A role."]))
    Your explanation clearly covers these key points of the story:
    - A storm closed it.
    The story may hold more twists you have not covered yet. Keep asking questions about it and explain it again.
    >>> coverage_feedback([0.5, 0.0], ["a", "b"])
    "Your explanation does not clearly cover any of the story's key points."
    """
    if len(judgements) != len(statements):
        raise ValueError(f"{len(judgements)} judgements for {len(statements)} statements")
    covered = [text for text, j in zip(statements, judgements, strict=True) if j == 1.0]
    if not covered:
        return NOTHING_COVERED
    return "\n".join([COVERED_HEADER, *(f"- {text}" for text in covered), COVERED_FOOTER])
