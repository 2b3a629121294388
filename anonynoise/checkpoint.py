"""One self-describing checkpoint format for every net, and import of the reference's weights.

A checkpoint is a `.pt` file holding a dict of plain Python types plus the state dict:

    {"format": "anonynoise-checkpoint", "version": 1,
     "kind": "light_anon" | "paper_anon" | "classnet" | "denoise",
     "arch": {constructor arguments}, "representation": {...} or None,
     "training": {a summary: stage, dataset, epochs, metrics, ...},
     "state_dict": {...}}

It loads with `torch.load(..., weights_only=True)`, which refuses anything but tensors and plain
types, so metadata is checked to be plain before saving. The reference saves bare state dicts
(`.pth`) with its own module names; `load_net` detects them and builds the matching net.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from anonynoise.atomic import atomic_output
from anonynoise.errors import AnonyNoiseError, first_line
from anonynoise.models import ANONYMIZER_KINDS, MODEL_KINDS, build_model

FORMAT = "anonynoise-checkpoint"
VERSION = 1
CHANNEL_ORDER = "bin-major: bin0-OFF, bin0-ON, bin1-OFF, bin1-ON, ..."
ANY = "any"
WHOLE_SAMPLE = "whole sample"


class CheckpointError(AnonyNoiseError):
    """A checkpoint that is missing, corrupt, of the wrong kind or for another representation."""


@dataclass(frozen=True)
class Representation:
    """The input a net was trained on: bins x polarities count tensors, sensor size or any,
    and the window length in µs or whole samples (the reference's DVS-Gesture training)."""

    bins: int = 5
    polarities: int = 2
    width: int | None = None  # None: any size
    height: int | None = None
    window_us: int | None = None  # None: whole samples
    channel_order: str = CHANNEL_ORDER

    @property
    def channels(self) -> int:
        return self.bins * self.polarities

    def to_dict(self) -> dict:
        return {"bins": self.bins, "polarities": self.polarities,
                "width": ANY if self.width is None else self.width,
                "height": ANY if self.height is None else self.height,
                "window_us": WHOLE_SAMPLE if self.window_us is None else self.window_us,
                "channel_order": self.channel_order}

    @classmethod
    def from_dict(cls, d: dict) -> "Representation":
        try:
            return cls(bins=int(d["bins"]), polarities=int(d["polarities"]),
                       width=None if d["width"] == ANY else int(d["width"]),
                       height=None if d["height"] == ANY else int(d["height"]),
                       window_us=None if d["window_us"] == WHOLE_SAMPLE else int(d["window_us"]),
                       channel_order=str(d["channel_order"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"malformed representation {d!r}: {e}") from None

    def describe(self) -> str:
        size = "any size" if self.width is None else f"{self.width}x{self.height}"
        window = "whole samples" if self.window_us is None else f"{self.window_us / 1000:g} ms windows"
        return f"{self.bins} bins x {self.polarities} polarities, {size}, {window}"

    def mismatch(self, width: int, height: int, bins: int | None = None,
                 window_us: int | None = None) -> str | None:
        """Why a source of this size (and window) does not fit, or None if it does."""
        if self.polarities != 2 or self.channel_order != CHANNEL_ORDER:
            return f"it expects another layout ({self.polarities} polarities, {self.channel_order})"
        if bins is not None and bins != self.bins:
            return f"it was trained on {self.bins} bins, not {bins}"
        if self.width is not None and (width, height) != (self.width, self.height):
            return f"it was trained on a {self.width}x{self.height} sensor, not {width}x{height}"
        if window_us is not None and self.window_us is not None and window_us != self.window_us:
            return (f"it was trained on {self.window_us / 1000:g} ms windows, not "
                    f"{window_us / 1000:g} ms")
        return None


@dataclass
class Checkpoint:
    kind: str
    arch: dict
    state_dict: dict
    representation: Representation | None = None
    training: dict = field(default_factory=dict)
    source: str = ""  # where it was loaded from, for messages

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """The net, weights loaded, in eval mode, on `device`."""
        try:
            net = build_model(self.kind, self.arch)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{self.source}: cannot build a {self.kind} from {self.arch}: "
                                  f"{e}") from None
        try:
            net.load_state_dict(self.state_dict)
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            detail = " ".join(line.strip() for line in first[1:3]) if len(first) > 1 else first[0]
            raise CheckpointError(f"{self.source}: weights do not fit a {self.kind} "
                                  f"{self.arch}: {detail[:240]}") from None
        return net.to(device).eval()


def _plain(value, where: str = "metadata"):
    """Check that value holds only plain Python types (what weights_only loading accepts),
    turning numpy scalars and 0-d tensors into Python numbers."""
    if value is None:
        return value
    for plain in (bool, int, float, str):  # numpy's float64 is a float, yet pickles as numpy
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    raise CheckpointError(f"{where}: {type(value).__name__} is not a plain Python type "
                          "(checkpoints hold dicts, lists, str, int, float, bool, None)")


def save_checkpoint(path: str | os.PathLike, net: nn.Module,
                    representation: Representation | None = None,
                    training: dict | None = None) -> Path:
    """Write a net (one of anonynoise.models) with its metadata; atomic (temp file + rename)."""
    kind = getattr(net, "kind", None)
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"cannot save a {type(net).__name__}: not one of the project's nets")
    payload = {
        "format": FORMAT, "version": VERSION, "kind": kind,
        "arch": _plain(net.arch(), "arch"),
        "representation": None if representation is None else representation.to_dict(),
        "training": _plain(training or {}, "training"),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _torch_load(path: Path):
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives (since torch 1.6)
        raise CheckpointError(f"{path}: not a readable checkpoint (not a torch file, or "
                              "corrupt or truncated)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        raise CheckpointError(f"{path}: refused: it holds objects other than weights and plain "
                              f"metadata" + (f" ({found.group(1)})" if found else "")) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        reason = first_line(e, 160)
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or truncated: "
                              f"{reason})") from None


def load_checkpoint(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None) -> Checkpoint:
    """Read one of our checkpoints; `kind` (one or several) is what the caller can use."""
    path = Path(path)
    return _ours(_torch_load(path), path, kind)


def _ours(data, path: Path, kind) -> Checkpoint:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an AnonyNoise checkpoint (a reference .pth state "
                              "dict loads through load_net)")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {data.get('version')} is not "
                              f"supported (this release reads version {VERSION})")
    ckpt = Checkpoint(kind=data["kind"], arch=dict(data["arch"]), state_dict=data["state_dict"],
                      representation=(None if data.get("representation") is None
                                      else Representation.from_dict(data["representation"])),
                      training=dict(data.get("training") or {}), source=str(path))
    _check_kind(ckpt, kind)
    return ckpt


