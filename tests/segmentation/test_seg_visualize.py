"""Segmentation overlays against hand-blended pixels."""
import pytest
import torch

from lsnet.detection.visualize import class_color
from lsnet.segmentation.visualize import draw_segmentation, palette


def test_palette_is_the_detection_class_colours():
    p = palette(12)
    assert p.dtype == torch.uint8 and p.shape == (12, 3)
    assert [tuple(c) for c in p.tolist()] == [class_color(k) for k in range(12)]


def test_blend_by_hand():
    image = torch.tensor([[[10, 200, 50]], [[20, 100, 60]], [[30, 0, 70]]], dtype=torch.uint8)  # (3, 1, 3)
    pal = torch.tensor([[255, 0, 0], [0, 0, 255]], dtype=torch.uint8)
    labels = torch.tensor([[0, 1, 255]])
    out = draw_segmentation(image, labels, pal, alpha=0.25)
    # round(0.75 * pixel + 0.25 * colour); the ignored pixel unchanged
    assert out[:, 0, 0].tolist() == [round(0.75 * 10 + 0.25 * 255), 15, round(0.75 * 30)]
    assert out[:, 0, 1].tolist() == [150, 75, round(0.25 * 255)]
    assert out[:, 0, 2].tolist() == [50, 60, 70]
    assert draw_segmentation(image, labels, pal, alpha=1.0)[:, 0, 1].tolist() == [0, 0, 255]
    grey = draw_segmentation(image[:1], labels, pal, alpha=0.0)
    assert grey.shape == (3, 1, 3) and grey[:, 0, 0].tolist() == [10, 10, 10]


@pytest.mark.parametrize("image, labels, match", [
    (torch.zeros(3, 2, 2), torch.zeros(2, 2, dtype=torch.long), "image must be uint8"),
    (torch.zeros(3, 2, 2, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.long), "of the image's size"),
    (torch.zeros(3, 2, 2, dtype=torch.uint8), torch.full((2, 2), 7), r"labels 7\.\.7 for a palette of 2"),
])
def test_bad_input_is_one_line(image, labels, match):
    with pytest.raises((TypeError, ValueError), match=match) as err:
        draw_segmentation(image, labels, palette(2))
    assert "\n" not in str(err.value)
