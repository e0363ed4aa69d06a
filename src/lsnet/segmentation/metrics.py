"""Semantic segmentation scores from one confusion matrix, with mmseg 0.30's definitions (`mean_iou`).

    matrix = sum(confusion_matrix(pred, label, num_classes=150) for pred, label in batches)   # (K, K) int64
    scores = segmentation_scores(matrix, classes)     # {"mIoU", "mAcc", "aAcc", "per_class": {name: {"IoU", "Acc"}}}

Pure functions (no torch.distributed): under DDP sum the per-rank matrices (e.g. all_reduce) before scoring.
Definitions (mmseg `intersect_and_union` + `total_area_to_metrics`), with pixels labelled `ignore_index` left out:
  * IoU_c = |pred = c and gt = c| / |pred = c or gt = c|; NaN for a class absent from both prediction and ground
    truth (0 / 0), and such classes are left out of mIoU (nanmean); a class predicted but absent from the ground truth
    has IoU 0 and counts;
  * Acc_c = |pred = c and gt = c| / |gt = c|; NaN (left out of mAcc) for a class absent from the ground truth;
  * aAcc = correctly labelled pixels / labelled pixels.
All in percent, unrounded (mmseg rounds to 2 decimals only when it prints them).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """(K, K) int64 matrix on the inputs' device, rows = ground-truth class, columns = predicted class, over the
    pixels whose target is not `ignore_index`. pred, target: integer label maps of one shape ((H, W) or (B, H, W)),
    values 0..K-1 (targets may also be ignore_index)."""
    if pred.shape != target.shape:
        raise ValueError(f"confusion_matrix: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ "
                         "in shape; resize the prediction to the label's size (inference.segment does) before scoring")
    if pred.is_floating_point() or target.is_floating_point():
        raise TypeError("confusion_matrix: pass integer label maps (e.g. logits.argmax(1)), not "
                        f"{pred.dtype} / {target.dtype}")
    keep = target != ignore_index
    pred, target = pred[keep].long(), target[keep].long()
    for what, values in (("target", target), ("prediction", pred)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {what} values {values.min().item()}..{values.max().item()} outside "
                             f"0..{num_classes - 1} (and not the ignore index {ignore_index}); check num_classes and "
                             "the dataset's label mapping")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def segmentation_scores(matrix: torch.Tensor | np.ndarray, classes: Sequence[str] | None = None) -> dict:
    """mIoU, mAcc, aAcc (percent) and per-class IoU / Acc (percent, NaN where undefined) of a confusion matrix.

    classes: one name per row (default "0".."K-1"). Returns {"mIoU", "mAcc", "aAcc": float, "per_class": {name:
    {"IoU": float, "Acc": float}}}; NaN means of a matrix with no labelled pixel.
    """
    m = np.asarray(matrix.cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"segmentation_scores: pass a square (K, K) confusion matrix; got shape {m.shape}")
    names = [str(i) for i in range(len(m))] if classes is None else list(classes)
    if len(names) != len(m):
        raise ValueError(f"segmentation_scores: {len(names)} class names for a {len(m)}-class matrix; pass one name "
                         "per class")
    intersect = np.diag(m)
    area_label, area_pred = m.sum(1), m.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersect / (area_label + area_pred - intersect)
        acc = intersect / area_label
        a_acc = intersect.sum() / area_label.sum()
    return {"mIoU": _nanmean(iou) * 100, "mAcc": _nanmean(acc) * 100, "aAcc": float(a_acc) * 100,
            "per_class": {n: {"IoU": float(i) * 100, "Acc": float(a) * 100} for n, i, a in zip(names, iou, acc)}}


def _nanmean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


__all__ = ["confusion_matrix", "segmentation_scores"]