def _check_kind(ckpt: Checkpoint, kind) -> None:
    wanted = (kind,) if isinstance(kind, str) else kind
    if wanted is not None and ckpt.kind not in wanted:
        raise CheckpointError(f"{ckpt.source}: is a {ckpt.kind} checkpoint, expected "
                              f"{' or '.join(wanted)}")


# ---------------------------------------------------------------------------------------------
# The reference's own state dicts

# A key that marks each net, and the wrapper prefixes the reference uses around it.
_MARKERS = {"paper_anon": "convs1.0.weight", "classnet": "backbone.0.weight",
            "denoise": "dncnn.0.weight"}


def _unwrap(data: dict) -> dict:
    """The tensors of a reference file: a bare state dict or a Lightning checkpoint."""
    if "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def _prefixes(tensors: dict, marker: str) -> list[str]:
    return sorted({k[: -len(marker)] for k in tensors if k.endswith(marker)})


def _reference_arch(kind: str, sd: dict) -> dict:
    """Constructor arguments of our net from the shapes in a reference state dict."""
    if kind == "paper_anon":
        c = sd["convs1.0.weight"].shape[1] // 2
        out = sd["convs3.2.weight"].shape[0]
        return {"channels": c, "noise_std": 1.0, "form": "scale" if out == c else "mean_scale"}
    if kind == "classnet":
        blocks = tuple(len({k.split(".")[2] for k in sd if k.startswith(f"backbone.{i}.")})
                       for i in range(4, 8))
        bottleneck = "backbone.4.0.conv3.weight" in sd
        network = {((3, 4, 6, 3), True): "resnet50", ((3, 4, 6, 3), False): "resnet34",
                   ((2, 2, 2, 2), False): "resnet18"}.get((blocks, bottleneck))
        if network is None:
            raise CheckpointError(f"a ResNet with blocks {blocks} is not supported")
        return {"network": network, "n_classes": sd["classifier.0.weight"].shape[0],
                "input_channels": sd["backbone.0.weight"].shape[1]}
    convs = [k for k in sd if k.startswith("dncnn.") and k.endswith(".weight")
             and sd[k].dim() == 4]
    return {"channels": sd["dncnn.0.weight"].shape[1], "width": sd["dncnn.0.weight"].shape[0],
            "depth": len(convs)}


