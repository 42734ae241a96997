"""BAO's stage-2 core: behaviour-regularised multi-turn GRPO, as pure functions (spec: bao.md §3, §5).

Numbers in, numbers out: no trainer state, no engine, no model. Read top to bottom, the pipeline
for the rollouts of one batch is::

    shaped  = shape_rewards(rewards, choices, max_turns=15)   # penalise failed episodes' behaviour
    S       = trajectory_score(shaped, "sum")                 # BAO: plain sum (UserRL: "mean")
    c       = turn_credits(shaped, "r2g", gamma=0.8)          # BAO: reward-to-go
    A       = group_advantages(scores, group_ids)             # GRPO over the rollouts of a task
    adv     = token_advantages(c, A_i, turn_lengths)          # spread A over the policy's tokens
    row     = place_token_advantages(c, A_i, spans, width)    # ... laid out on the response (every engine)
    loss, m = ppo_loss(logprobs, old_logprobs, adv, mask)     # PPO-clip + dual clip, token mean

What follows from the rules: a failed, unpenalised episode has zero shaped rewards, hence zero
credits, hence zero token advantage and no gradient, whatever its group advantage; only the
behaviour penalties rank failures against each other.

Decided here (the paper is silent; each is also listed in its function's docstring):
    - penalties on one turn add up; "failed" is judged on the unshaped rewards;
    - a ``None`` choice is not user-involved and breaks a run of ``answer`` turns;
    - an empty episode shapes to ``[]`` and scores 0 under every method;
    - a group of one, or a group of identical scores, gets advantage 0;
    - a row whose token credits sum to ``|Sigma| < 1e-12`` gets zero advantage;
    - ``effort_cost`` (the ``w``-sweep baseline) defaults to 0.
"""

from __future__ import annotations

from baorl.bao.advantages import group_advantages, place_token_advantages, token_advantages
from baorl.bao.credit import trajectory_score, turn_credits
from baorl.bao.loss import ppo_loss, truncated_is_weights
from baorl.bao.shaping import shape_rewards

__all__ = [
    "shape_rewards",
    "trajectory_score",
    "turn_credits",
    "group_advantages",
    "token_advantages",
    "place_token_advantages",
    "ppo_loss",
    "truncated_is_weights",
]
