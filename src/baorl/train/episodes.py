"""From played episodes to what the policy update needs: shaped scores, turn credits, token advantages.

This is the only place the trainer touches the BAO mathematics, and it only calls `baorl.bao`
(spec: bao.md §3, §5)::

    shaped  = shape_rewards(r, choices, max_turns=T, ...)      # per episode
    S       = trajectory_score(shaped, cfg.score)
    credits = turn_credits(shaped, cfg.credit, gamma)
    A       = group_advantages(S over the batch, group ids)    # GRPO groups = rollouts of one task
    row     = place_token_advantages(credits, A, spans, width)  # on the turn spans

so the same function serves every engine (TRL here, verl in `baorl.train.verl`).

An episode that ended in ``simulator_error`` is not the agent's failure (bao.md §3): it is not
trained on (``trained`` False: zero credits, hence zero token advantage; the engines also drop its
tokens from the loss mask) and it stays out of its group's mean and std (`batch_advantages`), so
the rest of the group trains as if it had not been played. So does an episode with no policy
token at all (its prompt was over the budget): it says nothing about the policy (decided here;
the verl path, which sees only token masks, can tell no other way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from baorl.bao import group_advantages, place_token_advantages, shape_rewards, trajectory_score, turn_credits
from baorl.gyms import gym_class
from baorl.rollout.trajectory import Trajectory
from baorl.train.config import BAOSection

__all__ = ["ScoredEpisode", "score_episode", "batch_advantages", "advantage_rows"]


@dataclass
class ScoredEpisode:
    """One episode's BAO quantities (before the group step)."""

    rewards: list[float]
    choices: list[str | None]
    shaped: list[float]
    score: float
    credits: list[float]
    turn_lengths: list[int]
    turn_spans: list[tuple[int, int]]
    response_len: int
    user_actions: int
    turns: int
    success: bool
    raw_score: float
    termination: str
    advantage: float = 0.0
    trained: bool = True
    """False for a ``simulator_error`` episode or one without policy tokens: no advantage, out of the
    group statistics."""


def score_episode(traj: Trajectory, cfg: BAOSection, *, max_turns: int | None = None) -> ScoredEpisode:
    """Shape one trajectory's turn rewards and compute its score and credits (bao.md §3).

    Args:
        traj: a played episode with its token spans.
        cfg: the ``bao`` config section.
        max_turns: T of the over-thinking regulariser (default: the gym's own turn limit).
    """
    ep = traj.episode
    cls = gym_class(ep.gym)
    T = max_turns or cls.default_max_turns
    if ep.termination == "turn_limit":  # never "ended early", even with a trailing generation (T + 1 turns)
        T = max(T, len(traj.turn_rewards))
    shaped = shape_rewards(
        traj.turn_rewards, traj.turn_choices, max_turns=T,
        c_rep=cfg.c_rep if cfg.penalties else 0.0, c_len=cfg.c_len if cfg.penalties else 0.0,
        effort_cost=cfg.effort_cost, ending_penalty=cfg.ending_penalty,
        bad_ending=ep.termination in cfg.penalised_endings, user_choices=tuple(cls.user_choices),
        overthink_failed=cfg.overthink_failed,
    )
    trained = ep.termination != "simulator_error" and bool(traj.turn_spans)
    credits = turn_credits(shaped, cfg.credit, gamma=cfg.gamma) if trained else [0.0] * len(shaped)
    return ScoredEpisode(
        rewards=traj.turn_rewards, choices=traj.turn_choices, shaped=shaped,
        score=trajectory_score(shaped, cfg.score, gamma=cfg.gamma), credits=credits,
        turn_lengths=traj.turn_lengths, turn_spans=list(traj.turn_spans), response_len=len(traj.response_ids),
        user_actions=ep.user_actions, turns=len(ep.turns), success=ep.success, raw_score=ep.score,
        termination=ep.termination, trained=trained,
    )


def batch_advantages(scores: Sequence[float], group_size: int, *, eps: float = 1e-6,
                     trained: Sequence[bool] | None = None) -> list[float]:
    """Group-normalised advantages of a batch laid out as consecutive groups of `group_size` rollouts.

    Episodes with ``trained[i]`` False (simulator errors) get advantage 0 and stay out of their
    group's mean and std: each becomes a group of its own, which `group_advantages` gives 0.

    >>> [round(a, 4) for a in batch_advantages([1.0, 0.0, 0.5, 0.5], 2)]
    [0.7071, -0.7071, 0.0, 0.0]
    >>> [round(a, 3) for a in batch_advantages([1.0, 0.0, 0.0, 9.0], 4, trained=[True, True, True, False])]
    [1.155, -0.577, -0.577, 0.0]
    """
    if len(scores) % group_size:
        raise ValueError(f"{len(scores)} scores do not split into groups of {group_size}")
    if trained is not None and len(trained) != len(scores):
        raise ValueError(f"{len(trained)} trained flags for {len(scores)} scores")
    groups: list[object] = [i // group_size for i in range(len(scores))]
    if trained is not None:
        groups = [g if ok else ("untrained", i) for i, (g, ok) in enumerate(zip(groups, trained, strict=True))]
    return group_advantages(list(scores), groups, eps=eps)


def advantage_rows(episodes: Sequence[ScoredEpisode], width: int, *, dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """``(len(episodes), width)`` token advantages: each turn's span gets its share of the episode's
    advantage (`baorl.bao.place_token_advantages`); every other position (observations, padding) is 0.

    >>> e = ScoredEpisode(rewards=[0.0, 1.0], choices=["action", "answer"], shaped=[0.0, 1.0], score=1.0, credits=[0.8, 1.0], turn_lengths=[2, 1],
    ...                   turn_spans=[(0, 2), (4, 5)], response_len=5, user_actions=1, turns=2, success=True,
    ...                   raw_score=1.0, termination="solved", advantage=1.5)
    >>> advantage_rows([e], 6)
    tensor([[1.3846, 1.3846, 0.0000, 0.0000, 1.7308, 0.0000]])
    """
    rows = [place_token_advantages(e.credits, e.advantage, e.turn_spans, width) for e in episodes]
    return torch.tensor(rows, dtype=dtype).reshape(len(episodes), width).to(device)
