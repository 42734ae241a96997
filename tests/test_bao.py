"""Tests for baorl.bao: hand-computed cases for every rule of spec bao.md §3, the edge cases the
spec names, span placement, and the PPO loss's clipping behaviour."""

from __future__ import annotations

import math
import random

import pytest
import torch

from baorl.bao import (
    group_advantages,
    ppo_loss,
    shape_rewards,
    token_advantages,
    trajectory_score,
    turn_credits,
)


def approx(values, abs=1e-9):
    return pytest.approx(values, abs=abs)


# --------------------------------------------------------------------------------------------
# shape_rewards
# --------------------------------------------------------------------------------------------


def test_overthinking_spec_example():
    # T = 15, T' = 4, c_len 0.05: -(0.05 * (15 - 4) + 0.2) / (4 + 1) = -(0.55 + 0.2) / 5 = -0.15
    # on every turn after the first; no answer turns, so no repetition penalty.
    shaped = shape_rewards([0, 0, 0, 0], ["search", "action", None, "search"], max_turns=15, c_len=0.05)
    assert shaped == approx([0.0, -0.15, -0.15, -0.15])


@pytest.mark.parametrize("n", range(2, 15))
def test_overthinking_formula_every_length(n):
    # each turn after the first gets -(c_len (T - T') + 0.2) / (T' + 1)
    expected = -(0.01 * (15 - n) + 0.2) / (n + 1)
    shaped = shape_rewards([0.0] * n, ["search"] * n, max_turns=15, c_len=0.01)
    assert shaped[0] == 0.0
    assert shaped[1:] == approx([expected] * (n - 1))


def test_overthinking_two_turns_by_hand():
    # T' = 2: -(0.05 * 13 + 0.2) / 3 = -0.85 / 3 = -0.283333...
    assert shape_rewards([0, 0], ["search", "action"]) == approx([0.0, -0.85 / 3])


def test_failed_episode_at_turn_limit_has_no_overthinking_penalty():
    assert shape_rewards([0.0] * 15, ["search"] * 15, max_turns=15) == [0.0] * 15


def test_one_turn_episode():
    # ended early with one turn: -0.5 on its only turn, whatever the choice
    assert shape_rewards([0.0], [None]) == [-0.5]
    assert shape_rewards([0.0], ["search"], max_turns=2) == [-0.5]
    # plus the effort cost when it was an answer: -0.5 - 0.1
    assert shape_rewards([0.0], ["answer"], effort_cost=0.1) == approx([-0.6])
    # with max_turns == 1 the episode ran to the limit: no over-thinking penalty
    assert shape_rewards([0.0], ["answer"], max_turns=1) == [0.0]
    # a successful one-turn episode is never penalised
    assert shape_rewards([1.0], ["answer"]) == [1.0]


def test_consecutive_answers():
    # at the turn limit (no over-thinking): turns 1 and 2 each follow an answer: -0.005 each
    assert shape_rewards([0, 0, 0], ["answer"] * 3, max_turns=3) == approx([0.0, -0.005, -0.005])
    # an answer after a search is not a repeat; the second answer in a row is
    shaped = shape_rewards([0, 0, 0, 0], ["answer", "search", "answer", "answer"], max_turns=4, c_rep=0.01)
    assert shaped == approx([0.0, 0.0, 0.0, -0.01])


def test_none_choice_breaks_a_run_of_answers():
    assert shape_rewards([0, 0, 0], ["answer", None, "answer"], max_turns=3) == [0.0, 0.0, 0.0]


def test_repetition_and_overthinking_add_up():
    # T' = 3 of T = 5, c_len 0.05: -(0.05 * 2 + 0.2) / 4 = -0.075 on turns 1, 2
    # turn 2 is an answer after an answer: -0.005 more -> -0.08
    shaped = shape_rewards([0, 0, 0], ["search", "answer", "answer"], max_turns=5)
    assert shaped == approx([0.0, -0.075, -0.08])


