"""Gyms: UserRL-style text environments, registered under versioned ids.

>>> sorted(registry())
['function', 'intention', 'telepathy', 'turtle']
>>> gym = make("function", task="gen-0000")
>>> obs, info = gym.reset(seed=0)
>>> info["task_id"], info["max_turns"]
('gen-0000', 15)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from baorl.gyms.base import Gym, Outcome, Task, TaskDataError
from baorl.gyms.parser import ParsedAction, parse_action
from baorl.gyms.tool import INTERACT_TOOL, TOOL_NAME

__all__ = [
    "Gym", "Outcome", "Task", "TaskDataError", "ParsedAction", "parse_action", "INTERACT_TOOL", "TOOL_NAME",
    "GymSpec", "register", "registry", "spec", "gym_class", "load_tasks", "get_task", "make",
]


@dataclass(frozen=True)
class GymSpec:
    """A registry entry. `entry_point` is ``"module:Class"``, imported on first use."""

    name: str
    version: int
    entry_point: str
    summary: str
    simulator: str  # what the gym needs: "none", or which kinds of user simulator it can use
    userrl_file: str  # UserRL's native file name for this gym

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"


_REGISTRY: dict[str, GymSpec] = {}


def register(gym_spec: GymSpec) -> None:
    """Add a gym to the registry (a later registration of the same name replaces it)."""
    _REGISTRY[gym_spec.name] = gym_spec


def registry() -> dict[str, GymSpec]:
    """All registered gyms by name."""
    return dict(_REGISTRY)


def spec(name: str) -> GymSpec:
    """Look up a gym by name (``function``) or versioned id (``function-v0``)."""
    key = name.strip().lower()
    base, _, ver = key.rpartition("-v")
    if key in _REGISTRY:
        return _REGISTRY[key]
    if base in _REGISTRY and ver.isdigit() and _REGISTRY[base].version == int(ver):
        return _REGISTRY[base]
    raise KeyError(f"unknown gym {name!r}; registered gyms: {', '.join(sorted(_REGISTRY))}")


def gym_class(name: str) -> type[Gym]:
    """The gym's class (imports its module on first use)."""
    mod, _, cls = spec(name).entry_point.partition(":")
    return getattr(importlib.import_module(mod), cls)


@lru_cache(maxsize=32)
def _load_cached(name: str, data: str | None, split: str, mtime: float) -> tuple[Task, ...]:
    cls = gym_class(name)
    if data is None:
        return tuple(cls.embedded_tasks(split))
    tasks = cls.load_tasks(data)
    if not tasks:
        raise TaskDataError(f"{data}: no tasks in file")
    return tuple(tasks)


def load_tasks(name: str, data: str | Path | None = None, split: str = "test") -> list[Task]:
    """Tasks of a gym: from a UserRL data file when `data` is given, else the embedded `split`.

    A data file is used whole (`split` applies to the embedded sets, whose splits are
    ``train`` and ``test``); give a different file per split.
    """
    name = spec(name).name
    if data is not None:
        p = Path(data)
        if not p.is_file():
            raise TaskDataError(f"{p}: no such data file")
        return list(_load_cached(name, str(p.resolve()), "all", p.stat().st_mtime))
    return list(_load_cached(name, None, split, 0.0))


def get_task(name: str, task_id: str, data: str | Path | None = None, split: str | None = None) -> Task:
    """One task by id (Telepathy also accepts the entity's title)."""
    splits = [split] if split else (["all"] if data is not None else ["test", "train"])
    for s in splits:
        for t in load_tasks(name, data, s):
            if t.id == task_id or getattr(t, "title", None) == task_id:
                return t
    src = data if data is not None else "the embedded set"
    raise KeyError(f"no task {task_id!r} in {src} for gym {spec(name).name!r}")


def make(
    name: str,
    task: str | Task | None = None,
    data: str | Path | None = None,
    *,
    split: str = "test",
    user: Any = None,
    **kwargs: Any,
) -> Gym:
    """Build a gym on one task.

    Args:
        name: gym name or versioned id.
        task: a task id, a `Task`, or None for the first task of the source.
        data: path to a UserRL data file; None uses the embedded set.
        split: embedded split (``train`` / ``test``).
        user: a user object, or a spec string (``offline``, ``openai:MODEL``) for `baorl.users.make_user`.
        kwargs: passed to the gym (``max_turns``, ``reward_in_obs``).
    """
    cls = gym_class(name)
    if task is None:
        task = load_tasks(name, data, split)[0]
    elif isinstance(task, str):
        task = get_task(name, task, data)
    if isinstance(user, str):
        from baorl.users import make_user

        user = make_user(cls.name, user)
    return cls(task, user=user, **kwargs)


# ---- the gyms baorl ships ----------------------------------------------------------------------
register(GymSpec("function", 0, "baorl.gyms.function:FunctionGym",
                 "black-box arithmetic: probe a hidden function of a, b, c, d and give its value on a test case",
                 "none", "functions.json"))
register(GymSpec("telepathy", 0, "baorl.gyms.telepathy:TelepathyGym",
                 "twenty questions: identify the entity the user thinks of with yes/no questions",
                 "offline, LLM", "entities.json"))
register(GymSpec("turtle", 0, "baorl.gyms.turtle:TurtleGym",
                 "lateral-thinking stories: ask yes/no questions, then explain the hidden story",
                 "offline~, LLM", "stories.json"))
register(GymSpec("intention", 0, "baorl.gyms.intention:IntentionGym",
                 "clarify a vague request: ask the questions that uncover the user's missing details",
                 "offline~, LLM", "intentions.json"))
