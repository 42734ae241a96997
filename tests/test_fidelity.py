"""BAO and the UserRL baseline as the official code computes them (yihangyao/BAO, core_algos.py:
``functiongym_reward_cal``, ``compute_turn_credits``, ``compute_grpo_multiturn_advantage``).

The expected numbers below are worked out by hand from the official formulas (each one's arithmetic
is written next to it), not produced by baorl; the product path (`score_episode` ->
`batch_advantages` -> `advantage_rows`, what `BAOTrainer` runs) must reproduce them.
"""

from __future__ import annotations

import math

import pytest
import torch
from pytest import approx
from trajectories import traj

from baorl.bao import shape_rewards
from baorl.config import build_config
from baorl.train.config import BAOSection, TrainConfig
from baorl.train.episodes import advantage_rows, batch_advantages, score_episode

T = 15


# ---- item 1: a regulariser with coefficient 0 is off entirely ----------------------------------------
@pytest.mark.parametrize("n", range(1, T + 1))
@pytest.mark.parametrize("choice", ["answer", "search", None])
def test_zero_coefficients_leave_failed_episodes_raw(n: int, choice: str | None) -> None:
    rewards = [0.0] * n
    choices = [choice] * n
    assert shape_rewards(rewards, choices, max_turns=T, c_rep=0.0, c_len=0.0) == rewards
    # c_len = 0 alone: no 0.2 base, no -0.5; only the repeat penalty remains
    shaped = shape_rewards(rewards, choices, max_turns=T, c_rep=0.005, c_len=0.0)
    repeats = n - 1 if choice == "answer" else 0
    assert sum(shaped) == approx(-0.005 * repeats)
    # c_rep = 0 alone: only the over-thinking penalty remains
    shaped = shape_rewards(rewards, choices, max_turns=T, c_rep=0.0, c_len=0.05)
    if n == T:
        assert shaped == rewards
    elif n == 1:
        assert shaped == [-0.5]
    else:
        assert shaped == approx([0.0] + [-(0.05 * (T - n) + 0.2) / (n + 1)] * (n - 1))


def test_baseline_preset_trains_on_raw_rewards() -> None:
    """`penalties: false` (the UserRL baseline) shapes nothing, whatever c_rep / c_len say."""
    from pathlib import Path

    from baorl.config import load_config

    cfg = load_config(TrainConfig, Path(__file__).resolve().parents[1] / "configs" / "userrl-embedded.yaml")
    assert cfg.bao.penalties is False and cfg.bao.c_len > 0  # the coefficients are there, switched off
    for turns in ([("answer", 0.0, 2)], [("answer", 0.0, 2), ("answer", 0.0, 1)],
                  [("action", 0.0, 1)] * 4 + [("answer", 0.0, 1)]):
        e = score_episode(traj(turns), cfg.bao)
        assert e.shaped == e.rewards and sum(e.shaped) - sum(e.rewards) == 0


def test_overthinking_failed_rule_zero_matches_the_official_equality() -> None:
    """The official code penalises over-thinking only when the rewards sum to exactly 0."""
    neg = [-0.2, 0.0, 0.0]
    assert shape_rewards(neg, ["action"] * 3, overthink_failed="zero") == neg
    assert shape_rewards(neg, ["action"] * 3)[1] == approx(-(0.05 * 12 + 0.2) / 4)
    with pytest.raises(ValueError, match="overthink_failed"):
        shape_rewards(neg, ["action"] * 3, overthink_failed="never")


