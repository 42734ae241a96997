from __future__ import annotations

from pathlib import Path

import pytest

from baorl.models import load_tokenizer, tiny_model

#: UserRL's training splits, read in place (shared/ lies beside the repository)
USERRL = Path(__file__).resolve().parents[2] / "shared" / "userrl"


@pytest.fixture(scope="session")
def userrl() -> Path:
    assert USERRL.is_dir(), f"UserRL data not found at {USERRL} (shared/ must lie beside the repo)"
    return USERRL


@pytest.fixture(scope="module")
def tok():
    """The embedded model's tokenizer (SmolLM2)."""
    return load_tokenizer("embedded")


@pytest.fixture(scope="module")
def llama(tok):
    """A tiny randomly initialised Llama over that tokenizer."""
    return tiny_model(tok)
