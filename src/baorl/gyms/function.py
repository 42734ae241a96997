"""The Function gym: probe a hidden arithmetic function, then give its value on a test case.

Spec: gyms.md, "Function". Fully deterministic; no user simulator.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, ClassVar

from baorl.gyms.base import Gym, Outcome, Task
from baorl.gyms.expr import compile_rule
from baorl.gyms.function_data import FunctionTask, embedded_split
from baorl.gyms.taskfile import load_records

#: an answer is correct when it is this close to the expected result
ANSWER_TOLERANCE = 1e-6
#: the splits of the embedded (generated) task set
EMBEDDED_SPLITS: tuple[str, ...] = ("train", "test", "all")

_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TEST_WORDS = {"test", "test case", "test_case", "testcase", "the test case"}


def format_value(v: float) -> str:
    """A value as the gym shows it: rounded to 4 decimals, integers without a trailing ``.0``.

    >>> format_value(1212.0), format_value(-2 / 3), format_value(1e20), format_value(-0.00001)
    ('1212', '-0.6667', '1e+20', '0')
    """
    r = round(v, 4)
    if r == 0:
        return "0"
    if r == int(r) and abs(r) < 1e15:
        return str(int(r))
    return repr(r)


def parse_inputs(content: str) -> list[int] | None:
    """Four integers from an ``action`` content, or None if it is not exactly four integers.

    Commas, extra spaces and one pair of surrounding brackets are tolerated.

    >>> parse_inputs("1 2 3 4"), parse_inputs(" [1, -2,3 ,4] "), parse_inputs("1 2 3"), parse_inputs("1 2 3 4.5")
    ([1, 2, 3, 4], [1, -2, 3, 4], None, None)
    """
    s = content.strip()
    if len(s) >= 2 and s[0] + s[-1] in ("[]", "()", "{}"):
        s = s[1:-1]
    tokens = [t for t in re.split(r"[\s,]+", s) if t]
    if len(tokens) != 4 or not all(_INT.fullmatch(t) and len(t) <= 12 for t in tokens):
        return None
    return [int(t) for t in tokens]


def parse_answer(content: str) -> float | None:
    """The number in an ``answer`` content, or None if it is not exactly one number.

    >>> parse_answer("42"), parse_answer("-3.5"), parse_answer("1e3."), parse_answer("forty"), parse_answer("1 2")
    (42.0, -3.5, 1000.0, None, None)
    """
    s = content.strip().rstrip(".").strip()
    if not _NUMBER.fullmatch(s):
        return None
    v = float(s)
    return v if math.isfinite(v) else None


class FunctionGym(Gym):
    """Black-box arithmetic: find the value of a hidden function f(a, b, c, d) on a test case.

    Description:
        The hidden rule is an arithmetic expression over the integer inputs ``a, b, c, d`` built
        from ``+ - * / **`` and parentheses, e.g. ``(d + a) ** 2 * b + c``. The agent may probe f
        on inputs of its choice, look up the test case's inputs, and answer with f(test case).

    Actions:
        One call of ``interact_with_env(choice, content)`` per turn:

        - ``action`` with four integers ``"n1 n2 n3 n4"`` (commas allowed): the gym states
          f(n1, n2, n3, n4) rounded to 4 decimals. The test case's own inputs are refused; where f
          divides by zero or is not finite, the gym asks for other inputs.
        - ``search`` with ``test``: the gym gives the test case's four inputs.
        - ``answer`` with one number: the claimed value of f on the test case.

    Observation:
        The gym's feedback text. It never contains the rule or the expected result.

    Rewards:
        1 for a correct answer (within 1e-6 of the expected result), else 0. Probes, searches,
        wrong answers and malformed calls all give 0.

    User-involved choices:
        ``answer`` (the user must check each claimed value).

    Episode end:
        Terminated on a correct answer (``solved``) or ``[finish]``; truncated at the turn limit
        (``turn_limit``). A wrong answer does not end the episode.

    Arguments:
        task: a `FunctionTask`. max_turns: the turn limit (default 15, the paper's T).
        reward_in_obs: suffix the observation with the step reward (training only).

    Version history:
        v0: first version, following UserRL's Function environment.

    Example episode:

    >>> task = FunctionTask(id="demo", rule="(a + b) * c - d", test_case=[1, 2, 3, 4], expected_result=5)
    >>> gym = FunctionGym(task)
    >>> _ = gym.reset(seed=0)
    >>> gym.step("[search] test")[0]
    'The test case is a = 1, b = 2, c = 3, d = 4. Find f(1, 2, 3, 4).'
    >>> gym.step("[action] 2 2 2 2")[0]
    'f(2, 2, 2, 2) = 6'
    >>> gym.step("[answer] 6")[:3]
    ('Wrong answer, try again.', 0.0, False)
    >>> gym.step("[answer] 5")[:3]
    ('Correct! That is the value of f on the test case.', 1.0, True)
    """

    name: ClassVar[str] = "function"
    version: ClassVar[int] = 0
    task_model: ClassVar[type[Task]] = FunctionTask
    user_choices: ClassVar[frozenset[str]] = frozenset({"answer"})
    default_max_turns: ClassVar[int] = 15
    needs_user: ClassVar[bool] = False

    task: FunctionTask

    def __init__(self, task: Task | dict[str, Any], **kwargs: Any) -> None:
        super().__init__(task, **kwargs)  # type: ignore[arg-type]
        self._f = compile_rule(self.task.rule)

    # ---- prompts ----------------------------------------------------------------------------------
    def system_prompt(self) -> str:
        return (
            "You are playing a black-box function game. A hidden function f(a, b, c, d) maps four "
            "integers to a number using only + - * / ** and parentheses. Your goal is to tell the user "
            "the value of f on a hidden test case.\n\n"
            "You act only through the tool interact_with_env, with two arguments: choice and content.\n"
            "- choice 'search', content 'test': shows the test case's four inputs.\n"
            "- choice 'action', content four integers 'n1 n2 n3 n4' (the values of a, b, c, d): shows "
            "f on those inputs, rounded to 4 decimals. You may not query the test case's own inputs.\n"
            "- choice 'answer', content one number: your value of f on the test case. A correct answer "
            "ends the game; a wrong one does not, but every answer costs the user's attention, so "
            "answer only when your probes pin the value down.\n\n"
            f"You have at most {self.max_turns} turns; each tool call is one turn. Before each call, "
            "reason inside <think>...</think>: what you have learned, which rules still fit, and "
            "what to do next. Then make exactly one tool call."
        )

    def task_prompt(self) -> str:
        return (
            "I have a hidden function f(a, b, c, d). Find out what it does by probing it on inputs "
            "of your choice, then tell me its value on my test case (use search with 'test' to see "
            f"the test case). You have {self.max_turns} turns."
        )

    def format_hint(self) -> str:
        return (
            "Call interact_with_env with choice 'action' and four integers (e.g. '3 1 4 1'), "
            "'search' and 'test', or 'answer' and one number."
        )

    # ---- one call ------------------------------------------------------------------------------------
    async def handle(self, choice: str, content: str) -> Outcome:
        if choice == "action":
            return self._probe(content)
        if choice == "search":
            if content.strip().lower() in _TEST_WORDS:
                a, b, c, d = self.task.test_case
                return Outcome(f"The test case is a = {a}, b = {b}, c = {c}, d = {d}. Find f({a}, {b}, {c}, {d}).")
            return Outcome("Search understands only the content 'test', which shows the test case's inputs.",
                           info={"valid": False})
        return self._answer(content)

    def _probe(self, content: str) -> Outcome:
        inputs = parse_inputs(content)
        if inputs is None:
            return Outcome(
                "Invalid probe: the content of 'action' must be exactly four integers, the values of "
                "a, b, c, d, e.g. '3 1 4 1'.",
                info={"valid": False},
            )
        shown = ", ".join(map(str, inputs))
        if inputs == list(self.task.test_case):
            return Outcome(f"({shown}) are the test case's inputs and cannot be queried. Probe other inputs.",
                           info={"inputs": inputs, "refused": True})
        try:
            value = self._f(*inputs)
        except (ZeroDivisionError, OverflowError):
            value = math.nan
        if not math.isfinite(value):
            return Outcome(f"f({shown}) is undefined (division by zero or a non-finite value). Try other inputs.",
                           info={"inputs": inputs, "value": None})
        return Outcome(f"f({shown}) = {format_value(value)}", info={"inputs": inputs, "value": value})

    def _answer(self, content: str) -> Outcome:
        value = parse_answer(content)
        if value is None:
            return Outcome("Invalid answer: the content of 'answer' must be one number, e.g. '42' or '-3.5'.",
                           info={"valid": False})
        correct = abs(value - self.task.expected_result) <= ANSWER_TOLERANCE
        info = {"answer": value, "correct": correct, "expected_result": self.task.expected_result}
        if correct:
            return Outcome("Correct! That is the value of f on the test case.", reward=1.0, solved=True, info=info)
        return Outcome("Wrong answer, try again.", info=info)

    # ---- data ----------------------------------------------------------------------------------------
    @classmethod
    def load_tasks(cls, path: str | Path) -> list[Task]:
        """Load UserRL's ``functions.json``: a JSON list of ``{id, rule, test_case, expected_result}``.

        Raises:
            TaskDataError: the file is unreadable or not JSON (names the path), or a record is
                invalid or repeats an id (names the path and the record's index and id).
        """
        return load_records(path, FunctionTask, list, what="Function records")

    @classmethod
    def embedded_tasks(cls, split: str = "test") -> list[Task]:
        """baorl's generated Function tasks: ``train`` (460), ``test`` (78) or ``all`` (538)."""
        if split not in EMBEDDED_SPLITS:
            raise ValueError(f"unknown split {split!r} for the embedded Function tasks; use one of "
                             + ", ".join(EMBEDDED_SPLITS))
        return list(embedded_split(split))
