"""``baorl teach`` (teacher episodes -> SFT data) and ``baorl behaviour`` (the behaviour checker)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

console = Console()


def cmd_teach(args: argparse.Namespace) -> int:
    from baorl.cli.options import simulator_options
    from baorl.cli.progress import episode_bar
    from baorl.teach.run import export_sft, teach, teach_paths

    if args.export_only:
        paths = teach_paths(args.out)
        if not paths["records"].exists():
            raise FileNotFoundError(f"{paths['records']}: no such records file to export")
        records, kept = export_sft(paths["records"], keep=args.keep, data=args.data)
        console.print(f"{records} records, {kept} kept ({args.keep}) -> {paths['sft']}, {paths['sharegpt']}",
                      highlight=False)
        return 0
    if not args.teacher:
        raise ValueError("--teacher is required (function-solver, telepathy-questioner or openai:MODEL)")
    options: dict[str, Any] = {}
    if args.teacher.startswith("openai:"):
        options = {k: v for k, v in {"base_url": args.base_url, "temperature": args.temperature,
                                     "max_tokens": args.max_tokens, "timeout": args.timeout}.items() if v is not None}
    elif any(v is not None for v in (args.base_url, args.temperature, args.max_tokens, args.timeout)):
        raise ValueError("--base-url, --temperature, --max-tokens and --timeout apply to openai: teachers only")
    schedule = {k: v for k, v in {"deadline": args.deadline, "probes": args.probes,
                                  "concise": args.concise or None}.items() if v is not None}
    if schedule:
        if args.teacher.removeprefix("scripted:") != "function-solver":
            raise ValueError("--deadline, --probes and --concise apply to the function-solver teacher only")
        options = schedule
    with episode_bar(console, f"{args.gym} · {args.teacher}") as bar:
        summary = teach(
            gym=args.gym, teacher=args.teacher, out=args.out, n=args.n, data=args.data, split=args.split,
            simulator=args.simulator,
            simulator_options=simulator_options(args),
            keep=args.keep, seed=args.seed, concurrency=args.concurrency, retries=args.retries,
            max_turns=args.max_turns, teacher_options=options, on_done=bar.done, on_total=bar.total,
        )
    if summary.skipped:
        console.print(f"{summary.skipped} tasks already in {args.out}: skipped", highlight=False)
    console.print(summary.line(), highlight=False)
    return 0


def cmd_behaviour(args: argparse.Namespace) -> int:
    from baorl.records import read_episodes
    from baorl.teach.checker import BehaviourReport, behaviour_table, check_episodes

    groups: dict[str, BehaviourReport] = {}
    names = [p.name for p in args.records]
    for path in args.records:
        name = path.name if names.count(path.name) == 1 else str(path)
        episodes = read_episodes(path)
        keys: dict[tuple[str, str], list] = {}
        for ep in episodes:
            keys.setdefault((ep.gym, ep.policy), []).append(ep)
        if not keys:
            keys[("", "")] = []
        for (gym, policy), eps in keys.items():
            label = name if len(keys) == 1 else f"{name} [{gym} · {policy}]"
            groups[label] = check_episodes(eps)
    if args.json:
        print(json.dumps({"groups": {k: r.to_dict() for k, r in groups.items()}}, indent=2))
    else:
        console.print(behaviour_table(groups))
    return 0


def probe_range(text: str) -> tuple[int, int]:
    """``LO-HI`` (or ``K``) as ``(lo, hi)``, for ``--probes``.

    >>> probe_range("1-3"), probe_range("2")
    ((1, 3), (2, 2))
    """
    lo, _, hi = text.partition("-")
    try:
        out = (int(lo), int(hi or lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI or K (e.g. 1-3), got {text!r}") from None
    if not 0 <= out[0] <= out[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= LO <= HI, got {text!r}")
    return out


def add_parsers(sub: Any) -> None:
    """Register ``teach`` and ``behaviour`` on the `baorl` subparsers."""
    from baorl.cli.options import add_simulator_client_args, positive_int

    p = sub.add_parser(
        "teach", help="play a teacher on a gym and write SFT data (behaviour enhancement)",
        description="Play one episode per task with a teacher (function-solver, telepathy-questioner, or "
                    "openai:MODEL prompted to show memory / hypotheses / plan), append the records to --out, keep "
                    "the episodes passing --keep, and write them as SFT conversations: OUT.sft.jsonl (OpenAI "
                    "messages with tool calls, for TRL / baorl sft), OUT.sharegpt.jsonl plus dataset_info.json "
                    "(LLaMA-Factory). Failed attempts go to OUT.failures.jsonl; rerunning skips recorded tasks.")
    p.add_argument("--gym", required=True, help="gym name or id")
    p.add_argument("--teacher", metavar="T", help="function-solver, telepathy-questioner or openai:MODEL")
    p.add_argument("--n", type=positive_int, default=None, help="only the first N tasks of the source (N >= 1)")
    p.add_argument("--out", required=True, metavar="FILE", help="episode records (JSONL), e.g. teach/function.jsonl")
    p.add_argument("--data", metavar="PATH", help="UserRL data file for the gym (default: baorl's embedded set)")
    p.add_argument("--split", default="train", choices=["train", "test", "all"],
                   help="split of the embedded set (ignored with --data; default train)")
    p.add_argument("--simulator", metavar="SPEC", default=None,
                   help="user simulator: 'offline' (default where the gym needs one) or 'openai:MODEL'")
    p.add_argument("--simulator-base-url", metavar="URL", default=None, help="base URL of an openai: simulator")
    add_simulator_client_args(p)
    p.add_argument("--keep", default="success", help="which episodes become SFT data: success (default), all, "
                   "score>X or score>=X")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=positive_int, default=8, help="episodes in flight at once (>= 1)")
    p.add_argument("--retries", type=int, default=2,
                   help="extra attempts for a task whose teacher endpoint failed or returned a malformed call")
    p.add_argument("--max-turns", type=int, default=None, help="override the gym's turn limit")
    g = p.add_argument_group("the function-solver's budget schedule (default: off, plan for the gym's limit)")
    g.add_argument("--deadline", type=positive_int, default=None, metavar="D",
                   help="plan for D turns: answer by turn D; after an answer rejected on turn D-1 or later, stop with [finish]")
    g.add_argument("--probes", type=probe_range, default=None, metavar="LO-HI",
                   help="answer after at most k probes since the last answer, k drawn per task from LO..HI")
    g.add_argument("--concise", action="store_true", help="the short think text (same content, ~3/4 of the tokens)")
    g = p.add_argument_group("LLM teachers (openai:MODEL)")
    g.add_argument("--base-url", metavar="URL", default=None, help="endpoint (default $OPENAI_BASE_URL)")
    g.add_argument("--temperature", type=float, default=None, help="sampling temperature (default 0)")
    g.add_argument("--max-tokens", type=int, default=None, help="token limit per reply")
    g.add_argument("--timeout", type=float, default=None, help="seconds per request (default 120)")
    p.add_argument("--export-only", action="store_true",
                   help="play nothing: rebuild the SFT files from the records in --out (e.g. with another --keep)")
    p.set_defaults(func=cmd_teach)

    p = sub.add_parser(
        "behaviour", help="measure memory / hypotheses / plan, repeated queries and answer-after-answer",
        description="Read episode records (any policy) and report, per file (and per gym and policy inside it), "
                    "how often turns' think blocks carry memory, hypotheses and a plan, how often a query "
                    "repeats an earlier one, and how often an answer directly follows an answer.")
    p.add_argument("records", nargs="+", type=Path, help="episode records files (JSONL)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    p.set_defaults(func=cmd_behaviour)
