"""One self-describing checkpoint format for every net, and import of the reference's weights.

A checkpoint is a `.pt` file holding a dict of plain Python types plus the state dict:

    {"format": "anonynoise-checkpoint", "version": 1,
     "kind": "light_anon" | "paper_anon" | "classnet" | "denoise",
     "arch": {constructor arguments}, "representation": {...} or None,
     "training": {a summary: stage, dataset, epochs, metrics, ...},
     "weights_sha256": weights_hash(state_dict),
     "state_dict": {...}}

It loads with `torch.load(..., weights_only=True)`, which refuses anything but tensors and plain
types, so metadata is checked to be plain before saving. The reference saves bare state dicts
(`.pth`) with its own module names; `load_net` detects them and builds the matching net.

A damaged file is refused with a CheckpointError, never loaded with other weights: every
member of the zip archive is checked against its CRC-32 (torch.load does not check them), the
weights against the SHA-256 recorded when they were saved (a file written before the hash was
recorded loads with a warning), and the metadata for type and range before any net is built:
the net is first built on torch's meta device, which allocates nothing, and the state dict's
names and shapes compared with it, so a net is only allocated as large as the weights the file
holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
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
from anonynoise.events import MAX_SENSOR_SIDE
from anonynoise.models import ANONYMIZER_KINDS, MODEL_KINDS, build_model

log = logging.getLogger(__name__)

FORMAT = "anonynoise-checkpoint"
VERSION = 1  # weights_sha256 was added within version 1: older readers ignore it
HASH_KEY = "weights_sha256"
CHANNEL_ORDER = "bin-major: bin0-OFF, bin0-ON, bin1-OFF, bin1-ON, ..."
ANY = "any"
WHOLE_SAMPLE = "whole sample"
# What a checkpoint's representation may say (checked on loading, before anything is
# allocated): the project trains 5 bins of 2 polarities on sensors up to 1280x720 with windows
# of 20 to 50 ms (the command line takes up to 60 s) or whole samples.
MAX_BINS = 64
MAX_POLARITIES = 2
MAX_WINDOW_US = 600_000_000  # 10 minutes
MAX_CHANNEL_ORDER = 200  # characters


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
        """The representation a checkpoint records, checked for type and range (an int is an
        int, not a float or a string: the writer writes ints)."""

        def bad(reason: str) -> CheckpointError:
            return CheckpointError(f"malformed representation {_short(d)}: {reason}")

        if not isinstance(d, dict):
            raise bad("not a dict")
        missing = [k for k in ("bins", "polarities", "width", "height", "window_us",
                               "channel_order") if k not in d]
        if missing:
            raise bad(f"no {', '.join(missing)}")

        def number(key: str, high: int, other: str | None = None):
            value = d[key]
            if other is not None and isinstance(value, str) and value == other:
                return None
            if not _is_int(value) or not 1 <= value <= high:
                raise bad(f"{key} {_short(value)} is not an integer from 1 to {high:,}"
                          + (f" or {other!r}" if other is not None else ""))
            return value

        width = number("width", MAX_SENSOR_SIDE, ANY)
        height = number("height", MAX_SENSOR_SIDE, ANY)
        if (width is None) != (height is None):
            raise bad("width and height must both be sizes or both be 'any'")
        order = d["channel_order"]
        if not isinstance(order, str) or len(order) > MAX_CHANNEL_ORDER:
            raise bad(f"channel_order {_short(order)} is not a short string")
        return cls(bins=number("bins", MAX_BINS), polarities=number("polarities", MAX_POLARITIES),
                   width=width, height=height,
                   window_us=number("window_us", MAX_WINDOW_US, WHOLE_SAMPLE),
                   channel_order=order)

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

    def check(self) -> None:
        """Raise CheckpointError unless the arch is within the net's limits, fits the
        representation, and the state dict has exactly the net's names and shapes; allocates
        nothing (the net is built on the meta device)."""
        check_arch(self.kind, self.arch, self.source)
        try:
            with torch.device("meta"):
                skeleton = build_model(self.kind, self.arch)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{self.source}: cannot build a {self.kind} from "
                                  f"{_short(self.arch)}: {e}") from None
        rep = self.representation
        if rep is not None and self.kind in ANONYMIZER_KINDS and rep.channels != skeleton.channels:
            raise CheckpointError(f"{self.source}: the net takes {skeleton.channels} channels "
                                  f"but the representation has {rep.channels} ({rep.bins} bins x "
                                  f"{rep.polarities} polarities)")
        _check_fit(self, skeleton.state_dict())

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """The net, weights loaded, in eval mode, on `device`."""
        self.check()
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


def _short(value, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters: for messages about values read from a file."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_arch(kind: str, arch: dict, source: str = "") -> None:
    """Raise CheckpointError unless `arch` holds only known constructor arguments of a `kind`
    net, each of its type and within the net's ARCH_LIMITS (missing ones take defaults)."""
    where = f"{source}: " if source else ""
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"{where}unknown model kind {_short(kind)} (known: "
                              f"{', '.join(sorted(MODEL_KINDS))})")
    if not isinstance(arch, dict):
        raise CheckpointError(f"{where}the {kind} architecture {_short(arch)} is not a dict")
    limits = MODEL_KINDS[kind].ARCH_LIMITS
    for key, value in arch.items():
        if key not in limits:
            raise CheckpointError(f"{where}a {kind} has no architecture argument {_short(key)} "
                                  f"(known: {', '.join(sorted(limits))})")
        rule, *bounds = limits[key]
        if rule == "int" and not (_is_int(value) and bounds[0] <= value <= bounds[1]):
            wanted = f"an integer from {bounds[0]} to {bounds[1]:,}"
        elif rule == "float" and not (isinstance(value, (int, float))
                                      and not isinstance(value, bool) and math.isfinite(value)
                                      and bounds[0] < value <= bounds[1]):
            wanted = f"a number above {bounds[0]:g} and at most {bounds[1]:g}"
        elif rule == "choice" and not (isinstance(value, str) and value in bounds[0]):
            wanted = f"one of {', '.join(bounds[0])}"
        else:
            continue
        raise CheckpointError(f"{where}{kind} architecture: {key} {_short(value)} is not "
                              f"{wanted}")


