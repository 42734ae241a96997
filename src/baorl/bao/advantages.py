"""Group advantages and token advantages (spec: bao.md §3, "Group advantage", "Token advantages").

The group advantage ranks each rollout's score against the other rollouts of the same task
(GRPO). The token advantage spreads that one number over the tokens the policy generated, in
proportion to each turn's credit, and rescales so that the mean over the credited tokens is the
group advantage again.

Note what follows from the scaling (spec: bao.md §3): a failed, unpenalised episode has all-zero
shaped rewards, hence all-zero R2G credits, hence zero advantage on every token and no gradient,
however far its score lies below the group mean. BAO's penalties are what rank failures against
each other.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Hashable, Sequence

__all__ = ["ZERO_CREDIT_TOL", "group_advantages", "token_advantages", "place_token_advantages"]

#: a row whose token credits sum to less than this (in absolute value) gets zero advantage
ZERO_CREDIT_TOL = 1e-12


def group_advantages(
    scores: Sequence[float], group_ids: Sequence[Hashable], eps: float = 1e-6
) -> list[float]:
    """Group-normalised advantages (spec: bao.md §3, "Group advantage").

    For each rollout ``i`` in group ``g`` (the rollouts sharing a group id, i.e. the same task)::

        A_i = (S_i - mean_g) / (std_g + eps)

    with ``std_g`` the sample standard deviation (Bessel-corrected, ``n - 1``, as ``torch.std``).

    Args:
        scores: trajectory scores ``S`` (from `trajectory_score`), one per rollout.
        group_ids: any hashable id per rollout; equal ids form a group. Groups need not be
            contiguous.
        eps: added to the standard deviation (paper: 1e-6).

    Returns:
        One advantage per rollout, in input order.

    Raises:
        ValueError: if the lengths differ, a score is not finite, or ``eps < 0``.

    Decided here:
        - A group of one gets ``A = 0`` (its sample std is undefined).
        - A group whose scores are all exactly equal gets ``A = 0`` exactly (the formula gives 0 up
          to rounding in the mean; this makes it exact).

    Examples:
        Group "a" scores 1, 2, 3: mean 2, sample std 1, so A = -1, 0, 1 (up to eps).
        Group "b" is alone, so A = 0.

        >>> [round(a, 4) for a in group_advantages([1.0, 2.0, 3.0, 5.0], ["a", "a", "a", "b"])]
        [-1.0, 0.0, 1.0, 0.0]
        >>> group_advantages([0.5, 0.5], [7, 7])
        [0.0, 0.0]
    """
    if len(scores) != len(group_ids):
        raise ValueError(
            f"scores and group_ids must have one entry per rollout, got len(scores)={len(scores)} "
            f"and len(group_ids)={len(group_ids)}"
        )
    eps = float(eps)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    values = [float(s) for s in scores]
    for i, s in enumerate(values):
        if not math.isfinite(s):
            raise ValueError(f"scores[{i}] must be finite, got {s!r}")

    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(group_ids):
        members.setdefault(g, []).append(i)

    advantages = [0.0] * len(values)
    for idx in members.values():
        group = [values[i] for i in idx]
        n = len(group)
        if n < 2 or max(group) == min(group):
            continue  # group of one, or identical scores: A = 0
        mean = sum(group) / n
        std = math.sqrt(sum((s - mean) ** 2 for s in group) / (n - 1))
        for i in idx:
            advantages[i] = (values[i] - mean) / (std + eps)
    return advantages


def token_advantages(credits: Sequence[float], advantage: float, turn_lengths: Sequence[int]) -> list[float]:
    """Per-token advantages of one rollout (spec: bao.md §3, "Token advantages").

    Every policy token of turn ``t`` first gets ``c_t``; the row is then scaled so that the mean
    over its non-zero-credit tokens equals ``A``::

        x_k   = c_{turn(k)}                       for each policy token k
        N     = #{k : x_k != 0}                   (tokens with non-zero credit)
        Sigma = sum_k x_k = sum_t c_t * len_t     (token-weighted: long turns count more)
        adv_k = x_k * A * N / Sigma               (all zeros when |Sigma| < 1e-12)

    Args:
        credits: the turn credits ``c_t`` (from `turn_credits`), one per turn.
        advantage: the rollout's group advantage ``A`` (from `group_advantages`).
        turn_lengths: the number of policy tokens generated in each turn (``>= 0``).

    Returns:
        One advantage per policy token, turns in order: ``sum(turn_lengths)`` values. Tokens the
        policy did not generate are not in the row; the caller masks them out of the loss.

    Raises:
        ValueError: if the lengths differ, a length is negative or not an int, or a credit or the
            advantage is not finite.

    Decided here:
        - "Sums to zero" is ``|Sigma| < 1e-12`` (`ZERO_CREDIT_TOL`), not an exact test, so that
          rounding residue such as ``0.1 + 0.2 - 0.3`` does not blow up the scale. The row is
          then all zeros, even if single credits are non-zero: mixed-sign credits that cancel,
          e.g. ``[1, -1]`` over equal lengths, give no gradient.
        - With mixed-sign credits that do not cancel, ``A * N / Sigma`` can be negative and flip
          every turn's sign; this is the formula as stated and is kept. Under BAO's defaults it
          does not arise for failed episodes (penalties make every shaped reward <= 0, so every
          R2G credit has one sign); it can arise with ``effort_cost > 0`` on a successful episode.
        - A turn with zero credit keeps zero advantage and does not count in ``N``.

    Examples:
        R2G credits 0.64, 0.8, 1.0 (gamma 0.8, rewards 0, 0, 1), turn lengths 1, 2, 1, A = 1:
        x = [0.64, 0.8, 0.8, 1.0], N = 4, Sigma = 3.24, scale = 4 / 3.24; the mean of the row is 1.

        >>> row = token_advantages([0.64, 0.8, 1.0], 1.0, [1, 2, 1])
        >>> [round(a, 4) for a in row]
        [0.7901, 0.9877, 0.9877, 1.2346]
        >>> round(sum(row) / len(row), 4)
        1.0

        Credits 0, 2 with A = -1: only the second turn's tokens count, N = 2, Sigma = 4, scale -0.5:

        >>> token_advantages([0.0, 2.0], -1.0, [3, 2])
        [0.0, 0.0, 0.0, -1.0, -1.0]
        >>> token_advantages([0.0, 0.0], 1.5, [2, 1])
        [0.0, 0.0, 0.0]
    """
    if len(credits) != len(turn_lengths):
        raise ValueError(
            f"credits and turn_lengths must have one entry per turn, got len(credits)={len(credits)} "
            f"and len(turn_lengths)={len(turn_lengths)}"
        )
    advantage = float(advantage)
    if not math.isfinite(advantage):
        raise ValueError(f"advantage must be finite, got {advantage!r}")
    row: list[float] = []
    for t, (c, n) in enumerate(zip(credits, turn_lengths, strict=True)):
        try:
            n = -1 if isinstance(n, bool) else operator.index(n)
        except TypeError:
            n = -1
        if n < 0:
            raise ValueError(f"turn_lengths[{t}] must be an int >= 0, got {turn_lengths[t]!r}")
        c = float(c)
        if not math.isfinite(c):
            raise ValueError(f"credits[{t}] must be finite, got {c!r}")
        row.extend([c] * n)

    total = math.fsum(row)
    if abs(total) < ZERO_CREDIT_TOL:
        return [0.0] * len(row)
    nonzero = sum(1 for x in row if x != 0.0)
    scale = advantage * nonzero / total
    return [x * scale if x else 0.0 for x in row]  # `if x`: no -0.0 for zero-credit tokens


def place_token_advantages(
    credits: Sequence[float], advantage: float, spans: Sequence[tuple[int, int]], width: int
) -> list[float]:
    """One rollout's token advantages laid out on its response: `token_advantages` on each turn's
    token span ``[start, end)``, 0 on every other position (observations, padding). Every engine
    (TRL, verl) builds its advantage rows with this function.

    Args:
        credits: the turn credits, one per turn.
        advantage: the rollout's group advantage ``A``.
        spans: each turn's policy-token span in the response, in order and not overlapping.
        width: the row's length (the padded response width).

    Raises:
        ValueError: if the spans and credits differ in number, a span is reversed or lies beyond
            `width`, or a `token_advantages` argument is invalid.

    >>> [round(a, 4) for a in place_token_advantages([0.8, 1.0], 1.5, [(0, 2), (4, 5)], 6)]
    [1.3846, 1.3846, 0.0, 0.0, 1.7308, 0.0]
    """
    lengths = []
    for start, end in spans:
        if end < start or start < 0:
            raise ValueError(f"turn span {(start, end)} is not a span")
        if end > width:
            raise ValueError(f"turn span {(start, end)} lies beyond the completion width {width}")
        lengths.append(end - start)
    values = token_advantages(credits, advantage, lengths)
    row = [0.0] * width
    k = 0
    for (start, end), n in zip(spans, lengths, strict=True):
        row[start:end] = values[k:k + n]
        k += n
    return row
