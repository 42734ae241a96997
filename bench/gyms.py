"""Gym step throughput with offline simulators.

For each gym: play episodes of the random scripted agent on the embedded test split and count gym
steps per second (time inside `astep` only; the agent's time is excluded), one episode at a time.
The baseline measured in the same run is the Function gym (pure Python, no simulator); every row
also prints its ratio to it. The first episodes of each gym warm caches (e.g. the embedding model
load) and are not timed.

    python bench/gyms.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time

from baorl.agents.scripted import RandomAgent
from baorl.gyms import gym_class, load_tasks, registry
from baorl.runs.play import aplay_episode
from baorl.users import make_user


class _Timed:
    """Wraps a gym's `astep`, accumulating the time spent inside it and the number of steps."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.steps = 0

    def wrap(self, gym):
        inner = gym.astep

        async def astep(action):
            t0 = time.perf_counter()
            out = await inner(action)
            self.seconds += time.perf_counter() - t0
            self.steps += 1
            return out

        gym.astep = astep
        return gym


def bench_gym(name: str, seconds: float) -> dict:
    cls = gym_class(name)
    user = make_user(name, "offline") if cls.needs_user else None
    tasks = load_tasks(name, split="all")
    # warm-up: one episode (loads models, fills lazy caches)
    asyncio.run(aplay_episode(cls(tasks[0], user=user), RandomAgent(seed=99)))
    timer = _Timed()
    episodes = 0
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        task = tasks[episodes % len(tasks)]
        asyncio.run(aplay_episode(timer.wrap(cls(task, user=user)), RandomAgent(seed=episodes)))
        episodes += 1
    return {"gym": name, "steps": timer.steps, "episodes": episodes, "steps_per_s": timer.steps / timer.seconds,
            "simulator": getattr(user, "label", "none")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="measuring time per gym")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    rows = [bench_gym(name, args.seconds) for name in sorted(registry(), key=lambda n: n != "function")]
    base = rows[0]["steps_per_s"]
    print(f"{'gym':<10} {'simulator':<9} {'steps':>7} {'episodes':>8} {'steps/s':>10} {'vs function':>11}")
    for r in rows:
        print(f"{r['gym']:<10} {r['simulator']:<9} {r['steps']:>7} {r['episodes']:>8} "
              f"{r['steps_per_s']:>10.1f} {r['steps_per_s'] / base:>10.3f}x")


if __name__ == "__main__":
    main()
