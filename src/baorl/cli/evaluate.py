"""`baorl eval`, `baorl score`, `baorl compare`, `baorl report`: evaluation, metrics and reports.

Registered by one line in `baorl.cli.main.build_parser`; the work is done by `baorl.evaluation`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from baorl.cli.options import (
    add_local_model_args,
    char_cap,
    check_engine_options,
    engine_options,
    positive_int,
    simulator_options,
)

#: bootstrap resamples by default (`baorl.evaluation.metrics.N_BOOT`; not imported here, to keep `baorl --help` light)
N_BOOT = 1000

console = Console()
if not console.is_terminal:  # files and pipes: no terminal width to respect
    console = Console(width=200)


def _add_scoring(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scoring")
    g.add_argument("--k", type=int, default=None, metavar="K",
                   help="largest k of Pass@U-k (default: 5, raised to cover every successful episode)")
    g.add_argument("--bootstrap", type=int, default=N_BOOT, metavar="B",
                   help=f"bootstrap resamples of the tasks for the 95%% intervals (default {N_BOOT}; 0: none)")
    g.add_argument("--bootstrap-seed", type=int, default=0, metavar="S", help="the bootstrap's seed (default 0)")


def _add_report_cap(p: argparse.ArgumentParser) -> None:
    from baorl.textcap import MAX_REPORT_CHARS

    p.add_argument("--max-report-chars", type=char_cap, default=MAX_REPORT_CHARS, metavar="N",
                   help=f"the report's episode browser shows at most N characters of each turn's content, think and "
                   f"feedback, cutting longer text with a marker (default {MAX_REPORT_CHARS:,}; 0: no cap)")


def metrics_table(rows: list[dict[str, Any]], metrics: dict[str, dict[str, Any]], *, title: str,
                  compare: bool) -> Table:
    """A rich table of `baorl.evaluation.report.summary_rows`: one row per metric, one column per run and gym.

    Each cell is the value and its 95% bootstrap interval; Pass@U-k rows are k = 1..K (K <= 6) or
    1, 2, 3 and K.
    """
    from baorl.evaluation.report import fmt, fmt_ci

    # value and interval on one line when the table fits the console, else on two
    wide = 20 + 20 * len(rows) <= console.width
    sep = " " if wide else "\n"
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1 if wide else 0), pad_edge=False,
                  title_justify="left", show_lines=not wide)
    table.add_column("metric", no_wrap=True, max_width=11)
    for r in rows:
        head = f"{r['run']}\n{r['scope']}" if compare else r["scope"]
        table.add_column(head, justify="right", overflow="fold", min_width=11)

    def cell(v: float | None, ci: Any) -> str:
        c = fmt_ci(ci) if sep == " " else fmt_ci(ci).replace(", ", ",")
        return f"{fmt(v)}{sep}[dim]{c}[/]" if c else fmt(v)

    def scope(r: dict[str, Any]) -> dict[str, Any]:
        m = metrics[r["run"]]
        return m["overall"] if r["scope"] == "overall" else m["gyms"][r["scope"]]

    K = max(r["K"] for r in rows) if rows else 0
    table.title = f"{title} · K = {K}"
    ks = list(range(1, K + 1)) if K <= 6 else [1, 2, 3, K]
    table.add_row("n", *[f"{r['n']} ({r['n_tasks']})" + (f" x{r['seeds']} seeds" if r["seeds"] > 1 else "")
                         for r in rows])
    for key, name in (("score", "score"), ("success", "success")):
        table.add_row(name, *[cell(r[key], r[f"{key}_ci"]) for r in rows])
    for k in ks:
        table.add_row(f"Pass@U-{k}", *[cell(scope(r)["pass_at_u"].get(str(k)), scope(r)["pass_at_u_ci"].get(str(k)))
                                       for r in rows])
    table.add_row("hypervolume", *[cell(r["hypervolume"], r["hypervolume_ci"]) for r in rows])
    table.add_row("user rate", *[cell(r["user_rate"], r["user_rate_ci"]) for r in rows])
    table.add_row("RTR", *[f"{fmt(r['rtr'])} [dim]({r['user_actions']})[/]" for r in rows])
    if any(r.get("simulator_errors") for r in rows):  # left out of every metric above
        table.add_row("sim. errors", *[str(r.get("simulator_errors", 0)) for r in rows])
    if compare:
        table.add_row("frontier", *["[green]yes[/]" if r["frontier"] else "no" for r in rows])
    return table


def print_simulator_errors(metrics: dict[str, dict[str, Any]], new: list[Any] | None = None) -> None:
    """Say which runs have episodes that ended in ``simulator_error`` (left out of their metrics) and,
    for episodes just played, the simulator's last error."""
    from baorl.evaluation.report import simulator_error_note

    for label, m in metrics.items():
        if m["overall"].get("simulator_errors"):
            console.print(f"[yellow]simulator errors:[/] {simulator_error_note(label, m)}", highlight=False)
    if new:
        from rich.markup import escape

        last = getattr(new[-1], "simulator_error", None) or "(no message recorded)"
        console.print(f"[yellow]simulator errors:[/] {len(new)} of the episodes just played; the last error: "
                      f"{escape(last)}", highlight=False)


