"""`anonynoise.load`: an Anonymizer from a model name and a filter choice, as users say them.

    load()                                   the default: the privacy filters alone
                                             (warp+refractory+jitter), no net
    load("net")                              the shipped learned net behind its filters
    load("my.pt", device="cpu")              a checkpoint of ours
    load("none", filters="warp+jitter")      other filters alone, no net

The default is the filters alone because the shipped net adds no privacy to them (the privacy
report measures both against the same fresh attackers) and leaves a grid artefact in its
output; the net stays one word away until a trained net earns its place (issue 38).
"""

from __future__ import annotations

import os
from pathlib import Path

from anonynoise.checkpoint import Checkpoint
from anonynoise.errors import AnonyNoiseError
from anonynoise.filters import FilterConfig, ModelFilters

# The learned net the product ships (docs/model-card.md; train/configs/default_anonymizer.toml).
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default_anonymizer.pt"
NO_MODEL = "none"  # the privacy filters alone: the default
SHIPPED_NET = "net"  # the shipped learned net
MODEL_FILTERS = "model"  # the filters the checkpoint was trained behind, with its parameters


def default_model() -> Path:
    if not DEFAULT_MODEL.is_file():
        raise AnonyNoiseError("no learned net is shipped in this build: name a checkpoint",
                              parameter="model")
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
    """An Anonymizer: `model` None or "none" for the privacy filters alone (the default),
    "net" for the shipped learned net, or a checkpoint (path or Checkpoint); `device` "auto"
    (CUDA where there is a GPU), "cpu" or "cuda"; `filters` as filters_from takes them
    ("model": the net's own; without a net, the ones the shipped net was trained behind).
    window_us: the window (default the model's; without a model 50 ms). allow_weak: accept a
    near-identity net or a net run without the filters it was trained behind (named in every
    stream header). seed: tests only; by default the noise comes from OS entropy."""
    from anonynoise.anonymizer import Anonymizer

    filters = filters_from(filters)
    if model is None or isinstance(model, (str, os.PathLike)) and str(model) == NO_MODEL:
        return Anonymizer(None, device, window_us=window_us, threads=threads, seed=seed,
                          filters=filters)
    if isinstance(model, str) and model == SHIPPED_NET:
        model = default_model()
    return Anonymizer(model, device,
                      window_us=window_us, threads=threads, allow_weak=allow_weak, seed=seed,
                      filters=filters)
