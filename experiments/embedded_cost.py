"""What each embedded-tier run cost, and which code ran it: a markdown table from the run directories.

    python experiments/embedded_cost.py runs/embedded --out docs/results/embedded-tier-seeds/cost.md

For every run directory POLICY-sSEED with a metrics.jsonl: the steps done ("(running)" until the run
has written final/), the wall time of all steps (the trainer's `step_time`: rollout, advantages and
update) and its mean [min, max] over the steps after the first (step 1 of a run pays one-off costs
and, for the seed-0 pair, ran beside the test suite), the rollout's share, how many update passes
were skipped as null (every advantage 0), the training episodes solved, peak RSS, and from
provenance.jsonl the commit of each start and resume and whether gradient checkpointing was on. A
step played again after a resume counts once (its last record). Nothing here is estimated: every
figure is read from what the runs logged.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path


def steps_of(run: Path) -> list[dict]:
    """The run's per-step records, one per step (a replayed step keeps its last record), in order."""
    last: dict[int, dict] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if "episode/score" in row:
                last[int(row["step"])] = row
    return [last[k] for k in sorted(last)]


def segments(run: Path) -> list[str]:
    """`commit (from step N, checkpointing on|off)` for each start and resume in provenance.jsonl."""
    out = []
    path = run / "provenance.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        row = json.loads(line)
        if row.get("event") not in ("start", "resume"):
            continue
        argv = row.get("argv") or []
        gc = next((a.split("=", 1)[1] for a in argv if a.startswith("train.gradient_checkpointing=")), None)
        if gc is None:  # not set on the command line: the run's saved config decides
            cfg = (run / "config.yaml").read_text() if (run / "config.yaml").is_file() else ""
            m = re.search(r"gradient_checkpointing:\s*(\w+)", cfg)
            gc = m.group(1) if m else "?"
        commit = (row.get("commit") or "?")[:7] + ("+" if row.get("dirty") else "")
        gc_word = {"true": "on", "false": "off"}.get(str(gc).lower(), str(gc))
        out.append(f"{commit} from step {int(row.get('from_step') or 0) + 1}, checkpointing {gc_word}")
    return out


def summarise(run: Path, episodes_per_step: int = 16) -> dict:
    rows = steps_of(run)
    times = [float(r["step_time"]) for r in rows if r.get("step_time") is not None]
    later = times[1:]
    return {
        "run": run.name,
        "steps": len(rows),
        "finished": (run / "final" / "config.json").is_file(),  # what `baorl train` writes last
        "total_s": sum(times),
        "later": (statistics.mean(later), min(later), max(later)) if later else None,
        "rollout_s": statistics.mean(float(r["time/rollout_s"]) for r in rows) if rows else None,
        "null": [float(r["update/null_pass_frac"]) for r in rows if "update/null_pass_frac" in r],
        "solved": sum(round(float(r["episode/success"]) * episodes_per_step) for r in rows),
        "episodes": episodes_per_step * len(rows),
        "peak_gib": max((float(r.get("memory/peak_rss_gib", 0.0)) for r in rows), default=None),
        "code": segments(run),
    }


def table(root: Path) -> str:
    runs = sorted((d for d in root.iterdir() if re.fullmatch(r".+-s\d+", d.name) and (d / "metrics.jsonl").is_file()),
                  key=lambda d: (d.name.rsplit("-s", 1)[0], int(d.name.rsplit("-s", 1)[1])))
    lines = [
        "| run | steps | wall time, all steps | per step after the first: mean [min, max] | rollout per step, mean "
        "| update passes skipped as null | training episodes solved | peak RSS | code (start and resumes) |",
        "|---|---:|---:|---|---:|---|---:|---:|---|",
    ]
    for d in runs:
        s = summarise(d)
        later = "{:,.0f} s [{:,.0f}, {:,.0f}]".format(*s["later"]) if s["later"] else "n/a"
        null = (f"{min(s['null']):.0%}–{max(s['null']):.0%} a step (mean {statistics.mean(s['null']):.0%})"
                if s["null"] else "n/a (not logged)")
        steps = f"{s['steps']}" + ("" if s["finished"] else " (running)")
        lines.append(
            f"| {s['run']} | {steps} | {s['total_s']:,.0f} s | {later} | {s['rollout_s']:,.0f} s | {null} "
            f"| {s['solved']} of {s['episodes']} | {s['peak_gib']:.1f} GiB | {'; '.join(s['code']) or 'n/a'} |")
    lines += ["", "Peak RSS: the largest `memory/peak_rss_gib` a run logged, each process's peak resident memory "
              "since it started (a resume starts anew). Before 85adfb7 the trainer read it when a step's rollout "
              "ended, so the last update of each process is not in it; from 85adfb7 on it is read when "
              "the step is logged, after its update."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="the folder holding the POLICY-sSEED run directories")
    p.add_argument("--out", type=Path, default=None, help="write the table here (default: print it)")
    args = p.parse_args()
    text = table(args.root)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
