"""Figures of evaluations and training runs (matplotlib, Agg backend): written as PNG and SVG.

- `plot_pareto`: the Pareto frontier of the BAO paper: Pass@U-k (y) against k, the number of
  user-involved actions allowed (x), one curve per run with its 95% bootstrap band; one panel for
  the overall curve and, with several gyms, one per gym.
- `plot_training_curves`: every numeric key of a trainer's ``metrics.jsonl`` against ``step``,
  one small panel per key, one line per run.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_pareto", "plot_training_curves", "save_figure", "figure_svg", "numeric_series"]

#: text.parse_math off: run labels and metric keys are plain text (a '$' in a directory name is not mathtext)
_STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False,
          "svg.fonttype": "none", "savefig.dpi": 130, "text.parse_math": False}


def save_figure(fig: Any, stem: Path) -> list[Path]:
    """Write `fig` as ``STEM.png`` and ``STEM.svg``; returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, bbox_inches="tight")
    return paths


def figure_svg(fig: Any) -> bytes:
    """The figure as SVG bytes (to embed in a report)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    return buf.getvalue()


def _grid(n: int, ncols: int, size: tuple[float, float]) -> tuple[Any, list[Any]]:
    cols = min(n, ncols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def plot_pareto(metrics: dict[str, dict[str, Any]], *, title: str = "") -> Any:
    """The Pareto-frontier figure of runs' metrics (``score_episodes`` outputs sharing one K).

    Args:
        metrics: run label -> metrics dict. Panels: ``overall``, then each gym when there are several.
        title: the figure's title.
    """
    with plt.rc_context(_STYLE):
        gyms = sorted({g for m in metrics.values() for g in m["gyms"]})
        scopes = ["overall"] + (gyms if len(gyms) > 1 else [])
        fig, axes = _grid(len(scopes), 3, (6.0, 4.0) if len(scopes) == 1 else (4.6, 3.4))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, scope in zip(axes, scopes, strict=True):
            for i, (label, m) in enumerate(metrics.items()):
                s = m["overall"] if scope == "overall" else m["gyms"].get(scope)
                if s is None or s.get("n", 0) == 0:
                    continue
                ks = [int(k) for k in s["pass_at_u"]]
                ys = [s["pass_at_u"][str(k)] for k in ks]
                c = colors[i % len(colors)]
                hv = s.get("hypervolume")
                ax.plot(ks, ys, marker="os^Dv<>"[i % 7], ms=4, lw=1.6, color=c,
                        label=f"{label} (HV {hv:.3f})" if hv is not None else label)
                ci = [s["pass_at_u_ci"][str(k)] for k in ks]
                if all(c_[0] is not None for c_ in ci):
                    ax.fill_between(ks, [c_[0] for c_ in ci], [c_[1] for c_ in ci], color=c, alpha=0.18, lw=0)
            name = "overall (task-weighted)" if scope == "overall" and len(gyms) > 1 else (
                gyms[0] if scope == "overall" and gyms else scope)
            ns = sorted({(m["overall"] if scope == "overall" else m["gyms"].get(scope, {})).get("n", 0)
                         for m in metrics.values()})
            ax.set_title(f"{name} (n = {ns[0]}{' per run' if len(metrics) > 1 else ''})" if len(ns) == 1 else
                         f"{name} (n = {', '.join(map(str, ns))})")
            ax.set_xlabel("k: user-involved actions allowed")
            ax.set_ylabel("Pass@U-k")
            ax.set_ylim(-0.02, 1.02)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize=8, frameon=False)
        fig.suptitle(title or "Pareto frontier: Pass@U-k against k (bands: 95% bootstrap CI over tasks)",
                     fontsize=10)
        fig.tight_layout()
        return fig


def numeric_series(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Each numeric key of metric rows (``step`` and ``time`` excepted) as (steps, values).

    >>> numeric_series([{"step": 1, "loss": 2.0, "note": "x"}, {"step": 2, "loss": 1.5, "val/score": 0.1}])
    {'loss': ([1.0, 2.0], [2.0, 1.5]), 'val/score': ([2.0], [0.1])}
    """
    out: dict[str, tuple[list[float], list[float]]] = {}
    for i, row in enumerate(rows):
        step = row.get("step", i)
        if not isinstance(step, (int, float)) or isinstance(step, bool):
            continue
        for key, v in row.items():
            if key in ("step", "time") or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not math.isfinite(v):
                continue
            xs, ys = out.setdefault(key, ([], []))
            xs.append(float(step))
            ys.append(float(v))
    return out


def plot_training_curves(runs: dict[str, Sequence[dict[str, Any]]], *, max_panels: int = 24) -> Any | None:
    """One panel per numeric metric key (up to `max_panels`), one line per run; None if nothing to plot."""
    series = {label: numeric_series(rows) for label, rows in runs.items()}
    keys = sorted({k for s in series.values() for k in s})[:max_panels]
    if not keys:
        return None
    with plt.rc_context(_STYLE):
        fig, axes = _grid(len(keys), 4, (3.2, 2.3))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, key in zip(axes, keys, strict=True):
            for i, (label, s) in enumerate(series.items()):
                if key in s:
                    xs, ys = s[key]
                    ax.plot(xs, ys, lw=1.3, color=colors[i % len(colors)], marker="o" if len(xs) < 12 else None,
                            ms=3, label=label)
            ax.set_title(key)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        if len(runs) > 1:
            axes[0].legend(fontsize=7, frameon=False)
        fig.suptitle("training curves (metrics.jsonl)", fontsize=10)
        fig.tight_layout()
        return fig