def table_legend(compare: bool) -> str:
    """The line printed under `metrics_table`."""
    return ("[dim]value [95% bootstrap interval over tasks] · n: episodes (tasks) · RTR: share of user actions "
            "that raised the reward (their count)" + (" · frontier: Pass@U curve not dominated" if compare else "")
            + "[/]")


# ---- baorl eval ---------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from baorl.cli.progress import episode_bar
    from baorl.evaluation.report import summary_rows
    from baorl.evaluation.run import evaluate

    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    engine = engine_options(args)
    if args.temperature is not None and not args.agent.startswith("hf:"):
        raise ValueError("--temperature applies to hf: agents (openai: agents request 0, scripted ones are fixed)")
    check_engine_options(args.agent, engine)
    if args.max_turn_chars is not False and args.agent.startswith("hf:"):
        raise ValueError("--max-turn-chars applies to scripted: and openai: agents (hf: turns are bounded by "
                         "--max-new-tokens)")
    caps = {} if args.max_turn_chars is False else {"max_turn_chars": args.max_turn_chars}
    sim = simulator_options(args)
    seeds = args.seeds if args.seeds else [args.seed]
    sim_errors: list[Any] = []

    def done(ep: Any) -> None:
        bar.done(ep)
        if ep.termination == "simulator_error":
            sim_errors.append(ep)

    with episode_bar(console, f"{','.join(args.gym)} · {args.agent}", transient=True) as bar:
        metrics = evaluate(
            args.agent, args.gym, Path(args.out), data=args.data, split=args.split, simulator=args.simulator,
            simulator_options=sim,
            limit=args.n, seeds=seeds, concurrency=args.concurrency, engine_options=engine,
            agent_options={"base_url": args.agent_base_url} if args.agent_base_url else None,
            k=args.k, n_boot=args.bootstrap, boot_seed=args.bootstrap_seed, report=not args.no_report,
            on_done=done, on_total=bar.total, max_report_chars=args.max_report_chars, **caps,
        )
    out = Path(args.out)
    named = {out.name: metrics}
    rows = summary_rows(named)
    if rows:  # none when every episode ended in simulator_error
        console.print(metrics_table(rows, named, title=f"{args.agent} · {out}", compare=False))
        console.print(table_legend(False), highlight=False)
    print_simulator_errors(named, sim_errors)
    recorded = metrics["overall"]["n"] + metrics["overall"].get("simulator_errors", 0)
    played = f"{bar.n} episodes played" + (" (the others were already recorded)" if bar.n < recorded else "")
    console.print(f"{played} · records {out / 'episodes.jsonl'} · metrics {out / 'metrics.json'}"
                  + ("" if args.no_report else f" · report {out / 'report.html'}"), highlight=False)
    return 0


