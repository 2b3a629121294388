"""Anonymize a recording file, offline: the stream's windows and anonymizer, file to file."""

from __future__ import annotations

import os
from pathlib import Path

from anonynoise.anonymizer import Anonymizer
from anonynoise.atomic import refuse_overwriting_input
from anonynoise.errors import AnonyNoiseError
from anonynoise.filters import FilterConfig, ModelFilters
from anonynoise.io import Aedat4Writer, open_events, write_events
from anonynoise.loading import default_model, load  # noqa: F401 - default_model: re-exported
from anonynoise.loop import WindowLoop


def open_anonymizer(model: str | os.PathLike | None, device: str = "auto", *,
                    window_ms: float | None = None, threads: int | None = None,
                    allow_weak: bool = False,
                    filters: FilterConfig | ModelFilters | None = ModelFilters()
                    ) -> Anonymizer:
    """The anonymizer as the commands ask for it (a window in ms): `model` as load takes it
    (None or "none": the privacy filters alone; "net": the shipped net; a checkpoint). Its
    window_us and identity (for stream headers) are its own."""
    return load(model, device, filters,
                window_us=None if window_ms is None else int(round(window_ms * 1000)),
                threads=threads, allow_weak=allow_weak)


def anonymize_file(source: str | os.PathLike, output: str | os.PathLike,
                   model: str | os.PathLike | None = None, *, window_ms: float | None = None,
                   device: str = "auto", sensor_size=None, absolute_time: bool = False,
                   allow_weak: bool = False, threads: int | None = None,
                   filters: FilterConfig | ModelFilters | None = ModelFilters()) -> dict:
    """Write the anonymized events of `source` to `output` (.aedat4, .npy or .npz); `model`
    as open_anonymizer's.

    Windows whose anonymization fails are dropped and counted, never written raw. Output
    timestamps start at 0 unless absolute_time. filters: privacy filters before the net
    (anonynoise.filters; default the model's own). Returns the loop's summary and the
    sensor size."""
    output = Path(output)
    if output.suffix.lower() not in (".aedat4", ".npy", ".npz"):
        raise AnonyNoiseError(f"{output}: can write .aedat4, .npy or .npz")
    refuse_overwriting_input(source, output)
    anonymizer = open_anonymizer(model, device, window_ms=window_ms, threads=threads,
                                 allow_weak=allow_weak, filters=filters)
    with open_events(source, sensor_size) as reader:
        size = reader.sensor_size
        loop = WindowLoop(anonymizer, size, absolute_time=absolute_time)
        writer = Aedat4Writer(output, size) if output.suffix.lower() == ".aedat4" else None
        collected = []
        try:
            for window in loop.run(reader):
                if writer is not None:
                    writer.write(window.events)
                else:
                    collected.append(window.events)
            if loop.windows and loop.refused == loop.windows:
                raise AnonyNoiseError(f"{source}: every window's anonymization failed "
                                      f"({loop.last_refusal}); nothing written")
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            writer.close()
        else:
            write_events(output, collected, sensor_size=size)
    return loop.summary() | {"sensor_size": size}
