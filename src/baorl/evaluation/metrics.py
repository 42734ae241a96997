"""Metrics of saved episode records (spec: metrics.md): pure functions, no I/O.

Every number here is computed from `baorl.records.Episode` records alone, so any run can be
re-scored later (``baorl score DIR``). Per gym, over its tasks:

- **score**: mean of the episodes' `score` (the sum of the gym's unshaped step rewards).
- **success**: mean of the episodes' `success` flag.
- **Pass@U-k**, k = 1..K: the fraction of episodes that succeed within their first k
  user-involved actions (`episode_pass_at_u`).
- **hypervolume**: the area under the Pass@U-k step curve on [0, K], divided by K (`hypervolume`).
- **user rate**: an episode's user-involved turns over its turns, averaged over episodes.
- **RTR** (reward-translation rate): the fraction of user-involved actions whose step reward is
  positive, pooled over the gym's episodes; its sample count is ``user_actions``.

Decisions filling the spec's gaps (metrics.md says "decided here" for several):

- Success and the turn it was reached: every gym ends the episode as soon as it declares the
  task solved (Turtle: best rubric score >= the threshold; Intention: every detail covered), so a
  successful episode's solving turn is its last turn, and it "succeeds within k user-involved
  actions" iff ``success`` and its user-involved turns number at most k. Non-binary scores
  (Turtle's best rubric score, Intention's coverage) thus enter Pass@U-k only through `success`;
  their graded value is the score metric.
- K defaults to `DEFAULT_K` (5), raised to the most user-involved actions any successful episode
  needed, so every curve reaches its plateau; runs compared together share one K.
- Hypervolume: the curve takes the value Pass@U-k on (k-1, k]; the area on [0, K] divided by K is
  the mean of Pass@U-1..K, which is 1 exactly when every episode succeeds with its first user action.
- An episode with no turns has user rate 0. RTR is None (null) when no episode has a user action.
- Confidence intervals (95%): percentile bootstrap over tasks (`n_boot` resamples of the tasks
  with replacement, seeded; a task's episodes of every seed move together). Each gym's resamples
  are drawn from its own stream (seeded by the seed and the gym name), so adding a gym to a run
  does not change another gym's interval. Overall intervals resample every gym's tasks at once
  (stratified), keeping each gym's weight fixed.
- Several seeds (records carry `seed`): a task's value is the mean over its episodes; the
  ``*_seed_ci`` keys give a Student-t 95% interval of the per-seed metric over seeds.
- Overall: the average of the gyms' metrics weighted by their numbers of tasks (gyms where a
  metric is None are left out of its average).
- Simulator errors: an episode that ended in ``simulator_error`` says nothing about the agent (the
  simulator or judge failed), so it is left out of every metric and of ``n``; each scope counts
  such episodes in ``simulator_errors`` instead (a rerun of the same command plays them again).
"""

from __future__ import annotations

import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from baorl.records import Episode

__all__ = [
    "DEFAULT_K", "N_BOOT", "METRIC_KEYS", "episode_user_actions", "episode_pass_at_u", "episode_user_rate",
    "episode_reward_raises", "choose_k", "pass_at_u_curve", "hypervolume", "pareto_front", "score_episodes",
]

#: the default largest k of Pass@U-k (raised to cover every successful episode)
DEFAULT_K = 5
#: default bootstrap resamples
N_BOOT = 1000
#: the scalar metrics of a scope, in table order (Pass@U-k is a curve, kept apart)
METRIC_KEYS = ("score", "success", "hypervolume", "user_rate", "rtr")


# ---- per episode ------------------------------------------------------------------------------
def episode_user_actions(ep: Episode) -> int:
    """U(tau): the episode's user-involved turns."""
    return sum(t.user_involved for t in ep.turns)


def episode_pass_at_u(ep: Episode, k: int) -> bool:
    """Whether `ep` succeeds within its first `k` user-involved actions.

    A successful episode ends on its solving turn, so it passes at every k >= U(tau).

    >>> from baorl.records import Turn
    >>> wrong, right = Turn(choice="answer", user_involved=True), Turn(choice="answer", reward=1.0, user_involved=True)
    >>> ep = Episode(gym="function", task_id="t", turns=[wrong, right], success=True, termination="solved")
    >>> [episode_pass_at_u(ep, k) for k in (1, 2, 3)]
    [False, True, True]
    """
    return bool(ep.success) and episode_user_actions(ep) <= k


