"""Batched tensor versions of the credit and advantage rules (spec: bao.md §3).

Each function here computes exactly what its list reference computes, for a whole batch at
once, and ``tests/test_bao.py`` checks the two agree on random inputs. Shapes: ``B`` rollouts,
``K`` turn slots (the most turns of any rollout, padded), ``T`` token positions, ``N`` rollouts
to group.

==========================  ===========================================
batched                     list reference
==========================  ===========================================
`trajectory_score_batched`  `baorl.bao.credit.trajectory_score`
`turn_credits_batched`      `baorl.bao.credit.turn_credits`
`group_advantages_batched`  `baorl.bao.advantages.group_advantages`
`token_advantages_batched`  `baorl.bao.advantages.token_advantages`
==========================  ===========================================

Shaping stays a list function: it works on choice names, per episode, and is cheap.
"""

from __future__ import annotations

import torch

from baorl.bao.advantages import ZERO_CREDIT_TOL
from baorl.bao.credit import CREDIT_METHODS, SCORE_METHODS, _check_gamma

__all__ = [
    "trajectory_score_batched",
    "turn_credits_batched",
    "group_advantages_batched",
    "token_advantages_batched",
]


def _turn_mask(shaped: torch.Tensor, num_turns: torch.Tensor) -> torch.Tensor:
    if shaped.dim() != 2:
        raise ValueError(f"shaped must be (B, K), got shape {tuple(shaped.shape)}")
    if num_turns.shape != shaped.shape[:1]:
        raise ValueError(f"num_turns must be (B,) = ({shaped.shape[0]},), got shape {tuple(num_turns.shape)}")
    if bool(((num_turns < 0) | (num_turns > shaped.shape[1])).any()):
        raise ValueError(f"num_turns must lie in [0, K={shaped.shape[1]}]")
    slots = torch.arange(shaped.shape[1], device=shaped.device)
    return slots.unsqueeze(0) < num_turns.to(shaped.device).unsqueeze(1)


def turn_credits_batched(
    shaped: torch.Tensor, num_turns: torch.Tensor, method: str = "r2g", gamma: float = 0.8
) -> torch.Tensor:
    """Turn credits of a batch of episodes; batched `turn_credits` (spec: bao.md §3).

    Args:
        shaped: ``(B, K)`` shaped turn rewards, row ``b`` valid in its first ``num_turns[b]``
            slots (what lies beyond is ignored).
        num_turns: ``(B,)`` integer turn counts.
        method: ``"r2g"``, ``"equalized"`` or ``"em"``.
        gamma: the R2G discount.

    Returns:
        ``(B, K)`` credits, zero in the padding slots.

    Examples:
        >>> c = turn_credits_batched(torch.tensor([[0.0, 0.0, 1.0], [1.0, 9.0, 9.0]]), torch.tensor([3, 1]))
        >>> [[round(x, 4) for x in row] for row in c.tolist()]
        [[0.64, 0.8, 1.0], [1.0, 0.0, 0.0]]
    """
    gamma = _check_gamma(gamma)
    valid = _turn_mask(shaped, num_turns)
    values = torch.where(valid, shaped, torch.zeros_like(shaped))
    if method == "r2g":
        credits = torch.zeros_like(values)
        running = torch.zeros_like(values[:, 0])
        for t in range(values.shape[1] - 1, -1, -1):
            running = values[:, t] + gamma * running
            credits[:, t] = running
        return credits  # padding slots: zero rewards and no future, so zero credit
    if method == "equalized":
        return valid.to(shaped.dtype)
    if method == "em":
        em = 0.5 + 0.5 * torch.expm1(-2.0 * values) / torch.expm1(torch.tensor(-2.0, dtype=values.dtype))
        return torch.where(valid, em, torch.zeros_like(em))
    raise ValueError(f"method must be one of {CREDIT_METHODS}, got {method!r}")


def trajectory_score_batched(
    shaped: torch.Tensor, num_turns: torch.Tensor, method: str = "sum", gamma: float = 0.8
) -> torch.Tensor:
    """Trajectory scores of a batch of episodes; batched `trajectory_score` (spec: bao.md §3).

    Args:
        shaped: ``(B, K)`` shaped turn rewards, padded as for `turn_credits_batched`.
        num_turns: ``(B,)`` integer turn counts.
        method: ``"sum"``, ``"mean"`` or ``"r2g"``.
        gamma: the discount for ``r2g``.

    Returns:
        ``(B,)`` scores; 0 for an episode with no turns.

    Examples:
        >>> s = torch.tensor([[0.0, 0.0, 1.0], [2.0, 9.0, 9.0]])
        >>> [round(x, 4) for x in trajectory_score_batched(s, torch.tensor([3, 1]), "mean").tolist()]
        [0.3333, 2.0]
    """
    gamma = _check_gamma(gamma)
    valid = _turn_mask(shaped, num_turns)
    values = torch.where(valid, shaped, torch.zeros_like(shaped))
    if method == "sum":
        return values.sum(dim=1)
    if method == "mean":
        return values.sum(dim=1) / num_turns.to(values).clamp(min=1)
    if method == "r2g":
        if values.shape[1] == 0:
            return values.sum(dim=1)
        return turn_credits_batched(values, num_turns, "r2g", gamma)[:, 0]
    raise ValueError(f"method must be one of {SCORE_METHODS}, got {method!r}")


