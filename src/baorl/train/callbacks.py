"""Trainer callbacks: validation and the best checkpoint, the metrics file, the progress bar.

They are plain `transformers.TrainerCallback` objects, so they work with any `Trainer`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import TrainerCallback

from baorl.records import append_jsonl, atomic_write, read_jsonl, write_episodes, write_jsonl

__all__ = ["MetricsFile", "RichProgress", "Validation", "keep_steps", "save_policy", "validation_metrics"]


def keep_steps(path: Path, keep: Callable[[int], bool]) -> None:
    """Keep the records of a run's JSONL log whose ``step`` satisfies `keep` (on resume: the records
    of steps after the checkpoint go, as does a torn last line of a killed write).

    The file is rewritten only when something goes, atomically (`baorl.records.write_jsonl`), the
    kept lines byte for byte; lines end at ``"\\n"`` only (`baorl.records.read_jsonl`).
    """
    if not path.exists():
        return

    def obj(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError(f"a JSON {type(value).__name__}, not an object")
        return value

    lines = read_jsonl(path, torn_tail=True, what="JSON object", check=obj)
    kept = [text + "\n" for _, text, record in lines.rows if keep(record.get("step", 0))]
    if lines.torn is not None or len(kept) < len(lines.rows):
        write_jsonl(path, kept)


def save_policy(model: Any, tokenizer: Any, path: Path) -> None:
    """Save a loadable policy (``hf:PATH``): full weights, LoRA merged into a copy, plus the tokenizer."""
    import copy

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def validation_metrics(episodes: list[Any]) -> dict[str, float]:
    """Greedy validation summary: score, success, user rate, Pass@U-1..3, answers per episode."""
    from baorl.evaluation.metrics import score_episodes

    m = score_episodes(episodes, n_boot=0)
    gym = next(iter(m["gyms"].values()))
    out = {"n": gym["n"], "score": gym["score"], "user_rate": gym["user_rate"], "hypervolume": gym["hypervolume"],
           "success": sum(e.success for e in episodes) / max(len(episodes), 1),
           "user_actions": sum(e.user_actions for e in episodes) / max(len(episodes), 1)}
    for k in ("1", "2", "3"):
        if k in gym["pass_at_u"]:
            out[f"pass_at_u_{k}"] = gym["pass_at_u"][k]
    return out


class MetricsFile(TrainerCallback):
    """Appends every log record (``{"step", "time", ...}``) to ``RUN/metrics.jsonl``.

    On resume, records of steps after the resumed checkpoint are dropped first, so the file never
    holds two records of one step.
    """

    def __init__(self, path: Path, *, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.t0 = time.time()
        if resume_step is not None:
            keep_steps(self.path, lambda step: step <= resume_step)

    def write(self, record: dict[str, Any]) -> None:
        append_jsonl(self.path, [record])

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if logs:
            clean = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            self.write({"step": state.global_step, "time": round(time.time() - self.t0, 3), **clean})


class RichProgress(TrainerCallback):
    """A progress bar: step, reward, task score, user rate, seconds per step, ETA."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.bar: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.progress = Progress(
            TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=False)
        self.progress.start()
        self.bar = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if self.progress is None or not logs:
            return
        parts = []
        for key, label in (("reward", "reward"), ("episode/score", "score"), ("episode/user_rate", "user rate"),
                           ("val/score", "val score")):
            if key in logs:
                parts.append(f"{label} {logs[key]:.3f}")
        if parts:
            self.progress.update(self.bar, info=" · ".join(parts))

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.bar, completed=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class Validation(TrainerCallback):
    """Greedy validation every ``every`` optimiser steps, at the start and at the end.

    Each validation writes ``RUN/val/step_NNNNNN/episodes.jsonl`` and ``metrics.json``, logs
    ``val/*`` metrics, and saves the policy to ``RUN/best`` when its score beats the best so far
    (``RUN/val/best.json`` remembers it across resumes).

    Args:
        run_validation: ``step -> (episodes, metrics)``: plays the validation tasks greedily.
        save_best: ``path -> None``: saves the current policy there.
        log: ``metrics -> None``: logs the ``val/*`` metrics (the trainer's ``log``); None: not logged.
    """

    def __init__(self, run_dir: Path, run_validation: Callable[[int], tuple[list[Any], dict[str, float]]],
                 save_best: Callable[[Path], None], *, every: int, at_start: bool, at_end: bool = True,
                 log: Callable[[dict[str, float]], None] | None = None) -> None:
        self.dir = Path(run_dir) / "val"
        self.best_path = Path(run_dir) / "best"
        self.run_validation = run_validation
        self.save_best = save_best
        self.every = every
        self.at_start = at_start
        self.at_end = at_end
        self.log = log
        best_file = self.dir / "best.json"
        self.best = json.loads(best_file.read_text()) if best_file.exists() else None

    def done(self, step: int) -> bool:
        return (self.dir / f"step_{step:06d}" / "metrics.json").exists()

    def validate(self, state: Any) -> dict[str, float]:
        step = state.global_step
        out = self.dir / f"step_{step:06d}"
        if self.done(step):
            return json.loads((out / "metrics.json").read_text())
        t0 = time.perf_counter()
        episodes, metrics = self.run_validation(step)
        metrics = {**metrics, "seconds": round(time.perf_counter() - t0, 2)}
        out.mkdir(parents=True, exist_ok=True)
        write_episodes(out / "episodes.jsonl", episodes)
        atomic_write(out / "metrics.json", json.dumps(metrics, indent=1))  # it marks the step done: never torn
        if self.best is None or metrics["score"] > self.best["score"]:
            self.save_best(self.best_path)
            self.best = {"step": step, "score": metrics["score"]}
            atomic_write(self.dir / "best.json", json.dumps(self.best))
        logs = {f"val/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
        if self.log is not None:
            self.log(logs)
        return metrics

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.at_start and state.global_step == 0:
            self.validate(state)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.every and state.global_step % self.every == 0:
            self.validate(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.at_end:
            self.validate(state)
