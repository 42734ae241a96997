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
#: torch's fused CPU attention kernel, which also returns each query's log-sum-exp (None if absent)
_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
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
    q = query.shape[2]
    if (_FLASH_CPU is not None and query.device.type == "cpu" and query.dtype == key.dtype == torch.float32
            and (attention_mask.dtype == torch.bool if attention_mask is not None else q == 1)):
        return _fused_prefix_attention(module, query, key, value, attention_mask, scaling, baorl_prefix), None
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


#: the last one-query mask seen and its additive forms by (groups, dtype): every layer of a decoding
#: pass gets the same mask object, so it is converted once per pass (replaced as a whole: thread-safe;
#: masks of longer queries are converted per layer and not kept)
_mask_memo: tuple[torch.Tensor | None, dict] = (None, {})


def _additive_mask(mask: torch.Tensor, g: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(b, 1, q, s)`` boolean mask -> ``(b, 1, g*q, s)`` additive mask (0 / -inf) for the query heads
    of one kv group, and the ``(b, 1, g*q)`` rows that mask every column (None when there are none)."""
    global _mask_memo
    memo = _mask_memo
    b, m, q, s = mask.shape
    if q == 1 and memo[0] is mask and (g, dtype) in memo[1]:
        return memo[1][(g, dtype)]
    add = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
    add = add[:, :, None].expand(b, m, g, q, s).reshape(b, m, g * q, s)  # a view when q == 1
    dead = ~mask.any(-1)
    dead = dead[:, :, None].expand(b, m, g, q).reshape(b, m, g * q) if bool(dead.any()) else None
    if q == 1:
        if memo[0] is not mask:
            memo = _mask_memo = (mask, {})
        memo[1][(g, dtype)] = (add, dead)
    return add, dead


def _fused_prefix_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float | None,
                            prefix: PrefixKV) -> torch.Tensor:
    """`prefix_attention` with torch's fused CPU kernel: the prefix part and the row part each in one
    call, merged through their log-sum-exps (the same softmax, summed in another order)."""
    kp, vp = prefix.keys[module.layer_idx], prefix.values[module.layer_idx]
    b, h, q, d = query.shape
    hkv = key.shape[1]
    g = h // hkv
    scale = scaling if scaling is not None else d**-0.5
    qg = query.reshape(b, hkv, g * q, d)  # head j of kv group i is head i*g + j, as in repeat_kv
    # prefix: every row's queries of a kv head attend to the same keys: one (b*g*q)-query attention
    op, lp = _FLASH_CPU(qg.transpose(0, 1).reshape(1, hkv, b * g * q, d), kp[None], vp[None], 0.0, False,
                        scale=scale)[:2]
    op = op.view(hkv, b, g * q, d).transpose(0, 1)
    lp = lp.view(hkv, b, g * q).transpose(0, 1)
    if attention_mask is None:  # one query per row (checked by the caller): every column is visible
        orow, lrow = _FLASH_CPU(qg, key, value, 0.0, False, scale=scale)[:2]
    else:
        add, dead = _additive_mask(attention_mask, g, query.dtype)
        orow, lrow = _FLASH_CPU(qg, key, value, 0.0, False, attn_mask=add, scale=scale)[:2]
        if dead is not None:  # the kernel returns output 0, log-sum-exp 0 for a query that sees nothing
            lrow = lrow.masked_fill(dead, float("-inf"))
    mx = torch.maximum(lp, lrow)
    wp = (lp - mx).exp_().unsqueeze(-1)
    ws = (lrow - mx).exp_().unsqueeze(-1)
    out = (op * wp).add_(orow * ws).div_(wp + ws)  # (b, kv_heads, g*q, d)
    return out.reshape(b, h, q, d).transpose(1, 2).contiguous()


AttentionInterface.register(NAME, prefix_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)
