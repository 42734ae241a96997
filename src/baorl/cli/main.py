"""`baorl`: one command line over gyms, rollouts, training and evaluation.

Every subcommand explains itself with ``--help``. User errors (unknown gym or task, unreadable data,
a bad option) print one line naming the problem and exit with status 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from baorl.agents.base import Agent, AgentError
from baorl.cli.options import (
    add_local_model_args,
    add_simulator_client_args,
    char_cap,
    check_engine_options,
    engine_options,
    positive_int,
    simulator_options,
)

console = Console()
err = Console(stderr=True)

#: what a user-level failure looks like; everything else is a bug and keeps its traceback
_USER_ERRORS: tuple[type[BaseException], ...] = (KeyError, ValueError, FileNotFoundError, PermissionError,
                                                 AgentError)


def add_max_turn_chars(p: argparse.ArgumentParser) -> None:
    """``--max-turn-chars``: the per-turn text cap of text-level agents' records (False when not given)."""
    from baorl.textcap import MAX_TURN_CHARS

    p.add_argument("--max-turn-chars", type=char_cap, default=False, metavar="N",
                   help=f"scripted:/openai: agents: keep at most N characters of each turn's content, think and "
                   f"feedback in the records, cutting longer text with a marker (default {MAX_TURN_CHARS:,}; 0: no cap)")


def _add_gym_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="PATH", help="UserRL data file for the gym (default: baorl's embedded set)")
    p.add_argument("--split", default="test", choices=["train", "test", "all"],
                   help="split of the embedded set (ignored with --data)")
    p.add_argument("--simulator", metavar="SPEC", default=None,
                   help="user simulator: 'offline' (default where the gym needs one) or 'openai:MODEL'")
    p.add_argument("--simulator-base-url", metavar="URL", default=None,
                   help="OpenAI-compatible base URL of the simulator (default: $OPENAI_BASE_URL)")
    add_simulator_client_args(p)


def _make_user(gym_name: str, args: argparse.Namespace) -> Any:
    from baorl.users import user_for

    return user_for(gym_name, args.simulator, **(simulator_options(args) or {}))


# ---- baorl gyms ---------------------------------------------------------------------------------
def cmd_gyms(args: argparse.Namespace) -> int:
    from baorl.gyms import gym_class, load_tasks, registry

    table = Table(title="baorl gyms", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                  caption="T: turn limit · user: user-involved choices · offline~: approximate (sentence embeddings)")
    for col in ("id", "T", "user", "simulator", "embedded", "UserRL file"):
        table.add_column(col, no_wrap=True)
    for name, s in sorted(registry().items()):
        cls = gym_class(name)
        try:
            sizes = f"{len(load_tasks(name, split='train'))}/{len(load_tasks(name, split='test'))}"
        except ValueError:
            sizes = "none"
        table.add_row(s.id, str(cls.default_max_turns), ", ".join(sorted(cls.user_choices)), s.simulator, sizes,
                      s.userrl_file)
    console.print(table)
    for s in sorted(registry().values(), key=lambda s: s.id):
        console.print(f"  [bold]{s.id}[/]: {s.summary}", highlight=False)
    if args.data:
        name, _, path = args.data.partition("=")
        console.print(f"{name}: {len(load_tasks(name, path))} tasks in {path}")
    return 0


# ---- baorl play ---------------------------------------------------------------------------------
class _Echo(Agent):
    """Shows what a scripted agent sees and what it outputs, turn by turn."""

    def __init__(self, inner: Agent) -> None:
        self.inner, self.name = inner, inner.name

    def start(self, system_prompt: str, task_prompt: str, info: dict[str, Any]) -> Any:
        return self.inner.start(system_prompt, task_prompt, info)

    def respond(self, observation: str, state: Any) -> tuple[Any, Any]:
        console.print(observation, markup=False, highlight=False, style="green", soft_wrap=True)
        out, state = self.inner.respond(observation, state)
        console.print(out, markup=False, highlight=False, style="cyan", soft_wrap=True)
        return out, state


