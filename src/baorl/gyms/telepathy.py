"""Telepathy: twenty questions (spec: gyms.md, "Telepathy").

The user thinks of an entity; the agent asks yes/no questions and then names it. baorl loads
UserRL's native file (a JSON list of ``{id, title, description, goal, target_entity, category}``)
and ships its own embedded set, ``data/telepathy_entities.json``: 84 entities in six categories,
each with synonyms and an attribute table over a per-category bank of yes/no questions, which is
what lets the offline user (`baorl.users.telepathy_offline`) answer without a model.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from baorl.gyms.base import Gym, Outcome, SimulatorError, Task, TaskDataError
from baorl.gyms.taskfile import load_records, select_split

EMBEDDED_PATH = Path(__file__).parent / "data" / "telepathy_entities.json"
ANSWERS = ("Yes", "No", "Maybe")


class TelepathyTask(Task):
    """One hidden entity. The agent is shown `description`, `goal` and `category` only."""

    title: str = Field(description="the entity's name; UserRL addresses tasks by it")
    description: str = Field(description="the user's opening line, e.g. 'I am thinking of a fruit...'")
    goal: str = Field(description="what the agent must do, e.g. 'Guess the fruit I am thinking of.'")
    target_entity: str = Field(description="the entity with a short gloss (hidden from the agent)")
    category: str = Field(description="the entity's category, e.g. 'fruit'")
    synonyms: list[str] = Field(default_factory=list, description="other names a guess may use")
    attributes: dict[str, bool | None] | None = Field(
        default=None, description="embedded set only: attribute key -> true / false / null (Maybe)"
    )

    @field_validator("id", "title", "description", "goal", "target_entity", "category")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a non-empty string")
        return v


# ---- the embedded set ---------------------------------------------------------------------------
class AttributeSpec(BaseModel):
    """One question of a category's bank and the phrases that ask it."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(description="the canonical yes/no question")
    keywords: list[str] = Field(min_length=1, description="phrases that ask this question")
    antonyms: list[str] = Field(default_factory=list, description="phrases that ask its opposite")
    exclude: list[str] = Field(default_factory=list, description="phrases after which it does not apply")


class CategorySpec(BaseModel):
    """A category of the embedded set: how to name it and its attribute question bank."""

    model_config = ConfigDict(extra="forbid")
    noun: str = Field(description="the category with an article, e.g. 'a fruit'")
    aliases: list[str] = Field(description="words naming the category itself ('Is it a fruit?')")
    attributes: dict[str, AttributeSpec]


class EmbeddedSet(BaseModel):
    """The whole embedded file: the question banks and the entities."""

    about: str
    version: int
    categories: dict[str, CategorySpec]
    entities: list[TelepathyTask]


