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


def model_label(model: dict) -> str:
    """'light_anon "light50" (sha 1a2b3c4d)' from the header's model identity."""
    if not model:
        return "model unknown"
    text = str(model.get("kind", "?"))
    if model.get("name"):
        text += f' "{model["name"]}"'
    if model.get("sha256"):
        text += f" (sha {str(model['sha256'])[:8]})"
    return text


def dropped_label(state: ReceiverState) -> str:
    """Windows this viewer lost (seq gaps) and the service's own drop counters."""
    parts = [f"{state.lost} lost here (seq gaps)"]
    dropped = state.window.header.dropped if state.window is not None else {}
    service = [f"{v} {k.replace('_', ' ')}" for k, v in dropped.items() if v]
    parts.append("service: " + (", ".join(service) if service else "none"))
    if state.bad_messages:
        parts.append(f"{state.bad_messages} refused ({state.last_error})")
    return "dropped: " + "; ".join(parts)


def overlay_text(state: ReceiverState, now: float, address: str, stale_s: float = 2.0) -> str:
    """Three lines for the strip above the picture: what is shown, how fast, what was lost.

    Latency: the header carries no send time, so the viewer shows how long ago the window on
    screen arrived here ("age") and the window's own length; the capture-to-screen latency is
    at least one window longer than that, plus the service's processing.
    """
    if state.window is None:
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
