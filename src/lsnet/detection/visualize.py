"""Draw a detector's boxes, "name 0.87" labels and masks on an image (torchvision.utils), one fixed colour per class.

    from lsnet.detection.visualize import draw_detections
    picture = draw_detections(image_uint8_chw, model([image.float() / 255])[0], dataset.classes)
    torchvision.io.write_png(picture, "prediction.png")
"""
from __future__ import annotations

import colorsys
from collections.abc import Sequence

import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

# ten well-separated colours (matplotlib's "tab10") for the first classes; golden-ratio hues after them
_PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def class_color(label: int) -> tuple[int, int, int]:
    """The fixed RGB colour of class `label`."""
    if label < len(_PALETTE):
        return _PALETTE[label]
    hue = (label * 0.618033988749895) % 1.0
    return tuple(round(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.9, 1.0))


def draw_detections(image: torch.Tensor, detection: dict, classes: Sequence[str], *, score_threshold: float = 0.3,
                    mask_threshold: float = 0.5, mask_alpha: float = 0.5, width: int = 2) -> torch.Tensor:
    """The detections with score >= `score_threshold` drawn on a copy of `image`.

    image: uint8 (1 or 3, H, W). detection: `boxes` (N, 4) XYXY pixels, `scores` (N,), `labels` (N,) in 0..K-1,
    optional `masks` (N, 1, H, W) or (N, H, W) probabilities (blended at `mask_alpha` where > `mask_threshold`).
    Returns uint8 (3, H, W).
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise TypeError(f"draw_detections: image must be uint8 (1 or 3, H, W); got {image.dtype} "
                        f"{tuple(image.shape)}; convert with (image * 255).round().to(torch.uint8)")
    picture = image.expand(3, -1, -1).clone() if image.shape[0] == 1 else image.clone()
    keep = detection["scores"].detach().cpu() >= score_threshold
    boxes = detection["boxes"].detach().cpu().float()[keep]
    scores = detection["scores"].detach().cpu()[keep].tolist()
    labels = detection["labels"].detach().cpu()[keep].tolist()
    if not labels:
        return picture
    if not 0 <= min(labels) <= max(labels) < len(classes):
        raise ValueError(f"draw_detections: labels {min(labels)}..{max(labels)} for {len(classes)} class names; pass "
                         "the dataset's classes (index = label)")
    colors = [class_color(label) for label in labels]
    if detection.get("masks") is not None:
        masks = detection["masks"].detach().cpu()[keep]
        masks = masks[:, 0] if masks.ndim == 4 else masks
        picture = draw_segmentation_masks(picture, masks > mask_threshold, alpha=mask_alpha, colors=colors)
    names = [f"{classes[label]} {score:.2f}" for label, score in zip(labels, scores)]
    return draw_bounding_boxes(picture, boxes, labels=names, colors=colors, width=width)