def episode_user_rate(ep: Episode) -> float:
    """User-involved turns over all turns (0 for an episode with no turns).

    >>> from baorl.records import Turn
    >>> ep = Episode(gym="g", task_id="t", termination="turn_limit",
    ...              turns=[Turn(choice="action"), Turn(choice="answer", user_involved=True)])
    >>> episode_user_rate(ep)
    0.5
    """
    return episode_user_actions(ep) / len(ep.turns) if ep.turns else 0.0


def episode_reward_raises(ep: Episode) -> tuple[int, int]:
    """(user-involved actions with a positive step reward, user-involved actions): RTR's counts.

    A positive step reward is a raise: Turtle rewards max(0, score - best so far).
    """
    user = [t for t in ep.turns if t.user_involved]
    return sum(t.reward > 0 for t in user), len(user)


# ---- curves -----------------------------------------------------------------------------------
def choose_k(episodes: Iterable[Episode], default: int = DEFAULT_K) -> int:
    """`default`, raised to the most user-involved actions a successful episode needed.

    >>> choose_k([])
    5
    """
    need = [episode_user_actions(e) for e in episodes if e.success]
    return max([default, *need])


def pass_at_u_curve(episodes: Sequence[Episode], K: int) -> list[float]:
    """Pass@U-k for k = 1..K as plain fractions of `episodes` (no task grouping)."""
    if not episodes:
        return [0.0] * K
    return [sum(episode_pass_at_u(e, k) for e in episodes) / len(episodes) for k in range(1, K + 1)]


def hypervolume(curve: Sequence[float]) -> float:
    """Area under the Pass@U-k step curve on [0, K], normalised by K: the mean of Pass@U-1..K.

    >>> hypervolume([0.5, 1.0, 1.0, 1.0])
    0.875
    """
    if not curve:
        raise ValueError("hypervolume needs a Pass@U curve with K >= 1 points")
    return float(sum(curve) / len(curve))


def pareto_front(curves: dict[str, Sequence[float]]) -> list[str]:
    """Names of the curves no other curve dominates (>= at every k and > at some k).

    Equal curves tie: neither dominates the other, so both stay on the front.

    >>> pareto_front({"a": [0.2, 0.5], "b": [0.1, 0.5], "c": [0.3, 0.4], "d": [0.2, 0.5]})
    ['a', 'c', 'd']
    """
    def dominates(x: Sequence[float], y: Sequence[float]) -> bool:
        return all(a >= b for a, b in zip(x, y, strict=True)) and any(a > b for a, b in zip(x, y, strict=True))

    return [n for n, c in curves.items() if not any(dominates(o, c) for m, o in curves.items() if m != n)]


