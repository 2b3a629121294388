"""A recording run through the stream's privacy filters or its whole anonymizer, window by
window, as the stream runs them (anonynoise.loop): what the studies feed their nets when they
measure the stream itself rather than a stand-in.

    window_by_window      each(window) over a recording's windows, the results concatenated
    stream_filtered       a recording through anonynoise.filters.PrivacyFilter
    anonymized_recording  a recording through an Anonymizer (refused windows dropped)
"""

from __future__ import annotations

from anonynoise.anonymizer import Anonymizer
from anonynoise.events import EventBatch, concatenate
from anonynoise.filters import FilterConfig, PrivacyFilter
from anonynoise.loop import WindowLoop, recording_output
from anonynoise.windower import Windower


def window_by_window(events: EventBatch, window_us: int, each) -> EventBatch:
    """each(window) -> events or None (dropped) over a recording's windows as the stream cuts
    them (windows from the first event), concatenated."""
    windower = Windower(window_us, events.width, events.height)
    out = [e for e in map(each, windower.push(events) + windower.flush()) if e is not None]
    return concatenate(out) if out else events[:0]


def stream_filtered(events: EventBatch, config: FilterConfig, window_us: int, bins: int,
                    seed: int) -> EventBatch:
    """A recording's events through the stream's privacy filters alone (no sampling back),
    window by window (one PrivacyFilter: its warp held while the recording is shorter than
    the warp's period)."""
    pf = PrivacyFilter(config, seed=seed)
    return window_by_window(events, window_us,
                            lambda w: pf(w.events, w.t_start, w.t_end, bins))


def anonymized_recording(events: EventBatch, anonymizer: Anonymizer,
                         window_us: int) -> EventBatch:
    """A recording through the stream's anonymizer and window loop, without restarting its
    filters (the caller does, with its own seed); a refused window is dropped, as the stream
    drops it."""
    loop = WindowLoop(anonymizer, events.sensor_size, window_us=window_us)
    return recording_output((w.events for w in loop.run([events])), events, structured=False)