@lru_cache(maxsize=1)
def embedded_set() -> EmbeddedSet:
    """The embedded set, parsed and checked once (every entity's table uses its category's bank)."""
    try:
        data = EmbeddedSet.model_validate(json.loads(EMBEDDED_PATH.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, ValidationError) as e:
        raise TaskDataError(f"{EMBEDDED_PATH}: broken embedded Telepathy set: {e}") from e
    for t in data.entities:
        cat = data.categories.get(t.category)
        if cat is None or t.attributes is None or set(t.attributes) != set(cat.attributes):
            raise TaskDataError(f"{EMBEDDED_PATH}: entity {t.id!r}: attribute table does not match the bank "
                                f"of category {t.category!r}")
    return data


def _pretty(category: str) -> str:
    return category.replace("_", " ").strip()


class TelepathyGym(Gym):
    """Twenty questions: identify the entity the user is thinking of.

    Description:
        The user secretly picks an entity (a fruit, a country, a famous person...). The agent sees
        only the user's opening line and the category, asks yes/no questions, and names the entity.

    Actions:
        ``[action] QUESTION``: one yes/no question about the entity.
        ``[answer] NAME``: a guess, judged by the user. ``search`` is not used by this gym.

    Observation:
        The task prompt: the user's opening line, the goal, the category and the turn budget.
        After a question: the user's reply, ``Yes``, ``No`` or ``Maybe`` (Maybe when the question is
        ambiguous or cannot be determined). After a guess: whether it is right; a wrong guess is
        refused without any hint, and the target is never shown before it is named.

    Rewards:
        1 for the first correct guess, 0 for everything else.

    User-involved choices:
        ``answer``: the user must judge every guess.

    Episode end:
        Terminated on a correct guess (``solved``) or ``[finish]``; truncated at the turn limit
        (``turn_limit``, default T = 12 as in the paper) or when the simulator fails
        (``simulator_error``).

    Arguments:
        task: a `TelepathyTask`. user: a `baorl.users.TelepathyUser` (``offline`` works on the
        embedded set only; ``openai:MODEL`` on any task). max_turns, reward_in_obs: see `Gym`.

    Version history:
        v0: first version.

    Example episode (offline user, embedded set):

    >>> from baorl.users.telepathy_offline import OfflineTelepathyUser
    >>> task = next(t for t in TelepathyGym.embedded_tasks("all") if t.title == "Banana")
    >>> gym = TelepathyGym(task, user=OfflineTelepathyUser())
    >>> obs, info = gym.reset(seed=0)
    >>> "Banana" in obs, info["max_turns"]
    (False, 12)
    >>> gym.step("[action] Is it yellow?")[:3]
    ('Yes', 0.0, False)
    >>> gym.step("[answer] lemon")[:3]
    ('No, that is not what I am thinking of. Ask more questions or guess again.', 0.0, False)
    >>> obs, reward, terminated, truncated, info = gym.step("[answer] A banana")
    >>> reward, terminated, info["termination"]
    (1.0, True, 'solved')
    """

    name: ClassVar[str] = "telepathy"
    version: ClassVar[int] = 0
    task_model: ClassVar[type[Task]] = TelepathyTask
    user_choices: ClassVar[frozenset[str]] = frozenset({"answer"})
    choices: ClassVar[tuple[str, ...]] = ("action", "answer")
    default_max_turns: ClassVar[int] = 12
    needs_user: ClassVar[bool] = True

    task: TelepathyTask

    def _reset_state(self) -> None:
        self.questions = 0
        self.guesses = 0

    def system_prompt(self) -> str:
        return (
            "You are playing twenty questions. The user has secretly chosen one entity, and your job is to "
            "find out which one it is.\n\n"
            "You act only through the tool `interact_with_env`, which takes two arguments, `choice` and "
            "`content`:\n"
            "- choice \"action\": content is ONE yes/no question about the entity, e.g. \"Is it man-made?\". "
            "The user answers Yes, No, or Maybe (Maybe when the question is ambiguous or the answer cannot be "
            "determined).\n"
            "- choice \"answer\": content is your guess: just the entity's name, nothing else. A correct "
            "guess wins and ends the game; a wrong guess is refused without any hint.\n\n"
            f"You have at most {self.max_turns} turns, and every tool call, question or guess, uses one. "
            "Each guess asks the user to judge it, so guess only when the answers so far point clearly to "
            "one entity; prefer questions that rule out about half of the remaining possibilities.\n\n"
            "Before every tool call, think inside <think>...</think>: what the answers so far tell you, "
            "which candidates are still possible, and what to ask or guess next. Then make exactly one "
            "tool call."
        )

    def task_prompt(self) -> str:
        t = self.task
        return (
            f"{t.description.strip()}\n\n"
            f"Goal: {t.goal.strip()}\n"
            f"Category: {_pretty(t.category)}\n"
            f"You have {self.max_turns} turns. Ask yes/no questions with choice \"action\" and name the "
            "entity with choice \"answer\" once you are confident."
        )

    async def handle(self, choice: str, content: str) -> Outcome:
        if choice == "action":
            reply = _as_yes_no(await self.user.answer(self.task, content))
            self.questions += 1
            return Outcome(reply, info={"answer": reply, "questions": self.questions})
        # choice == "answer": a guess for the user to judge
        correct = await self.user.judge_guess(self.task, content)
        if not isinstance(correct, bool):
            raise SimulatorError(f"the user's guess verdict is not a boolean: {correct!r}")
        self.guesses += 1
        info: dict[str, Any] = {"correct": correct, "guesses": self.guesses}
        if correct:
            return Outcome(f"Correct! I was thinking of {self.task.title}.", reward=1.0, solved=True, info=info)
        return Outcome("No, that is not what I am thinking of. Ask more questions or guess again.", info=info)

    # ---- data ---------------------------------------------------------------------------------
    @classmethod
    def load_tasks(cls, path: str | Path) -> list[TelepathyTask]:
        """Load UserRL's native Telepathy file: a JSON list of entity records.

        Raises:
            TaskDataError: naming the file and the record, when the file is unreadable, is not a
                list, or a record lacks a field, has an empty one, or repeats an id or a title.
        """
        return load_records(path, TelepathyTask, list, what="entity records", unique=("id", "title"))

    @classmethod
    def embedded_tasks(cls, split: str = "test") -> list[TelepathyTask]:
        """The embedded set's tasks: split ``train`` (63), ``test`` (21) or ``all`` (84)."""
        return [t.model_copy(deep=True) for t in select_split(embedded_set().entities, split, "Telepathy")]


def _as_yes_no(reply: Any) -> str:
    """Check a user's reply is Yes, No or Maybe (case and trailing punctuation forgiven)."""
    if isinstance(reply, str):
        word = reply.strip().rstrip(".!").capitalize()
        if word in ANSWERS:
            return word
    raise SimulatorError(f"the user's reply is not Yes, No or Maybe: {reply!r}")
