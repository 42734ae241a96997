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

from baorl.rollout.attention import PrefixKV


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


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of keys and values one token takes in the cache, over all layers."""
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    itemsize = next(model.parameters()).element_size()
    return int(config.num_hidden_layers) * 2 * kv_heads * head_dim * itemsize


class KVBatch:
    """Rows sharing one aligned KV cache: an optional shared prefix, then `mask[:, :length]` per row.

    Args:
        num_layers: decoder layers of the model.
        rows: the number of rows.
        capacity: row columns to preallocate (grown on demand by `reserve`).
        device: where the mask lives (the model's device).
    """

    def __init__(self, num_layers: int, rows: int, capacity: int, device: torch.device | str = "cpu") -> None:
        self.cache = ArenaCache([ArenaLayer(capacity) for _ in range(num_layers)])
        self.mask = torch.zeros(rows, capacity, dtype=torch.bool, device=device)
        self.length = 0
        self.capacity = capacity
        #: keys/values every row starts with (stored once), or None
        self.prefix: PrefixKV | None = None

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @property
    def prefix_len(self) -> int:
        return self.prefix.length if self.prefix is not None else 0

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

    def _row_columns(self, row: int, start: int, stop: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, (keys, values) ``(kv_heads, n, head_dim)`` of real columns start…stop of `row`."""
        ps = self.prefix_len
        cols = self.mask[row, : self.length].nonzero()[:, 0]
        out = []
        for li, layer in enumerate(self.cache.layers):
            ks, vs = [], []
            if start < ps:
                ks.append(self.prefix.keys[li][:, start:min(stop, ps)])
                vs.append(self.prefix.values[li][:, start:min(stop, ps)])
            if stop > ps:
                c = cols[max(0, start - ps):stop - ps]
                ks.append(layer.kbuf[row][:, c])
                vs.append(layer.vbuf[row][:, c])
            out.append((ks[0], vs[0]) if len(ks) == 1 else (torch.cat(ks, 1), torch.cat(vs, 1)))
        return out

    @staticmethod
    def gather(sources: list[tuple[KVBatch, list[int]]], *, extra: int, device: torch.device | str,
               prefix_len: int = 0) -> KVBatch:
        """A new compact batch holding the given rows, in order, left-padded, with `extra` free columns.

        `sources` lists ``(batch, row indices)``; a source row may be taken several times (prompts
        shared by several episodes are prefilled once). The first `prefix_len` real columns of
        every row are taken to be the same tokens: they are kept once, from the first row, as the
        new batch's prefix.
        """
        sources = [(src, idx) for src, idx in sources if idx]
        num_layers = len(sources[0][0].cache.layers)
        real = [src.prefix_len + src.mask[idx, : src.length].sum(1) for src, idx in sources]
        if prefix_len > min(int(n.min()) for n in real):
            raise ValueError("prefix_len exceeds a row's cached length")
        total_rows = sum(len(idx) for _, idx in sources)
        width = max(int(n.max()) for n in real) - prefix_len
        out = KVBatch(num_layers, total_rows, width + extra, device)
        out.length = width
        first, row0 = sources[0][0], sources[0][1][0]
        if prefix_len:
            if first.prefix is not None and prefix_len == first.prefix_len:
                out.prefix = first.prefix
            else:
                kv = first._row_columns(row0, 0, prefix_len)
                out.prefix = PrefixKV([k for k, _ in kv], [v for _, v in kv], prefix_len)
        shape = next((layer.kbuf.shape for src, _ in sources for layer in src.cache.layers if layer.is_initialized),
                     None)
        if shape is None and first.prefix is not None:
            shape = (0, *first.prefix.keys[0].shape[:1], 0, first.prefix.keys[0].shape[2])
        if shape is None:  # nothing was ever computed (one-token prompts)
            return out
        like = next(t for src, _ in sources for t in _tensors(src))
        new = [(like.new_zeros(total_rows, shape[1], width + extra, shape[3]),
                like.new_zeros(total_rows, shape[1], width + extra, shape[3])) for _ in range(num_layers)]
        dst0 = 0
        for (src, idx), n_real in zip(sources, real, strict=True):
            ps = src.prefix_len
            if prefix_len < ps:  # part of the source's prefix becomes row columns (rare: row by row)
                for i, row in enumerate(idx):
                    kv = src._row_columns(row, prefix_len, int(n_real[i]))
                    n = int(n_real[i]) - prefix_len
                    for (k, v), (kd, vd) in zip(kv, new, strict=True):
                        kd[dst0 + i, :, width - n:width] = k
                        vd[dst0 + i, :, width - n:width] = v
                    out.mask[dst0 + i, width - n:width] = True
                dst0 += len(idx)
                continue
            sel = torch.as_tensor(idx, device=src.mask.device)
            m = src.mask[sel, : src.length]
            r, c = m.nonzero(as_tuple=True)  # row-major: columns ascending within each row
            n_suf = m.sum(1)
            rank = torch.arange(r.numel(), device=r.device) - (torch.cumsum(n_suf, 0) - n_suf)[r]
            j = ps + rank  # the real column index
            keep = j >= prefix_len
            r, c, j = r[keep], c[keep], j[keep]
            if r.numel():
                dst_row = r + dst0
                dst_col = width - (n_real[r] - prefix_len) + (j - prefix_len)
                out.mask[dst_row, dst_col] = True
                for layer, (kd, vd) in zip(src.cache.layers, new, strict=True):
                    kd[dst_row, :, dst_col] = layer.kbuf[sel[r], :, c]
                    vd[dst_row, :, dst_col] = layer.vbuf[sel[r], :, c]
            dst0 += len(idx)
        out.cache = ArenaCache([ArenaLayer(width + extra, k, v, width) for k, v in new])
        return out


def _tensors(batch: KVBatch):
    for layer in batch.cache.layers:
        if layer.is_initialized:
            yield layer.kbuf
    if batch.prefix is not None:
        yield from batch.prefix.keys
