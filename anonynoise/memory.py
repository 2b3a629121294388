"""Keep freed memory in the process: large tensors reused without page faults.

glibc's malloc serves every block over its mmap threshold (at most 32 MiB) with a fresh
mmap and gives it back to the OS when it is freed. A pipeline step of the privacy studies
makes a dozen tensors of about 88 MB (16 clips x 60 windows x 10 x 48 x 48 float32), so each
step mapped and zero-filled them again: 32,000 page faults a clip, half of the step's time in
the kernel. With mmap off and the heap's top kept, a freed block is reused by the next step
(the anonymizer step 41.9 instead of 72.6 ms a clip, an anonymized draw 21.5 instead of
36.2: `python bench/training.py`). The stream and `anonynoise anonymize` keep it too: a
1280x720 window's tensors are 37 MB each (the shipped net 223 instead of 287 ms a window,
40,000 page faults fewer). The cost is that the process keeps its peak memory until it ends,
which a training process or a stream does anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
_M_MMAP_MAX = -4
_KEEP_TOP = (1 << 31) - 1  # an int: give memory back only past 2 GiB free at the heap's top


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed large blocks instead of unmapping them (every later
    allocation of this process). False, and nothing changed, where the C library is not
    glibc (macOS, musl) or refuses."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no glibc: musl has no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    kept = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_TOP))
    if not kept:
        log.debug("mallopt refused: freed large tensors go back to the OS")
    return kept


def available_bytes() -> int | None:
    """Memory this process can still take: the kernel's MemAvailable, less where an address-
    space limit (RLIMIT_AS) leaves less room; None where neither can be read."""
    import resource

    room = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    room = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * resource.getpagesize()
        except (OSError, ValueError):
            used = 0
        room = soft - used if room is None else min(room, soft - used)
    return room


# A window of the net's path holds about six (bins, 2, H, W) float32 tensors at its peak (the
# counts, the net's input and activations, noise, output: measured 5.7 at 1280x720); eight
# leaves room for the rest of the process.
WINDOW_TENSOR_COPIES = 8


def check_window_memory(width: int, height: int, bins: int,
                        copies: int = WINDOW_TENSOR_COPIES) -> None:
    """Refuse, before anything is allocated, a sensor whose windows would not fit in memory
    (a 20000x20000 geometry asked for 15 to 40 GiB a window)."""
    from anonynoise.errors import AnonyNoiseError

    need = int(copies) * int(bins) * 2 * int(width) * int(height) * 4
    room = available_bytes()
    if room is not None and need > room:
        raise AnonyNoiseError(f"a {width}x{height} window of {bins} bins needs about "
                              f"{need / 2 ** 30:.1f} GiB, more than the {max(room, 0) / 2 ** 30:.1f}"
                              " GiB this process has left")
