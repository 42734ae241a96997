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

from baorl.gyms.base import Gym, Outcome, SimulatorError, Task, TaskDataError
from baorl.gyms.parser import ParsedAction, parse_action
from baorl.gyms.tool import INTERACT_TOOL, TOOL_NAME

__all__ = [
    "Gym", "Outcome", "SimulatorError", "Task", "TaskDataError", "ParsedAction", "parse_action", "INTERACT_TOOL",
    "TOOL_NAME",
    "GymSpec", "register", "registry", "spec", "gym_class", "load_tasks", "get_task", "make",
    "make_user", "user_for",
]


@dataclass(frozen=True)
class GymSpec:
    """A registry entry. `entry_point` is ``"module:Class"``, imported on first use."""

    name: str
    version: int
    entry_point: str
    summary: str
    userrl_file: str  # UserRL's native file name for this gym
    #: the gym's user simulators, ``"module:Class"`` (imported on first use), None where it has none;
    #: the one place that says which simulators a gym has (`make_user`, `user_for`, `baorl gyms`)
    offline_user: str | None = None
    llm_user: str | None = None  # built on an `LLMClient` for ``openai:MODEL``
    offline_exact: bool = True  # False: the offline user only approximates an LLM's judgement

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"

    @property
    def simulator(self) -> str:
        """What the gym needs, for listings: ``none``, or its kinds of user (``offline~``: approximate)."""
        kinds = [("offline" if self.offline_exact else "offline~") if self.offline_user else "",
                 "LLM" if self.llm_user else ""]
        return ", ".join(k for k in kinds if k) or "none"


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


def _load(entry_point: str) -> Any:
    mod, _, attr = entry_point.partition(":")
    return getattr(importlib.import_module(mod), attr)


def gym_class(name: str) -> type[Gym]:
    """The gym's class (imports its module on first use)."""
    return _load(spec(name).entry_point)


# the OpenAI-compatible client an ``openai:MODEL`` user is built on (imported on first use)
LLM_CLIENT = "baorl.users.client:LLMClient"


def make_user(gym: str, spec_: str | None, **options: Any) -> Any:
    """Build the user for `gym` from a spec string (``none``, ``offline``, ``openai:MODEL``).

    `options` go to the LLM client (``base_url``, ``api_key``, ``cache_dir``, ``max_retries``,
    ``timeout``, ``concurrency``) or to the offline user.
    """
    entry = spec(gym)
    name, offline, llm = entry.name, entry.offline_user, entry.llm_user
    s = (spec_ or "none").strip()
    if s.lower() == "none":
        if offline or llm:
            raise ValueError(f"gym {name!r} needs a user simulator: use 'offline' or 'openai:MODEL'")
        return None
    if offline is None and llm is None:
        raise ValueError(f"gym {name!r} needs no user simulator; drop the simulator option (got {s!r})")
    if s.lower() == "offline" and offline is not None:
        return _load(offline)(**options)
    if s.startswith("openai:") and len(s) > len("openai:") and llm is not None:
        return _load(llm)(_load(LLM_CLIENT)(model=s[len("openai:"):], **options))
    raise ValueError(f"unknown simulator {s!r}: use 'offline' or 'openai:MODEL' (e.g. openai:gpt-4o)")


def user_for(gym: str, spec_: str | None = None, **options: Any) -> Any:
    """The user `gym` is played with: None for a gym without users, else `spec_` (default ``offline``).

    >>> user_for("function") is None
    True
    >>> user_for("function", "offline")
    Traceback (most recent call last):
    ...
    ValueError: gym 'function' needs no simulator; drop the simulator option (got 'offline')
    """
    entry = spec(gym)
    if entry.offline_user is None and entry.llm_user is None:
        if spec_ not in (None, "none"):
            raise ValueError(f"gym {entry.name!r} needs no simulator; drop the simulator option (got {spec_!r})")
        return None
    return make_user(entry.name, spec_ or "offline", **options)


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
        user: a user object, or a spec string (``offline``, ``openai:MODEL``) for `make_user`.
        kwargs: passed to the gym (``max_turns``, ``reward_in_obs``).
    """
    cls = gym_class(name)
    if task is None:
        task = load_tasks(name, data, split)[0]
    elif isinstance(task, str):
        task = get_task(name, task, data)
    if isinstance(user, str):
        user = make_user(cls.name, user)
    return cls(task, user=user, **kwargs)


# ---- the gyms baorl ships ----------------------------------------------------------------------
register(GymSpec("function", 0, "baorl.gyms.function:FunctionGym",
                 "black-box arithmetic: probe a hidden function of a, b, c, d and give its value on a test case",
                 "functions.json"))
register(GymSpec("telepathy", 0, "baorl.gyms.telepathy:TelepathyGym",
                 "twenty questions: identify the entity the user thinks of with yes/no questions",
                 "entities.json", "baorl.users.telepathy_offline:OfflineTelepathyUser",
                 "baorl.users.llm:LLMTelepathyUser"))
register(GymSpec("turtle", 0, "baorl.gyms.turtle:TurtleGym",
                 "lateral-thinking stories: ask yes/no questions, then explain the hidden story",
                 "stories.json", "baorl.users.similarity:OfflineTurtleUser", "baorl.users.llm:LLMTurtleUser",
                 offline_exact=False))
register(GymSpec("intention", 0, "baorl.gyms.intention:IntentionGym",
                 "clarify a vague request: ask the questions that uncover the user's missing details",
                 "intentions.json", "baorl.users.similarity:OfflineIntentionUser", "baorl.users.llm:LLMIntentionUser",
                 offline_exact=False))