def reference_checkpoint(path: str | os.PathLike, kind: str, role: str | None = None,
                         noise_std: float | None = None) -> Checkpoint:
    """A Checkpoint from one of the reference's .pth files (bare or wrapped state dicts).

    `role` picks the sub-net of a wrapper's file: "anonnet", "idnet", "targetnet",
    "classnet" or "denoisenet". The reference does not store noise_std (a command-line flag,
    default 1.0): pass the value it was trained with.
    """
    path = Path(path)
    return _reference(_torch_load(path), path, kind, role, noise_std)


def _reference(data, path: Path, kind: str, role: str | None = None,
               noise_std: float | None = None) -> Checkpoint:
    if kind not in _MARKERS:
        raise CheckpointError(f"{path}: the reference has no {kind} net (known: "
                              f"{', '.join(sorted(_MARKERS))})")
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a state dict")
    tensors = _unwrap(data)
    marker = _MARKERS[kind]
    prefixes = _prefixes(tensors, marker)
    if role is not None and prefixes != [""]:
        # a wrapper's file: take the sub-net of that role; a bare state dict (the reference
        # saves each net of its pipeline on its own too) is that net, whatever the role
        prefixes = [p for p in prefixes if p.rstrip(".").endswith(role)]
    if not prefixes:
        found = sorted(m for m, key in _MARKERS.items() if _prefixes(tensors, key))
        raise CheckpointError(f"{path}: holds no {kind} weights"
                              + (f" for role {role!r}" if role else "")
                              + (f" (it holds: {', '.join(found)})" if found else ""))
    if len(prefixes) > 1:
        names = ", ".join(p.rstrip(".") for p in prefixes)
        raise CheckpointError(f"{path}: holds several {kind} nets ({names}); say which")
    prefix = prefixes[0]
    sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        arch = _reference_arch(kind, sd)
    except KeyError as e:
        raise CheckpointError(f"{path}: incomplete {kind} weights (no {e})") from None
    if noise_std is not None and kind == "paper_anon":
        arch["noise_std"] = float(noise_std)
    return Checkpoint(kind=kind, arch=arch, state_dict=sd,
                      training={"source": "reference state dict", "prefix": prefix.rstrip(".")},
                      source=str(path))


def load_net(path: str | os.PathLike, kind: str | tuple[str, ...], role: str | None = None,
             device: str | torch.device = "cpu") -> tuple[nn.Module, Checkpoint]:
    """A ready net from our checkpoint or from a reference .pth (detected), of an allowed kind."""
    path = Path(path)
    data = _torch_load(path)
    wanted = (kind,) if isinstance(kind, str) else tuple(kind)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        ckpt = _ours(data, path, wanted)
    else:
        reference_kinds = [k for k in wanted if k in _MARKERS]
        errors = []
        for k in reference_kinds:
            try:
                ckpt = _reference(data, path, k, role)
                break
            except CheckpointError as e:
                errors.append(str(e))
        else:
            raise CheckpointError(errors[0] if errors else
                                  f"{path}: not a checkpoint of a {' or '.join(wanted)}")
    return ckpt.build(device), ckpt


def is_anonymizer(ckpt: Checkpoint) -> bool:
    return ckpt.kind in ANONYMIZER_KINDS
