"""The viewer's status text: a pure function of the receiver's state (no Qt)."""

from __future__ import annotations

from viewer.receiver import ReceiverState

WAITING = "waiting for stream"


def is_stale(state: ReceiverState, now: float, stale_s: float) -> bool:
    """True before the first window and when none has arrived for stale_s seconds."""
    return state.received_at is None or now - state.received_at > stale_s


def _si(value: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.1f} {suffix}"
    return f"{value:.0f}"


def clip(text, limit: int = 40) -> str:
    """One line of at most `limit` characters of text from the wire (the strip has three)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def model_label(model: dict) -> str:
    """'light_anon "light50" (sha 1a2b3c4d)' from the header's model identity; without a net,
    'filters warp+refractory+jitter'."""
    if not model:
        return "model unknown"
    if model.get("kind") == "filters_only":
        filters = model.get("filters")
        spec = filters.get("spec", "?") if isinstance(filters, dict) else "?"
        return f"filters {clip(spec, 40)}"
    text = clip(model.get("kind", "?"), 24)
    if model.get("name"):
        text += f' "{clip(model["name"], 24)}"'
    if model.get("sha256"):
        text += f" (sha {clip(model['sha256'], 64)[:8]})"
    return text


def refused_label(state: ReceiverState) -> str:
    """'3 malformed refused (last: ...)': messages the decoder refused, '' when none."""
    if not state.bad_messages:
        return ""
    return f"{state.bad_messages} malformed refused (last: {clip(state.last_error, 48)})"


def dropped_label(state: ReceiverState) -> str:
    """Windows this viewer lost (seq gaps) and the service's own drop counters."""
    # the refused count first: a long line is cut at the strip's right edge
    parts = [refused_label(state)] if state.bad_messages else []
    parts.append(f"{state.lost} lost here (seq gaps)")
    dropped = state.window.header.dropped if state.window is not None else {}
    service = [f"{v} {clip(k.replace('_', ' '), 24)}" for k, v in dropped.items() if v]
    parts.append("service: " + (", ".join(service) if service else "none"))
    return "dropped: " + "; ".join(parts)


def overlay_text(state: ReceiverState, now: float, address: str, stale_s: float = 2.0) -> str:
    """Three lines for the strip above the picture: what is shown, how fast, what was lost.

    Latency: the header carries no send time, so the viewer shows how long ago the window on
    screen arrived here ("age") and the window's own length; the capture-to-screen latency is
    at least one window longer than that, plus the service's processing.
    """
    if state.window is None:
        if state.bad_messages:
            return (f"{WAITING} on {address} ...\nno valid window received yet\n"
                    f"{refused_label(state)}")
        return f"{WAITING} on {address} ...\nnothing received yet"
    h = state.window.header
    # three lines of at most about 95 characters: the strip of an 800-pixel window holds them
    first = f"{address}  |  {model_label(h.model)}  |  sensor {h.width}x{h.height}"
    where = f"session {h.session[:8]} seq {h.seq}"
    if is_stale(state, now, stale_s):
        second = f"{where}  |  {WAITING}: nothing for {now - state.received_at:.1f} s"
        return f"{first}\n{second}\n{state.windows} windows so far  |  {dropped_label(state)}"
    age_ms = (now - state.received_at) * 1e3
    window_ms = (h.t_end - h.t_start) / 1e3
    second = (f"{where}  |  {state.windows_per_s:.1f} windows/s  "
              f"{_si(state.events_per_s)} events/s  |  age {age_ms:.0f} ms since receipt")
    third = f"window {window_ms:g} ms, no send time on the wire  |  {dropped_label(state)}"
    return f"{first}\n{second}\n{third}"
