import pytest
import torch

from anonynoise.models import ClassNet, DenoiseNet, LightAnonNet, PaperAnonNet, build_model


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_paper_net_parameter_count_and_reference_names():
    net = PaperAnonNet(channels=10)
    assert n_params(net) == 755_210  # 6 convs: 20-64-128-256-128-64-10, with biases
    assert {k.split(".")[0] for k in net.state_dict()} == {"convs1", "convs2", "convs3"}
    assert net.convs3[2].out_channels == 10
    assert PaperAnonNet(channels=10, form="mean_scale").convs3[2].out_channels == 20


@pytest.mark.parametrize("cls", [PaperAnonNet, LightAnonNet])
@pytest.mark.parametrize("form", ["scale", "mean_scale"])
def test_output_is_x_plus_scale_times_the_drawn_noise(cls, form):
    torch.manual_seed(0)
    net = cls(channels=10, noise_std=0.7, form=form).eval()
    x = torch.rand(2, 10, 21, 34) * 3  # a size that is no multiple of anything
    with torch.no_grad():
        out = net.forward_parts(x)
    assert out.anonymized.shape == x.shape == out.scale.shape == out.noise.shape
    expected = x + out.scale * out.noise + (out.mean if form == "mean_scale" else 0)
    assert torch.allclose(out.anonymized, expected, atol=1e-6)
    assert (out.mean is None) == (form == "scale")
    assert 0.5 < out.noise.std() < 0.9  # N(0, 0.7^2)
    # the same noise given explicitly gives the same output: s depends on cat(x, n)
    with torch.no_grad():
        again = net(x, noise=out.noise)
    assert torch.allclose(again, out.anonymized, atol=1e-5)


@pytest.mark.parametrize("cls", [PaperAnonNet, LightAnonNet])
def test_a_net_started_as_the_identity_returns_its_input_until_trained(cls):
    torch.manual_seed(0)
    net = cls(channels=10, form="mean_scale").start_as_identity()
    x = torch.rand(2, 10, 21, 34) * 3
    assert torch.equal(net(x), x)  # whatever noise was drawn
    fresh = cls(channels=10, form="mean_scale")
    assert not torch.equal(fresh(x), x)  # a default initialisation is not
    # one step of any loss moves it (the zero layer gets a gradient, the rest then follows)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    (net(x) - 1).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(net(x), x)


def test_noise_is_per_pixel_at_full_resolution_in_the_light_net():
    torch.manual_seed(1)
    net = LightAnonNet(channels=10).eval()
    torch.nn.init.constant_(net.head.bias, 1.0)
    x = torch.zeros(1, 10, 16, 16)
    with torch.no_grad():
        out = net.forward_parts(x)
    delta = out.anonymized - x
    # neighbouring pixels differ: the noise is not shared by a 2x2 or 8x8 block
    assert (delta[..., 0::2, :] - delta[..., 1::2, :]).abs().min() > 0
    assert (delta[..., :, 0::2] - delta[..., :, 1::2]).abs().mean() > 0.3


def test_generator_makes_noise_reproducible_and_default_draws_differ():
    net = LightAnonNet().eval()
    x = torch.rand(1, 10, 24, 24)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    with torch.no_grad():
        assert torch.equal(net(x, generator=g1), net(x, generator=g2))
        assert not torch.equal(net(x), net(x))


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected input \(N, 10, H, W\)"):
        LightAnonNet()(torch.zeros(1, 8, 16, 16))


@pytest.mark.parametrize("network, params", [("resnet18", 11_176_512), ("resnet34", 21_284_672),
                                             ("resnet50", 23_508_032)])
def test_classnet_backbones_match_torchvision_sizes(network, params):
    # torchvision's ResNet parameter counts without the fc layer, for 3 input channels
    net = ClassNet(network, n_classes=11, input_channels=3)
    assert n_params(net.backbone) == params


@pytest.mark.parametrize("network, pooled", [("resnet18", 512), ("resnet50", 2048)])
def test_classnet_outputs_and_batch_one_in_eval(network, pooled):
    net = ClassNet(network, n_classes=7, input_channels=10).eval()
    with torch.no_grad():
        logits, emb, pool = net(torch.rand(1, 10, 64, 48))
    assert logits.shape == (1, 7) and emb.shape == (1, 512) and pool.shape == (1, pooled)
    head = net.linear_block
    assert isinstance(head[1], torch.nn.BatchNorm1d) and head[2].negative_slope == 0.5
    assert head[3].p == 0.5


