"""`baorl eval`: play an agent greedily on gym splits, then score the records; and reading run dirs.

An evaluation directory holds:

- ``episodes.jsonl``: one `Episode` record per task (and seed), appended as each one finishes;
- ``metrics.json``: `baorl.evaluation.metrics.score_episodes` of those records;
- ``eval.json``: what was evaluated (agent, gyms, split or data file, simulator, seeds, options),
  checked on resume so that one directory never mixes two evaluations (records without it, e.g.
  from ``baorl rollout``, are resumed only when their ``episodes.jsonl.meta.json`` and their own
  fields say they are of this very run; a training run's directory is refused);
- ``report.html``, ``report-pareto.png``, ``report-pareto.svg``: the report (`baorl.evaluation.report`).

Resuming: rerunning the same command skips every finished episode; a half-written last record (a
killed run) and the records of episodes that ended in ``simulator_error`` are dropped (atomically)
and those episodes played again; a finished evaluation is not rewritten. With several gyms or seeds, each (gym, seed)
is played into ``parts/GYM.seedS.jsonl`` (so that resuming can tell them apart) and the parts are
merged into ``episodes.jsonl`` at the end.

`load_run` reads an evaluation directory, a training run directory (``metrics.jsonl`` curves,
validation records under ``val/step_NNNNNN/episodes.jsonl``) or a bare records file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baorl.config import check_positive_int
from baorl.evaluation.metrics import N_BOOT, score_episodes
from baorl.records import Episode, RecordFileError, atomic_write, read_episodes, read_jsonl
from baorl.runs.runner import SPEED_ONLY
from baorl.textcap import MAX_REPORT_CHARS, MAX_TURN_CHARS, check_limit

__all__ = ["Run", "evaluate", "load_run", "load_records", "load_train_metrics", "resolve_gyms", "EVAL_CONFIG"]

#: the file recording what an evaluation directory evaluates
EVAL_CONFIG = "eval.json"
#: the keys of eval.json that must match for a rerun to resume (``limit`` may grow: more tasks are played)
_RESUME_KEYS = ("agent", "gyms", "split", "data", "simulator", "seeds", "engine_options")
#: engine options that may change between a run and its resumption


# ---- reading ------------------------------------------------------------------------------------
def load_records(path: Path) -> list[Episode]:
    """Episode records of a file, with clear errors: missing, torn (interrupted run), corrupt, empty, duplicated.

    A duplicate is a second record of the same gym, task and seed: two evaluations mixed in one file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such records file")
    try:
        episodes = read_episodes(path)
    except RecordFileError as e:
        lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
        if f"{path}:{len(lines)}:" in str(e):
            raise RecordFileError(f"{e} (the last record is incomplete: an interrupted evaluation? rerun the same "
                                  "`baorl eval` command to finish it)") from e
        raise
    if not episodes:
        raise ValueError(f"{path}: no episode records")
    seen: dict[tuple[str, str, int], int] = {}
    for i, e in enumerate(episodes, 1):
        key = (e.gym, e.task_id, e.seed)
        if key in seen:
            raise ValueError(f"{path}: records {seen[key]} and {i} are both gym {e.gym!r} task {e.task_id!r} "
                             f"seed {e.seed} (two evaluations mixed in one file?)")
        seen[key] = i
    return episodes