def cmd_play(args: argparse.Namespace) -> int:
    from baorl.agents import make_agent
    from baorl.agents.scripted import HumanAgent
    from baorl.gyms import gym_class, load_tasks, make
    from baorl.records import write_episodes
    from baorl.runs.play import aplay_episode

    gym_cls = gym_class(args.gym)
    task = args.task or load_tasks(args.gym, args.data, args.split)[0].id
    gym = make(args.gym, task, args.data, split=args.split, user=_make_user(gym_cls.name, args),
               max_turns=args.max_turns)
    obs, info = gym.reset(seed=args.seed)
    console.rule(f"[bold]{gym_cls.name}[/] task {info['task_id']} · {info['max_turns']} turns · "
                 f"simulator: {info['simulator']}")
    console.print("[bold]system prompt[/]", style="dim")
    console.print(info["system_prompt"], markup=False, highlight=False, soft_wrap=True)
    console.rule(style="dim")

    if args.agent:
        agent: Agent = _Echo(make_agent(args.agent))
    else:
        agent = HumanAgent(read=lambda p: console.input(f"[bold cyan]{p}[/]"),
                           show=lambda o: console.print(o, markup=False, highlight=False, style="green", soft_wrap=True))
        console.print("type one call per turn: [action] …, [search] …, [answer] … or [finish]",
                      markup=False, style="dim")

    ep = asyncio.run(aplay_episode(gym, agent, seed=args.seed, policy=args.agent or "human",
                                   end_on_no_tool_call=bool(args.agent)))
    console.print(ep.turns[-1].feedback if ep.turns else "", markup=False, highlight=False, style="green", soft_wrap=True)
    console.rule()
    console.print(f"termination: [bold]{ep.termination}[/] · score {ep.score:g} · turns {len(ep.turns)} · "
                  f"user-involved actions {ep.user_actions}")
    if args.out:
        write_episodes(args.out, [ep], append=True)
        console.print(f"record appended to {args.out}")
    return 0


# ---- baorl data ---------------------------------------------------------------------------------
def cmd_data(args: argparse.Namespace) -> int:
    from baorl.gyms.function_data import generate_tasks, write_tasks

    tasks = generate_tasks(n=args.n, seed=args.seed)
    write_tasks(args.out, tasks)
    console.print(f"wrote {len(tasks)} Function tasks (seed {args.seed}) to {args.out}")
    return 0


# ---- baorl rollout ------------------------------------------------------------------------------
def cmd_rollout(args: argparse.Namespace) -> int:
    from baorl.cli.progress import episode_bar
    from baorl.runs.runner import run_rollout

    out = Path(args.out)
    engine = engine_options(args)
    check_engine_options(args.agent, engine)
    if args.max_turn_chars is not False and args.agent.startswith("hf:"):
        raise ValueError("--max-turn-chars applies to scripted: and openai: agents (hf: turns are bounded by "
                         "--max-new-tokens)")
    sim = simulator_options(args)
    with episode_bar(console, f"{args.gym} · {args.agent}") as bar:
        eps = run_rollout(
            agent=args.agent, gym=args.gym, out=out, data=args.data, split=args.split, simulator=args.simulator,
            simulator_options=sim,
            limit=args.n, seed=args.seed, concurrency=args.concurrency, engine_options=engine,
            save_tokens=args.save_tokens,
            agent_options={"base_url": args.agent_base_url} if args.agent_base_url else None,
            on_done=bar.done, on_total=bar.total,
            **({} if args.max_turn_chars is False else {"max_turn_chars": args.max_turn_chars}),
        )
    if not eps:
        console.print(f"nothing to do: every task is already in {out}")
        return 0
    errors = [e for e in eps if e.termination == "simulator_error"]
    scored = [e for e in eps if e.termination != "simulator_error"]  # a simulator failure is not the agent's
    k = len(scored)
    if k:
        console.print(f"{k} episodes · score {sum(e.score for e in scored) / k:.3f} · success "
                      f"{sum(e.success for e in scored) / k:.3f} · user actions/ep "
                      f"{sum(e.user_actions for e in scored) / k:.2f} · records appended to {out}", highlight=False)
    if errors:
        from rich.markup import escape

        last = getattr(errors[-1], "simulator_error", None) or "(no message recorded)"
        console.print(f"[yellow]simulator errors:[/] {len(errors)} episode{'s' if len(errors) != 1 else ''} ended in "
                      f"simulator_error (recorded in {escape(str(out))}, not scored; rerun the same command to play "
                      f"{'them' if len(errors) != 1 else 'it'} again); the last error: {escape(last)}", highlight=False)
    return 0


