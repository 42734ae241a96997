"""`baorl teach`: play teacher episodes, keep the good ones, and write SFT data (spec: bao.md §2).

Files, for ``out = DIR/NAME.jsonl`` (any other name: the suffixes are appended to it whole):

- ``DIR/NAME.jsonl``: episode records, one per task, appended as each task finishes; a rerun
  skips the tasks already there (as `baorl rollout` does). Records carry the prompts the teacher
  was given (``system_prompt``, ``task_prompt``), the ``teacher`` and the ``attempt`` number.
- ``DIR/NAME.failures.jsonl``: one line per failed attempt (``task_id``, ``attempt``, ``kind``:
  ``agent_error`` when the teacher's endpoint failed, ``no_tool_call`` when it returned a malformed
  call; ``error``; and, for malformed calls, the episode).
- ``DIR/NAME.sft.jsonl``: the kept episodes as SFT conversations (`baorl.teach.export`), rebuilt
  from *all* records in ``NAME.jsonl`` after each run, so it always matches them.
- ``DIR/NAME.sharegpt.jsonl`` and ``DIR/dataset_info.json``: the same conversations for
  LLaMA-Factory (dataset name ``NAME``).

**Retry policy** (decided here): an attempt fails when the teacher raises `AgentError` (its
endpoint failed after the agent's own retries) or its episode ends with ``no_tool_call`` (a
malformed call). A failed attempt is logged and the task is played again, up to `retries` more
times; it never stops the other tasks. A task whose last attempt ended ``no_tool_call`` keeps that
episode (an agent failure, filtered out of the SFT data by default); a task whose every attempt
raised `AgentError` gets no record, so the next run tries it again.

**Keep filter** (`parse_keep`): ``success`` (default: the paper's success-only filter), ``all``,
or ``score>X`` / ``score>=X``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baorl.agents.base import Agent, AgentError
from baorl.gyms import gym_class, load_tasks
from baorl.records import Episode, append_jsonl, iter_episodes, write_episodes
from baorl.runs.play import aplay_episode
from baorl.runs.runner import finished_task_ids
from baorl.teach.export import (
    conversation_to_sharegpt,
    episode_to_conversation,
    write_dataset_info,
    write_jsonl_atomic,
)
from baorl.teach.teachers import Teacher, make_teacher

__all__ = ["teach", "export_sft", "parse_keep", "teach_paths", "TeachSummary"]

_KEEP = re.compile(r"^score\s*(>=|>)\s*(-?\d+(?:\.\d+)?)$")


def parse_keep(spec: str) -> Callable[[Episode], bool]:
    """The episode filter named by `spec`: ``success``, ``all``, ``score>X`` or ``score>=X``.

    >>> from baorl.records import Episode
    >>> ep = Episode(gym="function", task_id="t", termination="turn_limit", score=0.5)
    >>> [parse_keep(s)(ep) for s in ("success", "all", "score>0.4", "score>=0.6")]
    [False, True, True, False]
    """
    s = spec.strip().lower()
    if s == "success":
        return lambda ep: ep.success
    if s == "all":
        return lambda ep: True
    m = _KEEP.match(s)
    if m:
        op, x = m.group(1), float(m.group(2))
        return (lambda ep: ep.score >= x) if op == ">=" else (lambda ep: ep.score > x)
    raise ValueError(f"--keep {spec!r}: use 'success', 'all', 'score>X' or 'score>=X' (e.g. score>0.5)")


def teach_paths(out: str | Path) -> dict[str, Path]:
    """The files a teach run writes beside `out` (see the module docstring).

    >>> {k: str(v) for k, v in teach_paths("teach/function.jsonl").items()}  # doctest: +NORMALIZE_WHITESPACE
    {'records': 'teach/function.jsonl', 'failures': 'teach/function.failures.jsonl',
     'sft': 'teach/function.sft.jsonl', 'sharegpt': 'teach/function.sharegpt.jsonl',
     'dataset_info': 'teach/dataset_info.json'}
    """
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") and len(out.name) > 6 else out.name
    return {
        "records": out,
        "failures": out.with_name(f"{stem}.failures.jsonl"),
        "sft": out.with_name(f"{stem}.sft.jsonl"),
        "sharegpt": out.with_name(f"{stem}.sharegpt.jsonl"),
        "dataset_info": out.with_name("dataset_info.json"),
    }


@dataclass
class TeachSummary:
    """What a teach run did. Counts of episodes are for this run; `records` and `kept` for the files."""

    gym: str
    teacher: str
    todo: int = 0  # tasks played this run
    skipped: int = 0  # tasks already recorded in `out`
    episodes: list[Episode] = field(default_factory=list, repr=False)  # recorded this run
    failed_attempts: int = 0
    lost: list[str] = field(default_factory=list)  # task ids with no episode (every attempt raised)
    records: int = 0  # episode records in `out` after the run
    kept: int = 0  # conversations in the SFT file
    wall_s: float = 0.0
    paths: dict[str, Path] = field(default_factory=dict)

    def line(self) -> str:
        """A one-line summary with sample sizes."""
        n = len(self.episodes)
        if not n:
            run = "no new episodes"
        else:
            run = (f"{n} episodes · success {sum(e.success for e in self.episodes) / n:.3f} · answers/ep "
                   f"{sum(e.user_actions for e in self.episodes) / n:.2f} · turns/ep "
                   f"{sum(len(e.turns) for e in self.episodes) / n:.2f}")
        extra = f" · {self.failed_attempts} failed attempts" if self.failed_attempts else ""
        lost = f" · {len(self.lost)} tasks lost (rerun to retry)" if self.lost else ""
        return (f"{run}{extra}{lost} · {self.wall_s:.1f}s · {self.records} records, {self.kept} kept "
                f"-> {self.paths.get('sft')}")


class _Recording(Agent):
    """Delegates to an agent and remembers the prompts it was started with."""

    def __init__(self, inner: Agent) -> None:
        self.inner, self.name = inner, inner.name
        self.prompts: tuple[str, str] | None = None

    def start(self, system_prompt: str, task_prompt: str, info: dict[str, Any]) -> Any:
        self.prompts = (system_prompt, task_prompt)
        return self.inner.start(system_prompt, task_prompt, info)

    def respond(self, observation: str, state: Any) -> tuple[Any, Any]:
        return self.inner.respond(observation, state)

    async def arespond(self, observation: str, state: Any) -> tuple[Any, Any]:
        return await self.inner.arespond(observation, state)

    async def aclose(self) -> None:
        if hasattr(self.inner, "aclose"):
            await self.inner.aclose()


def export_sft(records: str | Path, *, keep: str = "success", data: str | None = None) -> tuple[int, int]:
    """(Re)build the SFT, ShareGPT and dataset-info files from a records file; returns (records, kept)."""
    paths = teach_paths(records)
    accept = parse_keep(keep)
    episodes = list(iter_episodes(paths["records"], skip_partial_tail=True))
    convs = []
    for ep in episodes:
        if accept(ep):
            conv = episode_to_conversation(ep, data=data)
            if conv is not None:
                convs.append(conv)
    write_jsonl_atomic(paths["sft"], convs)
    write_jsonl_atomic(paths["sharegpt"], (conversation_to_sharegpt(c) for c in convs))
    write_dataset_info(paths["sharegpt"], paths["sft"].name.removesuffix(".sft.jsonl"))
    return len(episodes), len(convs)


def teach(
    *,
    gym: str,
    teacher: str | Teacher,
    out: str | Path,
    n: int | None = None,
    data: str | None = None,
    split: str = "train",
    simulator: str | None = None,
    simulator_options: dict[str, Any] | None = None,
    keep: str = "success",
    seed: int = 0,
    concurrency: int = 8,
    retries: int = 2,
    max_turns: int | None = None,
    teacher_options: dict[str, Any] | None = None,
    on_done: Callable[[Episode], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> TeachSummary:
    """Play `teacher` on the first `n` tasks of `gym` not yet in `out`, then rebuild the SFT files.

    Args:
        gym: gym name or id.
        teacher: a `Teacher` or its name for `make_teacher` (with `teacher_options`).
        out: the episode records file (JSONL, appended to; see the module docstring for the others).
        n: only the first `n` tasks of the source (None: all).
        data: a UserRL data file (default: the embedded `split`).
        simulator, simulator_options: the user simulator for gyms that need one (default offline).
        keep: the SFT filter (`parse_keep`).
        seed: the gyms' reset seed.
        concurrency: episodes in flight at once (API teachers overlap their requests).
        retries: extra attempts for a task whose attempt failed (see the retry policy above).
        max_turns: override the gym's turn limit.
        on_done: called with each recorded episode; on_total: with the number of tasks to play.
    """
    if retries < 0 or int(retries) != retries:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 (or None for every task), got {n!r}")
    parse_keep(keep)  # fail fast on a bad filter
    t0 = time.perf_counter()
    if isinstance(teacher, str):
        teacher = make_teacher(teacher, **(teacher_options or {}))
    cls = gym_class(gym)
    teacher.check(cls.name, data)
    paths = teach_paths(out)
    summary = TeachSummary(gym=cls.name, teacher=teacher.name, paths=paths)
    tasks = load_tasks(cls.name, data, split)[:n]
    if not tasks:
        raise ValueError(f"gym {cls.name!r}: the {'file ' + str(data) if data else split + ' split'} has no tasks")
    done = finished_task_ids(paths["records"])
    todo = [t for t in tasks if t.id not in done]
    summary.todo, summary.skipped = len(todo), len(tasks) - len(todo)
    if on_total is not None:
        on_total(len(todo))
    from baorl.users import user_for

    user = user_for(cls.name, simulator, **(simulator_options or {}))

    def log_failure(task_id: str, attempt: int, kind: str, error: str, ep: Episode | None) -> None:
        summary.failed_attempts += 1
        row = {"task_id": task_id, "attempt": attempt, "kind": kind, "error": error,
               "episode": ep.model_dump() if ep is not None else None}
        append_jsonl(paths["failures"], [row])

    async def play_task(task: Any, sem: asyncio.Semaphore) -> None:
        async with sem:
            last: Episode | None = None
            for attempt in range(retries + 1):
                agent = _Recording(teacher.make_agent())
                try:
                    ep = await aplay_episode(cls(task, user=user, max_turns=max_turns), agent, seed=seed,
                                             policy=teacher.policy)
                except AgentError as e:
                    log_failure(task.id, attempt, "agent_error", str(e), None)
                    continue
                finally:
                    await agent.aclose()
                system_prompt, task_prompt = agent.prompts or ("", "")  # set by aplay_episode's agent.start
                ep = Episode.model_validate({
                    **ep.model_dump(), "system_prompt": system_prompt, "task_prompt": task_prompt,
                    "teacher": teacher.name, "attempt": attempt,
                    **({"teacher_options": teacher.options} if teacher.options else {}),
                })
                last = ep
                if ep.termination != "no_tool_call":
                    break
                error = ep.turns[-1].feedback if ep.turns else "no tool call"
                log_failure(task.id, attempt, "no_tool_call", error, ep)
            if last is None:
                summary.lost.append(task.id)
                return
            write_episodes(paths["records"], [last], append=True)
            summary.episodes.append(last)
            if on_done is not None:
                on_done(last)

    async def play_all() -> None:
        sem = asyncio.Semaphore(concurrency)
        await asyncio.gather(*(play_task(t, sem) for t in todo))

    if todo:
        asyncio.run(play_all())
    if paths["records"].exists():
        summary.records, summary.kept = export_sft(paths["records"], keep=keep, data=data)
    summary.wall_s = time.perf_counter() - t0
    return summary
