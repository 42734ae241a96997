"""The progress bar of the commands that play episodes (rollout, eval, teach): count, ETA, running means."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class EpisodeBar:
    """Callbacks for `run_rollout`-style functions: ``on_done=bar.done, on_total=bar.total``."""

    def __init__(self, progress: Progress, description: str) -> None:
        self.progress = progress
        self.task = progress.add_task(description, total=None, info="")
        self.n, self.score, self.success, self.users = 0, 0.0, 0, 0

    def total(self, n: int) -> None:
        self.progress.update(self.task, total=n)

    def done(self, ep: Any) -> None:
        self.n += 1
        self.score += ep.score
        self.success += ep.success
        self.users += ep.user_actions
        n = self.n
        self.progress.update(self.task, advance=1, info=f"score {self.score / n:.3f} · success {self.success / n:.3f}"
                             f" · user actions/ep {self.users / n:.2f}")


@contextmanager
def episode_bar(console: Console, description: str, *, transient: bool = False) -> Iterator[EpisodeBar]:
    """A bar over the episodes of one run, showing the running score, success and user actions."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[info]}"), console=console, transient=transient) as progress:
        yield EpisodeBar(progress, description)
