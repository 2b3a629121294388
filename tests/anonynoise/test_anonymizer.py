import numpy as np
import pytest
import torch

from anonynoise import represent
from anonynoise.anonymizer import AnonymizationRefused, Anonymizer, resolve_device
from anonynoise.checkpoint import CheckpointError, Representation, save_checkpoint
from anonynoise.events import EventBatch
from anonynoise.examples import clustered_stream
from anonynoise.io import open_events
from anonynoise.models import ClassNet, LightAnonNet, PaperAnonNet

WINDOW = 20_000


def strong_light_net(width=8):
    """An untrained light net whose scale is about 1 everywhere: clearly not near-identity."""
    torch.manual_seed(0)
    net = LightAnonNet(10, width=width)
    torch.nn.init.constant_(net.head.bias, 1.0)
    return net


@pytest.fixture(scope="module")
def strong_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "strong.pt"
    return save_checkpoint(path, strong_light_net(), Representation(window_us=WINDOW))


@pytest.fixture(scope="module")
def window():
    ev = clustered_stream(64, 48, duration_s=0.02, rate=1e6, seed=3)
    return ev, 0, WINDOW


def test_two_unseeded_runs_on_the_same_window_differ(strong_checkpoint, window):
    anon = Anonymizer(strong_checkpoint, "cpu")
    ev, t0, t1 = window
    a, b = anon.anonymize(ev, t0, t1), anon.anonymize(ev, t0, t1)
    assert not np.array_equal(a.tensor, b.tensor)
    assert len(a.events) != len(b.events) or not np.array_equal(a.events.x, b.events.x)
    assert anon.windows == 2 and anon.refused == 0


def test_seeded_runs_repeat_for_tests(strong_checkpoint, window):
    ev, t0, t1 = window
    a = Anonymizer(strong_checkpoint, "cpu", seed=7).anonymize(ev, t0, t1)
    b = Anonymizer(strong_checkpoint, "cpu", seed=7).anonymize(ev, t0, t1)
    assert np.array_equal(a.tensor, b.tensor) and np.array_equal(a.events.t, b.events.t)


def test_output_is_valid_events_of_the_window_and_sampled_from_the_tensor(strong_checkpoint,
                                                                          window):
    ev, t0, t1 = window
    out = Anonymizer(strong_checkpoint, "cpu").anonymize(ev, t0, t1)
    e = out.events
    EventBatch(e.t.copy(), e.x.copy(), e.y.copy(), e.p.copy(), 64, 48)  # re-validated
    assert np.all((e.t >= t0) & (e.t < t1))
    counts = represent.events_to_counts(e, t0, t1, 5)
    clamped = np.maximum(out.tensor, 0)
    assert np.all(counts >= np.floor(clamped)) and np.all(counts <= np.ceil(clamped))


def test_injected_nan_output_is_refused_and_counted(strong_checkpoint, window):
    anon = Anonymizer(strong_checkpoint, "cpu")
    ev, t0, t1 = window
    anon.net.head.bias.data[3] = float("nan")
    for _ in range(2):
        with pytest.raises(AnonymizationRefused, match="non-finite"):
            anon.anonymize(ev, t0, t1)
    assert anon.refused == 2 and anon.windows == 0


def test_a_failing_net_is_refused_not_passed_through(strong_checkpoint, window):
    anon = Anonymizer(strong_checkpoint, "cpu")

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    anon.net.predict = broken  # both the CPU and the GPU path run it
    ev, t0, t1 = window
    with pytest.raises(AnonymizationRefused, match="RuntimeError: CUDA out of memory"):
        anon.anonymize(ev, t0, t1)
    assert anon.refused == 1


def test_near_identity_checkpoint_is_refused_unless_forced(tmp_path, window):
    net = LightAnonNet(10, width=8)
    torch.nn.init.zeros_(net.head.weight)
    torch.nn.init.zeros_(net.head.bias)  # scale 0: the output is the input
    path = save_checkpoint(tmp_path / "identity.pt", net, Representation(window_us=WINDOW))
    with pytest.raises(CheckpointError, match="close to the raw events"):
        Anonymizer(path, "cpu")
    anon = Anonymizer(path, "cpu", allow_weak=True)
    assert anon.noise_strength == 0.0
    # behind filters that move every event its output is not the raw events: accepted, as the
    # filters alone are; behind slots alone (events kept where they were) it is not
    from anonynoise.filters import FilterConfig

    assert Anonymizer(path, "cpu", filters=FilterConfig("warp+jitter")).noise_strength == 0.0
    with pytest.raises(CheckpointError, match="close to the raw events"):
        Anonymizer(path, "cpu", filters=FilterConfig("slots+refractory"))


def test_checkpoint_kind_and_representation_are_checked(tmp_path):
    with pytest.raises(CheckpointError, match="expected paper_anon or light_anon"):
        Anonymizer(save_checkpoint(tmp_path / "c.pt", ClassNet("resnet18", 3, 10)), "cpu")
    with pytest.raises(CheckpointError, match="does not say which event representation"):
        Anonymizer(save_checkpoint(tmp_path / "n.pt", strong_light_net()), "cpu")
    with pytest.raises(CheckpointError, match="takes 10 channels but the representation has 6"):
        Anonymizer(save_checkpoint(tmp_path / "b.pt", strong_light_net(),
                                   Representation(bins=3)), "cpu")