# ---- per-task tables and their means ------------------------------------------------------------
@dataclass
class _Tasks:
    """One gym's per-task values (a task's value: the mean over its episodes; counts: sums)."""

    ids: list[str]
    score: np.ndarray    # (n,)
    success: np.ndarray  # (n,)
    passk: np.ndarray    # (n, K)
    urate: np.ndarray    # (n,)
    raises: np.ndarray   # (n,) sums
    actions: np.ndarray  # (n,) sums

    @classmethod
    def build(cls, episodes: Sequence[Episode], K: int) -> _Tasks:
        by_task: dict[str, list[Episode]] = defaultdict(list)
        for e in episodes:
            by_task[e.task_id].append(e)
        ids = sorted(by_task)

        def mean(f: Any) -> np.ndarray:
            return np.array([np.mean([f(e) for e in by_task[t]]) for t in ids], dtype=float).reshape(len(ids))

        counts = np.array([[sum(episode_reward_raises(e)[j] for e in by_task[t]) for j in (0, 1)] for t in ids],
                          dtype=float).reshape(len(ids), 2)
        passk = np.array([[np.mean([episode_pass_at_u(e, k) for e in by_task[t]]) for k in range(1, K + 1)]
                          for t in ids], dtype=float).reshape(len(ids), K)
        return cls(ids, mean(lambda e: e.score), mean(lambda e: float(e.success)), passk,
                   mean(episode_user_rate), counts[:, 0], counts[:, 1])

    def means(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric over the task rows `idx` (shape (B, n)): arrays of shape (B,) ((B, K) for passk)."""
        passk = self.passk[idx].mean(axis=1)
        actions = self.actions[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rtr = np.where(actions > 0, self.raises[idx].sum(axis=1) / actions, np.nan)
        return {"score": self.score[idx].mean(axis=1), "success": self.success[idx].mean(axis=1),
                "hypervolume": passk.mean(axis=1), "user_rate": self.urate[idx].mean(axis=1), "rtr": rtr,
                "passk": passk}


def _weighted(parts: list[tuple[float, dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    """Task-weighted average of per-gym metric arrays; NaN entries (undefined RTR) drop out."""
    out: dict[str, np.ndarray] = {}
    for key in parts[0][1]:
        vals = np.stack([p[key] for _, p in parts])                     # (G, B[, K])
        w = np.array([wt for wt, _ in parts], dtype=float).reshape((-1,) + (1,) * (vals.ndim - 1))
        w = np.where(np.isnan(vals), 0.0, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[key] = np.where(w.sum(0) > 0, np.nansum(vals * w, axis=0) / w.sum(0), np.nan)
    return out


# Student-t 0.975 quantiles for 1..30 degrees of freedom (seed intervals; 1.96 beyond)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def _t_interval(values: np.ndarray) -> list[float | None]:
    """Student-t 95% interval of the mean of `values` along axis 0 (NaNs dropped)."""
    v = values[~np.isnan(values)]
    if len(v) < 2:
        return [None, None]
    t = _T975[len(v) - 2] if len(v) - 1 <= len(_T975) else 1.96
    half = t * float(np.std(v, ddof=1)) / math.sqrt(len(v))
    return [float(v.mean()) - half, float(v.mean()) + half]


def _percentile(samples: np.ndarray) -> list[float | None]:
    s = samples[~np.isnan(samples)]
    if len(s) == 0:
        return [None, None]
    return [float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5))]


def _num(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def _round(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_round(v) for v in x]
    if isinstance(x, float):
        return _num(x)
    return x


def _scope(point: dict[str, np.ndarray], boot: dict[str, np.ndarray] | None,
           seeds: dict[int, dict[str, np.ndarray]], K: int) -> dict[str, Any]:
    """The metrics.json entry of one scope (a gym or overall) from point estimates and resamples."""
    ks = [str(k) for k in range(1, K + 1)]
    out: dict[str, Any] = {}
    for key in METRIC_KEYS:
        out[key] = _num(point[key][0])
        out[f"{key}_ci"] = _percentile(boot[key]) if boot is not None else [None, None]
    out["pass_at_u"] = {k: _num(point["passk"][0, i]) for i, k in enumerate(ks)}
    out["pass_at_u_ci"] = {k: (_percentile(boot["passk"][:, i]) if boot is not None else [None, None])
                           for i, k in enumerate(ks)}
    if len(seeds) > 1:
        per = list(seeds.values())
        for key in METRIC_KEYS:
            out[f"{key}_seed_ci"] = _t_interval(np.array([s[key][0] for s in per]))
        out["pass_at_u_seed_ci"] = {k: _t_interval(np.array([s["passk"][0, i] for s in per]))
                                    for i, k in enumerate(ks)}
    return out


def _counts(episodes: Sequence[Episode]) -> dict[str, Any]:
    n = len(episodes)
    return {
        "n": n,
        "n_tasks": len({e.task_id for e in episodes}),
        "seeds": sorted({e.seed for e in episodes}),
        "user_actions": sum(episode_user_actions(e) for e in episodes),
        "turns_mean": _num(np.mean([len(e.turns) for e in episodes])) if n else None,
        "user_actions_mean": _num(np.mean([episode_user_actions(e) for e in episodes])) if n else None,
        "terminations": dict(sorted(Counter(e.termination for e in episodes).items())),
        "policies": sorted({e.policy for e in episodes}),
        "simulators": sorted({e.simulator for e in episodes}),
    }


def score_episodes(episodes: Sequence[Episode], *, K: int | None = None, n_boot: int = N_BOOT,
                   seed: int = 0) -> dict[str, Any]:
    """All metrics of `episodes`, per gym and overall, in the layout of ``metrics.json``.

    Args:
        episodes: records of any gyms, tasks and seeds (a task's episodes are averaged).
        K: the largest k of Pass@U-k (default: `choose_k`).
        n_boot: bootstrap resamples of the tasks (0: no intervals; they are then ``[null, null]``).
        seed: the bootstrap's seed; the same seed gives the same intervals.

    Returns:
        ``{"schema", "K", "bootstrap", "gyms": {GYM: SCOPE}, "overall": SCOPE}``, where a SCOPE holds
        ``n`` (scored episodes), ``simulator_errors`` (episodes left out), ``n_tasks``, ``seeds``, each of `METRIC_KEYS` with its ``*_ci`` (and
        ``*_seed_ci`` with several seeds), ``pass_at_u`` / ``pass_at_u_ci`` keyed "1".."K", and
        counts (``user_actions``, ``terminations``, ...). Overall adds ``weights`` (tasks per gym).
        With no episodes, ``gyms`` is empty and every overall metric is None.

    >>> from baorl.records import Turn
    >>> ok = Episode(gym="function", task_id="a", success=True, score=1.0, termination="solved",
    ...              turns=[Turn(choice="answer", reward=1.0, user_involved=True)])
    >>> bad = Episode(gym="function", task_id="b", termination="turn_limit", turns=[Turn(choice="action")])
    >>> m = score_episodes([ok, bad], K=2, n_boot=0)
    >>> m["gyms"]["function"]["score"], m["gyms"]["function"]["pass_at_u"], m["overall"]["user_rate"]
    (0.5, {'1': 0.5, '2': 0.5}, 0.5)
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    errors = Counter(e.gym for e in episodes if e.termination == "simulator_error")
    episodes = [e for e in episodes if e.termination != "simulator_error"]
    K = choose_k(episodes) if K is None else K
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    by_gym: dict[str, list[Episode]] = defaultdict(list)
    for e in episodes:
        by_gym[e.gym].append(e)
    gyms, parts, boots, seed_parts = {}, [], [], defaultdict(list)
    for name in sorted(by_gym):
        eps = by_gym[name]
        table = _Tasks.build(eps, K)
        n = len(table.ids)
        point = table.means(np.arange(n)[None, :])
        boot = None
        if n_boot:
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            boot = table.means(rng.integers(0, n, size=(n_boot, n)))
            boots.append((n, boot))
        seeds: dict[int, dict[str, np.ndarray]] = {}
        for s in sorted({e.seed for e in eps}):
            st = _Tasks.build([e for e in eps if e.seed == s], K)
            seeds[s] = st.means(np.arange(len(st.ids))[None, :])
            seed_parts[s].append((n, seeds[s]))
        gyms[name] = {**_counts(eps), "simulator_errors": errors[name], **_scope(point, boot, seeds, K)}
        parts.append((n, point))

    if parts:
        seeds_all = {s: _weighted(p) for s, p in seed_parts.items()}
        overall = {**_counts(episodes), "simulator_errors": sum(errors.values()),
                   **_scope(_weighted(parts), _weighted(boots) if boots else None, seeds_all, K),
                   "weights": {g: v["n_tasks"] for g, v in gyms.items()}}
    else:
        overall = {**_counts(episodes), "simulator_errors": sum(errors.values()), "weights": {}}
        overall.update({key: None for key in METRIC_KEYS})
        overall.update({f"{key}_ci": [None, None] for key in METRIC_KEYS})
        overall["pass_at_u"] = {str(k): None for k in range(1, K + 1)}
        overall["pass_at_u_ci"] = {str(k): [None, None] for k in range(1, K + 1)}
    return _round({
        "schema": 1,
        "K": K,
        "bootstrap": {"samples": n_boot, "seed": seed, "unit": "task", "level": 0.95, "method": "percentile"},
        "gyms": gyms,
        "overall": overall,
    })
