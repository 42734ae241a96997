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
        probs = logits.softmax(-1)
        k = min(probs.shape[-1], 1024)
        top, order = probs.topk(k, dim=-1)  # the nucleus nearly always lies in the top 1024: no full sort
        if k < probs.shape[-1] and not bool((top.sum(-1) >= top_p).all()):
            top, order = probs.sort(dim=-1, descending=True)
        # keep a token while the tokens ranked before it hold less than top_p of the mass
        keep = (top.cumsum(-1) - top) < top_p
        keep[..., 0] = True
        mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, order, keep)
        logits = logits.masked_fill(~mask, float("-inf"))
    return logits


def _draw(weights: torch.Tensor, u: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """Inverse-CDF draw: per row, the first index whose cumulative weight exceeds ``u * total``.

    Two levels (block sums, then one block's cumulative sum) instead of a cumulative sum over the
    whole vocabulary. A zero-weight index is never returned unless the row has no weight at all.
    """
    rows, vocab = weights.shape
    nb = -(-vocab // block)
    if nb * block != vocab:
        weights = torch.nn.functional.pad(weights, (0, nb * block - vocab))
    blocks = weights.view(rows, nb, block)
    bsum = blocks.sum(-1)                                    # (rows, nb)
    bcdf = bsum.cumsum(-1)
    target = u.to(bcdf)[:, None] * bcdf[:, -1:]              # (rows, 1)
    b = torch.searchsorted(bcdf, target, right=True).clamp_max(nb - 1)
    while True:  # u may round onto a boundary with only empty blocks after it: step back
        empty = bsum.gather(-1, b)[:, 0] <= 0
        if not bool(empty.any()) or not bool((b[empty] > 0).any()):
            break
        b = torch.where(empty[:, None] & (b > 0), b - 1, b)
    inner = blocks[torch.arange(rows, device=weights.device), b[:, 0]]  # (rows, block)
    rest = (target - (bcdf.gather(-1, b) - bsum.gather(-1, b))).clamp_min(0)
    cdf = inner.cumsum(-1)
    i = torch.searchsorted(cdf, rest.clamp_max(cdf[:, -1:]), right=True).clamp_max(block - 1)
    zero = inner.gather(-1, i)[:, 0] <= 0  # rounding at the block's end: take its last non-zero index
    if bool(zero.any()):
        last = block - 1 - (inner > 0).flip(-1).int().argmax(-1)
        i = torch.where(zero[:, None], last[:, None], i)
    return b[:, 0] * block + i[:, 0]


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
        return tokens, logits.log_softmax(-1).gather(-1, tokens[:, None])[:, 0]
    if uniforms is None:
        raise ValueError("sampling with temperature > 0 needs one uniform number per row")
    scaled = logits / temperature if temperature != 1.0 else logits
    # (log_)softmax kernels, not exp: torch's exp is slow on very negative inputs (masked logits)
    filtered = filter_logits(scaled, top_k=top_k, top_p=top_p) if top_k or top_p < 1.0 else scaled
    tokens = _draw(filtered.softmax(-1), uniforms)
    return tokens, scaled.log_softmax(-1).gather(-1, tokens[:, None])[:, 0]
