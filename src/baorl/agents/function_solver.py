"""A scripted solver for the Function gym, and the programmatic teacher for its SFT data.

It keeps every rule of a grammar that covers the benchmark's functions and throws out the rules
that disagree with what it observes:

- the grammar: each of ``a, b, c, d`` exactly once, three binary operators among
  ``+ - * / **`` in any tree shape and leaf order, plus up to `MAX_SQUARES` squarings (``** 2``)
  of a variable or of a plain two-variable subterm;
- rules are deduplicated by meaning (their values on fixed random probe points), bottom up, so
  each candidate is one distinct function (`CandidateBank`, built once per process);
- each turn it reads the last feedback (the test inputs, a probed value, an undefined value, a
  rejected answer), keeps the consistent rules, and then answers if all of them agree on the test
  case, or else probes the pool point that best splits their test values;
- its ``<think>`` text states its real state in three parts: ``Memory`` (what it has seen),
  ``Hypotheses`` (how many rules remain, with examples) and ``Plan`` (turn t of T, next step).

>>> from baorl.gyms.function import FunctionGym, FunctionTask
>>> from baorl.runs.play import play_episode
>>> task = FunctionTask(id="demo", rule="(d + a) ** 2 * b + c", test_case=[2, 10, 2, 9], expected_result=1212)
>>> ep = play_episode(FunctionGym(task), FunctionSolver())
>>> ep.success, ep.user_actions, len(ep.turns) <= 6
(True, 1, True)
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from baorl.agents.base import Agent, tool_call_text

OPS: tuple[str, ...] = ("+", "-", "*", "/", "**")
VARS: tuple[str, ...] = ("a", "b", "c", "d")
MAX_SQUARES = 2
#: probes are drawn from integer points with coordinates in this range (never the test inputs)
PROBE_RANGE = (1, 10)
POOL_SIZE = 120
#: at most this many remaining rules are scored when choosing a probe
SCORE_SAMPLE = 1500
#: a probed value (shown rounded to 4 decimals) matches a rule within this absolute tolerance
VALUE_TOL = 5.001e-5
ANSWER_TOL = 1e-6

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "**": 3}


# ---- arithmetic (the same float semantics as baorl.gyms.expr) -----------------------------------
def apply_op(op: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Apply ``OPS[op]`` elementwise; every undefined result (x / 0, 0 ** -1, nan in) is nan.

    >>> apply_op(3, np.array([1.0, 1.0]), np.array([0.0, 4.0])).tolist()
    [nan, 0.25]
    >>> apply_op(4, np.array([1.0, -8.0, 10.0]), np.array([np.nan, 0.5, 1e10])).tolist()
    [nan, nan, inf]
    """
    with np.errstate(all="ignore"):
        if op == 0:
            return x + y
        if op == 1:
            return x - y
        if op == 2:
            return x * y
        if op == 3:
            return np.where(y == 0, np.nan, x / y)
        out = np.power(x, y)
        bad = np.isnan(x) | np.isnan(y) | ((x == 0) & (y < 0))
        return np.where(bad, np.nan, out)


def quantize(v: np.ndarray) -> np.ndarray:
    """An int64 key per value: ~10 significant digits, non-finite values kept apart."""
    with np.errstate(all="ignore"):
        m, e = np.frexp(np.where(np.isfinite(v), v, 0.0))
        q = np.round(m * 2.0**32).astype(np.int64) + e.astype(np.int64) * (1 << 34)
    return np.where(np.isnan(v), -(1 << 62), np.where(np.isposinf(v), 1 << 62, np.where(np.isneginf(v), -(1 << 61), q)))


def _hash_rows(v: np.ndarray) -> np.ndarray:
    """One uint64 per row of values (rows with equal values, up to float noise, share it)."""
    mult = np.random.default_rng(12345).integers(1, 1 << 62, size=v.shape[1], dtype=np.int64) | 1
    return (quantize(v).astype(np.uint64) * mult.astype(np.uint64)).sum(axis=1, dtype=np.uint64)


