"""Test-time inference of a segmenter as mmseg 0.30's EncoderDecoder does it: resize, whole-image or sliding-window
logits, optional flip / multi-scale, class probabilities at the original size.

    probs = segment(model.eval(), images)                                   # official LSNet test: whole, short 512
    probs = segment(model, images, mode="slide", crop_size=(512, 512), stride=(341, 341), flip=True,
                    scales=(0.75, 1.0, 1.25))
    labels = probs.argmax(1)                                                # (B, H, W)

Per scale r (mmseg `MultiScaleFlipAug` img_ratios) the image is resized keeping its aspect ratio so that the short
side is `short_side * r` and the long side at most `long_side * r` (mmcv `imrescale`: scale factor min(long / max(h,
w), short / min(h, w)), sizes rounded half up; without short_side: the image size times r), then each side is
resized up to a multiple of `size_divisor` (the official `AlignResize`). Bilinear, align_corners=False, no
antialiasing. Logits: "whole" runs the model on the whole resized image; "slide" on crops of `crop_size` every
`stride` pixels (the last crop of a row / column ends at the border; an image smaller than a crop is one crop) and
averages the LOGITS where crops overlap. The logits are resized bilinearly to the original size and turned into
softmax probabilities; flipped passes are flipped back; the PROBABILITIES are averaged over scales and flips
(mmseg `aug_test`). The model's train / eval mode is left as it is (call `model.eval()`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("whole", "slide")


def resized_size(height: int, width: int, *, short_side: int | None = 512, long_side: int | None = 2048,
                 size_divisor: int | None = 32, ratio: float = 1.0) -> tuple[int, int]:
    """(h, w) an image of (height, width) is resized to at test time (see the module docstring)."""
    if short_side is not None:
        factor = short_side * ratio / min(height, width)
        if long_side is not None:
            factor = min(factor, long_side * ratio / max(height, width))
    else:
        factor = ratio
    h, w = int(height * factor + 0.5), int(width * factor + 0.5)
    if size_divisor:
        h, w = -(-h // size_divisor) * size_divisor, -(-w // size_divisor) * size_divisor
    return max(h, 1), max(w, 1)


def slide_windows(height: int, width: int, crop_size: Sequence[int],
                  stride: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """Crops (y1, y2, x1, x2) covering an image of (height, width), as mmseg's `slide_inference` places them."""
    (h_crop, w_crop), (h_stride, w_stride) = crop_size, stride
    h_grids = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
    windows = []
    for i in range(h_grids):
        for j in range(w_grids):
            y2, x2 = min(i * h_stride + h_crop, height), min(j * w_stride + w_crop, width)
            windows.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
    return windows


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)["out"]


def slide_logits(model: nn.Module, x: torch.Tensor, crop_size: Sequence[int],
                 stride: Sequence[int]) -> torch.Tensor:
    """(B, 3, H, W) -> (B, K, H, W) logits averaged over the overlapping crops."""
    out = count = None
    for y1, y2, x1, x2 in slide_windows(*x.shape[-2:], crop_size, stride):
        crop = _logits(model, x[..., y1:y2, x1:x2])
        if out is None:
            out = crop.new_zeros((*crop.shape[:2], *x.shape[-2:]))
            count = crop.new_zeros((1, 1, *x.shape[-2:]))
        out[..., y1:y2, x1:x2] += crop
        count[..., y1:y2, x1:x2] += 1
    return out / count


@torch.no_grad()
def segment(model: nn.Module, image: torch.Tensor, *, mode: str = "whole", short_side: int | None = 512,
            long_side: int | None = 2048, size_divisor: int | None = 32, crop_size: Sequence[int] = (512, 512),
            stride: Sequence[int] = (341, 341), flip: bool = False,
            scales: Sequence[float] = (1.0,)) -> torch.Tensor:
    """Class probabilities (B, K, H, W) at the input's size for images (B, 3, H, W) float in [0, 1]: softmax of the
    (slide-averaged) logits, averaged over `scales` x (no flip, horizontal flip if `flip`)."""
    if mode not in MODES:
        raise ValueError(f"segment: mode must be one of {MODES}; got {mode!r}")
    if image.ndim != 4 or not image.is_floating_point():
        raise ValueError(f"segment: pass a float batch (B, 3, H, W) in [0, 1]; got {image.dtype} "
                         f"{tuple(image.shape)} (unsqueeze(0) a single image, .float() / 255 uint8 images)")
    if not scales or any(r <= 0 for r in scales):
        raise ValueError(f"segment: scales must be positive ratios, e.g. (1.0,) or (0.75, 1.0, 1.25); got {scales}")
    height, width = image.shape[-2:]
    total = None
    for ratio in scales:
        size = resized_size(height, width, short_side=short_side, long_side=long_side, size_divisor=size_divisor,
                            ratio=ratio)
        x = image if size == (height, width) else F.interpolate(image, size=size, mode="bilinear",
                                                                align_corners=False)
        for flipped in (False, True) if flip else (False,):
            inp = x.flip(-1) if flipped else x
            logits = slide_logits(model, inp, crop_size, stride) if mode == "slide" else _logits(model, inp)
            logits = logits.flip(-1) if flipped else logits
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            probs = logits.float().softmax(1)
            total = probs if total is None else total + probs
    return total / (len(scales) * (2 if flip else 1))


__all__ = ["MODES", "resized_size", "segment", "slide_logits", "slide_windows"]