def test_paper_net_runs_through_the_runtime(tmp_path, window):
    torch.manual_seed(0)
    net = PaperAnonNet(10, form="mean_scale")
    torch.nn.init.constant_(net.convs3[2].bias, 0.5)
    anon = Anonymizer(save_checkpoint(tmp_path / "p.pt", net, Representation()), "cpu",
                      channels_last=False)
    ev, t0, t1 = window
    assert len(anon.anonymize(ev, t0, t1).events) > 0


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(Exception, match="no CUDA GPU"):
            resolve_device("cuda")


def test_real_face_recording_every_window_anonymized(real_file, strong_checkpoint):
    anon = Anonymizer(strong_checkpoint, "cpu")
    with open_events(real_file("face_dvxplorer.aedat4")) as reader:
        from anonynoise.events import concatenate
        ev = concatenate(list(reader))
    t0 = int(ev.t[0])
    n_windows = (int(ev.t[-1]) - t0) // WINDOW
    assert n_windows == 29
    differences = []
    for k in range(n_windows):
        a, b = t0 + k * WINDOW, t0 + (k + 1) * WINDOW
        raw = ev.slice_time(a, b)
        out = anon.anonymize(raw, a, b)
        assert out.events.sensor_size == (320, 240)
        assert np.all((out.events.t >= a) & (out.events.t < b))
        raw_map = represent.events_to_counts(raw, a, b, 5).sum(axis=(0, 1))
        out_map = represent.events_to_counts(out.events, a, b, 5).sum(axis=(0, 1))
        differences.append(np.abs(out_map - raw_map).sum() / max(raw_map.sum(), 1))
    assert anon.windows == n_windows and anon.refused == 0
    assert min(differences) > 0.5  # every window's count map changed by over half its mass


def test_check_source_and_warm_up(tmp_path):
    rep = Representation(bins=5, width=64, height=48, window_us=WINDOW)
    path = save_checkpoint(tmp_path / "s.pt", strong_light_net(), rep)
    anon = Anonymizer(path, "cpu")
    anon.check_source(64, 48)
    with pytest.raises(CheckpointError, match="does not fit a 320x240 source: it was trained on a "
                                              "64x48 sensor"):
        anon.check_source(320, 240)
    with pytest.raises(CheckpointError, match="20 ms windows, not 50 ms"):
        Anonymizer(path, "cpu", window_us=50_000).check_source(64, 48)
    anon.warm_up(64, 48)
    assert anon.windows == 0 and anon.refused == 0


def test_cap_event_rate_scales_only_samples_over_the_cap():
    from anonynoise.anonymizer import cap_event_rate

    clean = torch.tensor([[[[1.0, 1.0]]], [[[2.0, 0.0]]], [[[0.0, 0.0]]]])  # masses 2, 2, 0
    noisy = torch.tensor([[[[4.0, -3.0]]], [[[10.0, 2.0]]], [[[0.5, 0.5]]]])  # 4, 12, 1
    out = cap_event_rate(noisy, clean, 3.0)
    assert torch.equal(out[0], noisy[0])                     # 4 <= 3 * 2: unchanged
    assert out[1].clamp(min=0).sum().item() == pytest.approx(6.0)  # 12 -> 3 * 2
    assert out[2].abs().sum().item() == 0.0                  # nothing in, nothing out
    assert cap_event_rate(noisy, clean, None) is noisy


def test_the_runtime_never_sends_more_than_the_cap(tmp_path, window):
    torch.manual_seed(0)
    loud = LightAnonNet(10, width=8)
    torch.nn.init.constant_(loud.head.bias, 5.0)  # about 5 events in every cell
    path = save_checkpoint(tmp_path / "loud.pt", loud, Representation(window_us=WINDOW))
    ev, t0, t1 = window
    capped = Anonymizer(path, "cpu", seed=1)
    free = Anonymizer(path, "cpu", seed=1, max_event_ratio=None)
    n_in = len(ev.slice_time(t0, t1))
    assert len(free.anonymize(ev, t0, t1).events) > 3.2 * n_in
    out = capped.anonymize(ev, t0, t1)
    assert np.maximum(out.tensor, 0).sum() == pytest.approx(2.9 * n_in, rel=1e-4)
    assert len(out.events) <= 3 * n_in


def test_a_suppress_net_runs_through_torch_on_the_cpu(tmp_path):
    """The fused CPU kernel knows the two additive forms; a suppress net still anonymizes
    (through the net's own forward), its output the net's for the same noise draw."""
    torch.manual_seed(0)
    net = LightAnonNet(10, form="suppress", width=8, sampling="pool")
    torch.nn.init.constant_(net.head.bias, 0.5)  # half of each event kept, noise at 0.5
    anon = Anonymizer(save_checkpoint(tmp_path / "s.pt", net, Representation()), "cpu",
                      seed=3, max_event_ratio=None, channels_last=False)
    counts = np.random.default_rng(0).poisson(0.3, (5, 2, 24, 32)).astype(np.float32)
    out = anon.anonymize_tensor(counts)
    assert out.shape == counts.shape and anon.refused == 0 and anon.windows == 1
    anon.windows = 0  # the same draw again, straight through the net
    anon._reseed()
    with torch.no_grad():
        expected = anon.net(torch.from_numpy(counts).reshape(1, 10, 24, 32),
                            generator=anon._generators)
    assert np.allclose(out, expected.reshape(counts.shape).numpy(), atol=1e-5)
    assert not np.allclose(out, counts)
