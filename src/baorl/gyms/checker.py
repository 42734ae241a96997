"""`check_gym`: the contract every registered gym must keep (run over the registry in the tests).

Like Gymnasium's environment checker, it steps the gym itself through small named checks; it
needs no agent and no rollout loop, so `baorl.gyms` stays below `baorl.agents` and `baorl.rollout`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from baorl.gyms.base import Gym
from baorl.gyms.tool import TOOL_NAME

__all__ = ["CHECKS", "check_gym"]

_INFO_KEYS = ("gym", "task_id", "system_prompt", "max_turns", "user_choices", "simulator")
_STEP_KEYS = ("valid", "choice", "content", "feedback", "user_involved")
_BAD_INPUTS = ("no tool call here", "[dance] now", '<tool_call>{"name": "interact_with_env", "arguments": {',
               "[answer]   ")


def check_reset(make: Callable[[], Gym]) -> None:
    """`reset` returns a non-empty task prompt and the documented info keys; the system prompt names the tool."""
    obs, info = make().reset(seed=0)
    assert isinstance(obs, str) and obs.strip(), "reset must return a non-empty task prompt"
    for key in _INFO_KEYS:
        assert key in info, f"reset info lacks {key!r}"
    assert TOOL_NAME in info["system_prompt"], "the system prompt must name the tool"


def check_bad_input(make: Callable[[], Gym]) -> None:
    """Malformed calls and empty content get feedback, reward 0, and the episode goes on."""
    gym = make()
    gym.reset(seed=0)
    for bad in _BAD_INPUTS:
        o, r, term, trunc, i = gym.step(bad)
        assert r == 0 and not term and not trunc, f"bad input {bad!r} must give reward 0 and continue"
        assert i["valid"] is False and not i["user_involved"] and o.strip(), f"bad input {bad!r} needs feedback"


def check_finish(make: Callable[[], Gym]) -> None:
    """`[finish]` terminates with reward 0, and stepping a finished episode raises `RuntimeError`."""
    gym = make()
    gym.reset(seed=0)
    _o, r, term, _trunc, i = gym.step("[finish]")
    assert term and r == 0 and i["termination"] == "finish", "[finish] must terminate with reward 0"
    try:
        gym.step("[finish]")
    except RuntimeError:
        pass
    else:
        raise AssertionError("stepping a finished episode must raise")


def check_turn_limit(make: Callable[[], Gym]) -> None:
    """The turn limit truncates with ``termination="turn_limit"``."""
    gym = make()
    gym.max_turns = 3
    gym.reset(seed=0)
    for _t in range(3):
        _o, _r, _term, trunc, i = gym.step("nothing")
    assert trunc and i["termination"] == "turn_limit", "the turn limit must truncate with termination turn_limit"


def _script(gym: Gym, seed: int, turns: int = 6) -> list[Any]:
    """Play a seeded sequence of valid bracket calls; return every reset and step result."""
    rng = random.Random(seed)
    obs, info = gym.reset(seed=seed)
    out: list[Any] = [(obs, {k: info[k] for k in _INFO_KEYS if k != "user_choices"})]
    for _t in range(turns):
        choice = rng.choice(("action", "search", "answer"))
        content = " ".join(str(rng.randint(1, 10)) for _ in range(4)) if choice == "action" else str(rng.randint(1, 9))
        o, r, term, trunc, i = gym.step(f"[{choice}] {content}")
        assert set(_STEP_KEYS) <= set(i), f"step info lacks {sorted(set(_STEP_KEYS) - set(i))}"
        assert isinstance(i["user_involved"], bool), "step info 'user_involved' must be a bool"
        out.append((o, float(r), term, trunc, dict(i)))
        if term or trunc:
            break
    return out


def check_determinism(make: Callable[[], Gym]) -> None:
    """Two same-seed episodes with the same calls give identical observations, rewards and infos."""
    a, b = _script(make(), seed=3), _script(make(), seed=3)
    assert a == b, "two episodes with the same seed and calls must be identical"
    assert a[0][1]["gym"] == make().name, "reset info 'gym' must be the gym's name"


CHECKS: tuple[Callable[[Callable[[], Gym]], None], ...] = (
    check_reset, check_bad_input, check_finish, check_turn_limit, check_determinism,
)


def check_gym(make: Callable[[], Gym]) -> None:
    """Raise `AssertionError` naming the broken rule if the gym built by ``make()`` breaks the contract.

    Runs every check in `CHECKS` on fresh gyms from `make`: `check_reset`, `check_bad_input`,
    `check_finish`, `check_turn_limit`, `check_determinism`; the message starts with the check's name.
    """
    for check in CHECKS:
        try:
            check(make)
        except AssertionError as e:
            raise AssertionError(f"{check.__name__}: {e}") from e