def test_successful_episode_is_never_penalised_except_effort():
    rewards, choices = [0.0, 0.0, 1.0], ["answer", "answer", "answer"]
    # short (3 of 15) and all repeats, but solved: untouched
    assert shape_rewards(rewards, choices) == [0.0, 0.0, 1.0]
    assert shape_rewards(rewards, choices, c_rep=1.0, c_len=1.0) == [0.0, 0.0, 1.0]
    # the effort cost applies to every answer turn: -0.2 each
    assert shape_rewards(rewards, choices, effort_cost=0.2) == approx([-0.2, -0.2, 0.8])


def test_effort_cost_also_applies_to_failed_episodes():
    # at the limit (T' = T = 2): effort -0.1 on both answers, repeat -0.005 on the second
    assert shape_rewards([0, 0], ["answer", "answer"], max_turns=2, effort_cost=0.1) == approx([-0.1, -0.105])


def test_ending_penalty_lands_on_the_last_turn_of_a_bad_ending_only():
    # off unless the episode ended badly, and off at size 0
    assert shape_rewards([0, 0], ["search", None], max_turns=2, ending_penalty=0.5) == [0.0, 0.0]
    assert shape_rewards([0, 0], ["search", None], max_turns=2, bad_ending=True) == [0.0, 0.0]
    assert shape_rewards([0, 0], ["search", None], max_turns=2, ending_penalty=0.5, bad_ending=True) == [0.0, -0.5]
    # every episode, as the effort cost: a reward does not exempt a bad ending
    assert shape_rewards([0.5, 0], ["answer", None], max_turns=2, ending_penalty=0.5, bad_ending=True) == [0.5, -0.5]
    # it adds to the over-thinking penalty (T' = 2 of 15: -(0.05 * 13 + 0.2) / 3 on turn 1)
    assert shape_rewards([0, 0], ["search", None], ending_penalty=0.5, bad_ending=True) == approx([0.0, -0.85 / 3 - 0.5])
    with pytest.raises(ValueError, match="ending_penalty"):
        shape_rewards([0], [None], ending_penalty=-0.1, bad_ending=True)


def test_failed_means_sum_of_unshaped_rewards_at_most_zero():
    # rewards cancel: sum 0 -> failed, penalties apply (T' = 2 of 3: -(0.05 + 0.2) / 3 on turn 1)
    assert shape_rewards([0.5, -0.5], ["search", "search"], max_turns=3) == approx([0.5, -0.5 - 0.25 / 3])
    # a positive sum is a success even if some turns were negative
    assert shape_rewards([-0.2, 0.5], ["answer", "answer"], max_turns=3) == [-0.2, 0.5]


def test_custom_user_choices():
    # Telepathy-like: say only "search" involves the user
    shaped = shape_rewards([0, 0, 0], ["search", "search", "answer"], max_turns=3, user_choices=("search",))
    assert shaped == approx([0.0, -0.005, 0.0])


