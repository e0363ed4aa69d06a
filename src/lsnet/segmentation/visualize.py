"""Colour overlays of label maps, one fixed colour per class (the detection palette: tab10, then golden-ratio hues).

    from lsnet.segmentation.visualize import draw_segmentation, palette
    picture = draw_segmentation(image_uint8_chw, probs.argmax(1)[0], palette(num_classes))
    torchvision.io.write_png(picture, "overlay.png")
"""
from __future__ import annotations

import torch

from ..detection.visualize import class_color


def palette(num_classes: int) -> torch.Tensor:
    """(K, 3) uint8 RGB colours; row k is class k's (`lsnet.detection.visualize.class_color`)."""
    return torch.tensor([class_color(k) for k in range(num_classes)], dtype=torch.uint8).reshape(num_classes, 3)


def draw_segmentation(image: torch.Tensor, labels: torch.Tensor, palette: torch.Tensor, alpha: float = 0.5,
                      ignore_index: int = 255) -> torch.Tensor:
    """`image` with each pixel blended towards its class colour: round((1 - alpha) * image + alpha * colour);
    pixels labelled `ignore_index` stay as they are.

    image: uint8 (1 or 3, H, W); labels: integer (H, W) in 0..K-1 or ignore_index; palette: (K, 3) uint8.
    Returns uint8 (3, H, W). alpha=1 paints the label map itself.
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise TypeError(f"draw_segmentation: image must be uint8 (1 or 3, H, W); got {image.dtype} "
                        f"{tuple(image.shape)}; convert with (image * 255).round().to(torch.uint8)")
    if labels.shape != image.shape[-2:] or labels.is_floating_point():
        raise ValueError(f"draw_segmentation: labels must be an integer (H, W) map of the image's size "
                         f"{tuple(image.shape[-2:])}; got {labels.dtype} {tuple(labels.shape)} (pass probs.argmax(0))")
    if not 0 <= alpha <= 1:
        raise ValueError(f"draw_segmentation: alpha must be in [0, 1]; got {alpha}")
    labels = labels.cpu().long()
    keep = labels != ignore_index
    if keep.any() and (labels[keep].min() < 0 or labels[keep].max() >= len(palette)):
        raise ValueError(f"draw_segmentation: labels {labels[keep].min().item()}..{labels[keep].max().item()} for a "
                         f"palette of {len(palette)} colours; pass palette(num_classes)")
    picture = image.cpu().expand(3, -1, -1).float()
    colours = palette.cpu()[labels.clamp(0, len(palette) - 1)].permute(2, 0, 1).float()
    blended = torch.where(keep, (1 - alpha) * picture + alpha * colours, picture)
    return blended.round().clamp(0, 255).to(torch.uint8)


__all__ = ["draw_segmentation", "palette"]
