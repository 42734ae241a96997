"""The Function gym (spec: gyms.md, "Function"), its safe evaluator and its task generator."""

import json
import math
import re
import time
from collections import Counter

import pytest

from baorl.gyms import TaskDataError, make
from baorl.gyms.expr import compile_rule, evaluate, parse_rule, variables_used
from baorl.gyms.function import FunctionGym, FunctionTask
from baorl.gyms.function_data import MAX_ABS_RESULT, embedded_split, generate_tasks, write_tasks


def gym_for(rule="(a + b) * c - d", test_case=(1, 2, 3, 4), expected=None, **kw):
    if expected is None:
        expected = evaluate(rule, test_case)
    g = FunctionGym(FunctionTask(id="t", rule=rule, test_case=list(test_case), expected_result=expected), **kw)
    g.reset(seed=0)
    return g


# ---- answers --------------------------------------------------------------------------------------
def test_correct_answer_gives_reward_1_and_terminates():
    g = gym_for()  # (1 + 2) * 3 - 4 = 5
    obs, r, term, trunc, info = g.step("[answer] 5")
    assert (r, term, trunc) == (1.0, True, False)
    assert info["termination"] == "solved" and info["user_involved"] is True
    assert "correct" in obs.lower()


def test_wrong_answer_gives_0_continues_and_does_not_leak():
    g = gym_for(rule="a * b * c * d", test_case=(3, 7, 9, 2))  # 378
    obs, r, term, trunc, info = g.step("[answer] 377")
    assert (r, term, trunc) == (0.0, False, False)
    assert "wrong" in obs.lower() and "378" not in obs and "a * b" not in obs
    assert info["user_involved"] is True and "termination" not in info
    obs, r, term, _, _ = g.step("[answer] 378")  # the agent may try again
    assert r == 1.0 and term


@pytest.mark.parametrize("answer,ok", [
    ("5.0000009", True), ("4.9999991", True), ("5.0000011", False), ("4.9999989", False), ("5", True), ("5.", True),
])
def test_answer_tolerance_is_1e_6(answer, ok):
    g = gym_for(expected=5.0)
    _, r, term, *_ = g.step(f"[answer] {answer}")
    assert (r == 1.0) is ok and term is ok


def test_non_integral_expected_result_with_tolerance():
    g = gym_for(rule="a / b + c - d", test_case=(1, 3, 0, 0))
    assert g.step("[answer] 0.33")[1] == 0.0
    assert g.step("[answer] 0.3333333")[1] == 1.0


@pytest.mark.parametrize("content", ["forty-two", "5 6", "x = 5", "nan", "inf", "1/2"])
def test_non_numeric_answer_gets_format_feedback(content):
    g = gym_for()
    obs, r, term, trunc, info = g.step(f"[answer] {content}")
    assert (r, term, trunc) == (0.0, False, False)
    assert "one number" in obs and info["valid"] is False and info["user_involved"] is False


# ---- probes --------------------------------------------------------------------------------------
def test_probe_states_the_value_rounded_to_4_decimals():
    g = gym_for(rule="a / b + c * d")
    assert g.step("[action] 1 3 2 2")[0] == "f(1, 3, 2, 2) = 4.3333"
    assert g.step("[action] 2 3 2 2")[0] == "f(2, 3, 2, 2) = 4.6667"
    obs, r, term, trunc, info = g.step("[action] 2 1 5 5")
    assert obs == "f(2, 1, 5, 5) = 27" and (r, term, trunc) == (0.0, False, False)
    assert info["user_involved"] is False and info["value"] == 27.0


@pytest.mark.parametrize("content", ["2,3,4,5", " 2, 3 ,4,  5 ", "[2, 3, 4, 5]", "(2 3 4 5)", "2\t3\n4 5"])
def test_probe_is_tolerant_of_commas_spaces_brackets(content):
    g = gym_for(rule="a + b * c - d")
    assert g.step(f"[action] {content}")[0] == "f(2, 3, 4, 5) = 9"


