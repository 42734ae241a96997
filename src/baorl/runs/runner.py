"""Run an agent over a gym's tasks and write episode records: what `baorl rollout` does.

Scripted and API agents are played by the text-level loop (`baorl.runs.play`), many episodes
at once; local models (``hf:...``) by the batched token-level engine (`baorl.rollout.engine`).
Records are appended as each episode finishes, so an interrupted run loses nothing: run it again
and the tasks already in the output file are skipped (a half-written last line is redone).

Resuming never endangers finished work: a rerun of a complete run writes nothing, and a file is
rewritten only when something must go (a torn last line, episodes that ended in
``simulator_error``, which are played again), atomically (`baorl.records.write_jsonl`).

A records file knows what it holds: ``FILE.meta.json`` beside it stores the run's identity (gym,
split or data file, agent, seed, simulator, the engine options that change episodes), and a rerun
whose identity differs, or whose records say another gym, agent, seed or simulator, is refused
with the differing field named.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from baorl.config import check_positive_int
from baorl.gyms import gym_class, load_tasks
from baorl.records import Episode, atomic_write, read_episode_lines, write_episodes, write_jsonl
from baorl.textcap import MAX_TURN_CHARS, check_limit
from baorl.users import user_for

#: engine options that change speed, not the episodes: they may differ between a run and its resumption
SPEED_ONLY = frozenset({"batch_size", "prefill_tokens", "shared_prefix", "pack_weights"})
#: agent options that change how an endpoint is reached, not the episodes
_AGENT_TRANSPORT = frozenset({"base_url", "api_key", "timeout", "max_retries", "backoff"})
#: what a records file's identity holds, in the order a mismatch is reported
IDENTITY_KEYS = ("gym", "split", "data", "agent", "seed", "simulator", "engine_options", "agent_options",
                 "save_tokens")


def meta_path(out: Path) -> Path:
    """The sidecar that names what a records file holds: ``FILE.meta.json``."""
    out = Path(out)
    return out.with_name(out.name + ".meta.json")


def run_identity(*, agent: str, gym: str, data: str | None = None, split: str = "test",
                 simulator: str | None = None, seed: int = 0, engine_options: dict[str, Any] | None = None,
                 agent_options: dict[str, Any] | None = None, save_tokens: bool = False) -> dict[str, Any]:
    """What makes two rollouts the same run, as stored in ``FILE.meta.json``.

    Endpoint addresses, keys, timeouts and retries are left out (the same model may move), as are
    options that only change speed (`SPEED_ONLY`); a larger ``--n`` is the same run with more tasks.
    """
    cls = gym_class(gym)
    identity = {
        "gym": cls.name,
        "split": None if data else split,
        "data": str(Path(data).resolve()) if data else None,
        "agent": agent,
        "seed": int(seed),
        "simulator": (simulator or "offline") if cls.needs_user else None,
        "engine_options": {k: v for k, v in sorted((engine_options or {}).items()) if k not in SPEED_ONLY},
        "agent_options": {k: v for k, v in sorted((agent_options or {}).items()) if k not in _AGENT_TRANSPORT},
        "save_tokens": bool(save_tokens),
    }
    # as it reads back from the JSON file: a tuple option (e.g. probes (1, 2)) compares as a list
    return json.loads(json.dumps(identity))


def local_precision(engine_options: dict[str, Any] | None) -> dict[str, Any]:
    """A local model's engine options with its precision resolved (``dtype``: ``auto``, the default,
    is bf16 where the CPU or GPU has bf16 units: `baorl.models.precision`). The resolved dtype is part
    of the run's identity when it is not float32 (so records from before precisions existed, all
    float32, still match); an ``auto`` run resumed on a machine that resolves it otherwise is refused."""
    from baorl.models.precision import resolve_dtype

    options = dict(engine_options or {})
    dtype = resolve_dtype(options.pop("dtype", None) or "auto", what="local model")
    if dtype != "float32":
        options["dtype"] = dtype
    return options


def _label(simulator: str | None) -> str:
    """The `simulator` field records of a simulator spec carry."""
    if simulator is None:
        return "none"
    return simulator[len("openai:"):] if simulator.startswith("openai:") else simulator


def check_identity(out: Path, identity: dict[str, Any], lines: Any = None) -> None:
    """Refuse to resume `out` with another run: its sidecar's identity or its records' own fields
    (gym, policy, seed, simulator) differ from `identity`.

    Raises:
        ValueError: naming the file (and line), the differing field and the fix (another ``--out``).
    """
    out = Path(out)
    meta = meta_path(out)
    if meta.is_file():
        try:
            old = json.loads(meta.read_text(encoding="utf-8"))
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise ValueError(f"{meta}: not a valid run identity ({e}); remove it or use another --out") from e
        for key in IDENTITY_KEYS:
            if key in old and key in identity and old[key] != identity[key]:
                raise ValueError(f"{meta}: {out} holds another run's records ({key} {old[key]!r}, now "
                                 f"{identity[key]!r}); use another --out")
    if not out.exists():
        return
    if lines is None:
        lines = read_episode_lines(out, skip_partial_tail=True)
    want = {"gym": identity["gym"], "policy": identity["agent"], "seed": identity["seed"],
            "simulator": _label(identity["simulator"])}
    for number, _, ep in lines.rows:
        for field, value in want.items():
            if getattr(ep, field) != value:
                raise ValueError(f"{out}:{number}: a record of {field} {getattr(ep, field)!r}, but this run's "
                                 f"{field} is {value!r}: the file holds another run's records; use another --out")


def finished_task_ids(path: Path, *, identity: dict[str, Any] | None = None, redo_simulator_errors: bool = True
                      ) -> set[str]:
    """Task ids already recorded in `path` (none if it does not exist), after checking `identity`.

    A torn last line (a killed write) and, with `redo_simulator_errors`, the records of episodes
    that ended in ``simulator_error`` are dropped, so those episodes are played again. Only then is
    the file rewritten, atomically, keeping the other records byte for byte; a complete file is
    not touched.
    """
    path = Path(path)
    if not path.exists():
        return set()
    lines = read_episode_lines(path, skip_partial_tail=True)
    if identity is not None:
        check_identity(path, identity, lines)
    keep = [(text, ep) for _, text, ep in lines.rows
            if not (redo_simulator_errors and ep.termination == "simulator_error")]
    if lines.torn is not None or len(keep) < len(lines.rows):
        write_jsonl(path, [text + "\n" for text, _ in keep])
    return {ep.task_id for _, ep in keep}


def run_rollout(
    *,
    agent: str,
    gym: str,
    out: Path,
    data: str | None = None,
    split: str = "test",
    simulator: str | None = None,
    simulator_options: dict[str, Any] | None = None,
    limit: int | None = None,
    seed: int = 0,
    concurrency: int = 16,
    engine_options: dict[str, Any] | None = None,
    save_tokens: bool = False,
    agent_options: dict[str, Any] | None = None,
    on_done: Callable[[Episode], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    max_turn_chars: int | None = MAX_TURN_CHARS,
) -> list[Episode]:
    """Play `agent` on the tasks of `gym` not yet in `out`; returns the new episodes.

    Local models decode greedily unless `engine_options` sets a temperature; with `save_tokens`
    their records also carry the token fields of `baorl.rollout.engine.Trajectory`. Of the
    `engine_options`, ``max_turns`` (the gym's turn limit) applies to every agent. Text-level
    agents (scripted, ``openai:``) keep at most `max_turn_chars` characters per turn text field in
    the records (see `baorl.runs.play.aplay_episode`).

    Raises:
        ValueError: `limit` or `concurrency` below 1, an empty task source, a bad agent spec.
    """
    if limit is not None:
        check_positive_int(limit, "the task limit (--n)")
    check_positive_int(concurrency, "concurrency")
    check_limit(max_turn_chars, "max_turn_chars")
    cls = gym_class(gym)
    if agent.startswith("hf:"):
        engine_options = local_precision(engine_options)
    tasks = load_tasks(gym, data, split)[:limit]
    if not tasks:
        raise ValueError(f"gym {gym!r}: the {'file ' + str(data) if data else split + ' split'} has no tasks")
    user = user_for(cls.name, simulator, **(simulator_options or {}))
    identity = run_identity(agent=agent, gym=cls.name, data=data, split=split, simulator=simulator, seed=seed,
                            engine_options=engine_options, agent_options=agent_options, save_tokens=save_tokens)
    done = finished_task_ids(out, identity=identity)
    todo = [t for t in tasks if t.id not in done]
    if on_total is not None:
        on_total(len(todo))

    meta, meta_text = meta_path(out), json.dumps(identity, indent=2) + "\n"
    meta_ok: list[bool] = []

    def record(ep: Episode) -> None:
        # the identity goes beside the first new record (a start that fails leaves nothing behind)
        if not meta_ok:
            if not meta.is_file() or meta.read_text(encoding="utf-8") != meta_text:
                atomic_write(meta, meta_text)
            meta_ok.append(True)
        write_episodes(out, [ep], append=True)
        if on_done is not None:
            on_done(ep)

    if not todo:
        return []
    if agent.startswith("hf:"):
        from baorl.rollout.engine import EngineConfig
        from baorl.rollout.hf import HFPolicy

        options = dict(engine_options or {})
        dtype = options.pop("dtype", "float32")
        config = EngineConfig(**{"temperature": 0.0, "seed": seed, **options})
        policy = HFPolicy(agent, config, dtype=dtype)

        def record_traj(traj: Any) -> None:
            ep = Episode.model_validate(traj.to_record()) if save_tokens else traj.episode
            record(ep)

        trajs = policy.rollout([cls(t, user=user) for t in todo], on_episode_done=record_traj)
        return [t.episode for t in trajs]

    from baorl.agents import make_agent
    from baorl.runs.play import aplay_many

    make_agent(agent, **(agent_options or {}))  # fail fast on a bad spec, before any episode
    max_turns = (engine_options or {}).get("max_turns")  # a gym limit: it applies to every agent
    return asyncio.run(aplay_many(
        lambda t: cls(t, user=user, max_turns=max_turns), todo, lambda: make_agent(agent, **(agent_options or {})),
        seed=seed, concurrency=concurrency, on_done=record, max_text_chars=max_turn_chars,
    ))