def _check_fit(ckpt: "Checkpoint", expected: dict) -> None:
    """Raise CheckpointError unless ckpt's state dict has the names and shapes of `expected`
    (the state dict of the net its arch declares, on the meta device)."""
    got = ckpt.state_dict
    net = f"{ckpt.kind} {_short(ckpt.arch, 160)}"
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    if missing or unexpected:
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "")
            if missing else "",
            f"unexpected {', '.join(map(_short, unexpected[:3]))}"
            + (" ..." if len(unexpected) > 3 else "") if unexpected else "") if part)
        raise CheckpointError(f"{ckpt.source}: weights do not fit a {net}: {detail}")
    for name, want in expected.items():
        have = got[name]
        if not isinstance(have, torch.Tensor) or have.layout != torch.strided:
            raise CheckpointError(f"{ckpt.source}: weights do not fit a {net}: {name} is not a "
                                  "dense tensor")
        if tuple(have.shape) != tuple(want.shape):
            raise CheckpointError(f"{ckpt.source}: weights do not fit a {net}: {name} has shape "
                                  f"{tuple(have.shape)}, the net {tuple(want.shape)}")
        if have.is_complex() or have.is_floating_point() != want.is_floating_point():
            raise CheckpointError(f"{ckpt.source}: weights do not fit a {net}: {name} is "
                                  f"{have.dtype}, the net {want.dtype}")


def weights_hash(state_dict: dict) -> str:
    """SHA-256 (hex) of a state dict's tensors: names sorted, for each the name, dtype and
    shape (as JSON, length-prefixed) and the raw bytes of the contiguous CPU tensor (in the
    machine's byte order, little-endian on every platform torch supports). The metadata is
    left out, so re-saving the same weights with other metadata gives the same hash."""
    digest = hashlib.sha256(b"anonynoise-weights-sha256-v1\0")
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor) \
                or tensor.layout != torch.strided:
            raise CheckpointError(f"state dict entry {_short(name)} is not a named dense tensor")
        tensor = tensor.detach().to("cpu").contiguous()
        header = json.dumps([name, str(tensor.dtype).removeprefix("torch."),
                             list(tensor.shape), tensor.numel() * tensor.element_size()]).encode()
        digest.update(len(header).to_bytes(8, "little") + header)
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


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


def plain_metadata(value, where: str = "metadata"):
    """Metadata as plain Python types (numpy scalars and 0-d tensors made Python numbers), as
    weights_only loading reads them back; CheckpointError naming `where` for anything else.
    For logs and records that sit beside checkpoints and must read back the same way."""
    return _plain(value, where)


