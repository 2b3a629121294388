"""AnonyNoise: real-time anonymization of event-camera data with learned noise.

The core library: events, representations, file I/O (and, as they arrive, the models, losses,
metrics, checkpoints and the anonymizer runtime). No sockets, no Qt, no threads here.
"""

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import EventBatch, make_events

__version__ = "0.1.0"
__all__ = ["AnonyNoiseError", "EventBatch", "make_events", "__version__"]
