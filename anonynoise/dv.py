"""dv-processing interop: anonymize a `dv.EventStore`, in one go or as a filter in dv's idiom.

    import dv_processing as dv
    import anonynoise, anonynoise.dv

    anonymizer = anonynoise.load()
    out = anonynoise.dv.anonymize_store(anonymizer, store, (346, 260))   # an EventStore

    f = anonynoise.dv.AnonymizeFilter(anonymizer, (346, 260))          # a live stream
    while ...:
        f.accept(camera.getNextEventBatch())
        out = f.generateEvents()   # the windows completed so far, anonymized

dv has no bulk numpy -> EventStore path: the output store is filled event by event
(about 2.4 M events/s); keep the output numpy (anonymizer.stream) where dv is not needed.
"""

from __future__ import annotations

from anonynoise.anonymizer import Anonymizer
from anonynoise.events import EventBatch, concatenate, empty_events, from_dv
from anonynoise.io import to_event_store
from anonynoise.loop import WindowLoop


def anonymize_store(anonymizer: Anonymizer, store, sensor_size):
    """A whole EventStore (one recording) anonymized, as a new EventStore sorted by time;
    sensor_size (W, H), as dv's `resolution`. Refused windows are dropped and counted in
    anonymizer.refused."""
    return to_event_store(anonymizer(from_dv(store, sensor_size)))


class AnonymizeFilter:
    """An anonymizing filter with dv's filter methods: accept() stores, generateEvents()
    returns the anonymized events of every window completed so far (a window completes when
    an event at or after its end arrives; flush() gives the last one at the end of a
    stream). The events come out sorted by time, absolute timestamps."""

    def __init__(self, anonymizer: Anonymizer, resolution):
        self.anonymizer = anonymizer
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.anonymizer.restart()  # a new stream: a new warp
        self._loop = WindowLoop(anonymizer, self.resolution)
        self._ready: list[EventBatch] = []
        self._t_prev: int | None = None

    def accept(self, store) -> None:
        """Take a batch (an EventStore; None or empty is nothing)."""
        if store is None or store.size() == 0:
            return
        batch = from_dv(store, self.resolution, t_prev=self._t_prev)
        self._t_prev = int(batch.t[-1])
        self._anonymize(self._loop.cut(batch))

    def flush(self) -> None:
        """At the end of a stream: the last, incomplete window, for generateEvents()."""
        self._anonymize(self._loop.flush())

    def _anonymize(self, windows) -> None:
        for window in windows:
            out = self._loop.anonymize(window)
            if out is not None and len(out.events):
                self._ready.append(out.events)

    def generateEvents(self):  # noqa: N802 - dv's name
        """The anonymized events ready now, as an EventStore (empty when none)."""
        ready, self._ready = self._ready, []
        return to_event_store(concatenate(ready) if ready else empty_events(*self.resolution))

    def getNumIncomingEvents(self) -> int:  # noqa: N802 - dv's name
        return self._loop.events_in

    def getNumOutgoingEvents(self) -> int:  # noqa: N802 - dv's name
        return self._loop.events_out

    @property
    def refused(self) -> int:
        """Windows dropped because their anonymization failed (never passed on raw)."""
        return self._loop.refused
