"""A recording run through the stream's privacy filters or its whole anonymizer, window by
window, as the stream runs them: what the studies (train.controls, train.privacy_study)
feed their nets when they measure the stream itself rather than a stand-in.

    window_by_window      each(window) over a recording's windows, the results concatenated
    stream_filtered       a recording through anonynoise.filters.PrivacyFilter
    anonymized_recording  a recording through an Anonymizer (refused windows dropped)
"""

from __future__ import annotations

from anonynoise.anonymizer import AnonymizationRefused, Anonymizer
from anonynoise.events import EventBatch, concatenate
from anonynoise.filters import FilterConfig, PrivacyFilter
from anonynoise.windower import Windower


def window_by_window(events: EventBatch, window_us: int, each) -> EventBatch:
    """each(window) -> events or None (dropped) over a recording's windows as the stream cuts
    them (windows from the first event), concatenated."""
    windower = Windower(window_us, events.width, events.height)
    out = [e for e in map(each, windower.push(events) + windower.flush()) if e is not None]
    return concatenate(out) if out else events[:0]


def stream_filtered(events: EventBatch, config: FilterConfig, window_us: int, bins: int,
                    seed: int) -> EventBatch:
    """A recording's events through the stream's privacy filters, window by window (one
    PrivacyFilter: its warp held while the recording is shorter than the warp's period)."""
    pf = PrivacyFilter(config, seed=seed)
    return window_by_window(events, window_us,
                            lambda w: pf(w.events, w.t_start, w.t_end, bins))


def anonymized_recording(events: EventBatch, anonymizer: Anonymizer,
                         window_us: int) -> EventBatch:
    """A recording through the stream's anonymizer, window by window; a refused window is
    dropped, as the stream drops it."""
    def each(w):
        try:
            return anonymizer.anonymize(w.events, w.t_start, w.t_end).events
        except AnonymizationRefused:
            return None

    return window_by_window(events, window_us, each)