# ---- the whole pipeline on a mixed group, against hand-computed official numbers ---------------------
# One group of five rollouts of one Function task (BAO: score Sum, credit R2G, gamma 0.8, c_rep 0.005,
# c_len 0.05, T 15). Token counts per turn are the third element.
GROUP = [
    traj([("search", 0.0, 2), ("action", 0.0, 1), ("answer", 1.0, 1)], termination="solved"),  # solved
    traj([("answer", 0.0, 3)], termination="no_tool_call"),  # failed after one turn
    traj([("action", 0.0, 1), ("answer", 0.0, 2), ("answer", 0.0, 1)], termination="token_budget"),  # answer, answer
    traj([("action", 0.0, 1)] * T, termination="turn_limit"),  # failed at the turn limit: no penalty
    traj([("action", 0.0, 1), ("answer", 0.0, 4)], termination="simulator_error"),  # not the agent's
]
# shaped rewards (functiongym_reward_cal)
S1 = [0.0, 0.0, 1.0]  # solved: never penalised
S2 = [-0.5]  # one-turn failure
L3 = (0.05 * (15 - 3) + 0.2) / (3 + 1)  # = 0.2 on every turn after the first
S3 = [0.0, -L3, -L3 - 0.005]  # + the repeat penalty on the second answer in a row
S4 = [0.0] * T
# trajectory scores (Sum) of the four trained episodes; the simulator error stays out of the group
SCORES = [1.0, -0.5, -2 * L3 - 0.005, 0.0]
MEAN = sum(SCORES) / 4
STD = math.sqrt(sum((s - MEAN) ** 2 for s in SCORES) / 3)  # torch.std: Bessel-corrected
ADV = [(s - MEAN) / (STD + 1e-6) for s in SCORES]
# R2G credits, c_t = shaped_t + 0.8 c_{t+1}
C1 = [0.64, 0.8, 1.0]
C2 = [-0.5]
C3 = [0.8 * (S3[1] + 0.8 * S3[2]), S3[1] + 0.8 * S3[2], S3[2]]


def row(credits: list[float], lengths: list[int], adv: float) -> list[float]:
    """compute_grpo_multiturn_advantage for one episode: each turn's credit on its tokens, scaled by
    advantage x (non-zero tokens) / (sum over tokens)."""
    tokens = [c for c, n in zip(credits, lengths, strict=True) for _ in range(n)]
    total = sum(tokens)
    if total == 0:
        return [0.0] * len(tokens)
    nonzero = sum(1 for x in tokens if x != 0)
    return [x * adv * nonzero / total for x in tokens]


def test_bao_pipeline_equals_the_official_formulas_by_hand() -> None:
    bao = BAOSection()
    scored = [score_episode(t, bao) for t in GROUP]
    assert scored[0].shaped == approx(S1) and scored[1].shaped == approx(S2)
    assert scored[2].shaped == approx(S3) and scored[3].shaped == approx(S4)
    assert [e.score for e in scored[:4]] == approx(SCORES, abs=1e-4)  # the official code rounds S to 4 places
    assert [e.trained for e in scored] == [True, True, True, True, False]

    adv = batch_advantages([e.score for e in scored], 5, trained=[e.trained for e in scored])
    assert adv[:4] == approx(ADV, abs=1e-4) and adv[4] == 0.0
    for e, a in zip(scored, adv, strict=True):
        e.advantage = a
    width = max(len(t.response_ids) for t in GROUP)
    rows = advantage_rows(scored, width)
    expected = [row(C1, [2, 1, 1], ADV[0]), row(C2, [3], ADV[1]), row(C3, [1, 2, 1], ADV[2]), [0.0] * T, [0.0] * 5]
    for i, (t, want) in enumerate(zip(GROUP, expected, strict=True)):
        got = [rows[i, k].item() for b, e in t.turn_spans for k in range(b, e)]
        assert got == approx(want, abs=1e-4), i
    assert rows[4].abs().sum() == 0 and rows[3].abs().sum() == 0  # simulator error; unpenalised failure


def test_simulator_error_does_not_move_the_group() -> None:
    """The rest of the group trains exactly as if the failed-simulator episode had not been played."""
    bao = BAOSection()
    with_err = [score_episode(t, bao) for t in GROUP]
    without = with_err[:4]
    a = batch_advantages([e.score for e in with_err], 5, trained=[e.trained for e in with_err])
    b = batch_advantages([e.score for e in without], 4)
    assert a[:4] == b