@pytest.mark.parametrize("content", ["1 2 3", "1 2 3 4 5", "1.5 2 3 4", "a b c d", "1 2 3 four", "1;2;3;4"])
def test_probe_with_wrong_arguments_gets_format_feedback(content):
    g = gym_for()
    obs, r, term, trunc, info = g.step(f"[action] {content}")
    assert (r, term, trunc) == (0.0, False, False)
    assert "exactly four integers" in obs and info["valid"] is False


def test_probe_accepts_zero_and_negative_integers():
    g = gym_for(rule="a - b * c + d")
    assert g.step("[action] 0 -2 3 -1")[0] == "f(0, -2, 3, -1) = 5"


@pytest.mark.parametrize("content", ["1 2 3 4", "1,2,3,4", "[1, 2, 3, 4]"])
def test_probing_the_test_inputs_is_refused(content):
    g = gym_for(test_case=(1, 2, 3, 4))
    obs, r, term, _, info = g.step(f"[action] {content}")
    assert r == 0 and not term and "test case" in obs and "cannot be queried" in obs
    assert "= 5" not in obs and info["refused"] is True


@pytest.mark.parametrize("rule,inputs", [
    ("a / (b - c) + d", "1 2 2 4"),  # division by zero
    ("a / (b * c - d)", "1 2 3 6"),
    ("c ** (a - b) * d", "3 5 0 1"),  # 0 ** negative
    ("a ** b ** c + d", "10 10 10 1"),  # overflow: not finite
    ("(a - b) ** (c / d) + 1", "1 2 1 2"),  # negative base, fractional power: not real
])
def test_undefined_values_ask_for_other_inputs(rule, inputs):
    g = gym_for(rule=rule, test_case=(7, 7, 7, 7), expected=0.0)
    t0 = time.perf_counter()
    obs, r, term, trunc, info = g.step(f"[action] {inputs}")
    assert time.perf_counter() - t0 < 1.0
    assert (r, term, trunc) == (0.0, False, False)
    assert "undefined" in obs and "other inputs" in obs and info["value"] is None


# ---- search, turn limit, prompts ----------------------------------------------------------------------
def test_search_test_gives_the_inputs_and_other_searches_a_hint():
    g = gym_for(test_case=(9, 1, 10, 4))
    obs, r, term, _, _ = g.step("[search] test")
    assert "a = 9, b = 1, c = 10, d = 4" in obs and r == 0 and not term
    assert "a = 9" in g.step("[search] Test case")[0]
    obs, r, term, _, info = g.step("[search] the rule")
    assert "only the content 'test'" in obs and r == 0 and not term and info["valid"] is False


def test_turn_limit_truncates():
    g = gym_for(max_turns=3)
    for _ in range(2):
        _, _, term, trunc, _ = g.step("[action] 5 5 5 5")
        assert not term and not trunc
    _, r, term, trunc, info = g.step("[answer] 4")
    assert (r, term, trunc) == (0.0, False, True) and info["termination"] == "turn_limit"
    g = gym_for(max_turns=1)
    _, r, term, trunc, info = g.step("[answer] 5")  # a correct answer on the last turn still solves
    assert (r, term, trunc) == (1.0, True, False) and info["termination"] == "solved"


def test_observations_never_show_the_rule_or_expected_result():
    g = gym_for(rule="d ** 2 - c * b + a", test_case=(4, 5, 6, 7))  # 23
    for action in ["[search] test", "[action] 1 1 1 1", "[answer] 22", "[action] 4 5 6 7", "[search] rule",
                   "[answer] what", "[action] 1 2"]:
        obs = g.step(action)[0]
        assert "d ** 2" not in obs and not re.search(r"\b23\b", obs)


def test_prompts_explain_the_game():
    g = gym_for(max_turns=11)
    obs, info = g.reset(seed=0)
    sp = info["system_prompt"]
    for needle in ("interact_with_env", "choice", "content", "'search'", "'test'", "'action'", "'answer'",
                   "four integers", "4 decimals", "11 turns", "<think>", "attention"):
        assert needle in sp, needle
    assert "11 turns" in obs and "search" in obs
    assert "+ - * / **" in sp and g.task.rule not in sp + obs


