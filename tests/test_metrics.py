"""Metrics against records whose every number is computed by hand (spec: metrics.md)."""

from __future__ import annotations

import json

import pytest

from baorl.evaluation.metrics import (
    choose_k,
    episode_pass_at_u,
    episode_reward_raises,
    episode_user_rate,
    hypervolume,
    pareto_front,
    score_episodes,
)
from baorl.records import Episode, Turn


def turn(code: str) -> Turn:
    """'q': a question (action, not user-involved); 'aR': an answer with reward R (user-involved);
    'n': a generation without a valid tool call."""
    if code == "q":
        return Turn(choice="action", content="1 2 3 4", feedback="f(1,2,3,4) = 7")
    if code == "n":
        return Turn(choice=None)
    assert code[0] == "a"
    return Turn(choice="answer", content="42", reward=float(code[1:]), user_involved=True)


def ep(task: str, codes: str, *, gym: str = "function", success: bool | None = None, seed: int = 0) -> Episode:
    turns = [turn(c) for c in codes.split()]
    score = sum(t.reward for t in turns)
    ok = score >= 1.0 if success is None else success
    term = "solved" if ok else ("no_tool_call" if turns and turns[-1].choice is None else "turn_limit")
    return Episode.from_turns(turns=turns, gym=gym, task_id=task, seed=seed, success=ok, termination=term)


# function-like records: A solves at its 1st answer, B at its 2nd, C never answers, D never calls the tool
A, B, C, D = ep("A", "a1"), ep("B", "q a0 a1"), ep("C", "q q q"), ep("D", "n")
FUNCTION = [A, B, C, D]


def test_pass_at_u_per_episode() -> None:
    assert [episode_pass_at_u(A, k) for k in (1, 2, 3)] == [True, True, True]
    # success on the 2nd answer: not within 1 user action, within 2 (the bound is inclusive)
    assert [episode_pass_at_u(B, k) for k in (1, 2, 3)] == [False, True, True]
    assert not any(episode_pass_at_u(e, k) for e in (C, D) for k in range(1, 10))


def test_hand_computed_gym_metrics() -> None:
    m = score_episodes(FUNCTION, K=3, n_boot=0)
    g = m["gyms"]["function"]
    assert (g["n"], g["n_tasks"], g["seeds"], m["K"]) == (4, 4, [0], 3)
    assert g["score"] == 0.5 and g["success"] == 0.5
    assert g["pass_at_u"] == {"1": 0.25, "2": 0.5, "3": 0.5}
    assert g["hypervolume"] == pytest.approx((0.25 + 0.5 + 0.5) / 3, abs=1e-6)
    assert g["user_rate"] == pytest.approx((1 + 2 / 3 + 0 + 0) / 4, abs=1e-6)  # C, D: no user turns
    assert g["rtr"] == pytest.approx(2 / 3, abs=1e-6) and g["user_actions"] == 3
    assert g["terminations"] == {"no_tool_call": 1, "solved": 2, "turn_limit": 1}
    assert g["score_ci"] == [None, None]  # no bootstrap asked for


def test_ties_at_the_same_k_and_k_beyond_the_longest_success() -> None:
    tie = [ep("B", "q a0 a1"), ep("E", "a0 a1"), ep("F", "a0 q a0")]  # B and E both pass first at k = 2
    m = score_episodes(tie, K=10, n_boot=0)["gyms"]["function"]
    assert m["pass_at_u"]["1"] == 0.0
    assert m["pass_at_u"]["2"] == pytest.approx(2 / 3, abs=1e-6)
    # beyond the longest success the curve is flat
    assert all(m["pass_at_u"][str(k)] == pytest.approx(2 / 3, abs=1e-6) for k in range(2, 11))
    assert m["hypervolume"] == pytest.approx(9 * (2 / 3) / 10, abs=1e-6)


def test_choose_k_default_and_raised() -> None:
    assert choose_k(FUNCTION) == 5
    long = ep("L", " ".join(["a0"] * 6 + ["a1"]))
    assert choose_k([*FUNCTION, long]) == 7
    assert score_episodes([*FUNCTION, long], n_boot=0)["K"] == 7
    assert choose_k([ep("X", "a0 a0 a0 a0 a0 a0 a0 a0")]) == 5  # failures do not raise K


def test_success_without_user_action_passes_at_every_k() -> None:
    e = ep("S", "q", success=True)
    assert episode_pass_at_u(e, 1) and episode_user_rate(e) == 0.0