# ---- baorl score --------------------------------------------------------------------------------
def cmd_score(args: argparse.Namespace) -> int:
    from baorl.evaluation.report import summary_rows
    from baorl.evaluation.run import load_run, score_dir

    run = load_run(args.dir)
    metrics = score_dir(args.dir, k=args.k, n_boot=args.bootstrap, seed=args.bootstrap_seed,
                        out=Path(args.out) if args.out else None)
    target = Path(args.out) if args.out else run.records.parent / "metrics.json"  # type: ignore[union-attr]
    named = {run.label: metrics}
    rows = summary_rows(named)
    if rows:  # none when every episode ended in simulator_error
        console.print(metrics_table(rows, named, title=f"{run.records}", compare=False))
        console.print(table_legend(False), highlight=False)
    print_simulator_errors(named)
    console.print(f"metrics written to {target}", highlight=False)
    return 0


# ---- baorl compare / report ----------------------------------------------------------------------
def _parse_groups(specs: list[str]) -> dict[str, list[str]]:
    """``NAME=DIR1,DIR2,...`` options as ``{NAME: [DIR, ...]}``, in the order given.

    >>> _parse_groups(["bao=runs/a,runs/b", "base=runs/c"])
    {'bao': ['runs/a', 'runs/b'], 'base': ['runs/c']}
    """
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, eq, dirs = spec.partition("=")
        name = name.strip()
        parts = [d.strip() for d in dirs.split(",")]
        if not eq or not name or not all(parts):
            raise ValueError(f"--group {spec!r}: expected NAME=DIR1,DIR2,... (one directory per training seed)")
        if name in groups:
            raise ValueError(f"--group {name!r} given twice")
        groups[name] = parts
    return groups


def _parse_pairs(specs: list[str], groups: dict[str, Any]) -> list[tuple[str, str]]:
    """``A,B`` options as (A, B), checked against the group names."""
    pairs = []
    for spec in specs:
        names = [n.strip() for n in spec.split(",")]
        if len(names) != 2 or not all(names):
            raise ValueError(f"--pair {spec!r}: expected NAME,NAME2 (two --group names)")
        for n in names:
            if n not in groups:
                raise ValueError(f"--pair {spec!r}: no group {n!r}; the groups are {', '.join(groups) or 'none'}")
        if names[0] == names[1]:
            raise ValueError(f"--pair {spec!r}: pair two different groups")
        pairs.append((names[0], names[1]))
    return pairs


def _seed_table(t: Any) -> Table:
    """A rich table of one `baorl.evaluation.seeds.SeedTable` (cells as plain text, no markup).

    A value and its interval share a line when the table fits the console, else the interval goes below.
    """
    from rich.text import Text

    widths = [max(len(h), *(len(r[i]) for r in t.rows)) if t.rows else len(h) for i, h in enumerate(t.header)]
    wide = sum(widths) + 2 * len(widths) <= console.width
    table = Table(title=t.title, caption=t.note, box=box.SIMPLE_HEAD, title_justify="left", caption_justify="left",
                  pad_edge=False, show_lines=not wide)
    for i, h in enumerate(t.header):
        table.add_column(h, justify="left" if i == 0 or h in ("gym", "estimate", "verdict") else "right",
                         overflow="fold")
    for row in t.rows:
        table.add_row(*[Text(c if wide else c.replace(" [", "\n[")) for c in row])
    return table


