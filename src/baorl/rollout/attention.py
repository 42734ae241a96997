"""Shared-prefix attention: rows that begin with the same tokens keep those keys and values once.

The episodes of a rollout batch usually share a long prompt prefix (the system prompt with the
tool schema; the whole prompt for the n rollouts of one task). `KVBatch` stores that prefix's
keys and values once, ``(kv_heads, P, head_dim)``, and each row only its own columns after it.
`prefix_attention` attends to both in one softmax: the prefix part is one matrix product for all
rows and query heads together (the prefix is read once per layer, not once per row), the row part
is the usual batched product with the row's mask. For the prefix-free case it defers to
transformers' SDPA attention.

It is registered with transformers under the name ``baorl_prefix`` (attention and mask
functions); the engine switches a supported model (`supports_prefix`) to it for the duration of
a rollout and passes the prefix as the ``baorl_prefix`` keyword of the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "baorl_prefix"
#: architectures whose attention is plain scaled dot-product (optionally grouped-query) attention
_PLAIN_ATTENTION = {"llama", "qwen2", "qwen3", "mistral", "smollm3", "olmo2"}


@dataclass
class PrefixKV:
    """Keys and values of a prefix shared by every row: per layer ``(kv_heads, length, head_dim)``."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int

    def head(self, n: int) -> PrefixKV:
        """The first `n` positions (views, no copy)."""
        return self if n == self.length else PrefixKV([k[:, :n] for k in self.keys], [v[:, :n] for v in self.values], n)


def supports_prefix(model: Any) -> bool:
    """Whether `prefix_attention` computes exactly what the model's own attention does."""
    config = model.config
    if getattr(config, "model_type", None) not in _PLAIN_ATTENTION:
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    return config._attn_implementation in ("sdpa", "eager", NAME)


def prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    baorl_prefix: PrefixKV | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over a shared prefix plus each row's own keys; returns ``(batch, q, heads, dim)``.

    `query` is ``(b, heads, q, d)``; `key`/`value` are the rows' own columns ``(b, kv_heads, s, d)``
    (the last q of them are the queries' own); `attention_mask` is the boolean mask over those
    columns, ``(b, 1, q, s)``, or None (then causal when q > 1).
    """
    if baorl_prefix is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    kp, vp = baorl_prefix.keys[module.layer_idx], baorl_prefix.values[module.layer_idx]
    b, h, q, d = query.shape
    hkv, s, p = key.shape[1], key.shape[2], kp.shape[1]
    g = h // hkv
    scale = scaling if scaling is not None else d**-0.5
    qg = query.reshape(b, hkv, g * q, d)  # head j of kv group i is head i*g + j, as in repeat_kv
    # prefix scores: one product for all rows, (kv_heads, b*g*q, d) @ (kv_heads, d, P)
    sp = torch.matmul(qg.transpose(0, 1).reshape(hkv, b * g * q, d), kp.transpose(-1, -2))
    sp = sp.mul_(scale).view(hkv, b, g * q, p).transpose(0, 1)  # (b, kv_heads, g*q, P)
    ss = torch.matmul(qg, key.transpose(-1, -2)).mul_(scale)  # (b, kv_heads, g*q, s)
    if attention_mask is not None:
        m = attention_mask[:, :, None].expand(b, attention_mask.shape[1], g, q, s).reshape(b, -1, g * q, s)
        if m.dtype == torch.bool:
            ss = ss.masked_fill_(~m, float("-inf"))
        else:
            ss = ss.add_(m)
    elif q > 1:
        causal = torch.ones(q, s, dtype=torch.bool, device=ss.device).tril(s - q)
        ss = ss.masked_fill_(~causal.repeat(g, 1), float("-inf"))
    mx = torch.maximum(sp.amax(-1, keepdim=True), ss.amax(-1, keepdim=True))
    ep = (sp - mx).exp_()
    es = (ss - mx).exp_()
    den = ep.sum(-1, keepdim=True) + es.sum(-1, keepdim=True)
    op = torch.matmul(ep.transpose(0, 1).reshape(hkv, b * g * q, p), vp).view(hkv, b, g * q, d).transpose(0, 1)
    out = (torch.matmul(es, value) + op) / den  # (b, kv_heads, g*q, d)
    return out.view(b, h, q, d).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, prefix_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)
