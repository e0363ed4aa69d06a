"""Test-time inference against hand computations: mmcv's imrescale + AlignResize sizes, mmseg's slide windows,
slide = whole where it must be, slide logit averaging, flip and multi-scale probability averaging."""
import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from lsnet.segmentation import semantic_fpn
from lsnet.segmentation.inference import resized_size, segment, slide_windows

PLAIN = dict(short_side=None, size_divisor=None)  # no test-time resize


class PerPixel(nn.Module):
    """A 'segmenter' whose logits at a pixel depend on that pixel only (a 1x1 conv); records its input sizes."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return OrderedDict(out=self.conv(x))


class CropMean(nn.Module):
    """Two-class logits (mean of the crop's first channel, 0), constant over the crop."""

    def forward(self, x):
        mean = x[:, :1].mean(dim=(2, 3), keepdim=True).expand(-1, -1, *x.shape[-2:])
        return OrderedDict(out=torch.cat([mean, torch.zeros_like(mean)], 1))


class ColumnRamp(nn.Module):
    """Two-class logits (column index, 0): not flip-equivariant."""

    def forward(self, x):
        ramp = torch.arange(x.shape[-1], dtype=x.dtype).expand(x.shape[0], 1, *x.shape[-2:])
        return OrderedDict(out=torch.cat([ramp, torch.zeros_like(ramp)], 1))


def test_resized_size_is_mmcv_imrescale_then_align_resize():
    # 375x500 to (2048, 512): factor min(2048 / 500, 512 / 375) = 1.36533; 500 * f = 682.67 -> 683 -> 704
    assert resized_size(375, 500) == (512, 704)
    # a panorama hits the long-side cap: factor 2048 / 1500; 300 * f = 409.6 -> 410 -> 416
    assert resized_size(300, 1500) == (416, 2048)
    assert resized_size(300, 1500, size_divisor=None) == (410, 2048)
    # ratio 0.75 scales both sides of the target scale (mmseg img_ratios): (1536, 384); 500 * 1.024 = 512
    assert resized_size(375, 500, ratio=0.75) == (384, 512)
    assert resized_size(101, 67, short_side=None, size_divisor=None, ratio=0.5) == (51, 34)  # half up


def test_slide_windows_are_mmsegs():
    # 10 x 7, crop 4, stride 3: rows ceil((10 - 4) / 3) + 1 = 3 starting 0, 3, 6; columns 0 and 3 (the last ends at 7)
    assert slide_windows(10, 7, (4, 4), (3, 3)) == [(0, 4, 0, 4), (0, 4, 3, 7), (3, 7, 0, 4), (3, 7, 3, 7),
                                                    (6, 10, 0, 4), (6, 10, 3, 7)]
    assert slide_windows(10, 8, (4, 4), (3, 3))[1] == (0, 4, 3, 7) and slide_windows(10, 8, (4, 4), (3, 3))[2] == (
        0, 4, 4, 8)  # the last column crop ends at the border: starts at 8 - 4, not 6
    assert slide_windows(3, 5, (4, 8), (3, 3)) == [(0, 3, 0, 5)]  # smaller than a crop: one crop, the image


def test_slide_equals_whole_for_a_per_pixel_model():
    torch.manual_seed(0)
    model = PerPixel().eval()
    x = torch.rand(2, 3, 23, 17)
    whole = segment(model, x, **PLAIN)
    slide = segment(model, x, mode="slide", crop_size=(8, 6), stride=(5, 4), **PLAIN)
    torch.testing.assert_close(slide, whole)
    torch.testing.assert_close(whole, model.conv(x).softmax(1))
    assert len(model.sizes) == 1 + len(slide_windows(23, 17, (8, 6), (5, 4)))


def test_slide_equals_whole_when_the_crop_covers_the_image():
    seg = semantic_fpn("lsnet_t", num_classes=3).eval()
    x = torch.rand(1, 3, 45, 61)
    torch.testing.assert_close(segment(seg, x, mode="slide", crop_size=(64, 64), **PLAIN), segment(seg, x, **PLAIN))


def test_slide_averages_logits_over_overlapping_crops():
    # one row of 5 pixels valued 0..4, crops of 3 every 2: [0, 3) mean 1 and [2, 5) mean 3; pixel 2 is in both
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    probs = segment(CropMean(), x, mode="slide", crop_size=(1, 3), stride=(1, 2), **PLAIN)
    expected = torch.sigmoid(torch.tensor([1.0, 1.0, 2.0, 3.0, 3.0]))  # softmax of (v, 0) = sigmoid(v)
    torch.testing.assert_close(probs[0, 0, 0], expected)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 1, 5))


def test_flip_averages_the_flipped_back_probabilities():
    x = torch.rand(1, 3, 2, 4)
    probs = segment(ColumnRamp(), x, flip=True, **PLAIN)
    # plain pass: logit j at column j; flipped pass flipped back: 3 - j; probabilities averaged
    expected = torch.tensor([(1 / (1 + math.exp(-j)) + 1 / (1 + math.exp(-(3 - j)))) / 2 for j in range(4)])
    torch.testing.assert_close(probs[0, 0], expected.expand(2, 4))
    torch.testing.assert_close(segment(ColumnRamp(), x, **PLAIN)[0, 0, 0], torch.sigmoid(torch.arange(4.0)))


def test_multi_scale_resizes_then_averages_probabilities():
    torch.manual_seed(0)
    model = PerPixel().eval()
    x = torch.rand(1, 3, 31, 22)
    both = segment(model, x, scales=(0.5, 1.0), **PLAIN)
    assert model.sizes == [(16, 11), (31, 22)]  # int(31 * 0.5 + 0.5), int(22 * 0.5 + 0.5)
    half, full = segment(model, x, scales=(0.5,), **PLAIN), segment(model, x, scales=(1.0,), **PLAIN)
    torch.testing.assert_close(both, (half + full) / 2)
    assert not torch.allclose(half, full)  # the scales differ, so the average is a real one
    assert both.shape == (1, 3, 31, 22)


def test_default_resize_runs_the_model_at_the_official_test_size():
    model = PerPixel().eval()
    out = segment(model, torch.rand(1, 3, 75, 100))
    assert model.sizes == [(512, 704)] and out.shape == (1, 3, 75, 100)  # 100 * 512 / 75 = 682.7 -> 683 -> 704


@pytest.mark.parametrize("kwargs, image, match", [
    (dict(mode="tiles"), torch.rand(1, 3, 8, 8), "mode must be one of"),
    ({}, torch.rand(3, 8, 8), r"pass a float batch \(B, 3, H, W\)"),
    ({}, torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "float batch"),
    (dict(scales=(0.0,)), torch.rand(1, 3, 8, 8), "scales must be positive"),
])
def test_bad_input_is_one_line(kwargs, image, match):
    with pytest.raises(ValueError, match=match) as err:
        segment(PerPixel(), image, **kwargs)
    assert "\n" not in str(err.value)