def test_a_narrow_classnet_scales_every_stage_and_records_its_width():
    net = ClassNet("resnet18", n_classes=7, input_channels=10, width=16).eval()
    convs = [m for m in net.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].out_channels == 16 and convs[-1].out_channels == 128
    with torch.no_grad():
        logits, emb, pool = net(torch.rand(2, 10, 48, 48))
    assert logits.shape == (2, 7) and emb.shape == (2, 512) and pool.shape == (2, 128)
    # a quarter of the channels: about a sixteenth of the weights of the ResNet's own width
    assert 15 < n_params(ClassNet("resnet18").backbone) / n_params(net.backbone) < 17
    assert net.arch()["width"] == 16 and "width" not in ClassNet("resnet18").arch()
    with pytest.raises(ValueError, match="ImageNet weights are for the ResNet's width 64"):
        net.load_torchvision({})
    with pytest.raises(ValueError, match="width must be positive"):
        ClassNet("resnet18", width=0)


def test_classnet_from_torchvision_state_dict_maps_the_first_conv_like_the_reference():
    donor = ClassNet("resnet18", 5, input_channels=3)
    tv = {}  # a torchvision-named state dict built from the donor's backbone
    names = {0: "conv1", 1: "bn1", 4: "layer1", 5: "layer2", 6: "layer3", 7: "layer4"}
    for key, value in donor.backbone.state_dict().items():
        index, _, rest = key.partition(".")
        tv[f"{names[int(index)]}.{rest}"] = value
    tv["fc.weight"], tv["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    net = ClassNet("resnet18", 11, input_channels=10)
    net.load_torchvision(tv)
    w, rgb = net.backbone[0].weight, tv["conv1.weight"]
    assert w.shape == (64, 10, 7, 7)
    for i in range(10):
        assert torch.equal(w[:, i], rgb[:, i % 3])
    assert torch.equal(net.backbone[4][1].conv2.weight, tv["layer1.1.conv2.weight"])
    with pytest.raises(ValueError, match="unexpected key"):
        net.load_torchvision({"head.weight": torch.zeros(1)})


def test_classnet_from_a_torchvision_file(tmp_path):
    donor = ClassNet("resnet18", 5, input_channels=3)
    names = {0: "conv1", 1: "bn1", 4: "layer1", 5: "layer2", 6: "layer3", 7: "layer4"}
    tv = {}
    for key, value in donor.backbone.state_dict().items():
        index, _, rest = key.partition(".")
        tv[f"{names[int(index)]}.{rest}"] = value
    torch.save(tv, tmp_path / "resnet18.pth")
    net = ClassNet("resnet18", 11, input_channels=3)
    net.load_torchvision(tmp_path / "resnet18.pth")
    assert torch.equal(net.backbone[0].weight, tv["conv1.weight"])


def test_denoise_net_reference_size_and_arguments():
    assert n_params(DenoiseNet(10)) == 1_945_098
    small = DenoiseNet(10, width=16, depth=4)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in small.modules()) == 4
    assert small(torch.rand(2, 10, 9, 11)).shape == (2, 10, 9, 11)


def test_build_model_by_kind():
    net = build_model("light_anon", {"channels": 6, "noise_std": 1.0, "form": "scale",
                                     "width": 8})
    assert isinstance(net, LightAnonNet) and net.arch()["width"] == 8
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("unet", {})


