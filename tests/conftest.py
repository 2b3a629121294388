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


def _state(pid: int) -> str | None:
    """A process's state letter from /proc (Z: zombie), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    """The live (not zombie) child processes of pid."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and _parent(int(e)) == pid
            and _state(int(e)) not in (None, "Z")]


def _alive(pids) -> list[int]:
    """Those of pids still running (not gone, not zombies)."""
    return [p for p in pids if _state(p) not in (None, "Z")]


@pytest.fixture
def processes():
    """(children(pid), alive(pids)) from Linux's /proc; skips elsewhere."""
    if not Path("/proc/self/stat").is_file():
        pytest.skip("needs /proc")
    return _children, _alive
