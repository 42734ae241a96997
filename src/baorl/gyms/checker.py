"""`check_gym`: the contract every registered gym must keep (run over the registry in the tests)."""

from __future__ import annotations

from typing import Any

from baorl.agents.scripted import RandomAgent
from baorl.gyms.base import Gym
from baorl.rollout.play import play_episode


def check_gym(make: Any) -> None:
    """Raise `AssertionError` naming the broken rule if the gym built by ``make()`` breaks the contract.

    Checks: `reset` returns the task prompt and the documented info keys; malformed input
    gets feedback, reward 0 and no crash; empty content likewise; `[finish]` terminates with
    reward 0; stepping a finished episode raises; the turn limit truncates with
    ``termination="turn_limit"``; and two same-seed episodes give identical records.
    """
    gym: Gym = make()
    obs, info = gym.reset(seed=0)
    assert isinstance(obs, str) and obs.strip(), "reset must return a non-empty task prompt"
    for key in ("gym", "task_id", "system_prompt", "max_turns", "user_choices", "simulator"):
        assert key in info, f"reset info lacks {key!r}"
    assert "interact_with_env" in info["system_prompt"], "the system prompt must name the tool"

    for bad in ("no tool call here", "[dance] now", '<tool_call>{"name": "interact_with_env", "arguments": {', "[answer]   "):
        o, r, term, trunc, i = gym.step(bad)
        assert r == 0 and not term and not trunc, f"bad input {bad!r} must give reward 0 and continue"
        assert i["valid"] is False and not i["user_involved"] and o.strip(), f"bad input {bad!r} needs feedback"

    o, r, term, trunc, i = gym.step("[finish]")
    assert term and r == 0 and i["termination"] == "finish", "[finish] must terminate with reward 0"
    try:
        gym.step("[finish]")
    except RuntimeError:
        pass
    else:
        raise AssertionError("stepping a finished episode must raise")

    gym = make()
    gym.max_turns = 3
    gym.reset(seed=0)
    for _t in range(3):
        o, r, term, trunc, i = gym.step("nothing")
    assert trunc and i["termination"] == "turn_limit", "the turn limit must truncate with termination turn_limit"

    a = play_episode(make(), RandomAgent(seed=1), seed=3)
    b = play_episode(make(), RandomAgent(seed=1), seed=3)
    assert a == b, "two episodes with the same seed must give identical records"
    assert a.gym == gym.name and a.user_actions == sum(t.user_involved for t in a.turns)