def test_shape_rewards_empty_and_pure():
    assert shape_rewards([], []) == []
    rewards = [0.0, 0.0]
    shape_rewards(rewards, ["answer", "answer"])
    assert rewards == [0.0, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        (dict(rewards=[0.0], choices=[]), "choices"),
        (dict(rewards=[0.0], choices=["answer"], max_turns=0), "max_turns"),
        (dict(rewards=[0.0] * 3, choices=["answer"] * 3, max_turns=2), "max_turns"),
        (dict(rewards=[0.0], choices=["answer"], c_rep=-0.1), "c_rep"),
        (dict(rewards=[0.0], choices=["answer"], c_len=float("nan")), "c_len"),
        (dict(rewards=[0.0], choices=["answer"], effort_cost=-1), "effort_cost"),
        (dict(rewards=[float("nan")], choices=["answer"]), r"rewards\[0\]"),
        (dict(rewards=[0.0], choices=["answer"], user_choices="answer"), "user_choices"),
    ],
)
def test_shape_rewards_validation(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        shape_rewards(**kwargs)


# --------------------------------------------------------------------------------------------
# trajectory_score and turn_credits
# --------------------------------------------------------------------------------------------


def test_trajectory_score_by_hand():
    shaped = [0.0, -0.15, -0.155, -0.15]
    # sum: -0.455; mean: -0.455 / 4 = -0.11375
    assert trajectory_score(shaped) == pytest.approx(-0.455)
    assert trajectory_score(shaped, "mean") == pytest.approx(-0.11375)
    # r2g: 0 + 0.8 * -0.15 + 0.64 * -0.155 + 0.512 * -0.15 = -0.12 - 0.0992 - 0.0768 = -0.296
    assert trajectory_score(shaped, "r2g") == pytest.approx(-0.296)
    assert trajectory_score(shaped, "r2g", gamma=0.5) == pytest.approx(-0.075 - 0.03875 - 0.01875)


def test_trajectory_score_empty_is_zero():
    assert [trajectory_score([], m) for m in ("sum", "mean", "r2g")] == [0.0, 0.0, 0.0]


def test_r2g_by_hand():
    # c_3 = -0.15; c_2 = -0.155 + 0.8 * -0.15 = -0.275; c_1 = -0.15 + 0.8 * -0.275 = -0.37
    # c_0 = 0 + 0.8 * -0.37 = -0.296
    assert turn_credits([0.0, -0.15, -0.155, -0.15]) == approx([-0.296, -0.37, -0.275, -0.15])
    # gamma 0: credits are the rewards; gamma 1: suffix sums
    assert turn_credits([1.0, 2.0, 3.0], gamma=0.0) == [1.0, 2.0, 3.0]
    assert turn_credits([1.0, 2.0, 3.0], gamma=1.0) == [6.0, 5.0, 3.0]
    assert turn_credits([]) == []


def test_equalized_and_em_by_hand():
    assert turn_credits([0.3, -2.0], "equalized") == [1.0, 1.0]
    # EM: r = 0 -> 0.5; r = 1 -> 1; r = -0.5 -> 0.5 + 0.5 (1 - e) / (1 - e^-2)
    #   = 0.5 + 0.5 * (-1.718282 / 0.864665) = 0.5 + 0.5 * -1.987223 = -0.493611
    em = turn_credits([0.0, 1.0, -0.5], "em")
    assert em == approx([0.5, 1.0, 0.5 + 0.5 * (1 - math.e) / (1 - math.exp(-2))])
    assert em[2] == pytest.approx(-0.493611, abs=1e-6)


def test_r2g_score_is_first_credit():
    rng = random.Random(3)
    for _ in range(50):
        shaped = [rng.uniform(-1, 1) for _ in range(rng.randint(1, 15))]
        assert trajectory_score(shaped, "r2g") == pytest.approx(turn_credits(shaped, "r2g")[0])
        assert trajectory_score(shaped, "r2g") == pytest.approx(sum(0.8**t * s for t, s in enumerate(shaped)))


@pytest.mark.parametrize("fn", [trajectory_score, turn_credits])
def test_score_and_credit_validation(fn):
    with pytest.raises(ValueError, match="method"):
        fn([0.0], "median")
    with pytest.raises(ValueError, match="gamma"):
        fn([0.0], gamma=1.5)


# --------------------------------------------------------------------------------------------
# group_advantages
# --------------------------------------------------------------------------------------------


def test_group_advantages_by_hand():
    # group a: 1, 2, 3 -> mean 2, sample std sqrt((1 + 0 + 1) / 2) = 1 -> -1, 0, 1 (over 1 + 1e-6)
    # group b: 0, 1 -> mean 0.5, sample std sqrt(0.5) -> -+0.5 / 0.70711 = -+0.70711
    # the groups are interleaved on purpose
    adv = group_advantages([1.0, 0.0, 2.0, 1.0, 3.0], ["a", "b", "a", "b", "a"])
    d = 1 + 1e-6
    h = 0.5 / (math.sqrt(0.5) + 1e-6)
    assert adv == approx([-1 / d, -h, 0.0, h, 1 / d], abs=1e-12)


def test_group_advantages_matches_torch_std():
    scores = [0.3, -0.1, 0.9, 0.2]
    t = torch.tensor(scores, dtype=torch.float64)
    expected = ((t - t.mean()) / (t.std() + 1e-6)).tolist()
    assert group_advantages(scores, [0, 0, 0, 0]) == approx(expected, abs=1e-12)


def test_group_of_one_and_identical_scores_are_zero():
    assert group_advantages([0.7], ["solo"]) == [0.0]
    # identical scores (0.1 does not average back to 0.1 exactly): exactly zero, not 1e-11
    assert group_advantages([0.1, 0.1, 0.1], [1, 1, 1]) == [0.0, 0.0, 0.0]
    assert group_advantages([0.1, 0.1, 5.0, 0.3], [1, 1, 2, 3]) == [0.0, 0.0, 0.0, 0.0]
    assert group_advantages([], []) == []


def test_group_advantages_validation():
    with pytest.raises(ValueError, match="group_ids"):
        group_advantages([0.0, 1.0], [0])
    with pytest.raises(ValueError, match="eps"):
        group_advantages([0.0], [0], eps=-1.0)
    with pytest.raises(ValueError, match=r"scores\[1\]"):
        group_advantages([0.0, float("inf")], [0, 0])


# --------------------------------------------------------------------------------------------
# token_advantages
# --------------------------------------------------------------------------------------------


def test_token_advantages_by_hand():
    # credits 0.64, 0.8, 1.0 over lengths 1, 2, 1: tokens 0.64, 0.8, 0.8, 1.0; Sigma = 3.24, N = 4
    # scale = A * N / Sigma = 2 * 4 / 3.24 = 2.469136
    row = token_advantages([0.64, 0.8, 1.0], 2.0, [1, 2, 1])
    s = 8 / 3.24
    assert row == approx([0.64 * s, 0.8 * s, 0.8 * s, 1.0 * s])
    assert sum(row) / len(row) == pytest.approx(2.0)


def test_token_advantages_counts_only_nonzero_credit_tokens():
    # credits 0, 2, 0.5 over lengths 3, 2, 2: tokens 0 0 0 2 2 .5 .5; N = 4, Sigma = 5
    # A = 1: scale 4 / 5 = 0.8 -> 0 0 0 1.6 1.6 0.4 0.4; mean over the 4 credited tokens is 1
    row = token_advantages([0.0, 2.0, 0.5], 1.0, [3, 2, 2])
    assert row == approx([0.0, 0.0, 0.0, 1.6, 1.6, 0.4, 0.4])
    assert all(x == 0.0 and math.copysign(1, x) > 0 for x in row[:3])  # no -0.0


def test_token_advantages_zero_and_cancelling_credits():
    # all-zero credits: zero advantage whatever A
    assert token_advantages([0.0, 0.0, 0.0], -1.3, [2, 1, 3]) == [0.0] * 6
    # mixed signs that cancel exactly: Sigma = 1 * 2 - 1 * 2 = 0 -> zero row (decided here)
    assert token_advantages([1.0, -1.0], 1.0, [2, 2]) == [0.0] * 4
    # rounding residue: 0.1 + 0.2 - 0.3 = 2.8e-17 < 1e-12 -> zero, not a blow-up
    assert token_advantages([0.1, 0.2, -0.3], 1.0, [1, 1, 1]) == [0.0] * 3
    # mixed signs that do not cancel: tokens 1 1 -1, Sigma = 1, N = 3, A = 1 -> scale 3
    assert token_advantages([1.0, -1.0], 1.0, [2, 1]) == approx([3.0, 3.0, -3.0])


def test_token_advantages_lengths_and_empty_turns():
    assert token_advantages([], 1.0, []) == []
    # a zero-length turn contributes no token and nothing to N or Sigma
    assert token_advantages([5.0, 1.0], 0.5, [0, 2]) == approx([0.5, 0.5])
    assert len(token_advantages([0.3, 0.1, 0.2], 1.0, [4, 0, 7])) == 11


def test_token_advantages_validation():
    with pytest.raises(ValueError, match="turn_lengths"):
        token_advantages([1.0], 1.0, [1, 2])
    with pytest.raises(ValueError, match=r"turn_lengths\[0\]"):
        token_advantages([1.0], 1.0, [-1])
    with pytest.raises(ValueError, match=r"turn_lengths\[0\]"):
        token_advantages([1.0], 1.0, [1.5])
    with pytest.raises(ValueError, match="advantage"):
        token_advantages([1.0], float("nan"), [1])
    with pytest.raises(ValueError, match=r"credits\[0\]"):
        token_advantages([float("inf")], 1.0, [1])


def test_failed_unpenalised_episode_gets_no_gradient():
    # a failed episode at the turn limit with no repeated answers: no penalty, zero credits
    shaped = shape_rewards([0.0, 0.0, 0.0], ["search", "answer", "search"], max_turns=3)
    credits = turn_credits(shaped, "r2g")
    assert credits == [0.0, 0.0, 0.0]
    # however bad its group advantage, every token gets zero
    assert token_advantages(credits, -1.7, [5, 3, 4]) == [0.0] * 12


def test_pipeline_one_group_by_hand():
    # rollout 0 solves the task on its third turn: shaped 0, 0, 1; S = 1
    # rollout 1 fails after 2 of 15 turns: turn 1 gets -(0.05 * 13 + 0.2) / 3 = -0.283333; S = -0.283333
    s0 = shape_rewards([0, 0, 1], ["search", "search", "answer"])
    s1 = shape_rewards([0, 0], ["search", "answer"])
    p = 0.85 / 3
    assert s0 == [0.0, 0.0, 1.0] and s1 == approx([0.0, -p])
    scores = [trajectory_score(s0), trajectory_score(s1)]
    # a group of two: A = +-(d / 2) / (|d| / sqrt 2) = +-1 / sqrt 2 (up to eps)
    a0, a1 = group_advantages(scores, ["task", "task"])
    assert (a0, a1) == approx((1 / math.sqrt(2), -1 / math.sqrt(2)), abs=1e-5)
    # rollout 1's R2G credits: c_1 = -p, c_0 = 0.8 * -p; lengths 2, 2
    # tokens -0.8p -0.8p -p -p; Sigma = -3.6p, N = 4; scale = a1 * 4 / (-3.6p) > 0
    row1 = token_advantages(turn_credits(s1), a1, [2, 2])
    scale = a1 * 4 / (-3.6 * p)
    assert row1 == approx([-0.8 * p * scale] * 2 + [-p * scale] * 2)
    assert all(x < 0 for x in row1) and row1[3] < row1[0]  # the failing turn is blamed most
    assert sum(row1) / 4 == pytest.approx(a1)


# --------------------------------------------------------------------------------------------
# ppo_loss
# --------------------------------------------------------------------------------------------


def _loss_and_grad(log_ratio: float, adv: float, **kwargs):
    lp = torch.tensor([[log_ratio]], dtype=torch.float64, requires_grad=True)
    loss, metrics = ppo_loss(
        lp, torch.zeros(1, 1, dtype=torch.float64), torch.tensor([[adv]]), torch.ones(1, 1), **kwargs
    )
    loss.backward()
    return loss.item(), lp.grad.item(), metrics


@pytest.mark.parametrize(
    ("ratio", "adv", "expected", "clipped"),
    [
        # A > 0: loss max(-r, -clip(r, 0.8, 1.2)); clipped (zero gradient) only above 1.2
        (0.5, 1.0, -0.5, False),  # max(-0.5, -0.8) = -0.5
        (0.9, 1.0, -0.9, False),
        (1.1, 1.0, -1.1, False),
        (1.5, 1.0, -1.2, True),  # max(-1.5, -1.2) = -1.2
        # A < 0: loss max(r, clip(r)) * |A|; clipped below 0.8; dual clip caps it at 3 |A|
        (0.5, -1.0, 0.8, True),  # max(0.5, 0.8) = 0.8
        (0.9, -1.0, 0.9, False),
        (1.5, -1.0, 1.5, False),  # max(1.5, 1.2) = 1.5: plain PPO does not clip here
        (2.5, -1.0, 2.5, False),  # under the dual-clip cap 3
        (4.0, -2.0, 6.0, True),  # min(8.0, 2 * 3) = 6: dual clip
    ],
)
def test_ppo_clipping(ratio, adv, expected, clipped):
    loss, grad, _ = _loss_and_grad(math.log(ratio), adv)
    assert loss == pytest.approx(expected)
    if clipped:
        assert grad == 0.0
    else:
        # d(-A r)/d log r = -A r
        assert grad == pytest.approx(-adv * ratio)


def test_ppo_clip_metrics_and_asymmetric_clip():
    # ratios 0.7, 1.0, 1.25, 1.5 with A = 1: clip active for 1.25 and 1.5 -> clip_frac 0.5
    lp = torch.log(torch.tensor([[0.7, 1.0, 1.25, 1.5]]))
    old, adv, mask = torch.zeros(1, 4), torch.ones(1, 4), torch.ones(1, 4)
    loss, m = ppo_loss(lp, old, adv, mask)
    assert m["clip_frac"].item() == pytest.approx(0.5)
    # token mean of -0.7, -1.0, -1.2, -1.2
    assert loss.item() == pytest.approx(-(0.7 + 1.0 + 1.2 + 1.2) / 4)
    assert m["ratio_mean"].item() == pytest.approx((0.7 + 1.0 + 1.25 + 1.5) / 4)
    assert (m["ratio_min"].item(), m["ratio_max"].item()) == approx((0.7, 1.5), abs=1e-6)
    assert m["tokens"].item() == 4
    # clip_high 0.28 (a DAPO-style asymmetric clip) lets 1.25 through: -0.7, -1, -1.25, -1.28
    loss, m = ppo_loss(lp, old, adv, mask, clip_high=0.28)
    assert loss.item() == pytest.approx(-(0.7 + 1.0 + 1.25 + 1.28) / 4)
    assert m["clip_frac"].item() == pytest.approx(0.25)


def test_dual_clip_bounds_negative_advantage_loss():
    ratios = torch.tensor([[1.0, 2.0, 3.5, 10.0, 100.0]], dtype=torch.float64)
    adv = torch.full((1, 5), -0.5, dtype=torch.float64)
    lp = torch.log(ratios).requires_grad_(True)
    args = (torch.zeros(1, 5, dtype=torch.float64), adv, torch.ones(1, 5))
    loss, m = ppo_loss(lp, *args)
    # per token: 0.5 * min(r, 3) -> 0.5, 1.0, 1.5, 1.5, 1.5
    assert loss.item() == pytest.approx((0.5 + 1.0 + 1.5 + 1.5 + 1.5) / 5)
    assert m["dual_clip_frac"].item() == pytest.approx(3 / 5)
    loss.backward()
    assert lp.grad[0, 2:].eq(0).all() and lp.grad[0, :2].ne(0).all()
    # without the dual clip the loss is unbounded: 0.5 * (1 + 2 + 3.5 + 10 + 100) / 5
    loss, m = ppo_loss(lp.detach(), *args, dual_clip=None)
    assert loss.item() == pytest.approx(0.5 * 116.5 / 5)
    assert m["dual_clip_frac"].item() == 0.0


def test_positive_advantage_raises_logprob_after_a_step():
    # a tiny softmax policy over 4 tokens, two sampled tokens: token 2 with A > 0, token 0 with A < 0
    torch.manual_seed(0)
    logits = torch.randn(2, 4, requires_grad=True)
    actions = torch.tensor([[2, 0]])

    def logprobs():
        return torch.log_softmax(logits, dim=-1).gather(1, actions.T).T  # (1, 2)

    before = logprobs().detach()
    adv = torch.tensor([[1.0, -1.0]])
    loss, _ = ppo_loss(logprobs(), before, adv, torch.ones(1, 2))
    loss.backward()
    with torch.no_grad():
        logits -= 0.1 * logits.grad
    after = logprobs().detach()
    assert after[0, 0] > before[0, 0]  # A > 0: more likely
    assert after[0, 1] < before[0, 1]  # A < 0: less likely


def test_masked_tokens_contribute_nothing():
    lp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -0.2]], requires_grad=True)
    old = torch.tensor([[-1.1, -2.0, -0.4], [-0.3, -0.9, -0.1]])
    adv = torch.tensor([[1.0, -0.5, 2.0], [0.3, 0.0, -1.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    loss, m = ppo_loss(lp, old, adv, mask)
    loss.backward()
    grad = lp.grad.clone()
    assert grad[~mask].eq(0).all()
    # garbage (NaN, inf) at masked positions changes neither the loss nor the gradient
    lp2 = lp.detach().clone()
    lp2[0, 2], lp2[1, 1] = float("nan"), float("-inf")
    lp2.requires_grad_(True)
    old2, adv2 = old.clone(), adv.clone()
    old2[1, 2], adv2[0, 2], adv2[1, 1] = float("inf"), 1e9, float("nan")
    loss2, m2 = ppo_loss(lp2, old2, adv2, mask)
    loss2.backward()
    assert loss2.item() == pytest.approx(loss.item())
    assert torch.equal(lp2.grad, grad)
    assert all(math.isfinite(v.item()) for v in m2.values())
    assert m2["tokens"].item() == 3


def test_token_mean_aggregation():
    # ratio 1 everywhere, so each token's loss is -A
    # row 0: one token, A = 3; row 1: four tokens, A = 1
    # token mean: -(3 + 4 * 1) / 5 = -1.4 (the mean of the row means would be -2)
    adv = torch.tensor([[3.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]])
    loss, m = ppo_loss(torch.zeros(2, 4), torch.zeros(2, 4), adv, mask)
    assert loss.item() == pytest.approx(-1.4)
    assert m["approx_kl"].item() == 0.0 and m["clip_frac"].item() == 0.0


def test_approx_kl_is_nonnegative_and_empty_mask_is_zero():
    torch.manual_seed(1)
    lp, old = torch.randn(3, 7), torch.randn(3, 7)
    _, m = ppo_loss(lp, old, torch.randn(3, 7), torch.ones(3, 7))
    r = torch.exp(lp - old)
    assert m["approx_kl"].item() == pytest.approx(((r - 1) - (lp - old)).mean().item(), rel=1e-5)
    assert m["approx_kl"].item() > 0
    loss, m = ppo_loss(lp.requires_grad_(True), old, torch.randn(3, 7), torch.zeros(3, 7))
    assert loss.item() == 0.0 and m["tokens"].item() == 0
    loss.backward()
    assert lp.grad.eq(0).all()


def test_ppo_loss_validation():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="mask"):
        ppo_loss(x, x, x, torch.ones(2, 2))
    with pytest.raises(ValueError, match="clip_low"):
        ppo_loss(x, x, x, x, clip_low=1.0)
    with pytest.raises(ValueError, match="dual_clip"):
        ppo_loss(x, x, x, x, dual_clip=1.0)


def test_place_token_advantages_lays_turns_on_their_spans():
    from baorl.bao import place_token_advantages

    row = place_token_advantages([0.64, 0.8, 1.0], 1.0, [(0, 1), (3, 5), (7, 8)], 9)
    assert row[1:3] == [0.0, 0.0] and row[5:7] == [0.0, 0.0] and row[8] == 0.0
    assert [row[0], *row[3:5], row[7]] == approx(token_advantages([0.64, 0.8, 1.0], 1.0, [1, 2, 1]))
    assert place_token_advantages([], 2.0, [], 3) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="beyond"):
        place_token_advantages([1.0], 1.0, [(0, 4)], 3)
    with pytest.raises(ValueError, match="not a span"):
        place_token_advantages([1.0], 1.0, [(2, 1)], 3)
    with pytest.raises(ValueError, match="one entry per turn"):
        place_token_advantages([1.0, 1.0], 1.0, [(0, 1)], 3)
