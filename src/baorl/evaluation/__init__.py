"""Evaluation: metrics of episode records, `baorl eval`, comparisons and self-contained HTML reports.

- `baorl.evaluation.metrics`: pure functions from `Episode` lists to the metrics of spec/metrics.md
  (`score_episodes` gives the ``metrics.json`` layout).
- `baorl.evaluation.run`: `evaluate` (play + score + report into a run directory, resumable),
  `load_run` (evaluation dirs, training run dirs, records files), `score_dir`.
- `baorl.evaluation.plots`: the Pareto-frontier and training-curve figures (PNG and SVG).
- `baorl.evaluation.report`: `write_report`, one HTML file per run or comparison.

The names below load their modules on first use, so importing the package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["evaluate", "load_run", "score_dir", "score_episodes", "write_report"]

_WHERE = {"evaluate": "run", "load_run": "run", "score_dir": "run", "score_episodes": "metrics",
          "write_report": "report"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"baorl.evaluation.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'baorl.evaluation' has no attribute {name!r}")
