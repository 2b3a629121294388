"""AnonyNoise: real-time anonymization of event-camera data with learned noise.

    import anonynoise

    anonymizer = anonynoise.load()              # the shipped model behind its privacy filters
    out = anonymizer(events, sensor_size=(W, H))  # tonic's structured array (x, y, t, p) out
    for window in anonymizer.stream(batches, sensor_size=(W, H)): ...

The core library: events, representations, file I/O, models, checkpoints, privacy filters and
the anonymizer runtime (docs/python-api.md). No sockets, no Qt, no threads here. torch loads
on first use of load / Anonymizer, not on `import anonynoise`.
"""

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import EventBatch, make_events

__version__ = "0.1.0"
__all__ = ["AnonyNoiseError", "AnonymizationRefused", "Anonymizer", "EventBatch", "load",
           "make_events", "open_events", "read_events", "write_events", "__version__"]

# name -> the module that defines it, imported on first use (torch takes a second)
_LAZY = {"load": "anonynoise.loading", "Anonymizer": "anonynoise.anonymizer",
         "AnonymizationRefused": "anonynoise.anonymizer", "open_events": "anonynoise.io",
         "read_events": "anonynoise.io", "write_events": "anonynoise.io"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'anonynoise' has no attribute {name!r}")
