"""`anonynoise.load`: an Anonymizer from a model name and a filter choice, as users say them.

    load()                                   the shipped model behind the filters it was
                                             trained behind
    load("my.pt", device="cpu")              a checkpoint of ours
    load("none", filters="warp+jitter")      the privacy filters alone, no net
"""

from __future__ import annotations

import os
from pathlib import Path

from anonynoise.checkpoint import Checkpoint
from anonynoise.errors import AnonyNoiseError
from anonynoise.filters import FilterConfig, ModelFilters

# The anonymizer the product ships (docs/model-card.md; train/configs/default_anonymizer.toml).
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default_anonymizer.pt"
NO_MODEL = "none"  # the privacy filters alone
MODEL_FILTERS = "model"  # the filters the checkpoint was trained behind, with its parameters


def default_model() -> Path:
    if not DEFAULT_MODEL.is_file():
        raise AnonyNoiseError("no default anonymizer is shipped in this build: name a "
                              "checkpoint", parameter="model")
    return DEFAULT_MODEL


def filters_from(filters: str | FilterConfig | ModelFilters | None
                 ) -> FilterConfig | ModelFilters | None:
    """"model" (the checkpoint's own), "none" or None (no filters), a spec such as
    "warp+refractory+jitter", or a FilterConfig / ModelFilters as they are."""
    if isinstance(filters, (FilterConfig, ModelFilters)) or filters is None:
        return filters
    if not isinstance(filters, str):
        raise AnonyNoiseError(f"filters must be 'model', 'none', a spec such as "
                              f"'warp+refractory+jitter' or a FilterConfig, got "
                              f"{type(filters).__name__}", parameter="filters")
    if filters == MODEL_FILTERS:
        return ModelFilters()
    config = FilterConfig(filters).check()
    return config if config.steps else None


def load(model: str | os.PathLike | Checkpoint | None = None, device: str = "auto",
         filters: str | FilterConfig | ModelFilters | None = MODEL_FILTERS, *,
         window_us: int | None = None, threads: int | None = None, allow_weak: bool = False,
         seed: int | None = None):
    """An Anonymizer: `model` a checkpoint (path or Checkpoint), None for the shipped one, or
    "none" for the privacy filters alone; `device` "auto" (CUDA where there is a GPU), "cpu"
    or "cuda"; `filters` as filters_from takes them. window_us: the window (default the
    model's; without a model 50 ms). allow_weak: accept a near-identity net or a net run
    without the filters it was trained behind (named in every stream header). seed: tests
    only; by default the noise comes from OS entropy."""
    from anonynoise.anonymizer import Anonymizer

    filters = filters_from(filters)
    if isinstance(model, (str, os.PathLike)) and str(model) == NO_MODEL:
        return Anonymizer(None, device, window_us=window_us, threads=threads, seed=seed,
                          filters=filters)
    return Anonymizer(default_model() if model is None else model, device,
                      window_us=window_us, threads=threads, allow_weak=allow_weak, seed=seed,
                      filters=filters)
