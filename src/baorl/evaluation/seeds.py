"""Policies trained with several training seeds (``baorl compare --group``): pure functions, no I/O.

An experiment trains each policy (a *group*) with several training seeds; each trained run is
evaluated into its own records (one list of `Episode` per run). Run i of every group is the i-th
training seed (same start and data order), which pairs the groups run by run.

Per group, per gym and overall, for each metric of `GROUP_KEYS` and Pass@U-1..K:

- **mean over seeds** (``mean``): each run's metric over its tasks (exactly what `score_episodes`
  gives that run alone), then the plain mean of the runs' values (``seeds``), with a **Student-t
  95% interval over seeds** (``t_ci``, `baorl.evaluation.metrics._t_interval`: t with n-1 degrees
  of freedom, n = runs with a value, ``n_seeds``; e.g. t = 4.303 for 3 runs). One run: ``t_ci`` is
  None (printed "n/a").
- **pooled over seeds** (``pooled``, ``pooled_ci``): the episodes of all runs pooled, each run's
  relabelled ``seed = run index``; a task's value is the mean over its episodes of every run, the
  metric the mean over tasks; the interval is the percentile bootstrap over tasks (a task's
  episodes of every run move together). For `METRIC_KEYS` and Pass@U this *is* `score_episodes`
  of the relabelled episodes. For the extra metrics (`EXTRA_KEYS`) the resamples are drawn with
  the same generator as `score_episodes` (``np.random.default_rng([seed, zlib.crc32(gym)])``,
  then ``integers(0, n_tasks, size=(n_boot, n_tasks))``), so they are the very resamples that gave
  the score's interval.

Extra metrics, per episode and averaged like the score: ``user_actions`` (user-involved turns,
U(tau)), ``answers`` (turns whose ``choice`` is "answer"; in the Function gym the user actions are
the answers), ``turns`` (turns played) and ``clipped`` (1 when the episode ended on the token
budget, ``termination == "token_budget"``: the mean is the share of clipped episodes).

Paired comparison of two groups A and B with the same number of runs (`paired_difference`):
pair i = run i of A with run i of B. For each metric of `PAIR_KEYS`, the per-pair differences
d_i = metric(A_i) - metric(B_i) (each run's metric over its tasks), their mean and Student-t 95%
interval over pairs (n = pairs, n-1 degrees of freedom), and a paired bootstrap over tasks (each
resample of the tasks, with the generator above, gives mean_i of d_i on those tasks; percentile
interval). The two intervals cover two sources of noise: the t interval the training seeds (the
pairs play the same tasks), the bootstrap the sampling of the tasks. Verdict: "significant" only
when both exclude 0 (a difference that holds against either kind of noise), "not significant"
when the t interval contains 0, "not significant over tasks" when it excludes 0 but the bootstrap
does not (e.g. every BAO seed solved one task more than its pair: the t interval is the point
1/78, while many resamples of the tasks leave those tasks out), "n/a" with one pair (no t
interval). Without resamples the verdict follows the t interval alone.

Shared decisions:

- Every run of a group must cover the same (gym, task) set, and so must the two runs of a pair
  (checked on all records, simulator errors included): a ValueError names the run that differs.
- Simulator errors are left out of every metric, as in `score_episodes` (a task whose episodes all
  failed in the simulator drops out of that run's metric); ``simulator_errors`` counts them.
- A run with several episodes of a task (several episode seeds) averages them within the task.
- Overall: the gyms' metrics weighted by their numbers of tasks (a run's own scored tasks for its
  point value, the pooled tasks for the pooled value and the bootstrap), as in `score_episodes`.
- K: one K for every group (default: `choose_k` over every scored episode).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from baorl.evaluation.metrics import (
    METRIC_KEYS,
    N_BOOT,
    _percentile,
    _t_interval,
    choose_k,
    episode_user_actions,
    episode_user_rate,
    score_episodes,
)
from baorl.evaluation.metrics import _num as _round_num
from baorl.records import Episode

__all__ = [
    "EXTRA_KEYS", "GROUP_KEYS", "PAIR_KEYS", "LABELS", "episode_answers", "group_metrics", "paired_difference",
    "verdict", "seed_tables", "seed_table_markdown", "seed_tables_html",
]

#: per-episode metrics computed here (besides `score_episodes`' ones)
EXTRA_KEYS = ("user_actions", "answers", "turns", "clipped")
#: every scalar metric of a group, in table order
GROUP_KEYS = (*METRIC_KEYS, *EXTRA_KEYS)
#: the metrics of a paired comparison, in table order
PAIR_KEYS = ("score", "user_rate", "success", "clipped", "answers")
#: table labels of the metrics
LABELS = {"score": "score", "success": "success", "hypervolume": "hypervolume", "user_rate": "user rate",
          "rtr": "RTR", "user_actions": "user actions/ep", "answers": "answers/ep", "turns": "turns/ep",
          "clipped": "clipped share"}


def episode_answers(ep: Episode) -> int:
    """Turns whose choice is "answer".

    >>> from baorl.records import Turn
    >>> episode_answers(Episode(gym="g", task_id="t", termination="finish",
    ...                         turns=[Turn(choice="answer"), Turn(choice="search"), Turn(choice="answer")]))
    2
    """
    return sum(t.choice == "answer" for t in ep.turns)


_VALUE: dict[str, Callable[[Episode], float]] = {
    "score": lambda e: float(e.score),
    "success": lambda e: float(bool(e.success)),
    "user_rate": episode_user_rate,
    "user_actions": lambda e: float(episode_user_actions(e)),
    "answers": lambda e: float(episode_answers(e)),
    "turns": lambda e: float(len(e.turns)),
    "clipped": lambda e: float(e.termination == "token_budget"),
}


def _scored(episodes: Sequence[Episode]) -> list[Episode]:
    return [e for e in episodes if e.termination != "simulator_error"]


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean along `axis` ignoring NaNs (NaN where every entry is NaN), without warnings."""
    ok = ~np.isnan(x)
    return _div(np.where(ok, x, 0.0).sum(axis=axis), ok.sum(axis=axis))