@pytest.mark.parametrize("inference", [False, True])
def test_several_generators_draw_parts_of_a_large_window_in_parallel(inference):
    from anonynoise.models.noise import PARALLEL_NOISE_MIN, fill_normal, noise_generators

    n = 2 * PARALLEL_NOISE_MIN + 7  # large enough for the parallel path, parts of unequal size

    def draw(seeds):
        gens = noise_generators(len(seeds))
        for g, s in zip(gens, seeds):
            g.manual_seed(s)
        with torch.inference_mode(inference):
            return fill_normal(torch.empty(n), 0.5, gens).clone()

    a, b = draw([1, 2]), draw([1, 2])
    assert torch.equal(a, b)  # the seeds decide, not the threads' timing
    # each part is its generator's own stream: part 0 is what generator 1 alone draws first
    alone = torch.empty(n - n // 2).normal_(0.0, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[: len(alone)], alone)
    assert not torch.equal(a, draw([1, 3]))
    assert abs(float(a.mean())) < 0.005 and abs(float(a.std()) - 0.5) < 0.005
    # a small tensor is drawn by the first generator alone
    small = fill_normal(torch.empty(100), 1.0, noise_generators(2))
    assert torch.isfinite(small).all()


def test_uniforms_fill_a_channels_last_tensor_in_parallel_in_its_own_layout():
    from anonynoise.models.noise import PARALLEL_NOISE_MIN, fill_uniform, noise_generators

    def draw(seeds):
        gens = noise_generators(len(seeds))
        for g, s in zip(gens, seeds):
            g.manual_seed(s)
        out = torch.empty(16, 10, 48, 48).contiguous(memory_format=torch.channels_last)
        assert out.numel() > 2 * PARALLEL_NOISE_MIN
        return fill_uniform(out, gens)

    a = draw([1, 2])
    assert a.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, draw([1, 2])) and not torch.equal(a, draw([1, 3]))
    assert float(a.min()) >= 0.0 and float(a.max()) < 1.0
    assert abs(float(a.mean()) - 0.5) < 0.005
    # the first part, in memory order, is the first generator's own stream
    memory_order = a.permute(0, 2, 3, 1).reshape(-1)
    alone = torch.empty(a.numel() // 2).uniform_(generator=torch.Generator().manual_seed(1))
    assert torch.equal(memory_order[: len(alone)], alone)
    with pytest.raises(ValueError, match="contiguous or channels-last"):
        fill_uniform(torch.empty(4, 4).t(), noise_generators(2))


def test_the_runtime_draws_a_vga_window_with_one_generator_per_thread(tmp_path):
    """A 640x480 window (3 M noise values, the parallel path) under inference mode, as the
    runtime runs it; a fixed seed reproduces it."""
    import numpy as np

    from anonynoise.anonymizer import Anonymizer
    from anonynoise.checkpoint import Representation, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path / "light.pt"
    save_checkpoint(path, LightAnonNet(10), Representation(bins=5, polarities=2, width=640,
                                                            height=480, window_us=50_000))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        counts = np.random.default_rng(0).poisson(0.2, (5, 2, 480, 640)).astype(np.float32)
        a = Anonymizer(path, "cpu", seed=5, allow_weak=True)
        b = Anonymizer(path, "cpu", seed=5, allow_weak=True)
        assert len(a._generators) == 2
        ya, yb = a.anonymize_tensor(counts), b.anonymize_tensor(counts)
        assert np.array_equal(ya, yb) and np.isfinite(ya).all()
        assert not np.array_equal(ya, a.anonymize_tensor(counts))  # the next window's noise
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("sampling", ["stride", "pool"])
def test_the_suppress_form_deletes_a_share_of_the_input_and_adds_scaled_noise(sampling):
    """x * clamp(1 - d, 0, 1) + s * n: an identity start keeps every event; a deletion map
    of 1 removes the input where it is and nothing else; the pool net's deletion is the same
    for both polarities of a pixel and bin."""
    torch.manual_seed(0)
    net = LightAnonNet(10, form="suppress", width=8, sampling=sampling).start_as_identity()
    assert net.out_channels == 20
    x = torch.rand(2, 10, 21, 34) * 3
    assert torch.equal(net(x), x)
    with torch.no_grad():  # deletion everywhere, no noise: nothing is left
        net.head.bias.zero_()
        net.head.bias[: net.head.out_channels // 2] = 1.0
        assert torch.equal(net(x), torch.zeros_like(x))
        net.head.bias[: net.head.out_channels // 2] = 0.25  # keep three quarters
        assert torch.allclose(net(x), 0.75 * x)
    torch.manual_seed(1)
    net = LightAnonNet(10, form="suppress", width=8, sampling=sampling).eval()
    with torch.no_grad():
        out = net.forward_parts(x)
    assert out.mean is None and out.keep is not None
    assert 0 <= out.keep.min() and out.keep.max() <= 1
    assert torch.allclose(out.anonymized, x * out.keep + out.scale * out.noise, atol=1e-6)
    if sampling == "pool":  # channels in (bin, polarity) order: ON and OFF share a keep
        assert torch.equal(out.keep[:, 0::2], out.keep[:, 1::2])
    # the zeroed layer still learns through the clamp's bound
    net = LightAnonNet(10, form="suppress", width=8, sampling=sampling).start_as_identity()
    net(x).sum().backward()
    assert net.head.bias.grad[: net.head.out_channels // 2].abs().sum() > 0

