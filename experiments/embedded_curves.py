"""Training curves of the embedded-tier runs, every seed of every policy on one figure.

    python experiments/embedded_curves.py runs/embedded --out docs/results/embedded-tier-seeds/curves.png

Reads RUN/metrics.jsonl of each run directory named POLICY-sSEED under the given folder and draws,
per optimiser step, the curves the README reports: the episodes' task score, user rate, shaped
penalty (what BAO's regularisers took), the share clipped by the token budget, the share that ended
without a tool call, and turns per episode (what the over-thinking penalty acts on). Each point is
the mean over that step's 16 training episodes (temperature 1), so single steps are noisy.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from embedded_cost import steps_of  # noqa: E402  (this folder: the script's own directory is on sys.path)

PANELS = (("episode/score", "task score"), ("episode/user_rate", "user rate"),
          ("episode/shaped_penalty", "shaped penalty (shaped - raw)"),
          ("episode/ended_token_budget", "share clipped by the budget"),
          ("episode/ended_no_tool_call", "share ended without a tool call"), ("episode/turns", "turns per episode"))
STYLES = ("-", "--", ":", "-.")


def read_runs(root: Path) -> dict[str, dict[int, list[dict]]]:
    runs: dict[str, dict[int, list[dict]]] = {}
    for d in sorted(root.iterdir()):
        m = re.fullmatch(r"(.+)-s(\d+)", d.name)
        if m and (d / "metrics.jsonl").is_file():
            runs.setdefault(m.group(1), {})[int(m.group(2))] = steps_of(d)  # a replayed step once
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    runs = read_runs(args.root)
    if not runs:
        raise SystemExit(f"{args.root}: no POLICY-sSEED run directories with metrics.jsonl")
    fig, grid = plt.subplots(2, 3, figsize=(15.0, 7.0))
    axes = grid.flat
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (key, title), ax in zip(PANELS, axes, strict=True):
        for c, (policy, seeds) in enumerate(sorted(runs.items())):
            for seed, rows in sorted(seeds.items()):
                pts = [(r["step"], r[key]) for r in rows if key in r]
                if pts:
                    ax.plot(*zip(*pts, strict=True), STYLES[seed % len(STYLES)], color=colours[c % len(colours)],
                            marker="o", ms=3, label=f"{policy} s{seed}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimiser step")
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center right", fontsize=9, title="policy, training seed")
    fig.suptitle("training episodes per step (16 per step, temperature 1): every policy and seed", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
