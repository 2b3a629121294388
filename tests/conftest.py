"""Shared fixtures: where the real recordings are, and one-line error checks for commands."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real third-party recordings live beside the checkout, never in it (../shared/data/real/).
REAL_DATA = Path(os.environ.get("ANONYNOISE_REAL_DATA", REPO.parent / "shared" / "data" / "real"))


@pytest.fixture
def real_file():
    """Path of a file in the real-data folder; skips the test where the folder is absent."""

    def get(name: str) -> Path:
        path = REAL_DATA / name
        if not path.is_file():
            pytest.skip(f"real recording {name} not available in {REAL_DATA}")
        return path

    return get
