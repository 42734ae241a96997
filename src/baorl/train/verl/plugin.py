"""Register BAO's advantage estimator and policy loss with verl (needs the ``verl`` extra).

verl imports this module in every one of its processes through the ``verl.plugins`` entry point
that baorl's package declares (and the launcher also names it in ``VERL_USE_EXTERNAL_MODULES``),
so ``algorithm.adv_estimator=bao`` and ``actor_rollout_ref.actor.policy_loss.loss_mode=bao``
resolve wherever verl looks them up.

- ``bao`` estimator: `baorl.train.verl.advantages.bao_token_advantages` with the ``bao`` keys
  of ``algorithm.bao`` (score, credit, gamma, eps), which the launcher writes.
- ``bao`` policy loss: `baorl.bao.ppo_loss` (clipped, dual-clipped, token mean) with verl's clip
  settings; the micro-batch's token mean is rescaled to verl's global token count, so the
  gradient is the token mean over the whole mini-batch across data-parallel ranks.
"""

from __future__ import annotations

from typing import Any

import torch
from verl.trainer.ppo.core_algos import (
    ADV_ESTIMATOR_REGISTRY,
    POLICY_LOSS_REGISTRY,
    register_adv_est,
    register_policy_loss,
)

from baorl.bao import ppo_loss
from baorl.train.verl.advantages import bao_token_advantages

__all__ = ["compute_bao_advantage", "compute_bao_policy_loss"]


def compute_bao_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any = None,
    config: Any = None,
    **_: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl advantage estimator ``bao`` (see `bao_token_advantages`)."""
    if index is None:
        raise ValueError("the bao estimator needs group ids (verl's uid); none were passed")
    bao = (config.get("bao") if config is not None else None) or {}
    missing = [k for k in ("score", "credit", "gamma") if k not in bao]
    if missing:
        raise ValueError(f"algorithm.bao lacks {missing}; launch with `baorl train CONFIG --engine verl`")
    return bao_token_advantages(token_level_rewards, response_mask, list(index), score=str(bao["score"]),
                                credit=str(bao["credit"]), gamma=float(bao["gamma"]),
                                eps=float(bao.get("eps", 1e-6)))


def compute_bao_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """verl policy loss ``bao``: `baorl.bao.ppo_loss`, token mean over verl's global batch."""
    if loss_agg_mode != "token-mean":
        raise ValueError(f"the bao policy loss is a token mean; got loss_agg_mode={loss_agg_mode!r}")
    if rollout_is_weights is not None:
        raise ValueError("the bao policy loss does not take rollout importance weights; "
                         "leave algorithm.rollout_correction unset")
    clip = config.clip_ratio
    low = config.clip_ratio_low if config.clip_ratio_low is not None else clip
    high = config.clip_ratio_high if config.clip_ratio_high is not None else clip
    loss, m = ppo_loss(log_prob, old_log_prob, advantages, response_mask, clip_low=low, clip_high=high,
                       dual_clip=config.get("clip_ratio_c", 3.0))
    info = dict(getattr(config, "global_batch_info", None) or {})
    tokens = info.get("batch_num_tokens")
    if tokens:  # micro-batch mean -> share of the global token mean (verl's agg_loss convention)
        loss = loss * response_mask.sum() / tokens * info.get("dp_size", 1)
    return loss, {"actor/pg_clipfrac": float(m["clip_frac"]), "actor/ppo_kl": float(m["approx_kl"]),
                  "actor/pg_clipfrac_lower": float(m["dual_clip_frac"])}


if "bao" not in ADV_ESTIMATOR_REGISTRY:
    register_adv_est("bao")(compute_bao_advantage)
if "bao" not in POLICY_LOSS_REGISTRY:
    register_policy_loss("bao")(compute_bao_policy_loss)