def load_train_metrics(path: Path) -> list[dict[str, Any]]:
    """A trainer's ``metrics.jsonl``: one JSON object per line (a torn last line, a run still writing, is dropped)."""
    def row(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError(f"a JSON {type(value).__name__}, not an object")
        return value

    return [r for _, _, r in read_jsonl(path, torn_tail=True, what="JSON object of metrics", check=row).rows]


@dataclass
class Run:
    """A run directory as the scoring and report tools see it.

    Attributes:
        path: the directory (or records file) given.
        label: a short name for tables and legends (the directory name).
        kind: ``eval``, ``train`` or ``records``.
        records: the episode records file used, or None (a training run without validation records).
        episodes: its records.
        train_metrics: rows of ``metrics.jsonl`` (training runs), else empty.
        info: ``eval.json`` of an evaluation, or ``{"val_step": N}`` for a training run.
    """

    path: Path
    label: str
    kind: str
    records: Path | None
    episodes: list[Episode] = field(default_factory=list)
    train_metrics: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def gyms(self) -> list[str]:
        return sorted({e.gym for e in self.episodes})


def _val_dirs(path: Path) -> list[tuple[int, Path]]:
    out = []
    for d in (path / "val").glob("step_*"):
        m = re.fullmatch(r"step_(\d+)", d.name)
        if m and (d / "episodes.jsonl").is_file():
            out.append((int(m.group(1)), d / "episodes.jsonl"))
    return sorted(out)


def load_run(path: str | Path, *, val: str = "latest") -> Run:
    """Read an evaluation directory, a training run directory or a records file.

    Args:
        path: ``DIR`` with ``episodes.jsonl`` (an evaluation), ``RUN`` with ``metrics.jsonl`` and
            optional ``val/step_NNNNNN/episodes.jsonl`` (a training run), or a ``.jsonl`` records file.
        val: which validation records of a training run: ``latest``, ``best`` (highest mean score) or a step.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run directory")
    if path.is_file():
        return Run(path, path.stem, "records", path, load_records(path))
    label = path.resolve().name
    if (path / "episodes.jsonl").exists():
        info: dict[str, Any] = {}
        cfg = path / EVAL_CONFIG
        if cfg.is_file():
            try:
                info = json.loads(cfg.read_text(encoding="utf-8"))
            except ValueError as e:
                raise ValueError(f"{cfg}: not valid JSON ({e})") from e
        train = load_train_metrics(path / "metrics.jsonl") if (path / "metrics.jsonl").is_file() else []
        return Run(path, label, "eval", path / "episodes.jsonl", load_records(path / "episodes.jsonl"), train, info)
    if (path / "metrics.jsonl").is_file():
        train = load_train_metrics(path / "metrics.jsonl")
        vals = _val_dirs(path)
        if not vals:
            return Run(path, label, "train", None, [], train)
        if val == "latest":
            step, rec = vals[-1]
        elif val == "best":
            def mean_score(rec: Path) -> float:
                eps = load_records(rec)
                return sum(e.score for e in eps) / len(eps)

            step, rec = max(vals, key=lambda v: (mean_score(v[1]), v[0]))
        elif val.isdigit() and int(val) in dict(vals):
            step, rec = int(val), dict(vals)[int(val)]
        else:
            raise ValueError(f"{path}: no validation step {val!r}; have latest, best or one of "
                             f"{', '.join(str(s) for s, _ in vals)}")
        return Run(path, label, "train", rec, load_records(rec), train, {"val_step": step})
    raise FileNotFoundError(f"{path}: not a run directory: expected {path / 'episodes.jsonl'} (an evaluation) "
                            f"or {path / 'metrics.jsonl'} (a training run)")


# ---- evaluating ---------------------------------------------------------------------------------
def resolve_gyms(gym: str | Sequence[str]) -> list[str]:
    """Canonical gym names from ``"function"``, ``"function,turtle"``, a list, or ``"all"``."""
    from baorl.gyms import registry, spec

    names = [gym] if isinstance(gym, str) else list(gym)
    names = [n.strip() for item in names for n in item.split(",") if n.strip()]
    if names == ["all"]:
        return sorted(registry())
    out: list[str] = []
    for n in names:
        name = spec(n).name
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("no gym given")
    return out


#: what a training (or SFT) run directory holds and an evaluation directory never does
_TRAIN_MARKERS = ("rollouts.jsonl", "config.yaml", "checkpoints", "summary.json", "val", "final", "best")


def _check_resume(out_dir: Path, config: dict[str, Any], identity: dict[str, Any] | None = None) -> None:
    """Refuse an `out_dir` that holds something else: a training run, another evaluation (eval.json),
    or records of another run (``episodes.jsonl`` without eval.json, e.g. from ``baorl rollout``).

    `identity` is the `baorl.runs.runner.run_identity` of a one-gym, one-seed evaluation (whose
    records go straight to ``episodes.jsonl``); None for several (gym, seed) jobs.
    """
    from baorl.runs.runner import check_identity

    cfg = out_dir / EVAL_CONFIG
    marks = [m for m in _TRAIN_MARKERS if (out_dir / m).exists()]
    if marks or ((out_dir / "metrics.jsonl").exists() and not cfg.exists()):
        raise ValueError(f"{out_dir}: a training run directory (it holds {(marks or ['metrics.jsonl'])[0]}), not an "
                         f"evaluation; evaluate its policy into another --out, e.g. --out {out_dir / 'eval'}")
    if not cfg.exists():
        records = out_dir / "episodes.jsonl"
        if records.exists():
            # records without eval.json: accept them only if they are of this very run
            for i, e in enumerate(read_episodes(records, skip_partial_tail=True), 1):
                if e.gym not in config["gyms"]:
                    raise ValueError(f"{records}:{i}: a {e.gym!r} record, but this evaluation "
                                     f"is of {', '.join(config['gyms'])}; use another --out")
            if identity is None:
                raise ValueError(f"{records}: records not written by `baorl eval` (no {EVAL_CONFIG}); an evaluation "
                                 "of several gyms or seeds would replace them; use another --out")
            check_identity(records, identity)
        return
    try:
        old = json.loads(cfg.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{cfg}: not valid JSON ({e}); remove it or use another --out") from e
    def same(k: str) -> bool:
        if k == "engine_options":  # batching changes speed, not the evaluation
            a, b = (({x: v for x, v in (d.get(k) or {}).items() if x not in SPEED_ONLY}) for d in (old, config))
            return a == b
        return old.get(k) == config.get(k)

    diff = [k for k in _RESUME_KEYS if not same(k)]
    if diff:
        k = diff[0]
        raise ValueError(f"{cfg}: {out_dir} already holds another evaluation ({k} {old.get(k)!r}, now "
                         f"{config.get(k)!r}); use another --out")


def evaluate(
    agent: str,
    gym: str | Sequence[str],
    out_dir: str | Path,
    *,
    data: str | None = None,
    split: str = "test",
    simulator: str | None = None,
    simulator_options: dict[str, Any] | None = None,
    limit: int | None = None,
    seeds: Sequence[int] = (0,),
    concurrency: int = 16,
    engine_options: dict[str, Any] | None = None,
    agent_options: dict[str, Any] | None = None,
    k: int | None = None,
    n_boot: int = N_BOOT,
    boot_seed: int = 0,
    report: bool = True,
    on_done: Callable[[Episode], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    max_turn_chars: int | None = MAX_TURN_CHARS,
    max_report_chars: int | None = MAX_REPORT_CHARS,
) -> dict[str, Any]:
    """Evaluate `agent` on `gym` (one or several, or ``all``) and write the run directory; returns the metrics.

    Greedy by default: local (``hf:``) models decode at temperature 0 unless ``engine_options``
    says otherwise, ``openai:`` agents request temperature 0, scripted agents are deterministic
    given the seed. One episode per task and seed. The other arguments are those of
    `baorl.runs.runner.run_rollout`; `k`, `n_boot` and `boot_seed` those of `score_episodes`;
    `on_total` is called with the running total of episodes left to play. `max_turn_chars` caps
    the text stored per turn field (text-level agents), `max_report_chars` what the report embeds.

    A start that fails before any episode is recorded (a bad agent spec or model path, an
    unreachable endpoint) leaves no ``eval.json`` behind, so the corrected command is not refused.

    Raises:
        ValueError: an empty split, ``data`` with several gyms, or `out_dir` holding another evaluation,
            another run's records or a training run.
    """
    from baorl.gyms import gym_class, load_tasks
    from baorl.provenance import code_version
    from baorl.runs.runner import run_rollout

    code_version()  # pinned now: the provenance line written at the end names the code that played
    out_dir = Path(out_dir)
    gyms = resolve_gyms(gym)
    seeds = sorted({int(s) for s in seeds})
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    if data is not None and len(gyms) > 1:
        raise ValueError("--data names one gym's task file; evaluate one gym at a time with --data")
    if limit is not None:
        check_positive_int(limit, "the task limit (--n)")
    check_positive_int(concurrency, "concurrency")
    check_limit(max_turn_chars, "max_turn_chars")
    check_limit(max_report_chars, "max_report_chars")
    _check_agent(agent, agent_options)
    engine = dict(engine_options or {})
    if agent.startswith("hf:"):
        temperature = engine.get("temperature", 0.0)
    elif agent.startswith("openai:"):
        temperature = (agent_options or {}).get("temperature", 0.0)
    else:
        temperature = None  # scripted agents do not sample
    config = {
        "agent": agent, "gyms": gyms, "split": None if data else split,
        "data": str(Path(data).resolve()) if data else None, "simulator": simulator, "seeds": seeds,
        "limit": limit, "temperature": temperature, "engine_options": engine,
    }
    for g in gyms:  # an empty or unreadable task source fails before anything is written
        if not load_tasks(g, data, split)[:limit]:
            raise ValueError(f"gym {g!r}: {'the file ' + str(data) if data else 'the ' + split + ' split'} has no tasks")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: --out must be a directory")
    created = [d for d in (out_dir, *out_dir.parents) if not d.exists()]  # the directories this start makes
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(g, s) for g in gyms for s in seeds]
    single = len(jobs) == 1
    identity = None
    if single:
        from baorl.runs.runner import run_identity

        identity = run_identity(agent=agent, gym=gyms[0], data=data, split=split,
                                simulator=simulator if gym_class(gyms[0]).needs_user else None, seed=seeds[0],
                                engine_options=engine, agent_options=agent_options)
    _check_resume(out_dir, config, identity)
    fresh = not (out_dir / EVAL_CONFIG).exists()
    _write_if_changed(out_dir / EVAL_CONFIG, json.dumps(config, indent=2) + "\n")

    records = out_dir / "episodes.jsonl"
    total = 0
    played = 0

    def done(ep: Episode) -> None:
        nonlocal played
        played += 1
        if on_done is not None:
            on_done(ep)

    def add_total(n: int) -> None:
        nonlocal total
        total += n
        if on_total is not None:
            on_total(total)

    try:
        for g, s in jobs:
            needs_user = gym_class(g).needs_user
            run_rollout(
                agent=agent, gym=g, out=records if single else out_dir / "parts" / f"{g}.seed{s}.jsonl",
                data=data, split=split, simulator=simulator if needs_user else None,
                simulator_options=simulator_options if needs_user else None, limit=limit, seed=s,
                concurrency=concurrency, engine_options=engine, agent_options=agent_options,
                on_done=done, on_total=add_total, max_turn_chars=max_turn_chars,
            )
    except BaseException:
        if fresh:
            _undo_failed_start(out_dir, created)
        raise
    if not single:  # the parts merged; unchanged on a rerun of a finished evaluation, so not rewritten
        merged = [e for g, s in jobs for e in read_episodes(out_dir / "parts" / f"{g}.seed{s}.jsonl")]
        _write_if_changed(records, merged)
    if played:  # which code played these episodes (a rerun that plays nothing writes nothing)
        from baorl.provenance import record_provenance

        record_provenance(out_dir, "evaluated", episodes=played)
    return score_dir(out_dir, k=k, n_boot=n_boot, seed=boot_seed, report=report, max_report_chars=max_report_chars)


def _write_if_changed(path: Path, content: str | list[Episode]) -> None:
    """Replace `path` atomically with `content` (text, or episodes as JSON Lines), unless it already holds it."""
    if isinstance(content, list):
        from baorl.records import jsonl_line

        content = "".join(jsonl_line(e) for e in content)
    data = content.encode("utf-8")
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    atomic_write(path, data)


def _check_agent(agent: str, agent_options: dict[str, Any] | None) -> None:
    """Fail on a bad agent spec before anything is written: text-level agents are built (cheap, no
    network), a local model's checkpoint directory must hold a config.json."""
    if agent.startswith("hf:"):
        from baorl.models.loading import resolve_model

        if not agent[3:]:
            raise ValueError("hf: needs a model: hf:embedded or hf:PATH_TO_CHECKPOINT")
        resolve_model(agent[3:])
        return
    from baorl.agents import make_agent

    make_agent(agent, **(agent_options or {}))


def _undo_failed_start(out_dir: Path, created: list[Path]) -> None:
    """Remove what a failed start wrote (eval.json, empty directories) if no episode was recorded."""
    parts = out_dir / "parts"
    if (out_dir / "episodes.jsonl").exists() or (parts.is_dir() and any(parts.glob("*.jsonl"))):
        return  # episodes were recorded: keep eval.json so that the same command resumes them
    (out_dir / EVAL_CONFIG).unlink(missing_ok=True)
    for d in (parts, *created):
        try:
            d.rmdir()  # only if empty
        except OSError:
            pass


def score_dir(path: str | Path, *, k: int | None = None, n_boot: int = N_BOOT, seed: int = 0,
              report: bool = False, out: Path | None = None,
              max_report_chars: int | None = MAX_REPORT_CHARS) -> dict[str, Any]:
    """Re-score a run from its records and write ``metrics.json`` beside them (or to `out`); returns the metrics.

    With `report`, also writes ``report.html`` and the Pareto plot beside the metrics (embedding at
    most `max_report_chars` characters of each turn text field).
    """
    run = load_run(path)
    if run.records is None:
        raise FileNotFoundError(f"{run.path}: no episode records to score (no val/step_*/episodes.jsonl)")
    metrics = score_episodes(run.episodes, K=k, n_boot=n_boot, seed=seed)
    target = Path(out) if out is not None else run.records.parent / "metrics.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, json.dumps(metrics, indent=2) + "\n")
    if report:
        from baorl.evaluation.report import write_report

        write_report([run], target.parent / "report.html", k=k, n_boot=n_boot, seed=seed,
                     max_text_chars=max_report_chars)
    return metrics