def read_torch_file(path: str | os.PathLike):
    """What a torch file holds, loaded with weights_only=True after its archive's CRCs are
    checked: one of our checkpoints or a reference .pth (a state dict, or a dict around one);
    CheckpointError with a one-line reason for a missing, damaged or unsafe file."""
    return _torch_load(Path(path))


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
    }
    state_dict = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    payload[HASH_KEY] = weights_hash(state_dict)
    payload["state_dict"] = state_dict
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def add_weights_hash(path: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Rewrite one of our checkpoints written before weights_sha256 with the hash of its
    weights (to `out`, default in place); its weights and other metadata stay as they are. A
    checkpoint that has a hash is checked and left alone (or copied to `out`)."""
    path = Path(path)
    data = _torch_load(path)
    _ours(data, path, None, warn_unhashed=False)  # checked whole before it is rewritten
    if HASH_KEY in data and out is None:
        return path
    payload = {k: v for k, v in data.items() if k not in (HASH_KEY, "state_dict")}
    payload[HASH_KEY] = weights_hash(data["state_dict"])
    payload["state_dict"] = data["state_dict"]
    target = path if out is None else Path(out)
    with atomic_output(target) as tmp:
        torch.save(payload, tmp)
    return target


def _check_archive(path: Path) -> None:
    """Read every member of a torch zip archive against its CRC-32 (torch.load reads them
    without checking). torch writes 0 with its CRC-32 turned off: those members are skipped."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0 or info.is_dir():
                    continue
                with archive.open(info) as member:
                    while member.read(1 << 22):
                        pass
    except Exception as e:  # noqa: BLE001 - whatever zipfile trips over, the file is damaged
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or truncated: "
                              f"{first_line(e, 160)})") from None


def _torch_load(path: Path):
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint")
    try:
        is_zip = zipfile.is_zipfile(path)  # torch.save writes zip archives (since torch 1.6)
    except zipfile.BadZipFile:  # an end record that is there but damaged
        is_zip = False
    if not is_zip:
        raise CheckpointError(f"{path}: not a readable checkpoint (not a torch file, or "
                              "corrupt or truncated)")
    _check_archive(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        raise CheckpointError(f"{path}: refused: it holds objects other than weights and plain "
                              f"metadata" + (f" ({found.group(1)})" if found else "")) from None
    except Exception as e:  # noqa: BLE001 - a damaged pickle fails in many ways (KeyError...)
        reason = first_line(e, 160)
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or truncated: "
                              f"{reason})") from None


def load_checkpoint(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None) -> Checkpoint:
    """Read one of our checkpoints; `kind` (one or several) is what the caller can use."""
    path = Path(path)
    return _ours(_torch_load(path), path, kind)


def _ours(data, path: Path, kind, warn_unhashed: bool = True) -> Checkpoint:
    """A checked Checkpoint from the loaded contents of one of our files: the weights match
    their hash, the metadata is of the right types and ranges, the weights fit the arch."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an AnonyNoise checkpoint (a reference .pth state "
                              "dict loads through load_net)")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {_short(data.get('version'))} "
                              f"is not supported (this release reads version {VERSION})")
    state_dict = data.get("state_dict")
    if not isinstance(state_dict, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise CheckpointError(f"{path}: malformed checkpoint: its state_dict is not a dict of "
                              "named tensors")
    _verify_hash(data, path, warn_unhashed)
    kind_name = data.get("kind")
    if not isinstance(kind_name, str) or kind_name not in MODEL_KINDS:
        raise CheckpointError(f"{path}: malformed checkpoint: unknown model kind "
                              f"{_short(kind_name)} (known: {', '.join(sorted(MODEL_KINDS))})")
    arch = data.get("arch")
    check_arch(kind_name, arch, str(path))
    representation = data.get("representation")
    if representation is not None:
        try:
            representation = Representation.from_dict(representation)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
    training = data.get("training")
    if training is not None and not isinstance(training, dict):
        raise CheckpointError(f"{path}: malformed checkpoint: its training record "
                              f"{_short(training)} is not a dict")
    ckpt = Checkpoint(kind=kind_name, arch=dict(arch), state_dict=state_dict,
                      representation=representation, training=dict(training or {}),
                      source=str(path))
    _check_kind(ckpt, kind)
    ckpt.check()
    return ckpt


def _verify_hash(data: dict, path: Path, warn_unhashed: bool = True) -> None:
    recorded = data.get(HASH_KEY)
    if HASH_KEY not in data:
        if warn_unhashed:
            log.warning("%s: this checkpoint records no hash of its weights (it was written "
                        "before they were recorded), so damage to them cannot be detected; "
                        "anonynoise.checkpoint.add_weights_hash adds one", path)
        return
    if not isinstance(recorded, str) or not re.fullmatch(r"[0-9a-f]{64}", recorded):
        raise CheckpointError(f"{path}: the recorded hash of the weights is malformed: the file "
                              "is corrupt")
    if weights_hash(data["state_dict"]) != recorded:
        raise CheckpointError(f"{path}: the weights do not match their recorded hash: the file "
                              "is corrupt")


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
    except IndexError:  # a weight of too few dimensions
        raise CheckpointError(f"{path}: malformed {kind} weights (a tensor of the wrong "
                              "shape)") from None
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