def test_registry_builds_the_gym_on_an_embedded_task():
    g = make("function-v0", task="gen-0000")
    obs, info = g.reset(seed=0)
    assert info["task_id"] == "gen-0000" and info["max_turns"] == 15 and info["user_choices"] == ["answer"]
    assert FunctionGym.needs_user is False and FunctionGym.default_max_turns == 15


# ---- data ----------------------------------------------------------------------------------------
def test_load_all_460_userrl_tasks_and_their_rules_give_the_expected_results(userrl):
    tasks = FunctionGym.load_tasks(userrl / "function" / "functions_train.json")
    assert len(tasks) == 460 and len({t.id for t in tasks}) == 460
    for t in tasks:
        assert len(t.test_case) == 4 and all(1 <= x <= 10 for x in t.test_case)
        assert compile_rule(t.rule)(*t.test_case) == t.expected_result, t.id


def _write(tmp_path, payload):
    p = tmp_path / "functions.json"
    p.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return p


GOOD = {"id": "f-1", "rule": "a + b * c - d", "test_case": [1, 2, 3, 4], "expected_result": 3.0}


@pytest.mark.parametrize("record,needle", [
    ({**GOOD, "rule": "__import__('os').getcwd()"}, "calls are not allowed"),
    ({**GOOD, "rule": "a + e"}, "unknown name 'e'"),
    ({**GOOD, "rule": "a +"}, "not a valid expression"),
    ({**GOOD, "test_case": [1, 2, 3]}, "exactly 4 integers"),
    ({**GOOD, "test_case": [1, 2, 3, "x"]}, "test_case"),
    ({**GOOD, "expected_result": "many"}, "expected_result"),
    ({k: v for k, v in GOOD.items() if k != "rule"}, "rule"),
    ("not an object", "is not a JSON object"),
])
def test_bad_records_raise_task_data_error_naming_file_and_record(tmp_path, record, needle):
    p = _write(tmp_path, [GOOD, {**GOOD, "id": "f-2"}, record])
    with pytest.raises(TaskDataError) as e:
        FunctionGym.load_tasks(p)
    msg = str(e.value)
    assert str(p) in msg and "record 2" in msg and needle in msg


def test_duplicate_ids_and_bad_files_raise_task_data_error(tmp_path):
    with pytest.raises(TaskDataError, match=r"record 1 \(id 'f-1'\): duplicate id"):
        FunctionGym.load_tasks(_write(tmp_path, [GOOD, GOOD]))
    with pytest.raises(TaskDataError, match="not valid JSON"):
        FunctionGym.load_tasks(_write(tmp_path, "[{'id': 1,"))
    with pytest.raises(TaskDataError, match="expected a JSON list"):
        FunctionGym.load_tasks(_write(tmp_path, {"f-1": GOOD}))
    with pytest.raises(TaskDataError, match="no such data file"):
        FunctionGym.load_tasks(tmp_path / "missing.json")
    assert FunctionGym.load_tasks(_write(tmp_path, [{**GOOD, "id": 7}]))[0].id == "7"


def test_embedded_splits():
    train, test, all_ = (FunctionGym.embedded_tasks(s) for s in ("train", "test", "all"))
    assert (len(train), len(test), len(all_)) == (460, 78, 538)
    assert {t.id for t in train} | {t.id for t in test} == {t.id for t in all_}
    assert not {t.id for t in train} & {t.id for t in test}
    with pytest.raises(ValueError, match="train, test, all"):
        FunctionGym.embedded_tasks("validation")


def test_write_tasks_round_trips_through_load_tasks(tmp_path):
    tasks = generate_tasks(n=25, seed=3)
    p = tmp_path / "out" / "f.json"
    assert write_tasks(p, tasks) == 25
    assert FunctionGym.load_tasks(p) == tasks


def test_generator_is_deterministic_and_prefix_stable():
    a, b = generate_tasks(n=60, seed=5), generate_tasks(n=60, seed=5)
    assert a == b and generate_tasks(n=20, seed=5) == a[:20]
    assert [t.rule for t in generate_tasks(n=60, seed=6)] != [t.rule for t in a]
    assert [t.id for t in a[:3]] == ["gen-0000", "gen-0001", "gen-0002"]
    assert list(embedded_split("all")) == generate_tasks()


