"""Output files that appear whole or not at all: written beside the target, then moved."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from anonynoise.errors import AnonyNoiseError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


def _reason(error: OSError) -> str:
    if error.strerror:
        return error.strerror
    if " requested and " in str(error):  # numpy's tofile: a short write, without an errno
        return f"a short write ({error}): is the disk full?"
    return str(error)


def refuse_overwriting_input(source: str | os.PathLike, output: str | os.PathLike) -> None:
    """Raise AnonyNoiseError when `output` is `source` (the same file by any name, a hard
    link included): the raw recording would be replaced by its anonymized or converted copy,
    and a mistyped output path would lose the raw data for good."""
    try:
        same = Path(output).exists() and os.path.samefile(source, output)
    except OSError:  # an unreadable source is reported by its reader
        same = False
    if same:
        raise AnonyNoiseError(f"{output}: is the input; writing it would replace the "
                              "recording (choose another output path)")


def temporary_beside(path: Path, suffix: str = ".partial") -> Path:
    """A new empty file in path's folder, named after it, with the usual permissions."""
    path = Path(path)
    if path.is_dir():
        raise AnonyNoiseError(f"{path}: is a directory")
    if not path.parent.is_dir():
        raise AnonyNoiseError(f"{path.parent}: no such directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.fchmod(fd, _FILE_MODE)
        os.close(fd)
    except OSError as e:
        raise AnonyNoiseError(f"{path}: cannot write: {_reason(e)}") from None
    return Path(tmp)


def move_into_place(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise AnonyNoiseError(f"{path}: cannot write: {_reason(e)}") from None


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".partial") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on failure it goes.

    An existing file at `path` is only ever replaced by a complete one.
    """
    path = Path(path)
    tmp = temporary_beside(path, suffix)
    try:
        yield tmp
    except OSError as e:  # a full disk, a vanished folder: one line, not a traceback
        tmp.unlink(missing_ok=True)
        raise AnonyNoiseError(f"{path}: cannot write: {_reason(e)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    move_into_place(tmp, path)
