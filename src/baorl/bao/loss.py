"""The policy loss: PPO clipped surrogate with dual clip (spec: bao.md §3, "Loss").

BAO's loss is the plain PPO-clip policy term, token-mean aggregated, with the dual clip for
negative advantages (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep RL"), and
nothing else: no KL penalty, no entropy bonus. Gradient clipping (1.0) and the one PPO epoch per
batch belong to the trainer.
"""

from __future__ import annotations

import math

import torch

__all__ = ["ppo_loss", "truncated_is_weights"]


def ppo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = 3.0,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate with dual clip, token-mean over the mask (spec: bao.md §3, "Loss").

    Per token, with ``r = exp(logprobs - old_logprobs)`` and ``c = dual_clip``::

        clipped = max(-A * r, -A * clip(r, 1 - clip_low, 1 + clip_high))   # standard PPO-clip
        l       = clipped                   if A >= 0
                  min(clipped, -A * c)      if A < 0                        # dual clip
        loss    = sum(l * mask) / sum(mask)                                 # token mean

    For ``A < 0`` the standard clip leaves ``-A * r`` unbounded as ``r`` grows (a token the new
    policy likes far more than the old one); the dual clip caps that token's loss at ``-A * c``,
    where its gradient is zero.

    Args:
        logprobs: ``(B, T)`` log-probabilities of the taken tokens under the current policy
            (carries the gradient).
        old_logprobs: ``(B, T)`` the same under the policy that generated the rollouts.
        advantages: ``(B, T)`` token advantages (from `token_advantages`).
        mask: ``(B, T)`` bool or 0/1: the tokens the policy generated. Masked-out positions
            contribute nothing, even if they hold NaN or infinite log-probabilities.
        clip_low: lower clip range, ``r >= 1 - clip_low`` (paper: 0.2).
        clip_high: upper clip range, ``r <= 1 + clip_high`` (paper: 0.2).
        dual_clip: the dual-clip constant ``c > 1`` (paper: 3.0); ``None`` switches it off.
        weights: optional ``(B, T)`` per-token weights multiplied into ``l`` (no gradient flows
            through them), e.g. `truncated_is_weights` for rollouts sampled in another precision.
            Not part of the paper's loss; None (the default) is the paper's.

    Returns:
        ``(loss, metrics)``: the scalar loss (0 when the mask is empty) and detached 0-dim tensors
        (call ``float()`` to log them), all over the masked tokens:

        - ``clip_frac``: share of tokens where the clipped term is the larger one (clip active);
        - ``dual_clip_frac``: share of tokens with ``A < 0`` where the dual clip is active;
        - ``approx_kl``: mean of ``(r - 1) - log r``, an estimator of KL(old || new) that is
          never negative (Schulman's k3);
        - ``ratio_mean``, ``ratio_min``, ``ratio_max``: of ``r``;
        - ``tokens``: number of masked-in tokens (the token-mean's denominator).

    Raises:
        ValueError: if the shapes differ or a clip setting is out of range.

    Examples:
        One token, A = 1, ratio e^{0.5} = 1.65 > 1.2: the clipped term -1.2 wins the max.

        >>> lp, old = torch.tensor([[0.5]]), torch.tensor([[0.0]])
        >>> loss, m = ppo_loss(lp, old, torch.tensor([[1.0]]), torch.tensor([[True]]))
        >>> round(loss.item(), 4), m["clip_frac"].item()
        (-1.2, 1.0)

        A = -1, ratio e^{2} = 7.39 > 3: the dual clip caps the loss at -A * 3 = 3.

        >>> loss, m = ppo_loss(torch.tensor([[2.0]]), old, torch.tensor([[-1.0]]), torch.tensor([[1]]))
        >>> round(loss.item(), 4), m["dual_clip_frac"].item()
        (3.0, 1.0)
    """
    shape = logprobs.shape
    named = [("old_logprobs", old_logprobs), ("advantages", advantages), ("mask", mask)]
    if weights is not None:
        named.append(("weights", weights))
    for name, t in named:
        if t.shape != shape:
            raise ValueError(f"{name} must have the shape of logprobs {tuple(shape)}, got {tuple(t.shape)}")
    if not (0.0 <= clip_low < 1.0):
        raise ValueError(f"clip_low must lie in [0, 1) (ratio floor 1 - clip_low), got {clip_low!r}")
    if not (0.0 <= clip_high and math.isfinite(clip_high)):
        raise ValueError(f"clip_high must be a finite number >= 0, got {clip_high!r}")
    if dual_clip is not None and not (dual_clip > 1.0 and math.isfinite(dual_clip)):
        raise ValueError(
            f"dual_clip must be a finite number > 1 (or None to switch it off), got {dual_clip!r}"
        )

    keep = mask.bool()
    # sanitise masked positions first, so that NaN/inf there reach neither the loss nor the gradient
    log_ratio = torch.where(keep, logprobs - old_logprobs.to(logprobs.dtype), torch.zeros_like(logprobs))
    adv = torch.where(keep, advantages.to(logprobs.dtype), torch.zeros_like(logprobs))
    ratio = torch.exp(log_ratio)

    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    dual_active = torch.zeros_like(keep)
    if dual_clip is not None:
        cap = -adv * dual_clip
        negative = adv < 0
        dual_active = negative & (per_token > cap)
        per_token = torch.where(negative, torch.minimum(per_token, cap), per_token)
    if weights is not None:
        per_token = per_token * torch.where(keep, weights.detach().to(per_token.dtype), torch.zeros_like(per_token))

    n_tokens = keep.sum()
    denom = n_tokens.clamp(min=1).to(per_token.dtype)
    loss = torch.where(keep, per_token, torch.zeros_like(per_token)).sum() / denom

    with torch.no_grad():
        kf = keep.to(per_token.dtype)
        if bool(n_tokens):
            ratio_min = torch.where(keep, ratio, torch.full_like(ratio, math.inf)).min()
            ratio_max = torch.where(keep, ratio, torch.zeros_like(ratio)).max()
        else:
            ratio_min = ratio_max = ratio.new_ones(())

        def masked_mean(x: torch.Tensor) -> torch.Tensor:
            return (x.to(per_token.dtype) * kf).sum() / denom

        metrics = {
            "clip_frac": masked_mean(clipped > unclipped),
            "dual_clip_frac": masked_mean(dual_active),
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio),
            "ratio_mean": masked_mean(ratio),
            "ratio_min": ratio_min,
            "ratio_max": ratio_max,
            "tokens": n_tokens.detach(),
        }
    return loss, {k: v.detach() for k, v in metrics.items()}


def truncated_is_weights(old_logprobs: torch.Tensor, sampling_logprobs: torch.Tensor, mask: torch.Tensor, *,
                         cap: float = 2.0) -> torch.Tensor:
    """Truncated importance-sampling weights ``min(exp(old - sampled), cap)`` per token.

    When rollouts are sampled by one numerical policy (a bf16 copy, or an inference engine) and the
    loss's old log-probabilities are recomputed by another (the update's precision), the tokens were
    drawn from the sampler's distribution, not the old policy's; weighting each token's loss by the
    ratio of the two, truncated at `cap` to bound the variance, corrects that (truncated importance
    sampling, as verl's and TRL's rollout corrections). Masked-out positions get weight 1.

    Args:
        old_logprobs: ``(B, T)`` log-probabilities under the old policy, in the update's precision.
        sampling_logprobs: ``(B, T)`` the same as the sampler computed them while generating.
        mask: ``(B, T)`` the policy's tokens.
        cap: the truncation ``C >= 1``.

    Examples:
        >>> w = truncated_is_weights(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.1, -2.0, 0.0]]),
        ...                          torch.tensor([[1, 1, 0]]))
        >>> [round(x, 4) for x in w[0].tolist()]
        [0.9048, 2.0, 1.0]
    """
    if not (cap >= 1.0 and math.isfinite(cap)):
        raise ValueError(f"cap must be a finite number >= 1, got {cap!r}")
    if old_logprobs.shape != sampling_logprobs.shape or old_logprobs.shape != mask.shape:
        raise ValueError("old_logprobs, sampling_logprobs and mask must have one shape")
    keep = mask.bool() & torch.isfinite(sampling_logprobs) & torch.isfinite(old_logprobs)
    diff = torch.where(keep, old_logprobs.detach() - sampling_logprobs.to(old_logprobs.dtype),
                       torch.zeros_like(old_logprobs))
    return torch.where(keep, torch.exp(diff).clamp(max=cap), torch.ones_like(old_logprobs))