def value_key(v: np.ndarray, decimals: int) -> np.ndarray:
    """Group key of values rounded to `decimals` (equal values, up to float noise, share a key).

    >>> k = value_key(np.array([0.1 + 0.2, 0.3, 0.3001, np.nan]), 4)
    >>> bool(k[0] == k[1]), bool(k[1] == k[2]), bool(k[2] == k[3])
    (True, False, False)
    """
    with np.errstate(all="ignore"):
        return quantize(np.round(v, decimals))


def split_scores(outcomes: np.ndarray, test_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Score each probe column by how well its outcomes pin down the test value.

    Args:
        outcomes: (n, P) int keys of each rule's shown value at each of P probe points.
        test_codes: (n,) int codes of each rule's test value.

    Returns:
        ``expected_test_values``: per column, the expected number of distinct test values among
        the rules consistent with the outcome, sum_o (n_o / n) * |{test values in group o}|;
        ``expected_rules``: per column, the expected number of rules left, sum_o n_o^2 / n.

    >>> out = np.array([[0, 0], [0, 1], [1, 2], [1, 3]])
    >>> split_scores(out, np.array([5, 6, 5, 6]))
    (array([2., 1.]), array([2., 1.]))
    """
    n, p = outcomes.shape
    by_test = np.argsort(test_codes, kind="stable")
    o, t = outcomes[by_test], test_codes[by_test]
    order = np.argsort(o, axis=0, kind="stable")  # by outcome, then by test value
    os_, ts = np.take_along_axis(o, order, axis=0).T, t[order].T  # (P, n)
    start_o = np.ones((p, n), bool)
    start_o[:, 1:] = os_[:, 1:] != os_[:, :-1]
    start_ot = start_o.copy()
    start_ot[:, 1:] |= ts[:, 1:] != ts[:, :-1]
    run = np.cumsum(start_o.ravel()) - 1  # outcome group of each element
    group_size = np.bincount(run)
    group_col = np.flatnonzero(start_o.ravel()) // n
    pair_starts = np.flatnonzero(start_ot.ravel())
    e_tests = np.bincount(pair_starts // n, weights=group_size[run[pair_starts]], minlength=p) / n
    e_rules = np.bincount(group_col, weights=group_size.astype(float) ** 2, minlength=p) / n
    return e_tests, e_rules


# ---- the candidate bank ------------------------------------------------------------------------------
@dataclass
class CandidateBank:
    """All distinct functions of the grammar, as a tree of shared subterm nodes.

    Subterm nodes (one to three variables) are stored in evaluation order; `stages` evaluates them
    level by level with one numpy call per operator. Each candidate (all four variables) is
    ``node[left] OPS[op] node[right]``.
    """

    kind: np.ndarray  # per node: 0 variable, 1 square, 2 binary
    arg0: np.ndarray  # variable index / squared node / left node
    arg1: np.ndarray  # right node (binary only)
    nop: np.ndarray  # node operator (binary only)
    stages: list[tuple[str, int, np.ndarray]]  # ("var"|"sq"|"bin", op, node ids)
    cand_op: np.ndarray
    cand_l: np.ndarray
    cand_r: np.ndarray
    pool: np.ndarray  # (P, 4) integer probe points
    pool_nodes: np.ndarray = field(repr=False)  # node values at the pool points, (n_nodes, P)

    def __len__(self) -> int:
        return len(self.cand_op)

    def node_values(self, points: np.ndarray) -> np.ndarray:
        """Values of every subterm node at `points` (P, 4): shape (n_nodes, P)."""
        pts = np.asarray(points, dtype=float).reshape(-1, 4)
        out = np.empty((len(self.kind), len(pts)))
        for what, op, ids in self.stages:
            if what == "var":
                out[ids] = pts.T[self.arg0[ids]]
            elif what == "sq":
                with np.errstate(all="ignore"):
                    out[ids] = out[self.arg0[ids]] ** 2
            else:
                out[ids] = apply_op(op, out[self.arg0[ids]], out[self.arg1[ids]])
        return out

    def values(self, idx: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Values of candidates `idx` given their nodes' values: shape (len(idx), P)."""
        ops, left, right = self.cand_op[idx], self.cand_l[idx], self.cand_r[idx]
        out = np.empty((len(idx), nodes.shape[1]))
        for op in range(len(OPS)):
            sel = np.flatnonzero(ops == op)
            if len(sel):
                out[sel] = apply_op(op, nodes[left[sel]], nodes[right[sel]])
        return out

    def _node_text(self, i: int) -> tuple[str, int]:
        """A subterm's text and precedence (9 for a variable)."""
        k = int(self.kind[i])
        if k == 0:
            return VARS[int(self.arg0[i])], 9
        if k == 1:
            s, p = self._node_text(int(self.arg0[i]))
            return f"{s if p == 9 else f'({s})'} ** 2", 3
        return _join(OPS[int(self.nop[i])], self._node_text(int(self.arg0[i])), self._node_text(int(self.arg1[i])))

    def render(self, c: int) -> str:
        """Candidate `c` as rule text, e.g. ``(a + b) * c - d``."""
        return _join(OPS[int(self.cand_op[c])], self._node_text(int(self.cand_l[c])),
                     self._node_text(int(self.cand_r[c])))[0]


def _join(op: str, left: tuple[str, int], right: tuple[str, int]) -> tuple[str, int]:
    p = _PREC[op]
    ls = left[0] if left[1] > p or (left[1] == p and op != "**") else f"({left[0]})"
    rs = right[0] if right[1] > p or (right[1] == p and op == "**") else f"({right[0]})"
    return f"{ls} {op} {rs}", p


@lru_cache(maxsize=1)
def candidate_bank() -> CandidateBank:
    """Build the bank (about a second, once per process)."""
    rng = np.random.default_rng(20240601)
    # meaning = values on real points in (0.55, 1.95) (towers stay finite) and on integer points
    probe = np.vstack([rng.uniform(0.55, 1.95, size=(10, 4)), rng.integers(1, 11, size=(10, 4))])
    kind: list[np.ndarray] = []
    arg0: list[np.ndarray] = []
    arg1: list[np.ndarray] = []
    nop: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    stages: list[tuple[str, int, np.ndarray]] = []
    by_mask: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # mask -> (node ids, squares used)
    n_nodes = 0

    def add(k: np.ndarray, a0: np.ndarray, a1: np.ndarray, op: np.ndarray, v: np.ndarray) -> np.ndarray:
        nonlocal n_nodes
        ids = np.arange(n_nodes, n_nodes + len(k))
        n_nodes += len(k)
        kind.append(k), arg0.append(a0), arg1.append(a1), nop.append(op), vals.append(v)
        return ids

    def combos(mask: int) -> tuple[np.ndarray, ...]:
        """Every ``left op right`` over an ordered split of `mask`, within the squares budget."""
        parts = []
        sub = (mask - 1) & mask
        while sub:
            ln, ls = by_mask[sub]
            rn, rs = by_mask[mask ^ sub]
            li, ri = np.meshgrid(np.arange(len(ln)), np.arange(len(rn)), indexing="ij")
            li, ri = li.ravel(), ri.ravel()
            ok = ls[li] + rs[ri] <= MAX_SQUARES
            li, ri = li[ok], ri[ok]
            for op in range(len(OPS)):
                parts.append((np.full(len(li), op), ln[li], rn[ri], ls[li] + rs[ri]))
            sub = (sub - 1) & mask
        op, left, right, sq = (np.concatenate(x) for x in zip(*parts, strict=True))
        allv = np.concatenate(vals)
        v = np.empty((len(op), probe.shape[0]))
        for o in range(len(OPS)):
            sel = np.flatnonzero(op == o)
            v[sel] = apply_op(o, allv[left[sel]], allv[right[sel]])
        return op, left, right, sq, v

    def dedupe(sq: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Indices keeping one entry per distinct function, the one with fewest squares."""
        order = np.argsort(sq, kind="stable")
        _, first = np.unique(_hash_rows(v[order]), return_index=True)
        return np.sort(order[first])

    # one variable: x and x ** 2
    for i in range(4):
        v = probe[:, i][None, :]
        leaf = add(np.array([0]), np.array([i]), np.array([-1]), np.array([-1]), v)
        sqr = add(np.array([1]), leaf, np.array([-1]), np.array([-1]), v**2)
        by_mask[1 << i] = (np.concatenate([leaf, sqr]), np.array([0, 1]))
        stages.append(("var", -1, leaf))
        stages.append(("sq", -1, sqr))
    # two and three variables (squares of plain two-variable subterms), then all four
    for size in (2, 3):
        bins, sqs = [], []
        for mask in [m for m in range(1, 15) if bin(m).count("1") == size]:
            op, left, right, sq, v = combos(mask)
            keep = dedupe(sq, v)
            op, left, right, sq, v = op[keep], left[keep], right[keep], sq[keep], v[keep]
            ids = add(np.full(len(op), 2), left, right, op, v)
            bins.append((ids, op))
            node_ids, node_sq = ids, sq
            if size == 2:
                plain = np.flatnonzero(sq == 0)
                with np.errstate(all="ignore"):
                    sv = v[plain] ** 2
                # keep only squares that are new functions (not equal to a binary node kept above)
                keep_sq = dedupe(np.r_[sq, np.ones(len(plain), int)], np.vstack([v, sv]))
                keep_sq = keep_sq[keep_sq >= len(op)] - len(op)
                sq_ids = add(np.ones(len(keep_sq), int), ids[plain[keep_sq]], np.full(len(keep_sq), -1),
                             np.full(len(keep_sq), -1), sv[keep_sq])
                sqs.append(sq_ids)
                node_ids = np.concatenate([ids, sq_ids])
                node_sq = np.concatenate([sq, np.ones(len(sq_ids), int)])
            by_mask[mask] = (node_ids, node_sq)
        all_ids, all_ops = np.concatenate([b[0] for b in bins]), np.concatenate([b[1] for b in bins])
        for o in range(len(OPS)):
            stages.append(("bin", o, all_ids[all_ops == o]))
        if sqs:
            stages.append(("sq", -1, np.concatenate(sqs)))
    op, left, right, sq, v = combos(15)
    keep = dedupe(sq, v)
    # a candidate undefined on every meaning point is of no use to the solver
    keep = keep[np.isfinite(v[keep]).any(axis=1)]

    rng_pool = np.random.default_rng(7)
    lo, hi = PROBE_RANGE
    pool = np.unique(rng_pool.integers(lo, hi + 1, size=(POOL_SIZE, 4)), axis=0)
    bank = CandidateBank(
        kind=np.concatenate(kind), arg0=np.concatenate(arg0), arg1=np.concatenate(arg1),
        nop=np.concatenate(nop), stages=stages, cand_op=op[keep], cand_l=left[keep], cand_r=right[keep],
        pool=pool, pool_nodes=np.empty((0, 0)),
    )
    bank.pool_nodes = bank.node_values(pool)
    return bank


# ---- the agent -----------------------------------------------------------------------------------------
_TEST = re.compile(r"a = (-?\d+), b = (-?\d+), c = (-?\d+), d = (-?\d+)")
_VALUE = re.compile(r"f\(([-\d, ]+)\) = ([-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|inf|nan))")
_UNDEFINED = re.compile(r"f\(([-\d, ]+)\) is undefined")


def _fmt(v: float) -> str:
    if abs(v - round(v)) < 1e-9 and abs(v) < 1e15:
        return str(int(round(v)))
    return repr(float(v))


def _inputs(p: Any) -> str:
    return ", ".join(str(int(x)) for x in p)


class FunctionSolver(Agent):
    """Eliminates candidate rules by probing, then answers once the test value is certain.

    Decided here:

    - turn 1 is always ``search test``; probes come from a fixed pool of points in 1..10;
    - a probe is chosen to minimise the expected number of distinct test values left (ties: the
      expected number of rules left), scored on at most `SCORE_SAMPLE` remaining rules;
    - it answers when every remaining rule agrees on the test value; on its last turn, or when no
      probe can split the remaining rules, it answers the most common value; a rejected answer
      removes the rules giving it;
    - if no rule of the grammar fits, it says so and sends ``[finish]`` rather than guessing.

    **Budget schedule** (off by default; spec: bao.md §2, budget scheduling). A teacher whose
    episodes must fit a small model's token budget can be told to plan for fewer turns than the
    gym allows and to commit sooner:

    - ``deadline=D``: its plan counts turns against D instead of the gym's limit ("turn t of D");
      on turn D it answers its most common value; when an answer is rejected with no turn left to
      probe before answering again (on turn D - 1 or later) it stops with ``[finish]`` rather than
      guess again ("my answer was rejected and no turn is left to probe again, so I stop here"),
      so an episode has at most D + 1 turns;
    - ``probes=(lo, hi)``: after at most k probes since its last answer, k drawn per task
      uniformly from lo..hi (seeded by the task id, so a task always gets the same k), it
      answers its most common value even when the rules still disagree; a rejected answer removes
      the rules giving it and the count starts again. This puts wrong answers, what follows
      them and the stop at the deadline into the demonstrations;
    - ``concise=True``: the think block states the same memory, hypotheses and plan in about
      two thirds of the tokens (one example rule, short phrases). A certain and an uncertain
      answer are planned in the same words ("answer 7, the value of 12% of the rules left (probes
      spent)"; "... of 100% ..."): a student's confident answers are mostly wrong too, and it must
      recognise the rejection that follows either as the same situation.

    Args:
        max_turns: the turn budget to plan for when the gym's info does not give one.
        deadline: plan for this many turns (at most the gym's limit); None plans for the gym's limit.
        probes: ``(lo, hi)`` probe allowance between answers, or None (probe until certain).
        concise: the short think text.
    """

    name = "scripted:function-solver"

    def __init__(self, max_turns: int = 15, *, deadline: int | None = None,
                 probes: tuple[int, int] | None = None, concise: bool = False) -> None:
        if deadline is not None and deadline < 2:
            raise ValueError(f"deadline must be at least 2 turns (search, then answer), got {deadline}")
        if probes is not None:
            lo, hi = (int(x) for x in probes)
            if not 0 <= lo <= hi:
                raise ValueError(f"probes must be (lo, hi) with 0 <= lo <= hi, got {probes}")
            probes = (lo, hi)
        self.default_max_turns = max_turns
        self.deadline, self.probes, self.concise = deadline, probes, concise

    def start(self, system_prompt: str, task_prompt: str, info: dict[str, Any]) -> dict[str, Any]:
        bank = candidate_bank()
        max_turns = int(info.get("max_turns", self.default_max_turns))
        allowance = None
        if self.probes is not None:  # one draw per task, the same every time the task is played
            lo, hi = self.probes
            key = str(info.get("task_id", task_prompt))
            allowance = lo + zlib.crc32(key.encode("utf-8")) % (hi - lo + 1)
        return {
            "max_turns": max_turns if self.deadline is None else min(self.deadline, max_turns),
            "allowance": allowance,  # probes allowed between answers (None: until certain)
            "since_answer": 0,  # probes since the last answer
            "turn": 0,
            "alive": np.arange(len(bank)),  # candidate ids still consistent with everything seen
            "test": None,  # the test inputs, once known
            "test_vals": None,  # values of the alive candidates on the test inputs
            "probes": [],  # (inputs, value or None) observed
            "rejected": [],  # answers the user rejected
            "last": None,  # ("search", None) | ("probe", inputs) | ("answer", value)
        }

    # ---- reading feedback --------------------------------------------------------------------------
    def _observe(self, obs: str, st: dict[str, Any]) -> None:
        bank = candidate_bank()
        last = st["last"]
        if last is None:
            return
        kind, arg = last
        if kind == "search":
            m = _TEST.search(obs)
            if m:
                st["test"] = tuple(int(x) for x in m.groups())
                try:
                    point = np.array([st["test"]], dtype=float)
                except OverflowError:  # an input beyond float range (over ~308 digits): no rule can be evaluated
                    st["unsupported"] = ("the test inputs are too large for floating-point arithmetic, so no "
                                         "rule's value on them can be computed")
                    self._keep(st, np.zeros(len(st["alive"]), bool))
                    return
                nodes = bank.node_values(point)
                tv = bank.values(st["alive"], nodes)[:, 0]
                ok = np.isfinite(tv)  # the expected result is a finite number
                st["alive"], st["test_vals"] = st["alive"][ok], tv[ok]
        elif kind == "probe":
            m, u = _VALUE.search(obs), _UNDEFINED.search(obs)
            if m is None and u is None:
                return
            nodes = bank.node_values(np.array([arg]))
            v = bank.values(st["alive"], nodes)[:, 0]
            if m is not None:
                obs_v = float(m.group(2))
                st["probes"].append((arg, obs_v))
                ok = np.isfinite(v) & (np.abs(v - obs_v) <= VALUE_TOL + 1e-9 * abs(obs_v))
            else:
                st["probes"].append((arg, None))
                ok = ~np.isfinite(v)
            self._keep(st, ok)
        elif kind == "answer" and "wrong" in obs.lower():
            st["rejected"].append(arg)
            self._keep(st, np.abs(st["test_vals"] - arg) > ANSWER_TOL)

    @staticmethod
    def _keep(st: dict[str, Any], ok: np.ndarray) -> None:
        st["alive"] = st["alive"][ok]
        if st["test_vals"] is not None:
            st["test_vals"] = st["test_vals"][ok]

    # ---- choosing a probe ----------------------------------------------------------------------
    def _best_probe(self, st: dict[str, Any]) -> tuple[tuple[int, ...] | None, float]:
        """The pool point minimising the expected number of test values left, and that number.

        Returns ``(None, inf)`` when no unused pool point would split the test values at all.
        """
        bank = candidate_bank()
        alive, test_vals = st["alive"], st["test_vals"]
        if len(alive) > SCORE_SAMPLE:
            pick = np.random.default_rng(len(alive)).choice(len(alive), SCORE_SAMPLE, replace=False)
            alive, test_vals = alive[pick], test_vals[pick]
        used = {tuple(p) for p, _ in st["probes"]} | {st["test"]}
        cols = [j for j, p in enumerate(bank.pool) if tuple(int(x) for x in p) not in used]
        if not cols:
            return None, math.inf
        outcomes = value_key(bank.values(alive, bank.pool_nodes[:, cols]), 4)
        _, test_codes = np.unique(value_key(test_vals, 6), return_inverse=True)
        e_tests, e_rules = split_scores(outcomes, test_codes)
        k = int(np.lexsort((e_rules, e_tests))[0])
        if e_tests[k] >= test_codes.max() + 1 - 1e-9:
            return None, math.inf
        return tuple(int(x) for x in bank.pool[cols[k]]), float(e_tests[k])

    # ---- one turn ----------------------------------------------------------------------------------
    def respond(self, observation: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        st = dict(state)
        st["probes"], st["rejected"] = list(st["probes"]), list(st["rejected"])
        self._observe(observation, st)
        st["turn"] += 1
        t, T = st["turn"], st["max_turns"]
        bank = candidate_bank()
        short = self.concise
        memory = self._memory(st, short)

        if st["test"] is None:
            n = len(st["alive"])
            think = (f"{memory}\nHypotheses: {n:,} rules.\nPlan: turn {t} of {T}: look up the test case." if short else
                     f"{memory}\nHypotheses: all {n:,} rules of my grammar are possible (each of "
                     "a, b, c, d once, three operators among + - * / **, up to two squares).\n"
                     f"Plan: turn {t} of {T}. First I look up the test case's inputs.")
            st["last"] = ("search", None)
            return tool_call_text("search", "test", think), st

        n = len(st["alive"])
        rejected = st["last"] is not None and st["last"][0] == "answer"  # (a right answer ends the episode)
        stop = None
        if st.get("unsupported"):
            stop = (f"Hypotheses: none can be checked: {st['unsupported']}.",
                    "I cannot pin down the value, so I stop here.")
        elif n == 0:
            stop = ("Hypotheses: no rule of my grammar fits these observations.",
                    "I cannot pin down the value, so I stop here.")
        elif rejected and t >= T:  # no turn left to probe before answering again
            stop = (f"Hypotheses: {n:,} rules left." if short else f"Hypotheses: {n:,} candidate rules remain.",
                    "my answer was rejected and no turn is left to probe again, so I stop here.")
        if stop is not None:
            hyp, why = stop
            sep = ": " if short else "; " if rejected else ". "
            think = f"{memory}\n{hyp}\nPlan: turn {t} of {T}{sep}{why}"
            st["last"] = ("finish", None)
            return f"<think>{think}</think>\n[finish]", st

        tkey = value_key(st["test_vals"], 6)
        uniq, first, counts = np.unique(tkey, return_index=True, return_counts=True)
        top = int(first[np.argmax(counts)])
        if short:
            hyp = (f"Hypotheses: 1 rule left: f = {bank.render(int(st['alive'][0]))}." if n == 1 else
                   f"Hypotheses: {n:,} rules left, {len(uniq):,} test value{'s' if len(uniq) > 1 else ''}, "
                   f"e.g. f = {bank.render(int(st['alive'][top]))}.")
        elif n == 1:
            hyp = f"Hypotheses: 1 candidate rule remains: f = {bank.render(int(st['alive'][0]))}."
        else:
            spread = "all give the same value" if len(uniq) == 1 else f"give {len(uniq):,} different values"
            hyp = (f"Hypotheses: {n:,} candidate rules remain, e.g. {self._examples(bank, st['alive'], top)}; "
                   f"they {spread} on the test case.")
        answer_value = float(st["test_vals"][top])
        share = int(counts.max()) / n

        if len(uniq) == 1:
            plan = (f"Plan: turn {t} of {T}: answer {_fmt(answer_value)}, the value of 100% of the rules left." if short else
                    f"Plan: turn {t} of {T}. Every remaining rule gives f({_inputs(st['test'])}) = "
                    f"{_fmt(answer_value)}, so I answer it.")
            return self._answer(st, answer_value, memory, hyp, plan)
        spent = st["allowance"] is not None and st["since_answer"] >= st["allowance"]
        probe, expect = (None, math.inf) if t >= T or spent else self._best_probe(st)
        if probe is None:
            if short:  # phrased as the certain answer is, plus why it answers now
                why = "last turn" if t >= T else "probes spent" if spent else "no probe splits them"
                plan = (f"Plan: turn {t} of {T}: answer {_fmt(answer_value)}, the value of {share:.0%} of the rules "
                        f"left ({why}).")
            else:
                why = ("this is my last turn" if t >= T else "I have used my probes for this answer" if spent
                       else "no probe can split them further")
                plan = (f"Plan: turn {t} of {T}; {why}, so I answer the most common value, "
                        f"{_fmt(answer_value)} ({share:.0%} of the remaining rules).")
            return self._answer(st, answer_value, memory, hyp, plan)
        plan = (f"Plan: turn {t} of {T}: probe f({_inputs(probe)}), about {expect:.1f} value{'s' if expect >= 1.05 else ''} left after."
                if short else
                f"Plan: turn {t} of {T}. Probe f({_inputs(probe)}): afterwards about {expect:.1f} "
                f"test value{'s' if expect >= 1.05 else ''} should remain.")
        st["last"] = ("probe", probe)
        st["since_answer"] += 1
        return tool_call_text("action", " ".join(map(str, probe)), f"{memory}\n{hyp}\n{plan}"), st

    @staticmethod
    def _answer(st: dict[str, Any], value: float, memory: str, hyp: str, plan: str) -> tuple[str, dict[str, Any]]:
        st["last"] = ("answer", value)
        st["since_answer"] = 0
        return tool_call_text("answer", _fmt(value), f"{memory}\n{hyp}\n{plan}"), st

    @staticmethod
    def _examples(bank: CandidateBank, alive: np.ndarray, top: int) -> str:
        picks = [int(alive[top])] + [int(c) for c in alive[:3] if int(c) != int(alive[top])][:1]
        return " or ".join(f"f = {bank.render(c)}" for c in picks)

    @staticmethod
    def _memory(st: dict[str, Any], short: bool = False) -> str:
        parts = []
        if st["test"] is not None:
            parts.append(f"test ({_inputs(st['test'])})" if short else f"the test case is ({_inputs(st['test'])})")
        for p, v in st["probes"]:
            parts.append(f"f({_inputs(p)}) = {_fmt(v)}" if v is not None else f"f({_inputs(p)}) is undefined")
        if st["rejected"]:
            parts.append(("wrong: " if short else "rejected answers: ") + ", ".join(_fmt(v) for v in st["rejected"]))
        return "Memory: " + ("; ".join(parts) if parts else "nothing yet" if short else "nothing observed yet") + "."
