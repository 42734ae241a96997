"""The scripted Function solver: grammar coverage, solving every task, a truthful think block."""

import math
import re
import statistics
import time

import numpy as np
import pytest

from baorl.agents import make_agent
from baorl.agents.base import Agent, tool_call_text
from baorl.agents.function_solver import FunctionSolver, candidate_bank
from baorl.gyms.expr import compile_rule, evaluate
from baorl.gyms.function import FunctionGym, FunctionTask
from baorl.runs.play import play_episode


@pytest.fixture(scope="module")
def shared_tasks(userrl):
    return FunctionGym.load_tasks(userrl / "function" / "functions_train.json")


def play_all(tasks, **gym_kw):
    return [play_episode(FunctionGym(t, **gym_kw), FunctionSolver()) for t in tasks]


def report(label, eps):
    answers = statistics.mean(e.user_actions for e in eps)
    turns = statistics.mean(len(e.turns) for e in eps)
    print(f"\n{label}: {sum(e.success for e in eps)}/{len(eps)} solved, {answers:.3f} answers/episode, "
          f"{turns:.2f} turns/episode")
    return answers, turns


def check_solved(eps, max_turns=15):
    failed = [e.task_id for e in eps if not (e.success and e.score == 1.0 and e.termination == "solved")]
    assert not failed, f"not solved: {failed}"
    assert max(len(e.turns) for e in eps) <= max_turns


# ---- the grammar ---------------------------------------------------------------------------------
def _rule_values(rule, pts):
    f = compile_rule(rule)
    out = []
    for p in pts:
        try:
            out.append(f(*p))
        except ZeroDivisionError:
            out.append(math.nan)
    return np.array(out)


def test_every_shared_and_generated_rule_is_a_candidate(shared_tasks):
    bank = candidate_bank()
    rng = np.random.default_rng(0)
    pts = np.vstack([rng.integers(1, 11, size=(40, 4)), rng.uniform(0.6, 1.9, size=(10, 4))])
    vals = bank.values(np.arange(len(bank)), bank.node_values(pts))
    finite = np.isfinite(vals)
    rules = [t.rule for t in shared_tasks] + [t.rule for t in FunctionGym.embedded_tasks("all")]
    missing = []
    with np.errstate(all="ignore"):
        for rule in rules:
            x = _rule_values(rule, pts)
            fx = np.isfinite(x)
            near = np.abs(vals[:, 0] - x[0]) <= 1e-9 * max(1.0, abs(x[0])) if fx[0] else ~finite[:, 0]
            cand = vals[near]  # the few candidates agreeing on the first point, checked on all
            close = np.abs(cand - np.where(fx, x, 0.0)) <= 1e-9 * np.maximum(1.0, np.abs(x))
            match = (np.isfinite(cand) == fx).all(axis=1) & np.where(fx, close, True).all(axis=1)
            if not match.any():
                missing.append(rule)
    assert not missing, f"rules outside the solver's grammar: {missing[:5]}"


def test_candidates_are_distinct_functions_and_render_to_their_own_rules():
    bank = candidate_bank()
    assert 20_000 < len(bank) < 200_000
    rng = np.random.default_rng(1)
    pts = rng.uniform(0.6, 1.9, size=(12, 4))
    vals = bank.values(np.arange(len(bank)), bank.node_values(pts))
    rounded = np.round(np.nan_to_num(vals, nan=-7.5, posinf=7e300, neginf=-7e300), 6)
    assert len(np.unique(rounded, axis=0)) > 0.99 * len(bank)
    for c in rng.choice(len(bank), 200, replace=False):  # rendering is faithful to the tree
        np.testing.assert_allclose(_rule_values(bank.render(int(c)), pts), vals[c], rtol=1e-9, equal_nan=True)


def test_bank_build_and_turns_are_fast(shared_tasks):
    t0 = time.perf_counter()
    fresh = candidate_bank.__wrapped__()
    assert time.perf_counter() - t0 < 5.0 and len(fresh) == len(candidate_bank())
    t0 = time.perf_counter()
    eps = play_all(shared_tasks[:20])
    per_turn = (time.perf_counter() - t0) / sum(len(e.turns) for e in eps)
    assert per_turn < 0.2, f"{per_turn:.3f} s per turn"


# ---- solving -------------------------------------------------------------------------------------
def test_solves_all_460_shared_training_tasks(shared_tasks):
    eps = play_all(shared_tasks)
    check_solved(eps)
    answers, turns = report("UserRL train (460)", eps)
    assert answers == 1.0 and turns < 5


def test_solves_all_embedded_test_tasks():
    eps = play_all(FunctionGym.embedded_tasks("test"))
    check_solved(eps)
    answers, turns = report("embedded test (78)", eps)
    assert answers == 1.0 and turns < 5


@pytest.mark.slow
def test_solves_all_embedded_train_tasks():
    eps = play_all(FunctionGym.embedded_tasks("train"))
    check_solved(eps)
    report("embedded train (460)", eps)


def test_same_episode_twice_and_registry_name(shared_tasks):
    a = play_episode(FunctionGym(shared_tasks[5]), make_agent("scripted:function-solver"))
    b = play_episode(FunctionGym(shared_tasks[5]), FunctionSolver())
    assert a == b and a.policy == "scripted:function-solver"


