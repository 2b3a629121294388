"""Damaged and absurd checkpoints: a one-line CheckpointError, never other weights, never
another exception, never a large allocation; old files and the reference's still load."""

import json
import logging
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from anonynoise.checkpoint import (
    HASH_KEY,
    CheckpointError,
    Representation,
    add_weights_hash,
    load_checkpoint,
    load_net,
    save_checkpoint,
    weights_hash,
)
from anonynoise.models import ClassNet, DenoiseNet, LightAnonNet, PaperAnonNet
from anonynoise.offline import default_model

REP = Representation(bins=5, width=None, height=None, window_us=20_000)


def flip_bits(data: bytes, seed: int, count: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    for bit in rng.sample(range(len(out) * 8), count):
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def assert_one_line(error: CheckpointError) -> str:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def same_contents(a: dict, b: dict) -> bool:
    """The same metadata and the same weights, value for value and dtype for dtype."""
    if a.keys() != b.keys():
        return False
    for key in a:
        if key == "state_dict":
            sa, sb = a[key], b[key]
            if list(sa) != list(sb) or not all(
                    sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa):
                return False
        elif repr(a[key]) != repr(b[key]):
            return False
    return True


def shipped() -> dict:
    return torch.load(default_model(), map_location="cpu", weights_only=True)


def member_data_offset(path: Path, suffix: str) -> tuple[int, int]:
    """(offset, size) of the stored bytes of the archive member whose name ends in suffix."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    raw = path.read_bytes()
    start = info.header_offset
    name_len = int.from_bytes(raw[start + 26:start + 28], "little")
    extra_len = int.from_bytes(raw[start + 28:start + 30], "little")
    assert info.compress_type == zipfile.ZIP_STORED
    return start + 30 + name_len + extra_len, info.file_size


# --- the shipped model carries its hash


def test_the_shipped_model_records_the_hash_of_its_weights(caplog):
    data = shipped()
    assert data[HASH_KEY] == weights_hash(data["state_dict"])
    with caplog.at_level(logging.WARNING, logger="anonynoise.checkpoint"):
        ckpt = load_checkpoint(default_model())
    assert not caplog.records  # no "records no hash" warning for the shipped model
    assert ckpt.kind == "light_anon" and ckpt.representation.bins == 5


# --- flipped bits


@pytest.mark.parametrize("block", range(4))
def test_twenty_flipped_bits_never_load_silently(tmp_path, block):
    raw = default_model().read_bytes()
    original = shipped()
    loaded = 0
    for seed in range(block * 60, block * 60 + 60):
        path = tmp_path / f"flipped-{seed}.pt"
        path.write_bytes(flip_bits(raw, seed, 20))
        try:
            ckpt = load_checkpoint(path)
            ckpt.build()
        except CheckpointError as e:
            assert_one_line(e)
            continue
        # only flips in bytes nobody reads (zip timestamps, ...) may load, and then unchanged
        loaded += 1
        assert same_contents(torch.load(path, weights_only=True), original), seed
    assert loaded <= 3


def test_every_single_flipped_bit_is_refused_or_harmless(tmp_path):
    raw = default_model().read_bytes()
    original = shipped()
    path = tmp_path / "one-bit.pt"
    for position in range(0, len(raw), 97):
        damaged = bytearray(raw)
        damaged[position] ^= 1 << (position % 8)
        path.write_bytes(bytes(damaged))
        try:
            load_checkpoint(path).build()
        except CheckpointError as e:
            assert_one_line(e)
            continue
        assert same_contents(torch.load(path, weights_only=True), original), position


def test_a_flipped_bit_in_the_metadata_is_caught(tmp_path):
    raw = default_model().read_bytes()
    at = raw.index(b"synthetic people only")
    damaged = bytearray(raw)
    damaged[at] ^= 1  # "rynthetic": torch.load alone reads it without complaint
    (tmp_path / "meta.pt").write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="corrupt") as e:
        load_checkpoint(tmp_path / "meta.pt")
    assert_one_line(e.value)


def test_a_flipped_bit_in_a_weight_is_caught_by_the_hash(tmp_path):
    # written with torch's zip CRC-32 off (CRC 0: not checked), so only the hash can tell
    data = shipped()
    assert torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(data, tmp_path / "nocrc.pt")
    finally:
        torch.serialization.set_crc32_options(True)
    path = tmp_path / "nocrc.pt"
    assert load_checkpoint(path).kind == "light_anon"  # intact, it loads
    # in the largest weight's storage (mid.0.weight)
    with zipfile.ZipFile(path) as archive:
        member = max((i for i in archive.infolist() if "/data/" in i.filename),
                     key=lambda i: i.file_size).filename
    offset, size = member_data_offset(path, member)
    for bit in (3, 8 * (size // 2) + 6, 8 * size - 1):  # a mantissa, an exponent, a sign bit
        damaged = bytearray(path.read_bytes())
        damaged[offset + bit // 8] ^= 1 << (bit % 8)
        (tmp_path / "bit.pt").write_bytes(bytes(damaged))
        assert not same_contents(torch.load(tmp_path / "bit.pt", weights_only=True), data)
        with pytest.raises(CheckpointError,
                           match="weights do not match their recorded hash: the file is corrupt"
                           ) as e:
            load_checkpoint(tmp_path / "bit.pt")
        assert_one_line(e.value)


def test_changed_weights_saved_again_are_caught_by_the_hash(tmp_path):
    # damage before the zip was written (fresh CRCs): the hash still tells
    data = shipped()
    weight = data["state_dict"]["enc1.weight"]
    weight.view(torch.int32).view(-1)[7] ^= 1 << 20
    torch.save(data, tmp_path / "changed.pt")
    with pytest.raises(CheckpointError, match="do not match their recorded hash") as e:
        load_net(tmp_path / "changed.pt", "light_anon")
    assert_one_line(e.value)


def test_the_hash_covers_weights_only(tmp_path):
    net = LightAnonNet(width=8)
    a = save_checkpoint(tmp_path / "a.pt", net, REP, {"stage": "one"})
    b = save_checkpoint(tmp_path / "b.pt", load_checkpoint(a).build(), None, {"stage": "two"})
    ha = torch.load(a, weights_only=True)[HASH_KEY]
    assert ha == torch.load(b, weights_only=True)[HASH_KEY]
    assert ha == weights_hash({k: v.clone() for k, v in net.state_dict().items()})
    other = {k: v.clone() for k, v in net.state_dict().items()}
    other["head.bias"][0] += 1e-6
    assert weights_hash(other) != ha
    renamed = {("x" + k if k == "head.bias" else k): v for k, v in net.state_dict().items()}
    assert weights_hash(renamed) != ha
    as_double = {k: v.double() for k, v in net.state_dict().items()}
    assert weights_hash(as_double) != ha


def test_a_malformed_recorded_hash_is_refused(tmp_path):
    for value in ("0" * 63, 5, None, "g" * 64):
        data = shipped()
        data[HASH_KEY] = value
        torch.save(data, tmp_path / "h.pt")
        with pytest.raises(CheckpointError, match="hash of the weights is malformed"):
            load_checkpoint(tmp_path / "h.pt")


# --- files without a hash


def test_a_checkpoint_written_before_the_hash_loads_with_a_warning(tmp_path, caplog):
    data = shipped()
    del data[HASH_KEY]
    torch.save(data, tmp_path / "legacy.pt")
    with caplog.at_level(logging.WARNING, logger="anonynoise.checkpoint"):
        net, ckpt = load_net(tmp_path / "legacy.pt", "light_anon")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "records no hash of its weights" in warnings[0]
    assert all(torch.equal(v, data["state_dict"][k]) for k, v in net.state_dict().items())
    # add_weights_hash gives it one, and nothing else changes
    add_weights_hash(tmp_path / "legacy.pt", tmp_path / "hashed.pt")
    hashed = torch.load(tmp_path / "hashed.pt", weights_only=True)
    assert same_contents(hashed, shipped())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="anonynoise.checkpoint"):
        load_checkpoint(tmp_path / "hashed.pt")
    assert not caplog.records


def test_a_reference_state_dict_still_imports_without_a_warning(tmp_path, caplog):
    ref = PaperAnonNet(10)
    torch.save(ref.state_dict(), tmp_path / "anon.pth")
    with caplog.at_level(logging.WARNING, logger="anonynoise.checkpoint"):
        net, ckpt = load_net(tmp_path / "anon.pth", ("paper_anon", "light_anon"))
    assert not caplog.records
    assert isinstance(net, PaperAnonNet)
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in net.state_dict().items())
    # a flipped bit in its weights: the zip's CRC-32 tells (the reference records no hash)
    offset, size = member_data_offset(tmp_path / "anon.pth", "/data/4")
    damaged = bytearray((tmp_path / "anon.pth").read_bytes())
    damaged[offset + size // 2] ^= 0x40
    (tmp_path / "bad.pth").write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="corrupt") as e:
        load_net(tmp_path / "bad.pth", "paper_anon")
    assert_one_line(e.value)


# --- weights that do not fit the declared net


def test_weights_that_do_not_fit_are_refused_on_loading(tmp_path):
    def variant(name, change):
        path = save_checkpoint(tmp_path / f"{name}.pt", LightAnonNet(width=8), REP)
        data = torch.load(path, weights_only=True)
        change(data)
        data[HASH_KEY] = weights_hash(data["state_dict"])
        torch.save(data, path)
        return path

    cases = {
        "wider": lambda d: d["arch"].update(width=16),
        "extra": lambda d: d["state_dict"].update(extra=torch.zeros(3)),
        "missing": lambda d: d["state_dict"].pop("head.bias"),
        "reshaped": lambda d: d["state_dict"].update({"head.bias": torch.zeros(11)}),
        "integer": lambda d: d["state_dict"].update(
            {"head.bias": d["state_dict"]["head.bias"].long()}),
    }
    for name, change in cases.items():
        with pytest.raises(CheckpointError, match="weights do not fit a light_anon") as e:
            load_checkpoint(variant(name, change))
        assert_one_line(e.value)


# --- absurd metadata: refused before any net is built or tensor allocated

ABSURD = [-1, 0, 10**9, 10**30, "5", None, 5.5, float("nan"), float("inf"), [[5]], {"a": 1},
          True]
LIMIT_BYTES = 4 << 30

_LOADER = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (%d, %d))
import torch
from anonynoise.checkpoint import CheckpointError, load_checkpoint, load_net
from anonynoise.models import MODEL_KINDS
results = []
for path in json.loads(sys.stdin.read()):
    try:
        load_checkpoint(path).build()
        net, _ = load_net(path, tuple(MODEL_KINDS))
        results.append([path, "loaded", ""])
    except CheckpointError as e:
        results.append([path, "CheckpointError", str(e)])
    except BaseException as e:
        results.append([path, type(e).__name__, str(e)[:300]])
print(json.dumps(results))
""" % (LIMIT_BYTES, LIMIT_BYTES)


def absurd_files(folder: Path) -> list[Path]:
    bases = {"light_anon": LightAnonNet(10, form="mean_scale", width=8),
             "paper_anon": PaperAnonNet(10), "classnet": ClassNet("resnet18", 6, 10, width=8),
             "denoise": DenoiseNet(10, width=8, depth=3)}
    files = []
    for kind, net in bases.items():
        base = torch.load(save_checkpoint(folder / f"{kind}.pt", net, REP), weights_only=True)

        def write(name, change):
            data = torch.load(folder / f"{kind}.pt", weights_only=True)
            change(data)
            path = folder / f"{kind}-{name}.pt"
            torch.save(data, path)
            files.append(path)

        keys = set(base["arch"]) | set(type(net).ARCH_LIMITS)
        for key in sorted(keys):
            for i, value in enumerate(ABSURD + ["x" * 10_000]):
                if key == "noise_std" and value == 5.5:  # a sane noise_std
                    continue
                write(f"arch-{key}-{i}", lambda d, k=key, v=value: d["arch"].__setitem__(k, v))
        for i, value in enumerate([None, "light", 5, [[1]]]):
            write(f"arch-{i}", lambda d, v=value: d.__setitem__("arch", v))
            write(f"kind-{i}", lambda d, v=value: d.__setitem__("kind", v))
            write(f"sd-{i}", lambda d, v=value: d.__setitem__("state_dict", v))
        write("arch-unknown", lambda d: d["arch"].__setitem__("depth_multiplier", 4))
    # in range, yet nets of gigabytes: refused for not fitting the weights, not allocated
    for kind, arch in (("light_anon", {"width": 1024}),
                       ("denoise", {"width": 1024, "depth": 200}),
                       ("classnet", {"width": 512, "n_classes": 100_000})):
        data = torch.load(folder / f"{kind}.pt", weights_only=True)
        data["arch"].update(arch)
        files.append(folder / f"{kind}-huge.pt")
        torch.save(data, files[-1])
    data = torch.load(folder / "light_anon.pt", weights_only=True)
    for key in ("bins", "polarities", "width", "height", "window_us", "channel_order"):
        for i, value in enumerate(ABSURD + ["x" * 10_000]):
            if key == "channel_order" and value == "5":  # a short string: a layout (unknown)
                continue
            data = torch.load(folder / "light_anon.pt", weights_only=True)
            data["representation"][key] = value
            files.append(folder / f"rep-{key}-{i}.pt")
            torch.save(data, files[-1])
        data = torch.load(folder / "light_anon.pt", weights_only=True)
        del data["representation"][key]
        files.append(folder / f"rep-no-{key}.pt")
        torch.save(data, files[-1])
    for i, value in enumerate(["x", 5, [[1]], {"bins": 5}]):
        data = torch.load(folder / "light_anon.pt", weights_only=True)
        data["representation"] = value
        files.append(folder / f"rep-{i}.pt")
        torch.save(data, files[-1])
        if not isinstance(value, dict):
            data = torch.load(folder / "light_anon.pt", weights_only=True)
            data["training"] = value
            files.append(folder / f"training-{i}.pt")
            torch.save(data, files[-1])
    data = torch.load(folder / "light_anon.pt", weights_only=True)
    data["representation"].update(bins=6)  # 12 channels for a net of 10
    files.append(folder / "rep-channels.pt")
    torch.save(data, files[-1])
    data = torch.load(folder / "light_anon.pt", weights_only=True)
    data["representation"].update(width=640)  # a size, with height "any"
    files.append(folder / "rep-half-size.pt")
    torch.save(data, files[-1])
    return files


def test_absurd_metadata_is_refused_before_anything_is_allocated(tmp_path):
    files = absurd_files(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _LOADER],
                          input=json.dumps(list(map(str, files))), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(files) > 300
    wrong = [r for r in results if r[1] != "CheckpointError" or "\n" in r[2]]
    assert not wrong, wrong[:10]
    by_name = {Path(p).name: message for p, _, message in results}
    assert "is not an integer from 1 to 1,024" in by_name["light_anon-arch-width-2.pt"]
    assert "weights do not fit a light_anon" in by_name["light_anon-huge.pt"]
    assert "weights do not fit a denoise" in by_name["denoise-huge.pt"]
    assert "bins 1000000000 is not an integer from 1 to 64" in by_name["rep-bins-2.pt"]
    assert "the net takes 10 channels but the representation has 12" in \
        by_name["rep-channels.pt"]
    assert all(len(message) < 600 for _, _, message in results)


def test_the_limits_cover_every_net_the_project_trains(tmp_path):
    nets = [LightAnonNet(10, form="mean_scale", width=8), LightAnonNet(10, width=16),
            PaperAnonNet(10, form="mean_scale"), ClassNet("resnet50", 11, 10),
            ClassNet("resnet18", 999, 10, width=16), ClassNet("resnet34", 33, 10, width=32),
            DenoiseNet(10, 128, 15), DenoiseNet(10, 16, 5)]
    reps = [Representation(bins=5, width=1280, height=720, window_us=50_000),
            Representation(bins=5, width=128, height=128, window_us=None), REP]
    for i, net in enumerate(nets):
        path = save_checkpoint(tmp_path / f"{i}.pt", net, reps[i % len(reps)])
        ckpt = load_checkpoint(path)
        assert ckpt.arch == net.arch()


# --- the command line


def limit_memory():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def anonynoise_command() -> list[str]:
    script = Path(sys.executable).with_name("anonynoise")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "anonynoise"]


@pytest.mark.parametrize("damage", ["flipped", "absurd-width", "absurd-bins", "unfit"])
def test_the_command_line_says_one_line_and_exits_2(tmp_path, damage):
    from anonynoise.events import make_events
    from anonynoise.io import save_npz

    save_npz(tmp_path / "in.npz", make_events([0, 1], [0, 3], [0, 1], [0, 1], 4, 4))
    model = tmp_path / "model.pt"
    if damage == "flipped":
        model.write_bytes(flip_bits(default_model().read_bytes(), 7, 20))
    else:
        data = shipped()
        if damage == "absurd-width":
            data["arch"]["width"] = 10**9
        elif damage == "absurd-bins":
            data["representation"]["bins"] = 10**9
        else:
            data["arch"]["width"] = 512
        torch.save(data, model)
    proc = subprocess.run([*anonynoise_command(), "anonymize", str(tmp_path / "in.npz"),
                           str(tmp_path / "out.npz"), "--model", str(model), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, preexec_fn=limit_memory)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anonynoise: error: "), proc.stderr
    assert str(model) in lines[0]
    assert not (tmp_path / "out.npz").exists()
