"""`baorl quickstart`: the main job on the embedded default, end to end on a laptop CPU.

Today it plays and scores scripted agents on every gym (embedded tasks, offline simulators) and the
untrained embedded SmolLM2 on Function through the batched rollout engine, and writes the records;
later stages (teacher data, SFT, BAO RL, evaluation report) join it as they land.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from baorl.agents import make_agent
from baorl.gyms import gym_class, load_tasks
from baorl.records import Episode, write_episodes
from baorl.rollout.play import aplay_many
from baorl.users import make_user

console = Console()

#: (gym, agent) pairs the quickstart plays: a random floor and, where one exists, the scripted teacher
PAIRS: list[tuple[str, str]] = [
    ("function", "scripted:random"),
    ("function", "scripted:function-solver"),
    ("telepathy", "scripted:random"),
    ("telepathy", "scripted:telepathy-questioner"),
    ("turtle", "scripted:random"),
    ("intention", "scripted:random"),
]


def run_quickstart(out: Path, n: int | None = None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    records = out / "episodes.jsonl"
    records.unlink(missing_ok=True)
    rows: list[tuple[str, str, list[Episode], float]] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        for gym_name, agent_spec in PAIRS:
            cls = gym_class(gym_name)
            tasks = load_tasks(gym_name, split="test")[:n]
            user = make_user(gym_name, "offline") if cls.needs_user else None
            bar = progress.add_task(f"{gym_name:<10} {agent_spec}", total=len(tasks))
            t0 = time.perf_counter()
            eps = asyncio.run(aplay_many(
                lambda t, cls=cls, user=user: cls(t, user=user), tasks,
                lambda spec=agent_spec: make_agent(spec),
                on_done=lambda _e, bar=bar: progress.advance(bar),
            ))
            rows.append((gym_name, agent_spec, eps, time.perf_counter() - t0))
            write_episodes(records, eps, append=True)

        # the embedded policy itself, through the batched token-level engine (greedy)
        from baorl.agents.hf import HFPolicy
        from baorl.rollout.engine import EngineConfig

        tasks = load_tasks("function", split="test")[: n or 16]
        bar = progress.add_task(f"{'function':<10} hf:embedded (loading)", total=len(tasks))
        policy = HFPolicy("hf:embedded", EngineConfig(temperature=0.0, batch_size=16))
        progress.update(bar, description=f"{'function':<10} hf:embedded")
        t0 = time.perf_counter()
        trajs = policy.rollout([gym_class("function")(t) for t in tasks],
                               on_episode_done=lambda _t: progress.advance(bar))
        eps = [t.episode for t in trajs]
        rows.append(("function", "hf:embedded (untrained)", eps, time.perf_counter() - t0))
        write_episodes(records, eps, append=True)

    table = Table(title="agents on the embedded test splits (offline simulators)")
    for col in ("gym", "agent", "n", "score", "success", "user actions/ep", "turns/ep", "simulator", "s"):
        table.add_column(col, justify="left" if col in ("gym", "agent", "simulator") else "right")
    for gym_name, agent_spec, eps, secs in rows:
        k = len(eps)
        table.add_row(
            gym_name, agent_spec, str(k),
            f"{sum(e.score for e in eps) / k:.3f}", f"{sum(e.success for e in eps) / k:.3f}",
            f"{sum(e.user_actions for e in eps) / k:.2f}", f"{sum(len(e.turns) for e in eps) / k:.2f}",
            eps[0].simulator, f"{secs:.1f}",
        )
    console.print(table)
    console.print("offline Turtle/Intention simulators are approximate (sentence-embedding similarity); "
                  "their numbers are not comparable to an LLM simulator's.", style="dim")
    console.print(f"episode records: {records}")
    return 0
