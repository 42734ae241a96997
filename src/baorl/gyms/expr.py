"""A safe evaluator for the Function gym's rules (spec: gyms.md, "Function").

A rule is an arithmetic expression over the variables ``a, b, c, d``. It is parsed with
``ast.parse(mode="eval")`` and checked node by node: only numbers, the four variables, the binary
operators ``+ - * / **``, unary minus and parentheses are allowed; anything else (calls, attributes,
other names, comparisons, subscripts, ...) raises `ValueError`. Rules are never given to `eval`.

Arithmetic is done in Python floats, so it always finishes quickly:

- division by zero (and ``0 ** negative``) raises `ZeroDivisionError`;
- an overflowing power gives ``±inf`` instead of a huge integer (``10 ** 10 ** 10`` returns at once);
- a negative base to a fractional power, or any ``nan`` along the way, gives ``nan``.

Callers decide what a non-finite value means; `is_defined` is the usual test.

>>> f = compile_rule("(d + a) ** 2 * b + c")
>>> f(2, 10, 2, 9)
1212.0
>>> compile_rule("a / (b - c)")(1, 2, 2, 0)
Traceback (most recent call last):
...
ZeroDivisionError: division by zero
>>> compile_rule("10 ** 10 ** 10")(0, 0, 0, 0)
inf
>>> compile_rule("__import__('os')")
Traceback (most recent call last):
...
ValueError: rule "__import__('os')": calls are not allowed (only numbers, a, b, c, d, + - * / ** and parentheses)
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from functools import lru_cache

VARIABLES: tuple[str, ...] = ("a", "b", "c", "d")
MAX_RULE_CHARS = 1000
MAX_DEPTH = 64

# a checked rule as a small tuple tree: ("num", x) | ("var", i) | ("neg", t) | ("bin", op, l, r)
Node = tuple
RuleFn = Callable[[float, float, float, float], float]

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_ALLOWED = "only numbers, a, b, c, d, + - * / ** and parentheses"
_KIND_NAMES = {
    ast.Call: "calls", ast.Attribute: "attributes", ast.Subscript: "subscripts",
    ast.Compare: "comparisons", ast.BoolOp: "boolean operators", ast.Lambda: "lambdas",
    ast.IfExp: "conditional expressions", ast.JoinedStr: "f-strings",
}


def _reject(rule: str, what: str) -> ValueError:
    return ValueError(f"rule {rule!r}: {what} are not allowed ({_ALLOWED})")


def _convert(node: ast.AST, rule: str, depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise ValueError(f"rule {rule!r}: nested too deeply (more than {MAX_DEPTH} levels)")
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"rule {rule!r}: the constant {v!r} is not a number ({_ALLOWED})")
        try:
            x = float(v)
        except OverflowError:
            raise ValueError(f"rule {rule!r}: the constant {v} is too large") from None
        if not math.isfinite(x):
            raise ValueError(f"rule {rule!r}: the constant {v!r} is not finite")
        return ("num", x)
    if isinstance(node, ast.Name):
        if node.id not in VARIABLES:
            raise ValueError(f"rule {rule!r}: unknown name {node.id!r} (the variables are a, b, c, d)")
        return ("var", VARIABLES.index(node.id))
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub):
            raise _reject(rule, f"the unary operator {type(node.op).__name__}")
        return ("neg", _convert(node.operand, rule, depth + 1))
    if isinstance(node, ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise _reject(rule, f"the operator {type(node.op).__name__}")
        return ("bin", op, _convert(node.left, rule, depth + 1), _convert(node.right, rule, depth + 1))
    raise _reject(rule, _KIND_NAMES.get(type(node), f"{type(node).__name__} nodes"))


@lru_cache(maxsize=4096)
def parse_rule(rule: str) -> Node:
    """Check a rule and return its tuple tree; raise `ValueError` if it is not a valid rule.

    >>> parse_rule("a - 2 * b")
    ('bin', '-', ('var', 0), ('bin', '*', ('num', 2.0), ('var', 1)))
    >>> parse_rule("a.real")
    Traceback (most recent call last):
    ...
    ValueError: rule 'a.real': attributes are not allowed (only numbers, a, b, c, d, + - * / ** and parentheses)
    """
    if not isinstance(rule, str):
        raise ValueError(f"a rule must be a string, got {type(rule).__name__}")
    if not rule.strip():
        raise ValueError("rule is empty")
    if len(rule) > MAX_RULE_CHARS:
        raise ValueError(f"rule is too long ({len(rule)} characters, at most {MAX_RULE_CHARS})")
    try:
        tree = ast.parse(rule.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise ValueError(f"rule {rule!r} is not a valid expression: {e.__class__.__name__}") from None
    return _convert(tree.body, rule, 0)


def _pow(x: float, y: float) -> float:
    if math.isnan(x) or math.isnan(y):
        return math.nan  # unlike IEEE (nan ** 0 == 1): undefined stays undefined
    if x == 0.0 and y < 0:
        raise ZeroDivisionError("zero to a negative power")
    if x < 0 and math.isfinite(y) and y != math.floor(y):
        return math.nan  # a real power of a negative number is not real
    try:
        return x**y
    except OverflowError:
        odd = math.isfinite(y) and y == math.floor(y) and math.fmod(y, 2.0) != 0.0
        return -math.inf if (x < 0 and odd) else math.inf


def binop(op: str, x: float, y: float) -> float:
    """Apply one binary operator with the evaluator's float semantics.

    >>> binop("**", 2.0, 10.0), binop("**", -8.0, 1 / 3), binop("**", 10.0, 1e10)
    (1024.0, nan, inf)
    """
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "/":
        if y == 0.0:
            raise ZeroDivisionError("division by zero")
        return x / y
    if op == "**":
        return _pow(x, y)
    raise ValueError(f"unknown operator {op!r}")


def _eval(node: Node, env: tuple[float, float, float, float]) -> float:
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "var":
        return env[node[1]]
    if kind == "neg":
        return -_eval(node[1], env)
    return binop(node[1], _eval(node[2], env), _eval(node[3], env))


def compile_rule(rule: str) -> RuleFn:
    """Check `rule` and return ``f(a, b, c, d) -> float`` evaluating it safely.

    Raises `ValueError` now if the rule is invalid; the returned function raises
    `ZeroDivisionError` on division by zero and may return ``inf``/``nan`` (see the module doc).

    >>> compile_rule("c ** d ** b ** a")(3, 3, 1, 10)  # 1 ** (huge) is still 1
    1.0
    """
    tree = parse_rule(rule)

    def f(a: float, b: float, c: float, d: float) -> float:
        return _eval(tree, (float(a), float(b), float(c), float(d)))

    f.__doc__ = f"f(a, b, c, d) = {rule}"
    return f


def evaluate(rule: str, inputs: tuple[float, ...] | list[float]) -> float | None:
    """The rule's value on four inputs, or None where it is undefined (division by zero, non-finite).

    >>> evaluate("a / b + c * d", [1, 4, 2, 3])
    6.25
    >>> evaluate("a / (b - c) + d", [1, 2, 2, 3]) is None
    True
    """
    if len(inputs) != 4:
        raise ValueError(f"a rule takes exactly 4 inputs (a, b, c, d), got {len(inputs)}")
    try:
        v = compile_rule(rule)(*inputs)
    except (ZeroDivisionError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def variables_used(rule: str) -> list[str]:
    """The variables a rule mentions, in order of appearance (repeats kept).

    >>> variables_used("(d + a) ** 2 * b + c")
    ['d', 'a', 'b', 'c']
    """
    out: list[str] = []

    def walk(node: Node) -> None:
        if node[0] == "var":
            out.append(VARIABLES[node[1]])
        elif node[0] == "neg":
            walk(node[1])
        elif node[0] == "bin":
            walk(node[2])
            walk(node[3])

    walk(parse_rule(rule))
    return out
