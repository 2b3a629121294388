"""train/augment.py: torchvision's RandomCrop / RandomRotation / RandomHorizontalFlip / Resize
redone with torch on (N, C, H, W) batches, parameters drawn per sample and shared by channels."""

import math

import pytest
import torch
import torch.nn.functional as F

from train.augment import (Augmentation, _affine, dvsgesture_augmentation, random_crop,
                           random_hflip, random_rotation, resize, see_augmentation,
                           shift_and_rotate)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def distinct(n, c, h, w):
    """A batch whose every value is different and non-zero (so windows can be located)."""
    return torch.arange(1, n * c * h * w + 1, dtype=torch.float32).reshape(n, c, h, w)


def find_window(padded, out):
    """The (top, left) offsets where `out` (C, h, w) sits in `padded` (C, H, W), or None."""
    h, w = out.shape[-2:]
    hits = [(a, b) for a in range(padded.shape[-2] - h + 1)
            for b in range(padded.shape[-1] - w + 1)
            if torch.equal(padded[:, a:a + h, b:b + w], out)]
    assert len(hits) <= 1
    return hits[0] if hits else None


def centred_blob(n=1, c=2, size=33, radius=6):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mid = (size - 1) / 2
    blob = (((yy - mid) ** 2 + (xx - mid) ** 2) <= radius ** 2).float()
    return (blob * (1 + (yy % 3).float()))[None, None].repeat(n, c, 1, 1)


# ------------------------------------------------------------------------------ random_crop


def test_random_crop_is_a_window_of_the_zero_padded_input_shared_by_channels():
    x = distinct(12, 3, 6, 7)
    out = random_crop(x, gen(1), (5, 4), padding=2)
    assert out.shape == (12, 3, 5, 4)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        # all three channels must come from the same place (find_window compares all at once)
        assert find_window(padded[i], out[i]) is not None
        for ch in range(3):
            assert find_window(padded[i, ch:ch + 1], out[i, ch:ch + 1]) == \
                find_window(padded[i], out[i])


def test_random_crop_offsets_vary_and_cover_the_whole_range():
    x = distinct(400, 1, 4, 4)
    out = random_crop(x, gen(2), 4, padding=2)  # offsets 0..4 each way
    padded = F.pad(x, (2, 2, 2, 2))
    offsets = [find_window(padded[i], out[i]) for i in range(len(x))]
    assert None not in offsets
    assert {a for a, _ in offsets} == set(range(5))
    assert {b for _, b in offsets} == set(range(5))
    assert len(set(offsets)) == 25


def test_random_crop_without_padding_and_full_size_is_identity():
    x = distinct(3, 2, 5, 6)
    assert torch.equal(random_crop(x, gen(), (5, 6)), x)


def test_random_crop_is_reproducible_with_the_same_seed():
    x = distinct(20, 2, 8, 8)
    assert torch.equal(random_crop(x, gen(7), 6, 3), random_crop(x, gen(7), 6, 3))
    assert not torch.equal(random_crop(x, gen(7), 6, 3), random_crop(x, gen(8), 6, 3))


def test_random_crop_larger_than_padded_input_is_refused():
    x = torch.zeros(2, 1, 6, 6)
    with pytest.raises(ValueError, match="larger than the padded input"):
        random_crop(x, gen(), 11, padding=2)
    assert random_crop(x, gen(), 10, padding=2).shape == (2, 1, 10, 10)  # just fits


# ------------------------------------------------------------------------------ random_hflip


def test_random_hflip_p0_and_p1_are_exact():
    x = distinct(5, 2, 3, 4)
    assert torch.equal(random_hflip(x, gen(), p=0.0), x)
    assert torch.equal(random_hflip(x, gen(), p=1.0), x.flip(-1))


def test_random_hflip_flips_about_half_whole_samples():
    x = distinct(400, 2, 3, 4)
    out = random_hflip(x, gen(3), p=0.5)
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(len(x))])
    assert torch.all(flipped ^ kept)  # each sample, all channels together, one or the other
    assert 150 < int(flipped.sum()) < 250


def test_random_hflip_same_seed_same_flips():
    x = distinct(50, 1, 2, 3)
    assert torch.equal(random_hflip(x, gen(9)), random_hflip(x, gen(9)))
    assert not torch.equal(random_hflip(x, gen(9)), random_hflip(x, gen(10)))


