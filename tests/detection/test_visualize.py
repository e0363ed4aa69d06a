"""draw_detections on a blank image: pixels change on the box outline (and the label inside it) and exactly on the
mask, in the class's colour; nothing below the score threshold."""
from __future__ import annotations

import pytest
import torch

from lsnet.detection.visualize import class_color, draw_detections

CLASSES = ("shirt", "bag", "boot")
BOX = (8, 6, 56, 40)  # x1, y1, x2, y2


def detection(scores, masks: bool = False) -> dict:
    out = {"boxes": torch.tensor([BOX, (30, 44, 60, 60)], dtype=torch.float32), "scores": torch.tensor(scores),
           "labels": torch.tensor([1, 2])}
    if masks:
        out["masks"] = torch.zeros(2, 1, 64, 64)
        out["masks"][0, 0, 20:36, 30:50] = 0.9  # inside BOX, clear of its outline and of the label at its top-left
        out["masks"][0, 0, 36:40, 30:50] = 0.4  # below mask_threshold
    return out


def changed(picture: torch.Tensor) -> torch.Tensor:
    return picture.amax(0) > 0


def test_box_outline_and_label_stay_inside_the_box():
    blank = torch.zeros(3, 64, 64, dtype=torch.uint8)
    picture = draw_detections(blank, detection([0.87, 0.1]), CLASSES, score_threshold=0.3)
    assert picture.dtype == torch.uint8 and picture.shape == (3, 64, 64)
    x1, y1, x2, y2 = BOX
    inside = torch.zeros(64, 64, dtype=torch.bool)
    inside[y1:y2 + 1, x1:x2 + 1] = True
    drawn = changed(picture)
    assert not (drawn & ~inside).any(), "drawn outside the kept box (the 0.1 detection is below the threshold)"
    outline = inside.clone()
    outline[y1 + 2:y2 - 1, x1 + 2:x2 - 1] = False  # width 2
    assert drawn[outline].all(), "the whole outline is drawn"
    color = torch.tensor(class_color(1), dtype=torch.uint8)
    assert (picture[:, outline] == color[:, None]).all(), "outline in the class colour"
    assert drawn[y1 + 2:y1 + 14, x1 + 2:x2 - 1].any(), "the label 'bag 0.87' is written at the box's top-left"
    assert not drawn[y1 + 16:y2 - 1, x1 + 2:x2 - 1].any(), "nothing but outline and label"


def test_mask_pixels_blend_exactly_where_the_mask_is():
    blank = torch.zeros(1, 64, 64, dtype=torch.uint8)  # grey input: drawn in RGB
    with_mask = draw_detections(blank, detection([0.87, 0.1], masks=True), CLASSES)
    without = draw_detections(blank, detection([0.87, 0.1]), CLASSES)
    assert with_mask.shape == (3, 64, 64)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[20:36, 30:50] = True
    difference = (with_mask != without).any(0)
    assert torch.equal(difference, mask), "mask drawn exactly on the pixels above mask_threshold"
    expected = (torch.tensor(class_color(1), dtype=torch.float32) * 0.5).to(torch.uint8)
    assert (with_mask[:, mask] - expected[:, None]).abs().max() <= 1, "alpha 0.5 of the class colour on black"


def test_nothing_under_the_threshold_and_fixed_colours():
    blank = torch.zeros(3, 64, 64, dtype=torch.uint8)
    assert torch.equal(draw_detections(blank, detection([0.29, 0.1], masks=True), CLASSES), blank)
    assert class_color(2) == class_color(2) and len({class_color(k) for k in range(30)}) == 30
    both = draw_detections(blank, detection([0.9, 0.9]), CLASSES)
    assert (both[:, 44, 40] == torch.tensor(class_color(2), dtype=torch.uint8)).all(), "second box in its colour"


def test_bad_input():
    with pytest.raises(TypeError, match="image must be uint8 \\(1 or 3, H, W\\); got torch.float32"):
        draw_detections(torch.zeros(3, 8, 8), detection([0.9, 0.9]), CLASSES)
    with pytest.raises(ValueError, match="labels 1..2 for 2 class names"):
        draw_detections(torch.zeros(3, 64, 64, dtype=torch.uint8), detection([0.9, 0.9]), CLASSES[:2])