def test_short_budget_answers_on_the_last_turn(shared_tasks):
    guessed = 0
    for task in shared_tasks[:10]:
        ep = play_episode(FunctionGym(task, max_turns=3), FunctionSolver())
        assert [t.choice for t in ep.turns] == ["search", "action", "answer"]
        plan = ep.turns[-1].think.split("\n")[-1]
        if "Every remaining rule gives" in plan:  # one probe was enough: it must then be right
            assert ep.success
        else:
            assert "this is my last turn" in plan and "most common value" in plan
            guessed += 1
    assert guessed >= 3
    eps = [play_episode(FunctionGym(t, max_turns=5), FunctionSolver()) for t in shared_tasks[:40]]
    check_solved(eps, max_turns=5)


# ---- the think block ------------------------------------------------------------------------------
def test_think_is_structured_and_true(shared_tasks):
    for task in shared_tasks[:25]:
        ep = play_episode(FunctionGym(task), FunctionSolver())
        counts = []
        for i, turn in enumerate(ep.turns, 1):
            lines = turn.think.split("\n")
            assert [ln.split(":")[0] for ln in lines] == ["Memory", "Hypotheses", "Plan"], turn.think
            assert f"Plan: turn {i} of 15" in turn.think
            # everything the gym said so far is in memory, and nothing else
            for prev in ep.turns[: i - 1]:
                m = re.match(r"(f\([-\d, ]+\) = \S+)", prev.feedback)
                if m:
                    assert m.group(1) in lines[0]
                if prev.choice == "search":
                    assert "the test case is ({})".format(", ".join(map(str, task.test_case))) in lines[0]
            if i == 1:
                assert "nothing observed yet" in lines[0] and turn.choice == "search"
                continue
            n = int(re.search(r"Hypotheses: (?:all )?([\d,]+) ", turn.think).group(1).replace(",", ""))
            counts.append(n)
            examples = re.findall(r"f = ([^;.]+?)(?: or |;|\.$)", lines[1])
            assert examples, lines[1]
            if turn.choice == "answer":  # the named rules really give the answered value
                for rule in examples:
                    assert abs(evaluate(rule, task.test_case) - float(turn.content)) < 1e-6
                assert f"= {turn.content}, so I answer it" in lines[2]
            else:
                assert turn.choice == "action" and f"Probe f({turn.content.replace(' ', ', ')})" in lines[2]
        assert counts == sorted(counts, reverse=True) and counts[-1] >= 1


def test_a_rejected_answer_removes_its_value():
    task = FunctionTask(id="t", rule="a * b + c - d", test_case=[3, 4, 5, 6], expected_result=11)
    gym, solver = FunctionGym(task), FunctionSolver()
    obs, info = gym.reset(seed=0)
    state = solver.start(info["system_prompt"], obs, info)
    out, state = solver.respond(obs, state)
    obs = gym.step(out)[0]
    out, state = solver.respond(obs, state)  # reads the test case, plans a probe
    with np.errstate(all="ignore"):
        values, counts = np.unique(np.round(state["test_vals"]), return_counts=True)
    counts[values == 11] = 0  # pick the most common *wrong* value
    wrong = float(values[counts.argmax()])
    state = {**state, "last": ("answer", wrong)}
    before = len(state["alive"])
    out, state = solver.respond(gym.step(f"[answer] {wrong:g}")[0], state)
    assert len(state["alive"]) < before and not np.any(np.abs(state["test_vals"] - wrong) <= 1e-6)
    assert f"rejected answers: {wrong:g}" in out


def test_gives_up_honestly_when_no_rule_fits():
    task = FunctionTask(id="t", rule="a + b + c + d + 1", test_case=[1, 2, 3, 4], expected_result=11)
    ep = play_episode(FunctionGym(task), FunctionSolver())
    assert ep.termination == "finish" and ep.user_actions == 0 and not ep.success
    assert "no rule of my grammar fits" in ep.turns[-1].think


@pytest.mark.parametrize("digits", [300, 400])
def test_huge_test_inputs_end_cleanly(digits):
    """400 digits are beyond float range (once an OverflowError traceback); 300 digits overflow most rules."""
    huge = int("9" * digits)
    task = FunctionTask(id="huge", rule="a + b + c + d", test_case=[huge, 1, 2, 3], expected_result=42)
    ep = play_episode(FunctionGym(task), FunctionSolver())
    assert ep.termination in ("finish", "turn_limit") and not ep.success
    if digits == 400:
        assert ep.termination == "finish" and len(ep.turns) == 2
        assert "too large for floating-point arithmetic" in ep.turns[-1].think


# ---- a wrong answerer never scores ----------------------------------------------------------------
class WrongAnswerer(Agent):
    """Answers the expected result plus an offset that is always outside the tolerance."""

    name = "scripted:wrong"

    def __init__(self, task):
        self.task = task

    def respond(self, observation, state):
        state["history"].append(observation)
        k = len(state["history"])
        return tool_call_text("answer", repr(self.task.expected_result + (-1) ** k * (2e-6 + k)), "guess"), state