def cmd_compare(args: argparse.Namespace) -> int:
    import json

    from baorl.evaluation.metrics import choose_k
    from baorl.evaluation.report import write_report
    from baorl.evaluation.run import load_run
    from baorl.evaluation.seeds import group_metrics, paired_difference, seed_table_markdown, seed_tables
    from baorl.records import atomic_write

    groups = _parse_groups(args.group or [])
    pairs = _parse_pairs(args.pair or [], groups)
    if not groups:
        if len(args.dirs) < 2:
            raise ValueError("compare needs at least two run directories")
        runs = [load_run(d, val=args.val) for d in args.dirs]
        summary = None
    else:
        seen: dict[Path, str] = {}
        members: dict[str, list[Any]] = {}
        for name, dirs in [*groups.items(), *[(None, [d]) for d in args.dirs]]:
            loaded = []
            for i, d in enumerate(dirs):
                run = load_run(d, val=args.val)
                where = f"group {name!r}" if name is not None else "the ungrouped directories"
                key = run.path.resolve()
                if key in seen:
                    raise ValueError(f"{d}: appears in {seen[key]} and in {where}; a directory belongs to one group")
                seen[key] = where
                if name is not None:
                    run.label = f"{name}/s{i}"
                loaded.append(run)
            if name is None:  # an ungrouped directory: a policy of its own (one run)
                name = loaded[0].label
                if name in members:
                    raise ValueError(f"{dirs[0]}: its name {name!r} is also a --group name or another directory's")
            members[name] = loaded
        runs = [r for rs in members.values() for r in rs]
        if len(runs) < 2:
            raise ValueError("compare needs at least two run directories")
        K = args.k if args.k is not None else max(choose_k(r.episodes) for r in runs)
        run_names = {n: [str(r.path) for r in rs] for n, rs in members.items()}
        summary = group_metrics({n: [r.episodes for r in rs] for n, rs in members.items()}, K=K,
                                n_boot=args.bootstrap, seed=args.bootstrap_seed, run_names=run_names)
        summary["pairs"] = [paired_difference([r.episodes for r in members[a]], [r.episodes for r in members[b]],
                                              n_boot=args.bootstrap, seed=args.bootstrap_seed, names=(a, b),
                                              run_names=(run_names[a], run_names[b])) for a, b in pairs]
        for n, rs in members.items():
            summary["groups"][n]["labels"] = [r.label for r in rs]
    rep = write_report(runs, Path(args.out), k=args.k, n_boot=args.bootstrap, seed=args.bootstrap_seed,
                       title=args.title, max_text_chars=args.max_report_chars, seed_groups=summary)
    console.print(metrics_table(rep.rows, rep.metrics, title="comparison", compare=True))
    console.print(table_legend(True), highlight=False)
    written = [str(rep.html)]
    if summary is not None:
        for t in seed_tables(summary, summary["pairs"]):
            console.print()
            console.print(_seed_table(t))
        stem = rep.html.with_name(rep.html.stem)
        js, md = Path(f"{stem}-seeds.json"), Path(f"{stem}-seeds.md")
        atomic_write(js, json.dumps(summary, indent=2) + "\n")
        atomic_write(md, seed_table_markdown(summary, summary["pairs"]))
        written += [str(js), str(md)]
    for n in rep.notes:
        console.print(f"[yellow]note:[/] {n}", highlight=False)
    console.print(f"report {' · '.join(written)} · plots {', '.join(str(p) for p in rep.plots)}", highlight=False)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from baorl.evaluation.report import write_report
    from baorl.evaluation.run import load_run

    run = load_run(args.dir, val=args.val)
    default = (run.path.parent / f"{run.path.stem}-report.html") if run.path.is_file() else run.path / "report.html"
    rep = write_report([run], Path(args.out) if args.out else default, k=args.k, n_boot=args.bootstrap,
                       seed=args.bootstrap_seed, title=args.title, max_text_chars=args.max_report_chars)
    if rep.rows:
        console.print(metrics_table(rep.rows, rep.metrics, title=run.label, compare=False))
        console.print(table_legend(False), highlight=False)
    print_simulator_errors(rep.metrics)
    console.print(f"report {rep.html} · plots {', '.join(str(p) for p in rep.plots)}", highlight=False)
    return 0


