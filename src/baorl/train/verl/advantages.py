"""BAO's token advantages from what verl's advantage step sees (pure PyTorch; no verl import).

verl hands a registered advantage estimator only ``token_level_rewards`` (B, L), the
``response_mask`` (B, L) and the group ids (``index``). The agent loop therefore writes each
turn's *shaped* reward (bao.md §3, step 1, done there by `baorl.bao.shape_rewards`) on the last
token of that turn (`shaped_reward_row`); a turn is a maximal run of policy tokens (mask 1), since
observation tokens (mask 0) separate consecutive turns. From these the estimator recovers, per
episode, the shaped rewards and turn lengths, and runs the rest of bao.md §3 through `baorl.bao`::

    S       = trajectory_score(shaped, score, gamma)
    credits = turn_credits(shaped, credit, gamma)
    A       = group_advantages(S over the batch, index)
    row     = place_token_advantages(credits, A, spans, L)   # on the turn spans

which is what `baorl.train.episodes` does for the TRL path; `tests/test_verl.py` checks that the
two give the same tensors on the same episodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from baorl.bao import group_advantages, place_token_advantages, trajectory_score, turn_credits
from baorl.rollout.trajectory import Trajectory
from baorl.train.config import BAOSection
from baorl.train.episodes import score_episode

__all__ = ["mask_spans", "shaped_reward_row", "episode_rewards", "bao_token_advantages"]


def mask_spans(mask: Sequence[int] | torch.Tensor) -> list[tuple[int, int]]:
    """The maximal runs of 1 in a 0/1 mask, as ``(start, end)``.

    >>> mask_spans([0, 1, 1, 0, 0, 1, 0, 1])
    [(1, 3), (5, 6), (7, 8)]
    """
    m = mask.tolist() if isinstance(mask, torch.Tensor) else list(mask)
    spans, start = [], None
    for i, v in enumerate(m + [0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            spans.append((start, i))
            start = None
    return spans


def shaped_reward_row(shaped: Sequence[float], spans: Sequence[tuple[int, int]], width: int) -> list[float]:
    """Each turn's shaped reward on its last token (what the agent loop sends as ``rm_scores``).

    The spans must be what `mask_spans` will find again: non-empty, in order, and separated by at
    least one non-policy token.

    >>> shaped_reward_row([0.5, -1.0], [(0, 2), (3, 4)], 5)
    [0.0, 0.5, 0.0, -1.0, 0.0]
    """
    if len(shaped) != len(spans):
        raise ValueError(f"{len(shaped)} shaped rewards for {len(spans)} turns")
    row = [0.0] * width
    prev_end = -1
    for r, (start, end) in zip(shaped, spans, strict=True):
        if end <= start:
            raise ValueError(f"turn span {(start, end)} is empty: verl could not see this turn")
        if start <= prev_end:
            raise ValueError(f"turn span {(start, end)} touches the previous turn: verl would see one turn")
        if end > width:
            raise ValueError(f"turn span {(start, end)} lies beyond the response width {width}")
        row[end - 1] = float(r)
        prev_end = end
    return row


def episode_rewards(traj: Trajectory, bao: BAOSection, *, max_turns: int | None = None) -> tuple[float, list[float]]:
    """What the agent loop sends for one episode: its trajectory score S (verl's ``reward_score``,
    logged) and the shaped-reward row (``rm_scores``), both from `baorl.train.episodes.score_episode`."""
    scored = score_episode(traj, bao, max_turns=max_turns)
    return scored.score, shaped_reward_row(scored.shaped, traj.turn_spans, len(traj.response_ids))


def bao_token_advantages(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Sequence,
    *,
    score: str = "sum",
    credit: str = "r2g",
    gamma: float = 0.8,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, returns)``, both (B, L): BAO's token advantages (see the module docstring).

    Args:
        token_level_rewards: (B, L) each turn's shaped reward on its last policy token.
        response_mask: (B, L) 1 on policy tokens.
        index: B group ids (rollouts of one task share one).
        score, credit, gamma, eps: the ``bao`` config section's keys.

    ``returns`` holds each token's episode score S (verl logs it; GRPO-style estimators return
    the advantages there).
    """
    if token_level_rewards.shape != response_mask.shape:
        raise ValueError(f"rewards {tuple(token_level_rewards.shape)} and mask {tuple(response_mask.shape)} differ")
    if len(index) != response_mask.shape[0]:
        raise ValueError(f"{len(index)} group ids for {response_mask.shape[0]} episodes")
    rewards = token_level_rewards.detach().float().cpu()
    mask = response_mask.detach().cpu()
    spans = [mask_spans(mask[i]) for i in range(mask.shape[0])]
    shaped = [[float(rewards[i, end - 1]) for _, end in sp] for i, sp in enumerate(spans)]
    scores = [trajectory_score(s, score, gamma=gamma) for s in shaped]
    # an episode without policy tokens (a simulator error, whose mask the agent loop zeroes, or a
    # prompt over budget) stays out of its group's statistics: a group of its own gets A = 0
    groups = [str(x) if sp else ("untrained", i) for i, (x, sp) in enumerate(zip(index, spans, strict=True))]
    adv = group_advantages(scores, groups, eps=eps)
    width = rewards.shape[1]
    out = torch.tensor([place_token_advantages(turn_credits(s, credit, gamma=gamma), a, sp, width)
                        for sp, s, a in zip(spans, shaped, adv, strict=True)], dtype=rewards.dtype)
    out = out.reshape(rewards.shape)
    ret = torch.zeros_like(rewards)
    for i, sp in enumerate(spans):
        if sp:
            ret[i] = scores[i] * mask[i].float()
    return out.to(token_level_rewards.device), ret.to(token_level_rewards.device)
