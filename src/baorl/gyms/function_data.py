"""baorl's own generator of Function tasks, the embedded default of the Function gym.

The generated set follows the distribution of the benchmark's functions (spec: gyms.md, "Function"),
as measured once on UserRL's 460 training rules; the tables below are baorl's own estimates, and no
rule is copied. What the benchmark's rules look like, and so what this generator makes:

- each of ``a, b, c, d`` appears exactly once, joined by three binary operators among
  ``+ - * / **`` (``**`` between two variables only in unparenthesised chains, as in the data);
- optional squarings (``** 2``) of a variable or of a parenthesised sum, at most two per rule
  (about a third of the rules have one, about a sixth of those two);
- the text has spaces around operators and parentheses where a template puts them, so the tree
  follows Python's precedence (``a + b * c ** d`` is ``a + (b * (c ** d)))``);
- test inputs are integers 1..10 and every expected result is an integer of magnitude at most
  `MAX_ABS_RESULT` (the benchmark's largest is just under 5000).

Rules are drawn from the templates with `_TEMPLATE_WEIGHTS` and `_OP_WEIGHTS`, then kept only if
their value on the test case is a finite integer in range; these weights were tuned so that the
kept rules match the benchmark's template and operator frequencies.

>>> tasks = generate_tasks(n=3, seed=7)
>>> [t.id for t in tasks]
['gen-0000', 'gen-0001', 'gen-0002']
>>> generate_tasks(n=3, seed=7) == tasks  # deterministic
True
>>> len(embedded_split("train")), len(embedded_split("test"))
(460, 78)
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from pydantic import field_validator

from baorl.gyms.base import Task
from baorl.gyms.expr import VARIABLES, evaluate, parse_rule

#: the benchmark's size and its train/test split
N_TASKS, N_TRAIN, N_TEST = 538, 460, 78
#: generated rules must have an integral test-case value of at most this magnitude
MAX_ABS_RESULT = 5000
#: test inputs are drawn uniformly from this range
INPUT_RANGE = (1, 10)

# Templates: {0}..{3} are the variables (a random order of a, b, c, d), {p} {q} {r} the
# operators, drawn left to right. Fixed operators are written in. Weights are relative.
_TEMPLATE_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("{0} {p} {1} {q} {2} {r} {3}", 22.0),               # plain chain; the only one with var ** var
    ("({0} {p} {1} {q} {2}) {r} {3}", 15.5),
    ("{0} {p} ({1} {q} {2}) {r} {3}", 12.0),
    ("({0} {p} {1}) {q} ({2} {r} {3})", 11.0),
    ("({0} {p} {1}) {q} {2} {r} {3}", 8.0),
    ("{0} {p} ({1} {q} {2} {r} {3})", 4.5),
    ("{0} ** 2 {p} {1} {q} {2} {r} {3}", 4.0),
    ("{0} {p} {1} ** 2 {q} {2} {r} {3}", 11.0),
    ("{0} ** 2 {p} {1} ** 2 {q} {2} {r} {3}", 6.0),
    ("({0} + {1}) ** 2 {q} {2} {r} {3}", 8.0),
    ("({0} ** 2 {p} {1}) {q} {2} * {3}", 7.0),
)
#: operator weights for a free operator slot (`**` only in the plain chain)
_OP_WEIGHTS: dict[str, float] = {"+": 0.26, "-": 0.25, "*": 0.27, "/": 0.22}
_POW_WEIGHT_IN_CHAIN = 0.30


class FunctionTask(Task):
    """One Function task: UserRL's record ``{id, rule, test_case, expected_result}``."""

    rule: str
    test_case: list[int]
    expected_result: float

    @field_validator("rule")
    @classmethod
    def _rule_is_safe(cls, v: str) -> str:
        parse_rule(v)  # raises ValueError naming what is not allowed
        return v

    @field_validator("test_case")
    @classmethod
    def _four_inputs(cls, v: list[int]) -> list[int]:
        if len(v) != 4:
            raise ValueError(f"test_case must hold exactly 4 integers (a, b, c, d), got {len(v)}")
        return v

    @field_validator("expected_result")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"expected_result must be a finite number, got {v}")
        return v


def _draw_rule(rng: random.Random) -> str:
    templates, weights = zip(*_TEMPLATE_WEIGHTS, strict=True)
    template = rng.choices(templates, weights=weights)[0]
    ops = list(_OP_WEIGHTS)
    op_w = list(_OP_WEIGHTS.values())
    if template == templates[0]:
        ops.append("**")
        op_w = [w * (1 - _POW_WEIGHT_IN_CHAIN) for w in op_w] + [_POW_WEIGHT_IN_CHAIN]
    p, q, r = rng.choices(ops, weights=op_w, k=3)
    order = rng.sample(VARIABLES, 4)
    return template.format(*order, p=p, q=q, r=r)


def _draw_task(rng: random.Random, seen: set[str]) -> tuple[str, list[int], float]:
    lo, hi = INPUT_RANGE
    while True:
        rule = _draw_rule(rng)
        test_case = [rng.randint(lo, hi) for _ in VARIABLES]
        if rule in seen:
            continue
        value = evaluate(rule, test_case)
        if value is not None and value.is_integer() and abs(value) <= MAX_ABS_RESULT:
            return rule, test_case, value


@lru_cache(maxsize=8)
def _generate(n: int, seed: int) -> tuple[FunctionTask, ...]:
    rng = random.Random(f"baorl-function:{seed}")
    seen: set[str] = set()
    out = []
    for i in range(n):
        rule, test_case, value = _draw_task(rng, seen)
        seen.add(rule)
        out.append(FunctionTask(id=f"gen-{i:04d}", rule=rule, test_case=test_case, expected_result=value))
    return tuple(out)


def generate_tasks(n: int = N_TASKS, seed: int = 0) -> list[FunctionTask]:
    """`n` Function tasks with ids ``gen-0000``...; the same (n, seed) always gives the same tasks.

    Task i depends only on the seed and i, so a larger `n` extends a smaller one.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [t.model_copy(deep=True) for t in _generate(n, seed)]


@lru_cache(maxsize=4)
def embedded_split(split: str) -> tuple[FunctionTask, ...]:
    """The embedded set: 538 generated tasks (seed 0), shuffled with a fixed seed into 460 train / 78 test."""
    tasks = list(_generate(N_TASKS, 0))
    if split == "all":
        return tuple(tasks)
    order = list(range(len(tasks)))
    random.Random("baorl-function-split").shuffle(order)
    if split == "train":
        return tuple(tasks[i] for i in sorted(order[:N_TRAIN]))
    if split == "test":
        return tuple(tasks[i] for i in sorted(order[N_TRAIN:]))
    raise ValueError(f"unknown split {split!r}; use one of train, test, all")


def write_tasks(path: str | Path, tasks: Iterable[FunctionTask]) -> int:
    """Write tasks in UserRL's native ``functions.json`` format; returns how many were written."""
    records = [
        {"id": t.id, "rule": t.rule, "test_case": list(t.test_case), "expected_result": float(t.expected_result)}
        for t in tasks
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return len(records)