def _wmean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean along axis 0 (gyms); NaN values drop out with their weight."""
    w = np.where(np.isnan(values), 0.0, np.broadcast_to(weights, values.shape))
    return _div((np.where(np.isnan(values), 0.0, values) * w).sum(axis=0), w.sum(axis=0))


def _rng_idx(gym: str, n: int, n_boot: int, seed: int) -> np.ndarray | None:
    """The bootstrap's task resamples of `gym`: the same draw as `score_episodes` makes."""
    if not n_boot or not n:
        return None
    rng = np.random.default_rng([seed, zlib.crc32(gym.encode())])
    return rng.integers(0, n, size=(n_boot, n))


@dataclass
class _Table:
    """One gym's per-(task, run) sums and episode counts over the scored episodes of R runs."""

    ids: list[str]
    sums: dict[str, np.ndarray]  # key -> (n, R)
    counts: np.ndarray           # (n, R)

    @classmethod
    def build(cls, runs: Sequence[Sequence[Episode]], keys: Sequence[str]) -> _Table:
        ids = sorted({e.task_id for r in runs for e in r})
        row = {t: i for i, t in enumerate(ids)}
        sums = {k: np.zeros((len(ids), len(runs))) for k in keys}
        counts = np.zeros((len(ids), len(runs)))
        for j, run in enumerate(runs):
            for e in run:
                i = row[e.task_id]
                counts[i, j] += 1
                for k in keys:
                    sums[k][i, j] += _VALUE[k](e)
        return cls(ids, sums, counts)

    def values(self, key: str) -> np.ndarray:
        """(n, R): each run's per-task mean; NaN where the run has no scored episode of the task."""
        return _div(self.sums[key], self.counts)

    def pooled(self, key: str) -> np.ndarray:
        """(n,): each task's mean over its episodes of every run."""
        return _div(self.sums[key].sum(axis=1), self.counts.sum(axis=1))

    def run_tasks(self) -> np.ndarray:
        """(R,): each run's scored tasks (its weight in an overall value)."""
        return (self.counts > 0).sum(axis=0).astype(float)

    def per_run(self, key: str, idx: np.ndarray | None = None) -> np.ndarray:
        """Each run's metric over the tasks: (R,), or (B, R) over the task resamples `idx` (B, n)."""
        v = self.values(key)
        return _nanmean(v, axis=0) if idx is None else _nanmean(v[idx], axis=1)