def test_hypervolume_bounds() -> None:
    assert hypervolume([1.0, 1.0, 1.0]) == 1.0  # everything solved at the first user action
    assert hypervolume([0.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="K >= 1"):
        hypervolume([])


def test_rtr_on_turtle_like_records() -> None:
    # best-score increments: 0.3, then a worse answer (0), then +0.2, then +0.5 -> solved at 1.0
    solved = ep("t1", "a0.3 q a0 a0.2 a0.5", gym="turtle")
    partial = ep("t2", "q a0 a0.4", gym="turtle")
    assert episode_reward_raises(solved) == (3, 4) and episode_reward_raises(partial) == (1, 2)
    g = score_episodes([solved, partial], K=4, n_boot=0)["gyms"]["turtle"]
    assert g["rtr"] == pytest.approx(4 / 6, abs=1e-6)  # pooled over the gym's user actions
    assert g["score"] == pytest.approx(0.7, abs=1e-6)  # best rubric scores 1.0 and 0.4
    assert g["pass_at_u"] == {"1": 0.0, "2": 0.0, "3": 0.0, "4": 0.5}


def test_rtr_undefined_without_user_actions_and_left_out_of_overall() -> None:
    m = score_episodes([C, D, ep("t", "a0 a0.5", gym="turtle")], K=2, n_boot=50)
    assert m["gyms"]["function"]["rtr"] is None and m["gyms"]["function"]["rtr_ci"] == [None, None]
    assert m["overall"]["rtr"] == 0.5
    json.dumps(m, allow_nan=False)  # no NaN ever reaches metrics.json


def test_overall_is_task_weighted() -> None:
    turtle = [ep("t1", "a0.3 q a0 a0.2 a0.5", gym="turtle"), ep("t2", "q a0 a0.4", gym="turtle")]
    m = score_episodes(FUNCTION + turtle, K=4, n_boot=0)
    assert m["overall"]["weights"] == {"function": 4, "turtle": 2}
    # (4 x 0.5 + 2 x 0.7) / 6, not the plain mean of the two gyms (0.6)
    assert m["overall"]["score"] == pytest.approx(3.4 / 6, abs=1e-6)
    assert m["overall"]["pass_at_u"]["4"] == pytest.approx((4 * 0.5 + 2 * 0.5) / 6, abs=1e-6)
    assert m["overall"]["n"] == 6 and m["overall"]["n_tasks"] == 6


def test_seeds_average_per_task_and_give_a_t_interval() -> None:
    eps = [ep("a", "a1", seed=0), ep("b", "a0", seed=0), ep("a", "a1", seed=1), ep("b", "a0 a1", seed=1)]
    turtle = [ep("t", "a0.5", gym="turtle", seed=s) for s in (0, 1)]
    m = score_episodes(eps + turtle, K=2, n_boot=0)
    g = m["gyms"]["function"]
    assert (g["n"], g["n_tasks"], g["seeds"]) == (4, 2, [0, 1])
    assert g["score"] == 0.75
    # per-seed scores 0.5 and 1.0: mean 0.75, sd 0.3536, t(1 df) = 12.706 -> half-width 12.706 x 0.25
    lo, hi = g["score_seed_ci"]
    assert lo == pytest.approx(0.75 - 12.706 * 0.25, abs=1e-4) and hi == pytest.approx(0.75 + 12.706 * 0.25, abs=1e-4)
    assert g["pass_at_u"] == {"1": 0.5, "2": 0.75}
    # weights count tasks (2 and 1), not episodes (4 and 2)
    assert m["overall"]["weights"] == {"function": 2, "turtle": 1}
    assert m["overall"]["score"] == pytest.approx((2 * 0.75 + 1 * 0.5) / 3, abs=1e-6)


def test_empty_inputs() -> None:
    m = score_episodes([])
    assert m["gyms"] == {} and m["K"] == 5
    o = m["overall"]
    assert o["n"] == 0 and o["score"] is None and o["hypervolume"] is None and o["rtr"] is None
    assert o["pass_at_u"] == {str(k): None for k in range(1, 6)}
    json.dumps(m, allow_nan=False)
    with pytest.raises(ValueError, match="K must be"):
        score_episodes(FUNCTION, K=0)


def test_bootstrap_interval_contains_the_mean_and_is_seeded() -> None:
    eps = [ep(f"t{i}", "a1" if i % 3 else "q a0", seed=0) for i in range(30)]
    m1 = score_episodes(eps, n_boot=400, seed=7)
    g = m1["gyms"]["function"]
    lo, hi = g["score_ci"]
    assert lo < g["score"] < hi and 0.0 <= lo and hi <= 1.0
    for k in g["pass_at_u"]:
        assert g["pass_at_u_ci"][k][0] <= g["pass_at_u"][k] <= g["pass_at_u_ci"][k][1]
    assert score_episodes(eps, n_boot=400, seed=7) == m1
    graded = [ep(f"t{i}", f"a{(i * 7 % 30) / 30:.4f}", gym="turtle") for i in range(30)]
    ci7 = score_episodes(graded, n_boot=400, seed=7)["gyms"]["turtle"]["score_ci"]
    assert score_episodes(graded, n_boot=400, seed=8)["gyms"]["turtle"]["score_ci"] != ci7
    # one gym: overall is that gym, intervals included
    assert {k: m1["overall"][k] for k in ("score", "score_ci", "hypervolume_ci")} == \
           {k: g[k] for k in ("score", "score_ci", "hypervolume_ci")}


def test_bootstrap_of_one_gym_ignores_other_gyms() -> None:
    fn = [ep(f"t{i}", "a1" if i % 2 else "a0") for i in range(10)]
    alone = score_episodes(fn, n_boot=200)["gyms"]["function"]["score_ci"]
    mixed = score_episodes(fn + [ep("x", "a0.5", gym="turtle")], n_boot=200)["gyms"]["function"]["score_ci"]
    assert alone == mixed


def test_pareto_front_with_ties() -> None:
    curves = {"a": [0.2, 0.5, 0.5], "b": [0.2, 0.5, 0.5], "c": [0.1, 0.5, 0.5], "d": [0.3, 0.3, 0.4]}
    # a and b tie (neither dominates the other); c is dominated by a; d crosses a
    assert pareto_front(curves) == ["a", "b", "d"]
    assert pareto_front({"only": [0.0]}) == ["only"]
