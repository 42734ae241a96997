"""Pick each row's next token and its log-probability, reproducibly and independently per row.

`sample_next` draws row i's token with the uniform number ``u[i]`` (inverse-CDF sampling), so a
row's randomness comes from its own stream (one `torch.Generator` per episode): an episode
samples the same tokens whatever other episodes share its batch.

The log-probability recorded for a token is ``log_softmax(logits / temperature)`` at that
token, over the whole vocabulary (raw logits when greedy, ``temperature == 0``). Top-k and
top-p restrict which tokens can be drawn but are not folded into the recorded log-probability,
as in verl and TRL, whose trainers recompute "old" log-probs the same way.

>>> logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
>>> tok, lp = sample_next(logits, temperature=0.0)
>>> tok.tolist(), [round(x, 4) for x in lp.tolist()]
([1, 0], [-0.4076, -0.0949])
>>> sample_next(logits, temperature=1.0, top_k=1, uniforms=torch.tensor([0.99, 0.5]))[0].tolist()
[1, 0]
"""

from __future__ import annotations

import torch


def filter_logits(logits: torch.Tensor, *, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k / top-p (nucleus) set to -inf; the best token always stays.

    >>> filter_logits(torch.tensor([[1.0, 3.0, 2.0]]), top_k=2).tolist()
    [[-inf, 3.0, 2.0]]
    >>> filter_logits(torch.tensor([[0.0, 5.0, 0.0]]), top_p=0.5).tolist()
    [[-inf, 5.0, -inf]]
    """
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens ranked before it already hold top_p of the mass
        drop = (probs.cumsum(-1) - probs) >= top_p
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    uniforms: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next tokens ``(B,)`` and their log-probabilities ``(B,)`` from logits ``(B, V)``.

    Args:
        logits: the model's next-token logits (any float dtype; computed in float32).
        temperature: 0 for greedy (argmax), else the softmax temperature.
        top_k: keep only the k most likely tokens (0: off).
        top_p: keep the smallest set of tokens holding this much probability (1.0: off).
        uniforms: one number in [0, 1) per row (required unless greedy).
    """
    logits = logits.float()
    if temperature == 0:
        tokens = logits.argmax(-1)
        logprobs = logits.log_softmax(-1).gather(-1, tokens[:, None])[:, 0]
        return tokens, logprobs
    if uniforms is None:
        raise ValueError("sampling with temperature > 0 needs one uniform number per row")
    scaled = logits / temperature
    all_logprobs = scaled.log_softmax(-1)
    if top_k or top_p < 1.0:
        probs = filter_logits(scaled, top_k=top_k, top_p=top_p).softmax(-1)
    else:
        probs = all_logprobs.exp()
    cdf = probs.cumsum(-1)
    u = uniforms.to(device=cdf.device, dtype=cdf.dtype)[:, None] * cdf[:, -1:]
    # first index whose cumulative mass exceeds u: never a zero-probability token
    tokens = torch.searchsorted(cdf, u, right=True)[:, 0].clamp_max(cdf.shape[-1] - 1)
    bad = probs.gather(-1, tokens[:, None])[:, 0] <= 0  # only when u rounds up to the total mass
    if bool(bad.any()):
        tokens = torch.where(bad, probs.argmax(-1), tokens)
    return tokens, all_logprobs.gather(-1, tokens[:, None])[:, 0]