def _ci(pair: Sequence[float | None] | None) -> list[float] | None:
    if pair is None or pair[0] is None or pair[1] is None:
        return None
    return [_r(pair[0]), _r(pair[1])]  # type: ignore[list-item]


def _r(x: Any) -> float | None:
    return None if x is None else _round_num(x)


def _entry(seeds: Sequence[float | None], pooled: float | None, pooled_ci: Sequence[float | None] | None
           ) -> dict[str, Any]:
    """One metric of a group scope: the runs' values, their mean and t interval, the pooled value and interval."""
    arr = np.array([np.nan if s is None else float(s) for s in seeds], dtype=float)
    ok = arr[~np.isnan(arr)]
    return {"seeds": [_r(s) for s in arr], "mean": _r(ok.mean()) if len(ok) else None, "n_seeds": int(len(ok)),
            "t_ci": _ci(_t_interval(arr)), "pooled": _r(pooled), "pooled_ci": _ci(pooled_ci)}


def _task_set(episodes: Sequence[Episode]) -> set[tuple[str, str]]:
    return {(e.gym, e.task_id) for e in episodes}


def _same_tasks(ref: Sequence[Episode], other: Sequence[Episode], ref_name: str, name: str, why: str) -> None:
    a, b = _task_set(ref), _task_set(other)
    if a == b:
        return
    missing, extra = sorted(a - b), sorted(b - a)

    def some(s: list[tuple[str, str]]) -> str:
        return ", ".join(f"{g}/{t}" for g, t in s[:3]) + (", ..." if len(s) > 3 else "")

    parts = ([f"lacks {len(missing)} of its tasks ({some(missing)})"] if missing else []) + \
            ([f"has {len(extra)} tasks it lacks ({some(extra)})"] if extra else [])
    raise ValueError(f"{name}: covers other tasks than {ref_name}: it {' and '.join(parts)}; {why}")


def _check_group(group: str, runs: Sequence[Sequence[Episode]], names: Sequence[str]) -> None:
    if not runs:
        raise ValueError(f"group {group!r}: no runs")
    if len(names) != len(runs):
        raise ValueError(f"group {group!r}: {len(runs)} runs but {len(names)} run names")
    for run, name in zip(runs, names, strict=True):
        if not run:
            raise ValueError(f"{name}: no episode records (group {group!r})")
    for run, name in zip(runs[1:], names[1:], strict=True):
        _same_tasks(runs[0], run, names[0], name,
                    f"the runs of group {group!r} (training seeds of one policy) must cover the same tasks")


def _names(group: str, runs: Sequence[Any], given: Mapping[str, Sequence[str]] | None) -> list[str]:
    if given and group in given:
        return list(given[group])
    return [f"{group}/s{i}" for i in range(len(runs))]