def _binary_ops(node):
    """(operators between variables, number of `** 2` squarings) of a parsed rule."""
    if node[0] != "bin":
        return [], 0
    if node[1] == "**" and node[3] == ("num", 2.0):
        ops, sq = _binary_ops(node[2])
        return ops, sq + 1
    lo, ls = _binary_ops(node[2])
    ro, rs = _binary_ops(node[3])
    return lo + [node[1]] + ro, ls + rs


def test_generated_rules_are_in_the_benchmark_grammar_with_integral_results():
    tasks = generate_tasks()
    assert len({t.rule for t in tasks}) == len(tasks) == 538
    ops, squares = Counter(), Counter()
    for t in tasks:
        assert sorted(variables_used(t.rule)) == ["a", "b", "c", "d"], t.rule
        o, s = _binary_ops(parse_rule(t.rule))
        assert len(o) == 3 and s <= 2, t.rule
        ops.update(o)
        squares[s] += 1
        assert all(1 <= x <= 10 for x in t.test_case)
        v = compile_rule(t.rule)(*t.test_case)
        assert v == t.expected_result and v.is_integer() and abs(v) <= MAX_ABS_RESULT
        assert re.fullmatch(r"[abcd2()+\-*/ ]+", t.rule) and "  " not in t.rule
    # the benchmark's mix: * most common, then + and -, / and var ** var rarer; a third squared
    assert ops["*"] > ops["/"] > ops["**"] > 0 and ops["+"] > ops["/"] and ops["-"] > ops["/"]
    assert 0.25 < (squares[1] + squares[2]) / 538 < 0.45 and 0 < squares[2] < squares[1]


# ---- the safe evaluator ------------------------------------------------------------------------------
@pytest.mark.parametrize("rule,needle", [
    ("__import__('os').system('echo hi')", "calls are not allowed"),
    ("abs(a)", "calls are not allowed"),
    ("a.real", "attributes are not allowed"),
    ("x + a", "unknown name 'x'"),
    ("os", "unknown name 'os'"),
    ("a[0]", "subscripts are not allowed"),
    ("a < b", "comparisons are not allowed"),
    ("a and b", "boolean operators are not allowed"),
    ("lambda: 1", "lambdas are not allowed"),
    ("a if b else c", "conditional expressions are not allowed"),
    ("a // b", "FloorDiv"),
    ("a % b", "Mod"),
    ("a ^ b", "BitXor"),
    ("~a", "Invert"),
    ("'a' + b", "not a number"),
    ("True + a", "not a number"),
    ("1j * a", "not a number"),
    ("[a, b]", "List"),
    ("a = 1", "not a valid expression"),
    ("", "empty"),
    ("(" * 300 + "a" + ")" * 300, "not a valid expression"),
    ("-" * 100 + "a", "nested too deeply"),
    ("a + " * 400 + "a", "too long"),
])
def test_safe_evaluator_rejects_everything_else(rule, needle):
    with pytest.raises(ValueError) as e:
        compile_rule(rule)
    assert needle in str(e.value)


def test_safe_evaluator_arithmetic():
    assert compile_rule("-a + (b - c) * d ** 2 / 4")(1, 5, 3, 2) == 1.0
    assert compile_rule("c ** d ** b ** a")(3, 3, 1, 10) == 1.0  # right-associative power
    with pytest.raises(ZeroDivisionError):
        compile_rule("a / (b - c)")(1, 2, 2, 0)
    t0 = time.perf_counter()
    assert compile_rule("10 ** 10 ** 10")(0, 0, 0, 0) == math.inf
    assert compile_rule("-(a ** b ** c)")(9, 9, 9, 0) == -math.inf
    assert time.perf_counter() - t0 < 0.5
    assert math.isnan(compile_rule("(a - b) ** (c / d)")(1, 2, 1, 2))
    assert evaluate("a ** b ** c", [10, 10, 10, 0]) is None and evaluate("a / b", [1, 0, 0, 0]) is None