def group_advantages_batched(
    scores: torch.Tensor, group_ids: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Group-normalised advantages; batched `group_advantages` (spec: bao.md §3).

    ``A_i = (S_i - mean_g) / (std_g + eps)``, sample std; a group of one or a group of identical
    scores gets 0 (decided here, as in the list version).

    Args:
        scores: ``(N,)`` floating trajectory scores.
        group_ids: ``(N,)`` integer group ids (equal ids form a group; need not be contiguous).
        eps: added to the standard deviation.

    Returns:
        ``(N,)`` advantages, dtype of ``scores``.

    Examples:
        >>> a = group_advantages_batched(torch.tensor([1.0, 2.0, 3.0, 5.0]), torch.tensor([0, 0, 0, 1]))
        >>> [round(x, 4) for x in a.tolist()]
        [-1.0, 0.0, 1.0, 0.0]
    """
    if scores.dim() != 1 or group_ids.shape != scores.shape:
        raise ValueError(
            f"scores and group_ids must both be (N,), got {tuple(scores.shape)} and {tuple(group_ids.shape)}"
        )
    if not scores.is_floating_point():
        raise ValueError(f"scores must be a floating tensor, got dtype {scores.dtype}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    if scores.numel() == 0:
        return scores.clone()
    _, inverse = torch.unique(group_ids, return_inverse=True)
    inverse = inverse.to(scores.device)
    n_groups = int(inverse.max()) + 1

    def per_group_sum(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n_groups, dtype=x.dtype, device=x.device).index_add_(0, inverse, x)

    count = per_group_sum(torch.ones_like(scores))
    mean = per_group_sum(scores) / count
    dev = scores - mean[inverse]
    std = torch.sqrt(per_group_sum(dev * dev) / (count - 1).clamp(min=1))
    hi = torch.full_like(mean, -torch.inf).scatter_reduce(0, inverse, scores, "amax")
    lo = torch.full_like(mean, torch.inf).scatter_reduce(0, inverse, scores, "amin")
    degenerate = (count < 2) | (hi == lo)
    adv = dev / (std[inverse] + eps)
    return torch.where(degenerate[inverse], torch.zeros_like(adv), adv)


def token_advantages_batched(
    turn_ids: torch.Tensor, credits: torch.Tensor, advantages: torch.Tensor
) -> torch.Tensor:
    """Per-token advantages of a batch; batched `token_advantages` (spec: bao.md §3).

    Each policy token gets its turn's credit; each row is scaled by ``A * N / Sigma`` (``N`` the
    row's non-zero-credit tokens, ``Sigma`` their sum), and a row with ``|Sigma| < 1e-12`` is zero.

    Args:
        turn_ids: ``(B, T)`` integer: the turn index (``0 .. K-1``) of each token the policy
            generated, ``-1`` for every other position (prompt, tool results, simulator replies,
            padding). Turns may be interleaved with ``-1`` runs.
        credits: ``(B, K)`` floating turn credits (from `turn_credits_batched`).
        advantages: ``(B,)`` group advantages.

    Returns:
        ``(B, T)`` token advantages, dtype of ``credits``; zero wherever ``turn_ids == -1``.

    Examples:
        The doctest of `token_advantages` with two non-policy positions in between:

        >>> ids = torch.tensor([[-1, 0, -1, 1, 1, 2]])
        >>> out = token_advantages_batched(ids, torch.tensor([[0.64, 0.8, 1.0]]), torch.tensor([1.0]))
        >>> [round(x, 4) for x in out[0].tolist()]
        [0.0, 0.7901, 0.0, 0.9877, 0.9877, 1.2346]
    """
    if turn_ids.dim() != 2 or credits.dim() != 2 or turn_ids.shape[0] != credits.shape[0]:
        raise ValueError(
            f"turn_ids must be (B, T) and credits (B, K) with the same B, got "
            f"{tuple(turn_ids.shape)} and {tuple(credits.shape)}"
        )
    if advantages.shape != credits.shape[:1]:
        raise ValueError(f"advantages must be (B,) = ({credits.shape[0]},), got {tuple(advantages.shape)}")
    if not credits.is_floating_point():
        raise ValueError(f"credits must be a floating tensor, got dtype {credits.dtype}")
    if turn_ids.numel() and bool(((turn_ids < -1) | (turn_ids >= credits.shape[1])).any()):
        raise ValueError(f"turn_ids must lie in [-1, K-1] = [-1, {credits.shape[1] - 1}]")
    policy = turn_ids >= 0
    if credits.shape[1] == 0:
        return torch.zeros(turn_ids.shape, dtype=credits.dtype, device=credits.device)
    tok = torch.gather(credits, 1, turn_ids.clamp(min=0).long())
    tok = torch.where(policy, tok, torch.zeros_like(tok))
    total = tok.sum(dim=1)
    nonzero = (tok != 0).sum(dim=1).to(tok.dtype)
    ok = total.abs() >= ZERO_CREDIT_TOL
    scale = torch.where(
        ok, advantages.to(tok.dtype) * nonzero / torch.where(ok, total, torch.ones_like(total)), 0
    )
    out = tok * scale.unsqueeze(1)
    return torch.where(tok != 0, out, torch.zeros_like(out))
