from __future__ import annotations

from pathlib import Path

import pytest

#: UserRL's training splits, read in place (shared/ lies beside the repository)
USERRL = Path(__file__).resolve().parents[2] / "shared" / "userrl"


@pytest.fixture(scope="session")
def userrl() -> Path:
    assert USERRL.is_dir(), f"UserRL data not found at {USERRL} (shared/ must lie beside the repo)"
    return USERRL
