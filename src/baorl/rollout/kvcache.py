"""A batched KV cache whose rows can be gathered, compacted and regrouped between forward passes.

`KVBatch` holds the keys and values of a set of rows (episodes) aligned to one common length,
with a 2-D attention mask saying which columns of each row are real tokens. Rows never share
columns: a row's gaps (padding of a segment, steps it sat idle) are masked out, and positions are
passed explicitly, so a row's result does not depend on the other rows in the batch.

The cache stores each layer in a preallocated buffer ``(rows, kv_heads, capacity, head_dim)``
that forward passes write into in place (transformers' `DynamicCache` concatenates, copying the
whole cache at every generated token). `KVBatch.gather` builds a new batch from rows of any
batches, dropping every gap: each row's real columns are moved to the right end (left padding).
Attention ignores masked columns and keys keep the rotary position they were computed at, so
moving columns changes nothing but the floating-point summation order.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer


class ArenaLayer(DynamicLayer):
    """One layer's keys and values in a buffer written in place; `keys` is a view of the filled part."""

    def __init__(self, capacity: int, keys: torch.Tensor | None = None, values: torch.Tensor | None = None,
                 length: int = 0) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = length
        self.kbuf = keys
        self.vbuf = values
        if keys is not None:
            self.dtype, self.device = keys.dtype, keys.device
            self.is_initialized = True
            self._views()

    def _views(self) -> None:
        self.keys = self.kbuf[:, :, : self.length]
        self.values = self.vbuf[:, :, : self.length]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        b, h, _, d = key_states.shape
        self.dtype, self.device = key_states.dtype, key_states.device
        self.kbuf = key_states.new_zeros(b, h, self.capacity, d)
        self.vbuf = value_states.new_zeros(b, h, self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        q = key_states.shape[-2]
        end = self.length + q
        if end > self.capacity:
            raise RuntimeError(f"KV buffer overflow ({end} > {self.capacity}): call KVBatch.reserve first")
        self.kbuf[:, :, self.length:end] = key_states
        self.vbuf[:, :, self.length:end] = value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def grow(self, capacity: int) -> None:
        """Reallocate the buffers with a larger capacity (a no-op before the first update)."""
        self.capacity = capacity
        if not self.is_initialized:
            return
        for name in ("kbuf", "vbuf"):
            old = getattr(self, name)
            new = old.new_zeros(old.shape[0], old.shape[1], capacity, old.shape[3])
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)
        self._views()


class ArenaCache(Cache):
    """A transformers `Cache` made of `ArenaLayer`s (full-attention decoder layers only)."""

    def __init__(self, layers: list[ArenaLayer]) -> None:
        super().__init__(layers=layers)


def check_supported(model: Any) -> int:
    """The number of decoder layers, after checking that every layer is plain full attention."""
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and any(t != "full_attention" for t in layer_types):
        raise NotImplementedError(
            f"the rollout engine supports full-attention decoders only; this model has layer types "
            f"{sorted(set(layer_types))} (sliding-window or linear-attention layers)"
        )
    return int(config.num_hidden_layers)


class KVBatch:
    """Rows sharing one aligned KV cache: `mask[:, :length]` marks each row's real columns.

    Args:
        num_layers: decoder layers of the model.
        rows: the number of rows.
        capacity: columns to preallocate (grown on demand by `reserve`).
        device: where the mask lives (the model's device).
    """

    def __init__(self, num_layers: int, rows: int, capacity: int, device: torch.device | str = "cpu") -> None:
        self.cache = ArenaCache([ArenaLayer(capacity) for _ in range(num_layers)])
        self.mask = torch.zeros(rows, capacity, dtype=torch.bool, device=device)
        self.length = 0
        self.capacity = capacity

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    def reserve(self, columns: int) -> None:
        """Make room for `columns` more columns (grows by at least a quarter to amortise copies)."""
        need = self.length + columns
        if need <= self.capacity:
            return
        cap = max(need, self.capacity + self.capacity // 4)
        for layer in self.cache.layers:
            layer.grow(cap)
        mask = torch.zeros(self.rows, cap, dtype=torch.bool, device=self.mask.device)
        mask[:, : self.length] = self.mask[:, : self.length]
        self.mask, self.capacity = mask, cap

    def append_mask(self, valid: torch.Tensor) -> torch.Tensor:
        """Mark the next ``valid.shape[1]`` columns; returns the 2-D mask a forward pass over them needs."""
        q = valid.shape[1]
        self.reserve(q)
        self.mask[:, self.length:self.length + q] = valid
        return self.mask[:, : self.length + q]

    def advance(self, q: int) -> None:
        """Record that a forward pass appended `q` columns."""
        self.length += q
        for layer in self.cache.layers:
            if layer.is_initialized and layer.length != self.length:
                raise RuntimeError("cache layers and mask disagree on the cache length")

    def real_lengths(self) -> torch.Tensor:
        """Real (unmasked) columns per row."""
        return self.mask[:, : self.length].sum(1)

    @staticmethod
    def gather(sources: list[tuple[KVBatch, list[int]]], *, extra: int, device: torch.device | str) -> KVBatch:
        """A new compact batch holding the given rows, in order, left-padded, with `extra` free columns.

        `sources` lists ``(batch, row indices)``; a source row may be taken several times (prompts
        shared by several episodes are prefilled once).
        """
        counts = [src.mask[idx, : src.length].sum(1) for src, idx in sources if idx]
        total_rows = sum(len(idx) for _, idx in sources)
        width = int(max((int(c.max()) for c in counts), default=0))
        num_layers = len(sources[0][0].cache.layers)
        out = KVBatch(num_layers, total_rows, width + extra, device)
        out.length = width
        template = None
        for src, _ in sources:
            if src.cache.layers[0].is_initialized:
                template = src.cache.layers
                break
        if template is None:
            return out
        new_layers = []
        for li, layer in enumerate(template):
            k = layer.kbuf.new_zeros(total_rows, layer.kbuf.shape[1], width + extra, layer.kbuf.shape[3])
            v = layer.vbuf.new_zeros(total_rows, layer.vbuf.shape[1], width + extra, layer.vbuf.shape[3])
            new_layers.append((k, v))
        dst0 = 0
        for src, idx in sources:
            if not idx:
                continue
            sel = torch.as_tensor(idx, device=src.mask.device)
            m = src.mask[sel, : src.length]
            r, c = m.nonzero(as_tuple=True)  # row-major: columns ascending within each row
            if r.numel() == 0:
                dst0 += len(idx)
                continue
            n_row = m.sum(1)
            start = torch.cumsum(n_row, 0) - n_row
            rank = torch.arange(r.numel(), device=r.device) - start[r]
            dst_col = width - n_row[r] + rank
            dst_row = r + dst0
            src_row = sel[r]
            out.mask[dst_row, dst_col] = True
            for li, (k, v) in enumerate(new_layers):
                layer = src.cache.layers[li]
                k[dst_row, :, dst_col] = layer.kbuf[src_row, :, c]
                v[dst_row, :, dst_col] = layer.vbuf[src_row, :, c]
            dst0 += len(idx)
        out.cache = ArenaCache([ArenaLayer(width + extra, k, v, width) for k, v in new_layers])
        return out