# ---- group metrics --------------------------------------------------------------------------------
def group_metrics(runs_by_group: Mapping[str, Sequence[Sequence[Episode]]], *, K: int | None = None,
                  n_boot: int = N_BOOT, seed: int = 0,
                  run_names: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Mean over training seeds (Student-t interval) and pooled (bootstrap) metrics of each group.

    Args:
        runs_by_group: ``{policy: [run 0 episodes, run 1 episodes, ...]}``, run i = training seed i.
        K: the largest k of Pass@U-k, shared by every group (default: `choose_k` over all scored episodes).
        n_boot: bootstrap resamples of the tasks (0: no pooled intervals, they are None).
        seed: the bootstrap's seed (`score_episodes`' convention, per gym).
        run_names: ``{policy: [name of run i]}`` for error messages and the output (default ``POLICY/sI``).

    Returns:
        ``{"schema", "K", "bootstrap", "seed_interval", "groups": {POLICY: GROUP}}``; a GROUP holds
        ``runs`` (names), ``n_runs``, ``gyms: {GYM: SCOPE}`` and ``overall: SCOPE``. A SCOPE holds
        ``n`` (scored episodes, all runs), ``n_tasks``, ``simulator_errors``, ``metrics: {KEY: ENTRY}``
        for every key of `GROUP_KEYS` and ``pass_at_u: {"1".."K": ENTRY}``; an ENTRY is ``seeds``
        (each run's value, None where undefined), ``mean``, ``n_seeds``, ``t_ci`` ([lo, hi] or None),
        ``pooled`` and ``pooled_ci`` ([lo, hi] or None).

    Raises:
        ValueError: a group without runs, a run without records, or runs of a group covering
            different tasks (naming the run).

    >>> from baorl.records import Turn
    >>> def ep(task, score):
    ...     return Episode(gym="function", task_id=task, score=score, termination="turn_limit",
    ...                    turns=[Turn(choice="answer", user_involved=True)])
    >>> runs = [[ep("a", s), ep("b", s)] for s in (0.1, 0.2, 0.3)]
    >>> m = group_metrics({"p": runs}, K=1, n_boot=0)["groups"]["p"]["overall"]["metrics"]["score"]
    >>> m["seeds"], m["mean"], m["t_ci"]
    ([0.1, 0.2, 0.3], 0.2, [-0.048434, 0.448434])
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    names = {g: _names(g, runs, run_names) for g, runs in runs_by_group.items()}
    for g, runs in runs_by_group.items():
        _check_group(g, runs, names[g])
    if K is None:
        K = choose_k([e for runs in runs_by_group.values() for r in runs for e in _scored(r)])
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    groups = {g: {"runs": names[g], "n_runs": len(runs), **_group(runs, K, n_boot, seed)}
              for g, runs in runs_by_group.items()}
    return {
        "schema": 1,
        "K": K,
        "bootstrap": {"samples": n_boot, "seed": seed, "unit": "task", "level": 0.95, "method": "percentile",
                      "pooled": "episodes of every run pooled; a task's episodes of every run move together",
                      "rng": "numpy default_rng([seed, crc32(gym)]), as score_episodes"},
        "seed_interval": {"method": "student-t", "level": 0.95, "unit": "training seed (run)",
                          "df": "runs with a value - 1"},
        "groups": groups,
    }


def _group(runs: Sequence[Sequence[Episode]], K: int, n_boot: int, seed: int) -> dict[str, Any]:
    """The ``gyms`` and ``overall`` scopes of one group."""
    relabelled = [e.model_copy(update={"seed": i}) for i, r in enumerate(runs) for e in r]
    pooled = score_episodes(relabelled, K=K, n_boot=n_boot, seed=seed)
    alone = [score_episodes(r, K=K, n_boot=0) for r in runs]  # each run's own metrics
    scored = [_scored(r) for r in runs]
    gyms: dict[str, Any] = {}
    over_seed, over_point, over_boot = [], [], []  # per gym: (weights, values) for the overall extras
    for g in sorted(pooled["gyms"]):
        table = _Table.build([[e for e in r if e.gym == g] for r in scored], EXTRA_KEYS)
        n = len(table.ids)
        idx = _rng_idx(g, n, n_boot, seed)
        extras: dict[str, tuple[np.ndarray, float, np.ndarray | None]] = {}
        for key in EXTRA_KEYS:
            task = table.pooled(key)
            extras[key] = (table.per_run(key), float(task.mean()), task[idx].mean(axis=1) if idx is not None else None)
        gyms[g] = _scope(pooled["gyms"][g], [a["gyms"].get(g) for a in alone], extras, K)
        over_seed.append((table.run_tasks(), {k: v[0] for k, v in extras.items()}))
        over_point.append((float(n), {k: v[1] for k, v in extras.items()}))
        over_boot.append((float(n), {k: v[2] for k, v in extras.items()}))
    totals: dict[str, tuple[np.ndarray, float, np.ndarray | None]] = {}
    for key in EXTRA_KEYS:
        if not over_seed:  # every episode ended in simulator_error
            totals[key] = (np.full(len(runs), np.nan), math.nan, None)
            continue
        seeds = _wmean(np.stack([v[key] for _, v in over_seed]), np.stack([w for w, _ in over_seed]))
        point = _wmean(np.array([v[key] for _, v in over_point]), np.array([w for w, _ in over_point]))
        boot = (_wmean(np.stack([v[key] for _, v in over_boot]), np.array([w for w, _ in over_boot])[:, None])
                if n_boot else None)
        totals[key] = (seeds, float(point), boot)
    overall = _scope(pooled["overall"], [a["overall"] for a in alone], totals, K)
    return {"gyms": gyms, "overall": overall}


def _scope(pooled: dict[str, Any], alone: Sequence[dict[str, Any] | None],
           extras: Mapping[str, tuple[np.ndarray, float, np.ndarray | None]], K: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": pooled["n"], "n_tasks": pooled["n_tasks"],
                           "simulator_errors": pooled.get("simulator_errors", 0), "metrics": {}, "pass_at_u": {}}
    for key in METRIC_KEYS:
        out["metrics"][key] = _entry([a.get(key) if a else None for a in alone], pooled.get(key),
                                     pooled.get(f"{key}_ci"))
    for key in EXTRA_KEYS:
        seeds, point, boot = extras[key]
        out["metrics"][key] = _entry(list(seeds), point, _percentile(boot) if boot is not None else None)
    for k in (str(i) for i in range(1, K + 1)):
        out["pass_at_u"][k] = _entry([a["pass_at_u"].get(k) if a else None for a in alone],
                                     pooled["pass_at_u"].get(k), pooled["pass_at_u_ci"].get(k))
    return out


# ---- paired comparison ----------------------------------------------------------------------------
def verdict(t_ci: Sequence[float] | None, boot_ci: Sequence[float] | None = None) -> str:
    """The verdict on a paired difference from its t interval over pairs and its bootstrap over tasks.

    "significant" when the t interval excludes 0 and so does the bootstrap interval (when there is
    one); "not significant" when the t interval contains 0; "not significant over tasks" when only
    the bootstrap contains 0; "n/a" without a t interval (one pair).

    >>> verdict([0.1, 0.3]), verdict([-0.1, 0.3]), verdict([-0.3, -0.1]), verdict(None)
    ('significant', 'not significant', 'significant', 'n/a')
    >>> verdict([0.013, 0.013], [0.0, 0.038]), verdict([0.1, 0.3], [0.05, 0.4])
    ('not significant over tasks', 'significant')
    """
    if t_ci is None:
        return "n/a"
    if t_ci[0] <= 0 <= t_ci[1]:
        return "not significant"
    if boot_ci is not None and boot_ci[0] <= 0 <= boot_ci[1]:
        return "not significant over tasks"
    return "significant"


def paired_difference(a: Sequence[Sequence[Episode]], b: Sequence[Sequence[Episode]], *, n_boot: int = N_BOOT,
                      seed: int = 0, names: tuple[str, str] = ("A", "B"),
                      run_names: tuple[Sequence[str], Sequence[str]] | None = None) -> dict[str, Any]:
    """Paired differences A - B over training seeds: pair i = run i of `a` with run i of `b`.

    Args:
        a, b: the groups' runs (episode lists), in training-seed order; the same number of runs.
        n_boot: resamples of the paired bootstrap over tasks (0: no bootstrap interval, None).
        seed: the bootstrap's seed (per gym, `score_episodes`' generator).
        names: the groups' names, for messages and the output.
        run_names: the runs' names, for messages (default ``NAME/sI``).

    Returns:
        ``{"a", "b", "n_pairs", "bootstrap", "gyms": {GYM: SCOPE}, "overall": SCOPE}``; a SCOPE holds
        ``n_tasks`` and ``metrics: {KEY: ENTRY}`` for each key of `PAIR_KEYS`; an ENTRY holds ``a``
        and ``b`` (each run's value), ``diffs`` (a_i - b_i), ``mean``, ``t_ci`` (Student-t 95% over
        pairs, None with one pair), ``boot_ci`` (paired percentile bootstrap over tasks, None without
        resamples) and ``verdict`` (`verdict` of ``t_ci`` and ``boot_ci``).

    Raises:
        ValueError: groups of different sizes, a run without records, or runs (of a group, or of a
            pair) covering different tasks, naming the run.

    >>> from baorl.records import Turn
    >>> def ep(task, score):
    ...     return Episode(gym="function", task_id=task, score=score, termination="finish", turns=[Turn(choice="answer")])
    >>> a = [[ep("x", s), ep("y", s)] for s in (0.5, 0.6, 0.7)]
    >>> b = [[ep("x", s), ep("y", s)] for s in (0.1, 0.3, 0.2)]
    >>> d = paired_difference(a, b, n_boot=0)["overall"]["metrics"]["score"]
    >>> d["diffs"], d["mean"], d["verdict"]
    ([0.4, 0.3, 0.5], 0.4, 'significant')
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    na, nb = names
    if len(a) != len(b):
        raise ValueError(f"pair {na},{nb}: {na} has {len(a)} runs and {nb} has {len(b)}; a paired comparison needs "
                         "the same number of runs (pair i = run i of each: the same training seed)")
    ra = list(run_names[0]) if run_names else [f"{na}/s{i}" for i in range(len(a))]
    rb = list(run_names[1]) if run_names else [f"{nb}/s{i}" for i in range(len(b))]
    _check_group(na, a, ra)
    _check_group(nb, b, rb)
    for i in range(len(a)):
        _same_tasks(a[i], b[i], ra[i], rb[i], f"pair {i} of {na},{nb} compares the two runs task by task")
    R = len(a)
    scored = [_scored(r) for r in (*a, *b)]
    gyms: dict[str, Any] = {}
    over_point, over_boot, tasks = [], [], 0
    for g in sorted({e.gym for r in scored for e in r}):
        table = _Table.build([[e for e in r if e.gym == g] for r in scored], PAIR_KEYS)
        n = len(table.ids)
        tasks += n
        idx = _rng_idx(g, n, n_boot, seed)
        point = {k: table.per_run(k) for k in PAIR_KEYS}                                    # (2R,)
        boot = {k: table.per_run(k, idx) for k in PAIR_KEYS} if idx is not None else None  # (B, 2R)
        gyms[g] = _pair_scope(n, point, boot, R)
        over_point.append((table.run_tasks(), point))
        over_boot.append((float(n), boot))
    point = {k: _wmean(np.stack([p[k] for _, p in over_point]), np.stack([w for w, _ in over_point]))
             for k in PAIR_KEYS} if over_point else {k: np.full(2 * R, np.nan) for k in PAIR_KEYS}
    boot_all = None
    if over_boot and all(bt is not None for _, bt in over_boot):
        w = np.array([w for w, _ in over_boot])[:, None, None]
        boot_all = {k: _wmean(np.stack([bt[k] for _, bt in over_boot]), w) for k in PAIR_KEYS}  # type: ignore[index]
    return {
        "a": na, "b": nb, "n_pairs": R, "runs_a": ra, "runs_b": rb,
        "bootstrap": {"samples": n_boot, "seed": seed, "unit": "task", "level": 0.95, "method": "percentile",
                      "statistic": "mean over pairs of (A_i - B_i) on the resampled tasks"},
        "gyms": gyms,
        "overall": _pair_scope(tasks, point, boot_all, R),
    }


def _pair_scope(n_tasks: int, point: Mapping[str, np.ndarray], boot: Mapping[str, np.ndarray] | None,
                R: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n_tasks": n_tasks, "metrics": {}}
    for key in PAIR_KEYS:
        av, bv = point[key][:R], point[key][R:]
        d = av - bv
        t = _ci(_t_interval(d))
        ok = d[~np.isnan(d)]
        bci = None
        if boot is not None:
            bci = _ci(_percentile(_nanmean(boot[key][:, :R] - boot[key][:, R:], axis=1)))
        out["metrics"][key] = {"a": [_r(x) for x in av], "b": [_r(x) for x in bv], "diffs": [_r(x) for x in d],
                               "mean": _r(ok.mean()) if len(ok) else None, "n_pairs": int(len(ok)), "t_ci": t,
                               "boot_ci": bci, "verdict": verdict(t, bci)}
    return out


# ---- tables ---------------------------------------------------------------------------------------
@dataclass
class SeedTable:
    """One rendered table: a title, a line on what it shows, a header and rows of plain-text cells."""

    title: str
    note: str
    header: list[str]
    rows: list[list[str]]


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _interval(ci: Sequence[float] | None) -> str:
    return "[n/a]" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _scopes(scopes: Mapping[str, Any], overall: Any) -> list[tuple[str, Any]]:
    """(name, scope): each gym, then overall when there are several gyms (a single gym's overall is the gym)."""
    out = sorted(scopes.items())
    return out + [("overall", overall)] if len(out) > 1 else out


def seed_tables(summary: Mapping[str, Any], pairs: Sequence[Mapping[str, Any]] = ()) -> list[SeedTable]:
    """The tables of `group_metrics` (and `paired_difference` results), as plain-text cells.

    Tables: mean over seeds with its t interval; pooled value with its bootstrap interval;
    Pass@U-k (both estimates); one per pair. With several gyms each row names its gym (and overall).
    """
    groups = summary["groups"]
    K = summary["K"]
    multi = any(len(g["gyms"]) > 1 for g in groups.values())
    lead = ["policy"] + ["gym"] * multi
    boot = summary["bootstrap"]
    tables = []
    for title, note, field, ci_field, size in (
        ("Training seeds: mean over seeds", "each run's metric over its tasks, then the mean over the runs "
         "(training seeds); [Student-t 95% interval over seeds], n/a with one run", "mean", "t_ci", "runs"),
        ("Training seeds: pooled", "episodes of every run pooled, a task's value the mean over its runs' episodes; "
         f"[95% percentile bootstrap over tasks, {boot['samples']} resamples, seed {boot['seed']}]", "pooled",
         "pooled_ci", "episodes (tasks)"),
    ):
        rows = []
        for name, grp in groups.items():
            for scope_name, s in _scopes(grp["gyms"], grp["overall"]):
                n = str(grp["n_runs"]) if size == "runs" else f"{s['n']} ({s['n_tasks']})"
                rows.append([name] + [scope_name] * multi + [n] + [
                    f"{_num(s['metrics'][k][field])} {_interval(s['metrics'][k][ci_field])}" for k in GROUP_KEYS])
        tables.append(SeedTable(title, note, lead + [size] + [LABELS[k] for k in GROUP_KEYS], rows))
    rows = []
    for name, grp in groups.items():
        for scope_name, s in _scopes(grp["gyms"], grp["overall"]):
            for est, field, ci_field in (("mean over seeds [t]", "mean", "t_ci"),
                                         ("pooled [bootstrap]", "pooled", "pooled_ci")):
                rows.append([name] + [scope_name] * multi + [est] + [
                    f"{_num(s['pass_at_u'][str(k)][field])} {_interval(s['pass_at_u'][str(k)][ci_field])}"
                    for k in range(1, K + 1)])
    tables.append(SeedTable(f"Training seeds: Pass@U-k (K = {K})", "fraction of episodes solved within their first "
                            "k user-involved actions", lead + ["estimate"] + [f"Pass@U-{k}" for k in range(1, K + 1)],
                            rows))
    for p in pairs:
        pmulti = len(p["gyms"]) > 1
        rows = []
        for scope_name, s in _scopes(p["gyms"], p["overall"]):
            for key in PAIR_KEYS:
                m = s["metrics"][key]
                rows.append([LABELS[key]] + [scope_name] * pmulti + [
                    ", ".join(_num(d) for d in m["diffs"]), _num(m["mean"]), _interval(m["t_ci"]),
                    _interval(m["boot_ci"]), m["verdict"]])
        tables.append(SeedTable(
            f"Paired: {p['a']} - {p['b']} ({p['n_pairs']} pairs, {p['overall']['n_tasks']} tasks)",
            f"pair i = run i of each group (same training seed); significant: the t interval over pairs "
            f"(n = {p['n_pairs']}, {max(p['n_pairs'] - 1, 0)} df) excludes 0, and so does the paired bootstrap "
            f"over tasks ({p['bootstrap']['samples']} resamples) when there is one",
            ["metric"] + ["gym"] * pmulti + ["A - B per pair", "mean", "t 95% (pairs)", "bootstrap 95% (tasks)",
                                             "verdict"], rows))
    return tables


def _left(i: int, header: str) -> bool:
    """Whether a column holds text (left-aligned) rather than numbers."""
    return i == 0 or header in ("gym", "estimate", "verdict")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def seed_table_markdown(summary: Mapping[str, Any], pairs: Sequence[Mapping[str, Any]] = ()) -> str:
    """The `seed_tables` as Markdown (a ``###`` heading, a note and a table each), for a README.

    >>> from baorl.records import Turn
    >>> eps = [[Episode(gym="function", task_id="a", score=s, termination="finish", turns=[Turn(choice="answer")])]
    ...        for s in (0.0, 1.0)]
    >>> md = seed_table_markdown(group_metrics({"p": eps}, K=1, n_boot=0))
    >>> [line for line in md.splitlines() if line.startswith("| p |")][0][:40]
    '| p | 2 | 0.500 [-5.853, 6.853] | 0.000 '
    """
    out = []
    for t in seed_tables(summary, pairs):
        out += [f"### {t.title}", "", t.note, "", "| " + " | ".join(_md_cell(h) for h in t.header) + " |",
                "|" + "|".join("---" if _left(i, h) else "---:" for i, h in enumerate(t.header)) + "|"]
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
        out.append("")
    return "\n".join(out)


def seed_tables_html(summary: Mapping[str, Any], pairs: Sequence[Mapping[str, Any]] = ()) -> str:
    """The `seed_tables` as HTML (every string escaped), for the report's "Training seeds" section."""
    import html

    e = html.escape
    out = []
    for t in seed_tables(summary, pairs):
        out.append(f"<h3>{e(t.title)}</h3><p class='sub'>{e(t.note)}</p><table class='seeds'><thead><tr>")
        out += [f"<th class='{'l' if _left(i, h) else ''}'>{e(h)}</th>" for i, h in enumerate(t.header)]
        out.append("</tr></thead><tbody>")
        for row in t.rows:
            cells = []
            for i, c in enumerate(row):
                value, _, ci = c.partition(" [")
                body = e(value) + (f" <span class='ci'>[{e(ci)}</span>" if ci else "")
                cells.append(f"<td class='l'>{e(c)}</td>" if _left(i, t.header[i]) else f"<td>{body}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
    return "".join(out)
