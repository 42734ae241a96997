"""Local models: the embedded SmolLM2-135M-Instruct, any local transformers checkpoint, tiny test models.

Models are named as agents name them, without the ``hf:`` prefix: ``embedded`` or a local path
(or an id already in the local Hugging Face cache — nothing is downloaded at run time).
"""

from baorl.models.loading import (
    cache_dir,
    embedded_model_dir,
    load_model,
    load_tokenizer,
    resolve_model,
    tiny_model,
)
from baorl.models.templates import CHAT_TEMPLATES, chat_template

__all__ = [
    "cache_dir", "embedded_model_dir", "load_model", "load_tokenizer", "resolve_model", "tiny_model",
    "CHAT_TEMPLATES", "chat_template",
]
