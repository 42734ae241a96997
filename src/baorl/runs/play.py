"""Play text-level episodes: one agent, one gym, turn by turn, into an `Episode` record.

This is the reference loop for scripted agents, people (``baorl play``) and API agents. The
token-level engine for model policies records the same `Episode` plus token ids and masks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from baorl.agents.base import Agent
from baorl.config import check_positive_int
from baorl.gyms.base import Gym
from baorl.gyms.parser import parse_action
from baorl.records import Episode, Turn
from baorl.textcap import MAX_TURN_CHARS, check_limit, clip_text


async def aplay_episode(
    gym: Gym, agent: Agent, *, seed: int = 0, policy: str | None = None, end_on_no_tool_call: bool = True,
    max_text_chars: int | None = MAX_TURN_CHARS,
) -> Episode:
    """Play one episode to its end and return its record.

    The episode ends when the gym terminates or truncates (solved, finish, turn limit, simulator
    error) or when the agent's output has no valid tool call (``no_tool_call``). With
    ``end_on_no_tool_call=False`` (a person at the terminal) such output goes to the gym instead,
    which answers with format feedback and counts the turn.

    The gym sees the agent's whole output; the record keeps at most `max_text_chars` characters of
    each turn's content, think and feedback (`baorl.textcap.clip_text`: a longer text is cut and
    marked with its length; None keeps everything).
    """
    cap = check_limit(max_text_chars, "max_text_chars")
    obs, info = gym.reset(seed=seed)
    state = agent.start(info["system_prompt"], obs, info)
    turns: list[Turn] = []
    termination = "turn_limit"
    success = False
    extra: dict[str, Any] = {}
    while True:
        output, state = await agent.arespond(obs, state)
        parsed = parse_action(output)
        if parsed.choice is None and end_on_no_tool_call:
            turns.append(Turn(choice=None, content="", think=clip_text(parsed.think, cap),
                              feedback=clip_text(parsed.error or "", cap)))
            termination = "no_tool_call"
            break
        obs, reward, terminated, truncated, sinfo = await gym.astep(parsed)
        turns.append(Turn(
            choice=sinfo["choice"] if sinfo["valid"] else None, content=clip_text(sinfo["content"], cap),
            reward=float(reward), feedback=clip_text(sinfo["feedback"], cap), user_involved=sinfo["user_involved"],
            think=clip_text(parsed.think, cap),
        ))
        if terminated or truncated:
            termination = sinfo["termination"]
            success = termination == "solved"
            if termination == "simulator_error":  # the simulator's last error, for the record and the user
                extra["simulator_error"] = sinfo.get("simulator_error") or sinfo["feedback"]
            break
    return Episode.from_turns(
        turns=turns, gym=gym.name, task_id=gym.task.id, policy=policy or agent.name, seed=seed,
        success=success, termination=termination, simulator=gym.simulator_label,
        simulator_detail=getattr(gym.user, "detail", "") if gym.user is not None else "", **extra,
    )


def play_episode(gym: Gym, agent: Agent, **kw: Any) -> Episode:
    """Synchronous `aplay_episode`."""
    return asyncio.run(aplay_episode(gym, agent, **kw))


async def aplay_many(
    make_gym: Callable[[Any], Gym],
    tasks: Sequence[Any],
    make_agent: Callable[[], Agent],
    *,
    seed: int = 0,
    concurrency: int = 16,
    on_done: Callable[[Episode], None] | None = None,
    max_text_chars: int | None = MAX_TURN_CHARS,
) -> list[Episode]:
    """Play one episode per task, up to `concurrency` (>= 1) at once (gyms waiting on a simulator overlap).

    `max_text_chars`: see `aplay_episode`.
    """
    check_positive_int(concurrency, "concurrency")
    cap = check_limit(max_text_chars, "max_text_chars")
    sem = asyncio.Semaphore(int(concurrency))

    async def one(task: Any) -> Episode:
        async with sem:
            agent = make_agent()
            try:
                ep = await aplay_episode(make_gym(task), agent, seed=seed, max_text_chars=cap)
            finally:
                if hasattr(agent, "aclose"):  # API agents hold connections
                    await agent.aclose()
        if on_done is not None:
            on_done(ep)
        return ep

    return list(await asyncio.gather(*(one(t) for t in tasks)))
