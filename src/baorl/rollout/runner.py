"""Run an agent over a gym's tasks and write episode records: what `baorl rollout` does.

Scripted and API agents are played by the text-level loop (`baorl.rollout.play`), many episodes
at once; local models (``hf:...``) by the batched token-level engine (`baorl.rollout.engine`).
Records are appended as each episode finishes, so an interrupted run loses nothing: run it again
and the tasks already in the output file are skipped (a half-written last line is redone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from baorl.gyms import gym_class, load_tasks
from baorl.records import Episode, iter_episodes, write_episodes
from baorl.users import user_for


def finished_task_ids(path: Path) -> set[str]:
    """Task ids already recorded in `path` (none if it does not exist); a torn last line is dropped."""
    if not path.exists():
        return set()
    episodes = list(iter_episodes(path, skip_partial_tail=True))
    # rewrite without the torn tail so appends start on a clean line
    write_episodes(path, episodes)
    return {e.task_id for e in episodes}


def run_rollout(
    *,
    agent: str,
    gym: str,
    out: Path,
    data: str | None = None,
    split: str = "test",
    simulator: str | None = None,
    simulator_options: dict[str, Any] | None = None,
    limit: int | None = None,
    seed: int = 0,
    concurrency: int = 16,
    engine_options: dict[str, Any] | None = None,
    save_tokens: bool = False,
    agent_options: dict[str, Any] | None = None,
    on_done: Callable[[Episode], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> list[Episode]:
    """Play `agent` on the tasks of `gym` not yet in `out`; returns the new episodes.

    Local models decode greedily unless `engine_options` sets a temperature; with `save_tokens`
    their records also carry the token fields of `baorl.rollout.engine.Trajectory`.
    """
    cls = gym_class(gym)
    tasks = load_tasks(gym, data, split)[:limit]
    if not tasks:
        raise ValueError(f"gym {gym!r}: the {'file ' + str(data) if data else split + ' split'} has no tasks")
    done = finished_task_ids(out)
    todo = [t for t in tasks if t.id not in done]
    if on_total is not None:
        on_total(len(todo))
    user = user_for(cls.name, simulator, **(simulator_options or {}))

    def record(ep: Episode) -> None:
        write_episodes(out, [ep], append=True)
        if on_done is not None:
            on_done(ep)

    if not todo:
        return []
    if agent.startswith("hf:"):
        from baorl.agents.hf import HFPolicy
        from baorl.rollout.engine import EngineConfig

        config = EngineConfig(**{"temperature": 0.0, "seed": seed, **(engine_options or {})})
        policy = HFPolicy(agent, config)

        def record_traj(traj: Any) -> None:
            ep = Episode.model_validate(traj.to_record()) if save_tokens else traj.episode
            record(ep)

        trajs = policy.rollout([cls(t, user=user) for t in todo], on_episode_done=record_traj)
        return [t.episode for t in trajs]

    from baorl.agents import make_agent
    from baorl.rollout.play import aplay_many

    make_agent(agent, **(agent_options or {}))  # fail fast on a bad spec, before any episode
    return asyncio.run(aplay_many(
        lambda t: cls(t, user=user), todo, lambda: make_agent(agent, **(agent_options or {})),
        seed=seed, concurrency=concurrency, on_done=record,
    ))