def test_an_agent_that_answers_wrongly_never_gets_reward(shared_tasks):
    for task in shared_tasks[:30]:
        ep = play_episode(FunctionGym(task), WrongAnswerer(task))
        assert ep.score == 0.0 and not ep.success and ep.termination == "turn_limit"
        assert len(ep.turns) == 15 and ep.user_actions == 15
        assert all(t.reward == 0 and "wrong" in t.feedback.lower() for t in ep.turns)


def test_answers_the_most_common_value_when_no_probe_can_help():
    task = FunctionTask(id="t", rule="a * b + c - d", test_case=[3, 4, 5, 6], expected_result=11)
    gym, solver = FunctionGym(task), FunctionSolver()
    obs, info = gym.reset(seed=0)
    state = solver.start(info["system_prompt"], obs, info)
    out, state = solver.respond(obs, state)
    out, state = solver.respond(gym.step(out)[0], state)  # reads the test case, plans a probe
    assert "Probe f(" in out
    every_point_used = [(tuple(int(x) for x in p), 0.0) for p in candidate_bank().pool]
    out, state = solver.respond("", {**state, "last": None, "probes": every_point_used})
    with np.errstate(all="ignore"):
        values, counts = np.unique(np.round(state["test_vals"], 6), return_counts=True)
    assert "no probe can split them further" in out and "most common value" in out
    assert f'"content": "{values[counts.argmax()]:g}"' in out


# ---- the budget schedule ---------------------------------------------------------------------------------
def test_budget_schedule_keeps_its_deadline_and_stops_instead_of_guessing_again(shared_tasks):
    from baorl.gyms.parser import parse_action

    tasks = shared_tasks[:80]
    solver = FunctionSolver(deadline=4, probes=(1, 2), concise=True)
    eps = [play_episode(FunctionGym(t), solver) for t in tasks]
    stops = [e for e in eps if e.termination == "finish"]
    solved = [e for e in eps if e.termination == "solved"]
    assert len(stops) + len(solved) == len(eps)  # every episode ends by the answer or the stop
    assert 10 <= len(stops) <= 50 and len(solved) >= 30  # both kinds of demonstration are there
    for e in eps:
        assert len(e.turns) <= 5
        choices = [t.choice for t in e.turns]
        # turn 1 looks up the test case; at least one probe comes before any answer
        assert choices[0] == "search" and choices[1] == "action"
        # never an answer directly after a rejected answer: a rejection late in the budget ends it
        assert not any(a == b == "answer" for a, b in zip(choices, choices[1:], strict=False))
        assert all("of 4" in t.think for t in e.turns)
    for e in stops:
        assert e.turns[-2].choice == "answer" and "wrong" in e.turns[-2].feedback.lower()
        assert "my answer was rejected and no turn is left to probe again, so I stop here" in e.turns[-1].think
        assert e.user_actions == 1 and e.score == 0.0
    # the allowance is drawn per task, the same every time: a replay gives the same episode
    again = play_episode(FunctionGym(tasks[0]), FunctionSolver(deadline=4, probes=(1, 2), concise=True))
    assert again.turns == eps[0].turns
    # an allowance of one probe answers on turn 3 even when the rules still disagree
    early = [e for e in eps if [t.choice for t in e.turns][:3] == ["search", "action", "answer"]]
    assert early and any("probes spent" in e.turns[2].think for e in early)
    # certain and uncertain answers are planned in the same words (the share of rules differs)
    plans = [t.think.split("Plan: ")[1] for e in eps for t in e.turns if t.choice == "answer"]
    assert all(re.fullmatch(r"turn \d of 4: answer \S+, the value of \d+% of the rules left( \(.+\))?\.", p)
               for p in plans), plans[:5]
    assert any("of 100% of" in p for p in plans) and any("of 100% of" not in p for p in plans)
    assert parse_action("<think>x</think>\n[finish]").choice == "finish"


def test_concise_think_says_the_same_in_fewer_words(shared_tasks):
    for task in shared_tasks[:10]:
        full = play_episode(FunctionGym(task), FunctionSolver())
        short = play_episode(FunctionGym(task), FunctionSolver(concise=True))
        # the same decisions (the schedule is off), in shorter think text
        assert [(t.choice, t.content) for t in full.turns] == [(t.choice, t.content) for t in short.turns]
        assert sum(len(t.think) for t in short.turns) < 0.8 * sum(len(t.think) for t in full.turns)
        for t in short.turns:
            assert t.think.startswith("Memory: ") and "\nHypotheses: " in t.think and "\nPlan: turn " in t.think
        # the memory is the same facts: every probed value appears in the next turn's think
        for prev, nxt in zip(short.turns, short.turns[1:], strict=False):
            if prev.choice == "action":
                assert f"f({', '.join(prev.content.split())}) = " in nxt.think


def test_budget_schedule_rejects_bad_settings():
    with pytest.raises(ValueError, match="deadline"):
        FunctionSolver(deadline=1)
    with pytest.raises(ValueError, match="probes"):
        FunctionSolver(probes=(2, 1))