def test_userrl_baseline_pipeline_by_hand() -> None:
    """UserRL: score = mean of raw turn rewards, Equalized credits, no penalties."""
    bao = build_config(BAOSection, {"score": "mean", "credit": "equalized", "penalties": False})
    scored = [score_episode(t, bao) for t in GROUP]
    assert [e.score for e in scored[:4]] == approx([1 / 3, 0.0, 0.0, 0.0])
    assert all(e.credits == [1.0] * e.turns for e in scored[:4])
    adv = batch_advantages([e.score for e in scored], 5, trained=[e.trained for e in scored])
    mean, std = 1 / 12, math.sqrt(((1 / 3 - 1 / 12) ** 2 + 3 * (1 / 12) ** 2) / 3)
    assert adv == approx([(1 / 3 - mean) / (std + 1e-6)] + [(0 - mean) / (std + 1e-6)] * 3 + [0.0], abs=1e-6)
    for e, a in zip(scored, adv, strict=True):
        e.advantage = a
    rows = advantage_rows(scored, max(len(t.response_ids) for t in GROUP))
    # equalized credits: every policy token of a trained episode carries its group advantage
    for i, t in enumerate(GROUP[:4]):
        assert torch.stack([rows[i, k] for b, e in t.turn_spans for k in range(b, e)]).tolist() == approx(
            [adv[i]] * sum(t.turn_lengths))


def test_ending_penalty_is_off_by_default_and_ranks_bad_endings_below_every_wellformed_failure() -> None:
    """`bao.ending_penalty` (decided here, not in the official code) changes nothing at its default of 0;
    at 0.5 under BAO's Sum score, a 2-turn episode that ended without a tool call (bao-s2's shortcut)
    and a clipped one score below any failure that ended well-formed before the turn limit."""
    assert [score_episode(t, BAOSection()).shaped for t in GROUP[:4]] == [S1, S2, approx(S3), S4]
    bao = build_config(BAOSection, {"ending_penalty": 0.5})
    scored = [score_episode(t, bao) for t in GROUP]
    assert scored[0].shaped == approx(S1) and scored[3].shaped == approx(S4)  # solved; turn limit
    assert scored[1].shaped == approx([-1.0]) and scored[2].shaped == approx(S3[:2] + [S3[2] - 0.5])
    assert scored[4].trained is False  # a simulator error is still not trained on
    shortcut = score_episode(traj([("search", 0.0, 2), (None, 0.0, 3)], termination="no_tool_call"), bao)
    wellformed = [score_episode(traj([("action", 0.0, 1)] * (n - 1) + [("answer", 0.0, 1)], termination="finish"), bao)
                  for n in range(1, T)]
    assert shortcut.score < min(e.score for e in wellformed) and min(e.score for e in wellformed) == approx(-0.5)
    # only the endings named: with no_tool_call alone, the clipped episode keeps its plain shaping
    only = build_config(BAOSection, {"ending_penalty": 0.5, "penalised_endings": ["no_tool_call"]})
    assert score_episode(GROUP[2], only).shaped == approx(S3)
    with pytest.raises(Exception, match="penalised_endings"):
        build_config(BAOSection, {"penalised_endings": ["solved"]})


# ---- item 2: run length ------------------------------------------------------------------------------
def test_paper_run_length_drops_the_partial_batch() -> None:
    from pathlib import Path

    from baorl.config import load_config
    from baorl.train.tasks import rollout_steps, total_steps

    for name in ("bao-qwen3-4b.yaml", "userrl-qwen3-4b.yaml"):
        cfg = load_config(TrainConfig, Path(__file__).resolve().parents[1] / "configs" / name)
        assert rollout_steps(cfg, 460) == 90  # 30 epochs x floor(460 / 128)
        assert total_steps(cfg, 460) == 90 * 128 // 16
    cfg = build_config(TrainConfig, {"train": {"tasks_per_step": 4, "max_steps": 3}})
    assert rollout_steps(cfg, 2) == 3  # max_steps needs no full epoch
    with pytest.raises(ValueError, match="multiple"):
        build_config(TrainConfig, {"train": {"tasks_per_step": 4, "mini_batch_tasks": 2, "max_steps": 3}})