# ------------------------------------------------------------------------------ rotation


def test_random_rotation_zero_degrees_is_identity():
    x = distinct(4, 3, 7, 9)
    assert torch.equal(random_rotation(x, gen(), degrees=0.0), x)


@pytest.mark.parametrize("size", [(8, 8), (9, 9)])
def test_rotation_by_90_degrees_is_rot90_counter_clockwise(size):
    # torchvision's convention: a positive angle turns the image counter-clockwise
    x = distinct(2, 2, *size)
    out = _affine(x, torch.full((2,), math.pi / 2), torch.zeros(2, 2))
    assert torch.equal(out, torch.rot90(x, 1, dims=(-2, -1)))
    back = _affine(x, torch.full((2,), -math.pi / 2), torch.zeros(2, 2))
    assert torch.equal(back, torch.rot90(x, -1, dims=(-2, -1)))


def test_rotation_of_a_non_square_input_keeps_lengths():
    # a horizontal bar 10 long, 2 thick, centred in a 20 x 40 image becomes, turned by 90
    # degrees, a vertical bar 10 long, 2 thick, centred: the aspect ratio is accounted for
    x = torch.zeros(1, 1, 20, 40)
    x[0, 0, 9:11, 15:25] = 1
    out = _affine(x, torch.tensor([math.pi / 2]), torch.zeros(1, 2))
    assert out.shape == x.shape
    expected = torch.zeros(1, 1, 20, 40)
    expected[0, 0, 5:15, 19:21] = 1
    assert torch.equal(out, expected)


def test_small_rotation_of_a_non_square_bar_stays_a_bar():
    x = torch.zeros(1, 1, 32, 64)
    x[0, 0, 15:17, 17:47] = 1  # 30 long, 2 thick, centred
    out = _affine(x, torch.tensor([math.radians(5)]), torch.zeros(1, 2))
    assert out.shape == x.shape
    assert abs(float(out.sum()) - 60) <= 6
    rows = torch.nonzero(out[0, 0].sum(1)).flatten()
    cols = torch.nonzero(out[0, 0].sum(0)).flatten()
    width = int(cols.max() - cols.min() + 1)
    height = int(rows.max() - rows.min() + 1)
    assert 28 <= width <= 32  # about the bar's length
    assert 4 <= height <= 8  # 30 * sin(5 deg) + 2 = 4.6: tilted, not squashed or stretched
    assert abs((rows.min() + rows.max()) / 2 - 15.5) <= 1  # still centred
    assert abs((cols.min() + cols.max()) / 2 - 31.5) <= 1


@pytest.mark.parametrize("degrees", [15.0, -15.0])
def test_rotation_by_the_extreme_angle_keeps_counts_and_values(degrees):
    x = centred_blob()
    out = _affine(x, torch.tensor([math.radians(degrees)]), torch.zeros(1, 2))
    assert abs(float(out.sum()) - float(x.sum())) <= 0.1 * float(x.sum())
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0.0}
    assert not torch.equal(out, x)  # it did turn


def test_random_rotation_values_come_from_the_input_and_channels_move_together():
    x = centred_blob(n=16, c=2)
    x[:, 1] *= 10  # channel 1 = 10 x channel 0
    out = random_rotation(x, gen(4), 15.0)
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0.0}
    assert torch.equal(out[:, 1], 10 * out[:, 0])
    sums = out.sum((1, 2, 3))
    assert torch.all((sums - x.sum((1, 2, 3))).abs() <= 0.1 * x.sum((1, 2, 3)))


def test_random_rotation_angles_are_per_sample_within_the_range_both_ways():
    # one pixel at radius 12 right of the centre: where it lands tells the angle
    size = 33
    x = torch.zeros(300, 1, size, size)
    x[:, 0, 16, 28] = 1
    out = random_rotation(x, gen(5), 15.0)
    angles = []
    for i in range(len(out)):
        ys, xs = torch.nonzero(out[i, 0], as_tuple=True)
        assert len(ys) >= 1
        # counter-clockwise on screen (y down) is a negative y offset
        angles.append(math.degrees(math.atan2(-(float(ys.float().mean()) - 16),
                                              float(xs.float().mean()) - 16)))
    assert max(abs(a) for a in angles) <= 15 + 5  # nearest pixel: a few degrees slack
    assert min(angles) < -10 and max(angles) > 10
    assert len({round(a) for a in angles}) > 10  # not one angle for the batch


