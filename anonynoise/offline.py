"""Anonymize a recording file, offline: the stream's windows and anonymizer, file to file."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from anonynoise.anonymizer import AnonymizationRefused, Anonymizer, FilterAnonymizer
from anonynoise.atomic import refuse_overwriting_input
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import EventBatch
from anonynoise.filters import FilterConfig, ModelFilters
from anonynoise.io import Aedat4Writer, open_events, write_events
from anonynoise.windower import Windower

log = logging.getLogger(__name__)
# The anonymizer the product ships (trained on the synthetic benchmark, see README).
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default_anonymizer.pt"


def default_model() -> Path:
    if not DEFAULT_MODEL.is_file():
        raise AnonyNoiseError("no default anonymizer is shipped in this build: give --model CKPT")
    return DEFAULT_MODEL


DEFAULT_WINDOW_US = 50_000  # the shipped model's, and the filters' alone


def choose_window(representation, window_ms: float | None) -> int:
    """The window in µs: the model's, unless window_ms; whole-sample models need window_ms.
    No model (representation None): window_ms, else DEFAULT_WINDOW_US."""
    if representation is None and window_ms is None:
        return DEFAULT_WINDOW_US
    if window_ms is not None:
        chosen = int(round(window_ms * 1000))
        if chosen <= 0:
            raise AnonyNoiseError(f"the window must be positive, got {window_ms} ms")
        if representation is not None and representation.window_us is None:
            log.warning("the model was trained on whole samples: on %g ms windows its count "
                        "statistics differ from training", window_ms)
        return chosen
    if representation.window_us is None:
        raise AnonyNoiseError("the model was trained on whole samples, not windows: give a "
                              "window length (--window-ms) to use it anyway")
    return representation.window_us


NO_MODEL = "none"  # --model none: the privacy filters alone


def open_anonymizer(model: str | os.PathLike | None, device: str = "auto", *,
                    window_ms: float | None = None, threads: int | None = None,
                    allow_weak: bool = False,
                    filters: FilterConfig | ModelFilters | None = ModelFilters()
                    ) -> tuple[Anonymizer, int, dict]:
    """(anonymizer, window in µs, its identity for stream headers) for --model: a checkpoint,
    None for the shipped one, or "none" for the privacy filters alone. filters: as
    Anonymizer's (default ModelFilters: the checkpoint's own, as the commands' --filters
    model; None: no filters)."""
    if str(model) == NO_MODEL:
        if isinstance(filters, ModelFilters):  # no model, so none recorded
            filters = None
        window = choose_window(None, window_ms)
        anonymizer = FilterAnonymizer(filters, window)
        return anonymizer, window, {"kind": "filters_only", "name": NO_MODEL, "sha256": None,
                                    "representation": anonymizer.representation.to_dict(),
                                    "filters": filters.describe(), "weakened": []}
    path = Path(model) if model is not None else default_model()
    anonymizer = Anonymizer(path, device, threads=threads, allow_weak=allow_weak,
                            filters=filters)
    ckpt = anonymizer.checkpoint
    identity = {"kind": ckpt.kind, "name": path.stem,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
                "representation": ckpt.representation.to_dict(),
                "filters": anonymizer.filters.describe() if anonymizer.filters is not None
                else {"spec": "none"}, "weakened": list(anonymizer.weakened)}
    return anonymizer, choose_window(ckpt.representation, window_ms), identity


def anonymize_file(source: str | os.PathLike, output: str | os.PathLike,
                   model: str | os.PathLike | None = None, *, window_ms: float | None = None,
                   device: str = "auto", sensor_size=None, absolute_time: bool = False,
                   allow_weak: bool = False, threads: int | None = None,
                   filters: FilterConfig | ModelFilters | None = ModelFilters()) -> dict:
    """Write the anonymized events of `source` to `output` (.aedat4, .npy or .npz); `model`
    as open_anonymizer's.

    Windows whose anonymization fails are dropped and counted, never written raw. Output
    timestamps start at 0 unless absolute_time. filters: privacy filters before the net
    (anonynoise.filters; default the model's own). Returns a summary."""
    output = Path(output)
    if output.suffix.lower() not in (".aedat4", ".npy", ".npz"):
        raise AnonyNoiseError(f"{output}: can write .aedat4, .npy or .npz")
    refuse_overwriting_input(source, output)
    anonymizer, window, _ = open_anonymizer(model, device, window_ms=window_ms, threads=threads,
                                            allow_weak=allow_weak, filters=filters)
    with open_events(source, sensor_size) as reader:
        width, height = reader.sensor_size
        anonymizer.check_source(width, height, window
                                if anonymizer.representation.window_us is not None else None)
        windower = Windower(window, width, height)
        summary = {"windows": 0, "refused": 0, "events_in": 0, "events_out": 0,
                   "sensor_size": (width, height)}
        origin = None
        collected: list[EventBatch] = []
        writer = Aedat4Writer(output, (width, height)) if output.suffix.lower() == ".aedat4" \
            else None
        try:
            def emit(windows):
                nonlocal origin
                for w in windows:
                    origin = w.t_start if origin is None else origin
                    summary["windows"] += 1
                    try:
                        out = anonymizer.anonymize(w.events, w.t_start, w.t_end).events
                    except AnonymizationRefused as e:
                        summary["refused"] += 1
                        log.warning("window [%d, %d) dropped: %s", w.t_start, w.t_end, e)
                        continue
                    if not absolute_time:
                        out = EventBatch.trusted(out.t - origin, out.x, out.y, out.p,
                                                 out.width, out.height)
                    summary["events_out"] += len(out)
                    if writer is not None:
                        writer.write(out)
                    else:
                        collected.append(out)

            for batch in reader:
                summary["events_in"] += len(batch)
                emit(windower.push(batch))
            emit(windower.flush())
            summary["time_jumps"] = windower.gaps.count
            summary["time_jump_largest_s"] = windower.gaps.largest_us / 1e6
            if summary["windows"] and summary["refused"] == summary["windows"]:
                raise AnonyNoiseError(f"{source}: every window's anonymization failed; nothing "
                                      "written")
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            writer.close()
        else:
            write_events(output, collected, sensor_size=(width, height))
    return summary
