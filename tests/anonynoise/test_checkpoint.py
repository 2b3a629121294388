import numpy as np
import pytest
import torch

from anonynoise.checkpoint import (
    CheckpointError,
    Representation,
    load_checkpoint,
    load_net,
    reference_checkpoint,
    save_checkpoint,
)
from anonynoise.models import ClassNet, DenoiseNet, LightAnonNet, PaperAnonNet

REP = Representation(bins=5, width=None, height=None, window_us=20_000)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("net", [
    PaperAnonNet(10, noise_std=0.5, form="mean_scale"), LightAnonNet(10, width=8),
    ClassNet("resnet18", 6, 10), ClassNet("resnet18", 6, 10, width=16),
    DenoiseNet(10, width=16, depth=5)], ids=lambda n: n.kind + "-" + str(n.arch().get("width")))
def test_save_and_load_gives_the_same_net(tmp_path, net):
    path = save_checkpoint(tmp_path / "n.pt", net, REP,
                           {"stage": "test", "epochs": np.int64(3), "acc": np.float32(0.5)})
    raw = torch.load(path, weights_only=True)  # plain types only: weights_only accepts it
    assert raw["training"] == {"stage": "test", "epochs": 3, "acc": 0.5}
    assert raw["representation"]["window_us"] == 20_000 and raw["representation"]["width"] == "any"
    ckpt = load_checkpoint(path)
    assert ckpt.kind == net.kind and ckpt.arch == net.arch() and ckpt.representation == REP
    rebuilt = ckpt.build()
    assert type(rebuilt) is type(net) and same_weights(rebuilt, net) and not rebuilt.training


def test_noise_form_is_recorded(tmp_path):
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "m.pt", PaperAnonNet(form="mean_scale")))
    assert ckpt.arch["form"] == "mean_scale"


def test_whole_sample_representation_round_trips(tmp_path):
    rep = Representation(bins=5, width=128, height=128, window_us=None)
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "w.pt", LightAnonNet(), rep))
    assert ckpt.representation.window_us is None
    assert torch.load(tmp_path / "w.pt", weights_only=True)["representation"]["window_us"] == \
        "whole sample"


def test_representation_mismatch_reasons():
    rep = Representation(bins=5, width=128, height=128, window_us=20_000)
    assert rep.mismatch(128, 128, 5, 20_000) is None
    assert "128x128 sensor, not 320x240" in rep.mismatch(320, 240)
    assert "5 bins, not 10" in rep.mismatch(128, 128, bins=10)
    assert "20 ms windows, not 50 ms" in rep.mismatch(128, 128, window_us=50_000)
    assert Representation().mismatch(640, 480, 5, 33_000) is None  # any size, whole samples


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    good = save_checkpoint(tmp_path / "good.pt", LightAnonNet(), REP)
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="is a light_anon checkpoint, expected classnet"):
        load_checkpoint(good, "classnet")
    torch.save({"format": "anonynoise-checkpoint", "version": 99}, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="version 99 is not supported"):
        load_checkpoint(tmp_path / "v99.pt")
    torch.save(LightAnonNet().state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="not an AnonyNoise checkpoint"):
        load_checkpoint(tmp_path / "bare.pt")


def test_unsafe_pickles_are_refused(tmp_path):
    torch.save({"format": "anonynoise-checkpoint", "evil": object()}, tmp_path / "p.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "p.pt")


def test_weights_that_do_not_fit_the_arch(tmp_path):
    path = save_checkpoint(tmp_path / "l.pt", LightAnonNet(width=8), REP)
    data = torch.load(path, weights_only=True)
    data["arch"]["width"] = 16
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="weights do not fit a light_anon"):
        load_checkpoint(path).build()


def test_non_plain_metadata_is_refused_before_writing(tmp_path):
    with pytest.raises(CheckpointError, match="not a plain Python type"):
        save_checkpoint(tmp_path / "x.pt", LightAnonNet(), REP, {"when": object()})
    assert not list(tmp_path.iterdir())