# ---- baorl quickstart ---------------------------------------------------------------------------
def cmd_quickstart(args: argparse.Namespace) -> int:
    from baorl.cli.quickstart import Sizes, run_quickstart

    given = {k: v for k, v in (("sft_steps", args.sft_steps), ("rl_steps", args.rl_steps)) if v is not None}
    return run_quickstart(out=Path(args.out), n=args.n, sizes=Sizes(**given))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="baorl",
        description="Train and evaluate proactive multi-turn LLM agents with BAO.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'baorl COMMAND --help' for each command's options.",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("gyms", help="list the gyms, their tasks and data sources",
                       description="List every registered gym: what it is, its turn limit T, which choices "
                                   "involve the user, what simulator it needs, and its task sources.")
    p.add_argument("--data", metavar="GYM=PATH", help="also count the tasks in a UserRL data file")
    p.set_defaults(func=cmd_gyms)

    p = sub.add_parser("play", help="play a task in the terminal, seeing exactly what an agent sees",
                       description="Play one task of a gym yourself (type '[action] ...', '[answer] ...'), "
                                   "or watch a scripted agent play it with --agent.")
    p.add_argument("gym", help="gym name or id (see 'baorl gyms')")
    p.add_argument("--task", metavar="ID", help="task id (default: the first task of the source)")
    _add_gym_source(p)
    p.add_argument("--agent", metavar="SPEC", help="let a scripted agent play, e.g. scripted:function-solver")
    p.add_argument("--max-turns", type=int, default=None, help="override the gym's turn limit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE", help="append the episode record to this JSONL file")
    p.set_defaults(func=cmd_play)

    p = sub.add_parser("rollout", help="run an agent on a gym split and write episode records",
                       description="Play one episode per task with any agent (hf:embedded, hf:PATH, openai:MODEL, "
                                   "scripted:NAME) and append the records to --out. Rerunning skips the tasks "
                                   "already recorded, so an interrupted rollout resumes where it stopped.")
    p.add_argument("--agent", required=True, metavar="SPEC", help="hf:embedded, hf:PATH, openai:MODEL or scripted:NAME")
    p.add_argument("--gym", required=True, help="gym name or id")
    _add_gym_source(p)
    p.add_argument("--out", required=True, metavar="FILE", help="episode records (JSONL), appended to")
    p.add_argument("--n", type=positive_int, default=None, help="only the first N tasks (N >= 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--agent-base-url", metavar="URL", help="base URL for openai: agents (default $OPENAI_BASE_URL)")
    p.add_argument("--concurrency", type=positive_int, default=16,
                   help="episodes in flight for scripted/API agents (>= 1; default 16)")
    add_max_turn_chars(p)
    add_local_model_args(p, "0 for greedy (the default for hf: agents here)")
    p.add_argument("--save-tokens", action="store_true",
                   help="also write prompt/response token ids, loss mask, log-probs and turn spans")
    p.set_defaults(func=cmd_rollout)

    from baorl.serve import add_serve_parser

    add_serve_parser(sub)

    # subcommands defined beside their code
    for module in ("teach", "sft", "train", "evaluate"):
        importlib.import_module(f"baorl.cli.{module}").add_parsers(sub)

    p = sub.add_parser("data", help="generate baorl's embedded task sets",
                       description="Generate the embedded Function task set (UserRL's functions.json format).")
    p.add_argument("kind", choices=["function"], help="which task set")
    p.add_argument("--n", type=int, default=538, help="number of tasks (the benchmark has 538)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE", required=True, help="output JSON file")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("quickstart", help="the whole BAO pipeline at small scale on the embedded default",
                       description="Teacher data, SFT warm start, BAO RL and the UserRL baseline from the same "
                                   "start, evaluation of base/SFT/baseline/BAO on held-out Function tasks, and the "
                                   "comparison report, on the embedded SmolLM2-135M and a CPU (17-26 minutes on 2 "
                                   "cores, by CPU). Rerunning skips the stages already done.")
    p.add_argument("--out", default="runs/quickstart", help="output directory")
    p.add_argument("--n", type=positive_int, default=None, help="evaluation tasks (default 8)")
    p.add_argument("--sft-steps", type=int, default=None, help="SFT optimiser steps, one conversation each (default 30)")
    p.add_argument("--rl-steps", type=int, default=None, help="RL optimiser steps per run (default 1)")
    p.set_defaults(func=cmd_quickstart)
    return ap


def main(argv: list[str] | None = None) -> int:
    from baorl.provenance import set_command

    set_command(["baorl", *(sys.argv[1:] if argv is None else argv)])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _USER_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        err.print(Text.assemble((f"baorl {args.command}: error: ", "bold red"), str(msg)))
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
