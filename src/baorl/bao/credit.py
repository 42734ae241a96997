"""Trajectory scores and turn credits (spec: bao.md §3, "Credit and score").

The trajectory score ``S`` ranks the rollouts of one task against each other (it feeds the group
advantage); the turn credits ``c_t`` say how that advantage is spread over the episode's turns.

============  ==========================================  ===================================
method        trajectory score ``S``                      turn credit ``c_t``
============  ==========================================  ===================================
``sum``       ``sum_t shaped_t`` (BAO)                    --
``mean``      ``mean_t shaped_t`` (UserRL's "Sum")        --
``r2g``       ``c_0`` of R2G, ``sum_t gamma^t shaped_t``  ``shaped_t + gamma * c_{t+1}`` (BAO)
``equalized`` --                                          ``1``
``em``        --                                          ``0.5 + 0.5 (1 - e^{-2 r_t}) / (1 - e^{-2})``
============  ==========================================  ===================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["SCORE_METHODS", "CREDIT_METHODS", "trajectory_score", "turn_credits"]

SCORE_METHODS = ("sum", "mean", "r2g")
CREDIT_METHODS = ("r2g", "equalized", "em")


def _check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(
            f"gamma must lie in [0, 1] (the per-turn discount), got {gamma!r}; the paper uses 0.8"
        )
    return gamma


def em_credit(r: float) -> float:
    """UserRL's EM turn credit of one reward: ``0.5 + 0.5 (1 - e^{-2 r}) / (1 - e^{-2})``.

    It maps ``r = 0`` to 0.5 and ``r = 1`` to 1, and grows without bound below zero.

    >>> em_credit(0.0), em_credit(1.0)
    (0.5, 1.0)
    """
    # (1 - e^{-2r}) = -expm1(-2r), exact near r = 0
    return 0.5 + 0.5 * math.expm1(-2.0 * r) / math.expm1(-2.0)


def turn_credits(shaped: Sequence[float], method: str = "r2g", gamma: float = 0.8) -> list[float]:
    """Per-turn credits of one episode (spec: bao.md §3, "Turn credits").

    - ``r2g`` (BAO): reward-to-go, ``c_t = shaped_t + gamma * c_{t+1}``, ``c_T' = 0``.
    - ``equalized``: ``c_t = 1`` for every turn (the episode's advantage on every token).
    - ``em``: ``c_t = 0.5 + 0.5 (1 - e^{-2 r_t}) / (1 - e^{-2})``, UserRL's exponential mapping;
      here ``r_t`` is the value passed in (the shaped reward).

    Args:
        shaped: the episode's shaped turn rewards (from `shape_rewards`).
        method: ``"r2g"``, ``"equalized"`` or ``"em"``.
        gamma: the R2G discount (paper: 0.8); checked to lie in ``[0, 1]`` for every method.

    Returns:
        One credit per turn (``[]`` for an empty episode).

    Raises:
        ValueError: on an unknown ``method`` or a ``gamma`` outside ``[0, 1]``.

    Examples:
        R2G with gamma 0.8 over three turns rewarded 0, 0, 1:
        c_2 = 1, c_1 = 0 + 0.8 * 1 = 0.8, c_0 = 0 + 0.8 * 0.8 = 0.64.

        >>> [round(c, 4) for c in turn_credits([0.0, 0.0, 1.0])]
        [0.64, 0.8, 1.0]
        >>> turn_credits([0.0, 0.0, 1.0], "equalized")
        [1.0, 1.0, 1.0]
        >>> turn_credits([0.0, 1.0], "em")
        [0.5, 1.0]
    """
    gamma = _check_gamma(gamma)
    values = [float(s) for s in shaped]
    if method == "r2g":
        credits = [0.0] * len(values)
        running = 0.0
        for t in range(len(values) - 1, -1, -1):
            running = values[t] + gamma * running
            credits[t] = running
        return credits
    if method == "equalized":
        return [1.0] * len(values)
    if method == "em":
        return [em_credit(s) for s in values]
    raise ValueError(f"method must be one of {CREDIT_METHODS}, got {method!r}")


def trajectory_score(shaped: Sequence[float], method: str = "sum", gamma: float = 0.8) -> float:
    """The trajectory score ``S`` of one episode (spec: bao.md §3, "Trajectory score").

    - ``sum`` (BAO): ``S = sum_t shaped_t``.
    - ``mean`` (UserRL's baseline, which its code calls "Sum"): ``S = sum_t shaped_t / T'``.
    - ``r2g``: the discounted return from the first turn, ``S = sum_t gamma^t shaped_t``, i.e.
      ``c_0`` of `turn_credits` with ``method="r2g"``.

    Args:
        shaped: the episode's shaped turn rewards.
        method: ``"sum"``, ``"mean"`` or ``"r2g"``.
        gamma: the discount for ``r2g`` (paper: 0.8); checked to lie in ``[0, 1]`` for every method.

    Returns:
        The score; ``0.0`` for an empty episode under every method (decided here: the mean of no
        turns is taken as 0 rather than NaN).

    Raises:
        ValueError: on an unknown ``method`` or a ``gamma`` outside ``[0, 1]``.

    Examples:
        Three turns rewarded 0, 0, 1: sum 1, mean 1/3, R2G 0 + 0.8 * 0 + 0.64 * 1 = 0.64.

        >>> trajectory_score([0.0, 0.0, 1.0])
        1.0
        >>> round(trajectory_score([0.0, 0.0, 1.0], "mean"), 4)
        0.3333
        >>> round(trajectory_score([0.0, 0.0, 1.0], "r2g"), 4)
        0.64
    """
    gamma = _check_gamma(gamma)
    values = [float(s) for s in shaped]
    if method == "sum":
        return float(sum(values))
    if method == "mean":
        return float(sum(values)) / len(values) if values else 0.0
    if method == "r2g":
        return turn_credits(values, "r2g", gamma)[0] if values else 0.0
    raise ValueError(f"method must be one of {SCORE_METHODS}, got {method!r}")