# ------------------------------------------------------------------------------ shift_and_rotate


def test_shift_and_rotate_without_shift_or_rotation_is_identity():
    x = distinct(3, 2, 6, 10)
    assert torch.equal(shift_and_rotate(x, gen(), padding=0, degrees=0.0), x)


def test_shift_and_rotate_without_rotation_is_a_padded_crop_covering_the_range():
    x = distinct(300, 2, 5, 5)
    out = shift_and_rotate(x, gen(6), padding=2, degrees=0.0)
    padded = F.pad(x, (2, 2, 2, 2))
    offsets = [find_window(padded[i], out[i]) for i in range(len(x))]
    assert None not in offsets
    assert {a for a, _ in offsets} == set(range(5))
    assert {b for _, b in offsets} == set(range(5))


# ------------------------------------------------------------------------------ resize


def test_resize_nearest_integer_upscale_replicates_pixels():
    x = distinct(2, 3, 4, 5)
    out = resize(x, (8, 15), "nearest")
    assert torch.equal(out, x.repeat_interleave(2, -2).repeat_interleave(3, -1))
    out = resize(x[:, :, :4, :4], 12, "nearest")
    assert torch.equal(out, x[:, :, :4, :4].repeat_interleave(3, -2).repeat_interleave(3, -1))


def test_resize_nearest_keeps_counts_as_counts():
    x = torch.randint(0, 4, (2, 2, 9, 7), generator=gen(3)).float()
    out = resize(x, (20, 13), "nearest")
    assert out.shape == (2, 2, 20, 13)
    assert set(out.unique().tolist()) <= set(x.unique().tolist())


def test_resize_bilinear_to_the_same_size_returns_the_input():
    x = torch.rand(2, 3, 6, 7, generator=gen())
    assert torch.equal(resize(x, (6, 7), "bilinear"), x)
    assert torch.equal(resize(x[:, :, :6, :6], 6), x[:, :, :6, :6])


def test_resize_bilinear_shrink_antialiases():
    # one line in four: without antialiasing a 4x shrink samples between the lines (all 0)
    x = torch.zeros(1, 2, 64, 64)
    x[..., ::4] = 1
    out = resize(x, 16, "bilinear")
    assert out.shape == (1, 2, 16, 16)
    assert abs(float(out.mean()) - 0.25) < 0.02
    assert float(out.std()) < 0.05  # smoothed out, not aliased into stripes


def test_resize_bilinear_shrink_keeps_the_mean_of_counts():
    x = torch.randint(0, 5, (2, 4, 60, 90), generator=gen(2)).float()
    out = resize(x, (20, 30), "bilinear")
    assert out.shape == (2, 4, 20, 30)
    assert torch.allclose(out.mean((-2, -1)), x.mean((-2, -1)), atol=0.05)


def test_resize_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        resize(torch.zeros(1, 1, 4, 4), 8, "bicubic")


# ------------------------------------------------------------------------------ compositions


def test_augmentation_applies_its_steps_in_order_with_the_generator():
    seen = []

    def add(x, g):
        seen.append(g)
        return x + 1

    def double(x, g):
        seen.append(g)
        return x * 2

    g = gen()
    x = torch.ones(1, 1, 2, 2)
    assert torch.equal(Augmentation((add, double), "t")(x, g), torch.full_like(x, 4.0))
    assert torch.equal(Augmentation((double, add), "t")(x, g), torch.full_like(x, 3.0))
    assert seen == [g] * 4
    assert torch.equal(Augmentation()(x, g), x) and Augmentation().name == "none"


def test_dvsgesture_augmentation_pads_a_twelfth_and_keeps_the_shape():
    aug = dvsgesture_augmentation(128)
    assert "pad 10" in aug.name and "15" in aug.name
    x = centred_blob(n=4, c=10, size=128, radius=30)
    out = aug(x, gen())
    assert out.shape == x.shape
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0.0}
    assert not torch.equal(out, x)
    assert "pad 1)" in dvsgesture_augmentation(8).name  # never 0


def test_see_augmentation_crops_to_its_size():
    aug = see_augmentation(size=24, padding=2)
    assert "crop 24 pad 2" in aug.name
    out = aug(torch.rand(3, 10, 30, 28, generator=gen()), gen())
    assert out.shape == (3, 10, 24, 24)
