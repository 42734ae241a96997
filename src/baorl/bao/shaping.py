"""Behaviour regularisation: per-turn reward shaping (spec: bao.md §3, "Shaping").

BAO adds two penalties to the turns of *failed* episodes so that failures are ranked against each
other (without them, every failed episode scores 0 and carries no gradient), plus an optional
explicit effort cost that applies to every episode:

- information-seeking regulariser: ``-c_rep`` on a user-involved turn that directly follows
  another user-involved turn;
- over-thinking regulariser: ``-(c_len * (T - T') + 0.2) / (T' + 1)`` on each turn after the first
  of a failed episode that ended early (``T' < T``); ``-0.5`` on a one-turn episode's only turn;
- effort cost: ``-w`` on every user-involved turn of every episode (default ``w = 0``);
- ending penalty: ``-e`` on the last turn of an episode that ended badly (the caller says which
  endings are bad, e.g. no valid tool call or the token budget spent; default ``e = 0``).

``shaped_t = r_t + (sum of the penalties on turn t)``. Each regulariser is off entirely when its
coefficient is 0, as in the official code (which runs each only for a coefficient > 0): with
``c_len = 0`` there is no over-thinking penalty at all (no 0.2 base, no -0.5), so the UserRL
baseline trains on the raw rewards.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence

__all__ = ["shape_rewards"]

#: the over-thinking regulariser's constant term, ``0.2`` in ``(c_len * (T - T') + 0.2) / (T' + 1)``
OVERTHINK_BASE = 0.2
#: the over-thinking penalty on the only turn of a failed one-turn episode
ONE_TURN_PENALTY = 0.5
#: the values of ``overthink_failed``: bao.md's ``sum <= 0``, or the official code's ``sum == 0``
OVERTHINK_FAILED = ("nonpositive", "zero")


def _check_magnitude(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{name} must be a finite number >= 0 (it is the size of a penalty, subtracted from the "
            f"reward), got {value!r}; pass e.g. {name}=0.0 to switch it off"
        )
    return value


def _user_choice_set(user_choices: Iterable[Hashable]) -> frozenset[Hashable]:
    if isinstance(user_choices, str):
        raise ValueError(
            f"user_choices must be a collection of choice names, got the string {user_choices!r}; "
            f"pass a tuple such as ({user_choices!r},)"
        )
    return frozenset(user_choices)


def shape_rewards(
    rewards: Sequence[float],
    choices: Sequence[str | None],
    *,
    max_turns: int = 15,
    c_rep: float = 0.005,
    c_len: float = 0.05,
    effort_cost: float = 0.0,
    ending_penalty: float = 0.0,
    bad_ending: bool = False,
    user_choices: Iterable[Hashable] = ("answer",),
    overthink_failed: str = "nonpositive",
) -> list[float]:
    """Shape one episode's turn rewards with BAO's behaviour penalties (spec: bao.md §3, "Shaping").

    With ``T = max_turns``, ``T' = len(rewards)`` and ``U`` the user-involved turns
    (``choices[t] in user_choices``)::

        failed        = sum_t r_t <= 0
        rep_t         = -c_rep                                if c_rep > 0 and failed and t >= 1
                                                                 and t in U and t-1 in U
        len_t         = -(c_len * (T - T') + 0.2) / (T' + 1)  if c_len > 0 and failed and T' < T
                                                                 and T' > 1 and t >= 1
                        -0.5                                  if c_len > 0 and failed and T' < T and T' == 1
        effort_t      = -effort_cost                          if t in U   (every episode)
        end_t         = -ending_penalty                       if bad_ending and t == T' - 1
        shaped_t      = r_t + rep_t + len_t + effort_t + end_t

    A regulariser whose coefficient is 0 is off entirely (bao.md §3): ``c_len = 0`` removes the
    0.2 base and the -0.5 too, so with ``c_rep = c_len = effort_cost = ending_penalty = 0`` the
    result is the raw rewards.

    Args:
        rewards: the gym's step rewards ``r_t``, one per turn (unshaped).
        choices: each turn's tool-call choice; ``None`` for a turn without a valid tool call.
        max_turns: the turn limit ``T`` the episode was played under (paper: 15).
        c_rep: information-seeking penalty per repeated user-involved turn (paper: 0.005).
        c_len: over-thinking penalty per missing turn (paper: 0.05 in the released script, 0.01 in
            the plotted run); 0 switches the over-thinking regulariser off.
        effort_cost: explicit user-effort cost ``w`` per user-involved turn, for the ``w``-sweep
            baseline (decided here: default 0).
        ending_penalty: the size ``e`` of the ending penalty (decided here, not in the paper or the
            official code: default 0, off). It exists because both regularisers above can be gamed
            by ending badly: a short failure is penalised less than a long one, and a failure that
            never asks the user costs no effort (README, Results).
        bad_ending: whether this episode ended badly (the caller decides; the trainer uses
            ``bao.penalised_endings``, by default an episode without a valid tool call and one that
            spent its token budget).
        user_choices: the choices that involve the user (``answer`` in Function, Turtle, Telepathy).
        overthink_failed: which episodes count as failed for the over-thinking regulariser:
            ``"nonpositive"`` (bao.md: ``sum_t r_t <= 0``, as for the information-seeking one) or
            ``"zero"`` (the official code's ``sum_t r_t == 0``). The two differ only for gyms with
            negative step rewards (Intention's -0.2 per extra question).

    Returns:
        The shaped rewards, one per turn.

    Raises:
        ValueError: if the lengths differ, a reward is not finite, the episode is longer than
            ``max_turns``, ``max_turns < 1``, a penalty size is negative or not finite,
            ``user_choices`` is a bare string, or ``overthink_failed`` is not one of its values.

    Decided here (the paper is silent):
        - Penalties on the same turn add up (a turn can carry rep, len, effort and end at once).
        - The ending penalty, like the effort cost, applies to every episode, failed or not.
        - "Failed" is judged on the *unshaped* rewards, ``sum_t r_t <= 0``.
        - A ``None`` choice is not user-involved, and it breaks a run of user-involved turns: an
          ``answer`` after a ``None`` turn after an ``answer`` is not penalised as a repeat.
        - The function sees only the turn count, so every failed episode shorter than ``T`` counts
          as "ended early", whatever the reason (token budget, no tool call, ``[finish]``).
          Callers should drop episodes that ended on a simulator error rather than shape them.
        - A failed one-turn episode gets -0.5 only when ``T > 1`` (it ended early); with
          ``max_turns == 1`` it ran to the limit and gets no over-thinking penalty.
        - An empty episode returns ``[]``.
        - An episode longer than ``max_turns`` is an error (``T - T'`` would be negative).

    Examples:
        A failed Function episode of four turns out of fifteen; turn 2 answers right after an
        answer. Over-thinking: -(0.05 * (15 - 4) + 0.2) / (4 + 1) = -0.75 / 5 = -0.15 on turns 1-3;
        repetition: -0.005 on turn 2.

        >>> shaped = shape_rewards([0, 0, 0, 0], ["search", "answer", "answer", "search"])
        >>> [round(s, 4) for s in shaped]
        [0.0, -0.15, -0.155, -0.15]

        A successful episode is never penalised, apart from the effort cost:

        >>> shape_rewards([0.0, 0.0, 1.0], ["answer", "answer", "answer"])
        [0.0, 0.0, 1.0]
        >>> shape_rewards([0.0, 0.0, 1.0], ["search", "answer", "answer"], effort_cost=0.1)
        [0.0, -0.1, 0.9]

        A failed one-turn episode:

        >>> shape_rewards([0.0], [None])
        [-0.5]

        With every coefficient 0 (the UserRL baseline) nothing is shaped:

        >>> shape_rewards([0.0], [None], c_rep=0.0, c_len=0.0)
        [0.0]

        An ending penalty makes a 2-turn episode that ended without a tool call cost more than any
        well-formed failure (the costliest is a one-turn failure, -0.5):

        >>> [round(s, 4) for s in shape_rewards([0.0, 0.0], ["search", None], ending_penalty=0.5, bad_ending=True)]
        [0.0, -0.7833]
    """
    if len(rewards) != len(choices):
        raise ValueError(
            f"rewards and choices must have one entry per turn, got len(rewards)={len(rewards)} "
            f"and len(choices)={len(choices)}"
        )
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
        raise ValueError(f"max_turns must be an int >= 1 (the gym's turn limit T), got {max_turns!r}")
    if len(rewards) > max_turns:
        raise ValueError(
            f"the episode has {len(rewards)} turns but max_turns={max_turns}; set max_turns to the "
            f"turn limit the episode was played under"
        )
    c_rep = _check_magnitude("c_rep", c_rep)
    c_len = _check_magnitude("c_len", c_len)
    effort_cost = _check_magnitude("effort_cost", effort_cost)
    ending_penalty = _check_magnitude("ending_penalty", ending_penalty)
    users = _user_choice_set(user_choices)
    if overthink_failed not in OVERTHINK_FAILED:
        raise ValueError(f"overthink_failed must be one of {OVERTHINK_FAILED}, got {overthink_failed!r}")

    shaped = [float(r) for r in rewards]
    for t, r in enumerate(shaped):
        if not math.isfinite(r):
            raise ValueError(f"rewards[{t}] must be finite, got {r!r}")
    n = len(shaped)
    if n == 0:
        return []
    involved = [c is not None and c in users for c in choices]

    # effort cost: every episode, every user-involved turn
    if effort_cost:
        for t in range(n):
            if involved[t]:
                shaped[t] -= effort_cost
    # ending penalty: every episode that ended badly, on its last turn
    if bad_ending and ending_penalty:
        shaped[-1] -= ending_penalty

    total = math.fsum(float(r) for r in rewards)
    if total > 0:
        return shaped

    # information-seeking regulariser: a user-involved turn right after another one
    if c_rep > 0:
        for t in range(1, n):
            if involved[t] and involved[t - 1]:
                shaped[t] -= c_rep

    # over-thinking regulariser: the episode stopped before the turn limit
    overthinks = total == 0 if overthink_failed == "zero" else True
    if c_len > 0 and overthinks and n < max_turns:
        if n == 1:
            shaped[0] -= ONE_TURN_PENALTY
        else:
            penalty = (c_len * (max_turns - n) + OVERTHINK_BASE) / (n + 1)
            for t in range(1, n):
                shaped[t] -= penalty
    return shaped