def test_numpy_metrics_are_saved_as_python_numbers(tmp_path):
    # np.float64 is a subclass of float, so a metric computed with numpy once slipped through
    # and the checkpoint was then refused by the weights-only loader
    record = {"rank1": np.float64(0.5), "n": np.int64(3), "ok": np.bool_(True),
              "name": np.str_("a"), "per_span": [np.float32(0.25)]}
    path = save_checkpoint(tmp_path / "m.pt", LightAnonNet(width=8), REP, record)
    loaded = load_checkpoint(path).training
    assert loaded == {"rank1": 0.5, "n": 3, "ok": True, "name": "a", "per_span": [0.25]}
    assert [type(v) for v in loaded.values()][:4] == [float, int, bool, str]

# --- the reference's own state dicts, with its module names and wrapper prefixes


def prefixed(net, prefix):
    return {f"{prefix}{k}": v for k, v in net.state_dict().items()}


def test_reference_anonnet_state_dict_loads(tmp_path):
    ref = PaperAnonNet(10)
    torch.save(ref.state_dict(), tmp_path / "anon.pth")
    net, ckpt = load_net(tmp_path / "anon.pth", ("paper_anon", "light_anon"))
    assert isinstance(net, PaperAnonNet) and same_weights(net, ref)
    assert ckpt.arch == {"channels": 10, "noise_std": 1.0, "form": "scale"}


def test_reference_pipeline_file_needs_a_role(tmp_path):
    anon, idnet, target = PaperAnonNet(10), ClassNet("resnet18", 23, 10), ClassNet("resnet18", 11, 10)
    sd = {**prefixed(anon, "anonnet."), **prefixed(idnet, "idnet."), **prefixed(target, "targetnet.")}
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 299},
               tmp_path / "pipeline.ckpt")
    with pytest.raises(CheckpointError, match="several classnet nets"):
        load_net(tmp_path / "pipeline.ckpt", "classnet")
    net, ckpt = load_net(tmp_path / "pipeline.ckpt", "classnet", role="idnet")
    assert same_weights(net, idnet) and ckpt.arch["n_classes"] == 23
    net, _ = load_net(tmp_path / "pipeline.ckpt", "classnet", role="targetnet")
    assert same_weights(net, target) and net.n_classes == 11
    net, _ = load_net(tmp_path / "pipeline.ckpt", "paper_anon")
    assert same_weights(net, anon)


@pytest.mark.parametrize("network", ["resnet18", "resnet34", "resnet50"])
def test_reference_classnet_detects_the_depth(tmp_path, network):
    ref = ClassNet(network, 7, 10)
    torch.save(ref.state_dict(), tmp_path / "c.pth")
    ckpt = reference_checkpoint(tmp_path / "c.pth", "classnet")
    assert ckpt.arch == {"network": network, "n_classes": 7, "input_channels": 10}
    assert same_weights(ckpt.build(), ref)


def test_reference_post_training_file_with_denoiser(tmp_path):
    anon, cls, den = PaperAnonNet(10), ClassNet("resnet18", 6, 10), DenoiseNet(10)
    sd = {**prefixed(anon, "anonnet."), **prefixed(cls, "classnet."), **prefixed(den, "denoisenet.")}
    torch.save(sd, tmp_path / "post.pth")
    net, ckpt = load_net(tmp_path / "post.pth", "denoise")
    assert same_weights(net, den) and ckpt.arch == {"channels": 10, "width": 128, "depth": 15}
    assert same_weights(load_net(tmp_path / "post.pth", "classnet")[0], cls)


def test_reference_file_without_the_asked_net(tmp_path):
    torch.save(DenoiseNet(10, 8, 3).state_dict(), tmp_path / "d.pth")
    with pytest.raises(CheckpointError, match=r"holds no classnet weights \(it holds: denoise\)"):
        load_net(tmp_path / "d.pth", "classnet")


def test_a_bare_reference_state_dict_loads_whatever_role_is_asked(tmp_path):
    from anonynoise.models import PaperAnonNet

    torch.save(PaperAnonNet(10).state_dict(), tmp_path / "e299_last_epoch_weights.pth")
    net, ckpt = load_net(tmp_path / "e299_last_epoch_weights.pth", "paper_anon", role="anonnet")
    assert ckpt.kind == "paper_anon" and net.channels == 10