def add_parsers(sub: Any) -> None:
    """Register ``eval``, ``score``, ``compare`` and ``report`` on `baorl`'s subparsers."""
    from baorl.cli.main import _add_gym_source, add_max_turn_chars

    p = sub.add_parser(
        "eval", help="evaluate an agent on gym splits: records, metrics and a report",
        description="Play one greedy episode per task (and seed) with any agent (hf:embedded, hf:PATH, "
                    "openai:MODEL, scripted:NAME), then write OUT/episodes.jsonl, OUT/metrics.json (score, "
                    "Pass@U-k, user rate, RTR, hypervolume, with 95% bootstrap intervals) and OUT/report.html. "
                    "Rerunning the same command resumes: finished episodes are kept, an interrupted one is redone.")
    p.add_argument("--agent", required=True, metavar="SPEC", help="hf:embedded, hf:PATH, openai:MODEL or scripted:NAME")
    p.add_argument("--gym", required=True, nargs="+", metavar="GYM",
                   help="gym name(s) or id(s), or 'all'; several gyms also give task-weighted overall metrics")
    _add_gym_source(p)
    p.add_argument("--out", required=True, metavar="DIR", help="evaluation directory (created; resumed if it exists)")
    p.add_argument("--n", type=positive_int, default=None, help="only the first N tasks of each gym (N >= 1)")
    p.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                   help="several seeds: one episode per task and seed (adds per-seed intervals)")
    p.add_argument("--agent-base-url", metavar="URL", help="base URL for openai: agents (default $OPENAI_BASE_URL)")
    p.add_argument("--concurrency", type=positive_int, default=16,
                   help="episodes in flight for scripted/API agents (>= 1; default 16)")
    p.add_argument("--no-report", action="store_true", help="skip report.html and the plots")
    add_max_turn_chars(p)
    _add_report_cap(p)
    add_local_model_args(p, "sampling temperature (default 0: greedy)")
    _add_scoring(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("score", help="re-score a run from its episode records alone",
                       description="Recompute every metric of an evaluation directory, a training run's latest "
                                   "validation records, or a records file, and write metrics.json beside the records.")
    p.add_argument("dir", metavar="DIR", help="evaluation directory, training run directory or episodes .jsonl file")
    p.add_argument("--out", metavar="FILE", default=None, help="write the metrics here instead")
    _add_scoring(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("compare", help="compare runs: Pareto frontier, metrics table, one HTML report",
                       description="Score several runs with one shared K and write one self-contained HTML report "
                                   "(metrics table, Pareto frontier of Pass@U-k against k with 95% bands, training "
                                   "curves, episode browser) plus the plots as PNG and SVG beside it. The runs must "
                                   "cover the same gyms. --group NAME=DIR1,DIR2,... gathers the runs of one policy "
                                   "trained with several seeds (each run is shown as NAME/sI); --pair NAME,NAME2 "
                                   "compares two groups seed by seed.")
    p.add_argument("dirs", nargs="*", metavar="DIR",
                   help="evaluation or training run directories (or records files); with --group, each is a "
                        "policy of its own (one run)")
    p.add_argument("--out", required=True, metavar="FILE", help="the HTML report to write, e.g. report.html")
    p.add_argument("--group", action="append", metavar="NAME=DIR1,DIR2,...",
                   help="a policy trained with several training seeds, one directory per seed (repeatable): adds "
                        "the mean over seeds with a Student-t 95%% interval and the pooled metrics with a bootstrap "
                        "interval over tasks, written to OUT_STEM-seeds.json and OUT_STEM-seeds.md")
    p.add_argument("--pair", action="append", metavar="NAME,NAME2",
                   help="paired comparison of two groups of as many runs (pair i = run i of each, the same training "
                        "seed): differences NAME - NAME2 with t intervals over pairs and a paired bootstrap over "
                        "tasks (repeatable)")
    p.add_argument("--title", default=None, help="the report's title")
    p.add_argument("--val", default="latest", help="training runs: validation records latest, best or STEP")
    _add_scoring(p)
    _add_report_cap(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="write the HTML report of one run (evaluation or training)",
                       description="One self-contained HTML file: metrics, Pareto plot, training curves (from "
                                   "metrics.jsonl) and an episode browser. Training runs use their latest (or --val) "
                                   "validation records.")
    p.add_argument("dir", metavar="DIR", help="evaluation directory, training run directory or records file")
    p.add_argument("--out", metavar="FILE", default=None, help="default DIR/report.html")
    p.add_argument("--title", default=None, help="the report's title")
    p.add_argument("--val", default="latest", help="training runs: validation records latest, best or STEP")
    _add_scoring(p)
    _add_report_cap(p)
    p.set_defaults(func=cmd_report)
