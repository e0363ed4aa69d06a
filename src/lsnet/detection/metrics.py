"""COCO detection metrics: detector outputs -> COCO results json -> pycocotools' COCOeval numbers in percent.

    from lsnet.detection.metrics import coco_evaluate, to_coco_results
    results = to_coco_results(outputs, image_ids, dataset.cat_ids)      # outputs: the detector's eval-mode list
    scores = coco_evaluate(dataset.coco, results, iou_types=("bbox", "segm"), classes=dataset.classes)
    scores["bbox"]["AP"], scores["segm"]["per_class"]["Trouser"]

Numbers are COCOeval's `stats` (AP at IoU .50:.95, .50, .75 and for small / medium / large objects, 100 detections
per image) times 100. A value COCOeval cannot define (no ground truth of that size or class in the evaluated images;
COCOeval's -1) is NaN. Per-class AP follows COCO's own convention (as detectron2 reports it): the mean of the
precision array over IoU thresholds and the 101 recall points, all areas, 100 detections.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import torch

IOU_TYPES = ("bbox", "segm")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # the first six of COCOeval.stats


def _encode_masks(masks: torch.Tensor, threshold: float) -> list[dict]:
    """(N, 1, H, W) or (N, H, W) probabilities -> N compressed RLEs with str counts (json-ready)."""
    from pycocotools import mask as mask_utils

    if masks.ndim == 4:
        masks = masks[:, 0]
    binary = (masks > threshold).to(torch.uint8).cpu().numpy()
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def to_coco_results(outputs: list[dict], image_ids: Sequence[int], cat_ids: Sequence[int], *,
                    mask_threshold: float = 0.5) -> list[dict]:
    """COCO results entries `{image_id, category_id, bbox: [x, y, w, h], score[, segmentation: RLE]}`.

    outputs[i]: a detector's eval output for image `image_ids[i]`: `boxes` (N, 4) XYXY pixels of the original image,
    `scores` (N,), `labels` (N,) in 0..K-1 (mapped to COCO ids with `cat_ids[label]`), optional `masks` (N, 1, H, W)
    probabilities, binarised at `mask_threshold`.
    """
    if len(outputs) != len(image_ids):
        raise ValueError(f"to_coco_results: {len(outputs)} outputs for {len(image_ids)} image ids; pass one image id "
                         "per output, in the same order")
    results = []
    for output, image_id in zip(outputs, image_ids):
        boxes = output["boxes"].detach().float().cpu().reshape(-1, 4)
        labels = output["labels"].detach().cpu().tolist()
        scores = output["scores"].detach().float().cpu().tolist()
        if labels and not 0 <= min(labels) <= max(labels) < len(cat_ids):
            raise ValueError(f"to_coco_results: labels {min(labels)}..{max(labels)} for {len(cat_ids)} categories; "
                             "labels must be 0..K-1 indices into cat_ids")
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        rles = _encode_masks(output["masks"].detach(), mask_threshold) if output.get("masks") is not None else None
        for i, (box, label, score) in enumerate(zip(xywh, labels, scores)):
            entry = {"image_id": int(image_id), "category_id": int(cat_ids[label]), "bbox": box, "score": score}
            if rles is not None:
                entry["segmentation"] = rles[i]
            results.append(entry)
    return results


def _load_results(coco_gt, results: list[dict], iou_type: str):
    """A pycocotools COCO of the results for one IoU type (bbox results without masks, segm results without
    boxes, so that COCOeval takes areas from what it scores); an empty one for no results."""
    from pycocotools.coco import COCO

    key, other = ("bbox", "segmentation") if iou_type == "bbox" else ("segmentation", "bbox")
    entries = [{k: v for k, v in entry.items() if k != other} for entry in results]
    missing = sum(key not in entry for entry in entries)
    if missing:
        raise ValueError(f"coco_evaluate: {missing} of {len(entries)} results have no {key!r}, which {iou_type!r} "
                         f"scores; pass masks to to_coco_results, or evaluate iou_types=('bbox',)")
    unknown = {entry["image_id"] for entry in entries} - set(coco_gt.getImgIds())
    if unknown:
        raise ValueError(f"coco_evaluate: results for image ids {sorted(unknown)[:5]} that the ground truth does not "
                         "have; pass the image ids of the dataset the outputs came from")
    if entries:
        return coco_gt.loadRes(entries)
    empty = COCO()
    empty.dataset = {"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                     "annotations": []}
    empty.createIndex()
    return empty


def _percent(value: float) -> float:
    return float("nan") if value < 0 else float(value) * 100


def coco_evaluate(coco_gt, results: list[dict], iou_types: Sequence[str] = ("bbox",),
                  classes: Sequence[str] | None = None) -> dict[str, dict]:
    """COCOeval per IoU type -> `{iou_type: {"AP", "AP50", "AP75", "APs", "APm", "APl", "per_class": {name: AP}}}`,
    all in percent, NaN where undefined (see the module docstring).

    coco_gt: a pycocotools COCO (e.g. `CocoDetection.coco`). results: COCO results entries (`to_coco_results`).
    classes: names for the per-class table, one per category in sorted category-id order (default: the json's names).
    """
    from pycocotools.cocoeval import COCOeval

    cat_ids = sorted(coco_gt.getCatIds())
    if classes is None:
        classes = [coco_gt.cats[c]["name"] for c in cat_ids]
    if len(classes) != len(cat_ids):
        raise ValueError(f"coco_evaluate: {len(classes)} class names for {len(cat_ids)} categories; pass one name per "
                         "category in sorted category-id order (CocoDetection.classes)")
    scores = {}
    for iou_type in iou_types:
        if iou_type not in IOU_TYPES:
            raise ValueError(f"coco_evaluate: unknown iou type {iou_type!r}; choose from {', '.join(IOU_TYPES)}")
        if iou_type == "segm" and any(not ann.get("segmentation") for ann in coco_gt.dataset["annotations"]):
            raise ValueError("coco_evaluate: 'segm' needs a segmentation for every ground-truth annotation; the json "
                             "has boxes only, so evaluate iou_types=('bbox',)")
        with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints progress and its table
            evaluator = COCOeval(coco_gt, _load_results(coco_gt, results, iou_type), iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        # precision: (IoU thresholds T, recall points R, classes K, area ranges A, max detections M); -1 = no GT
        precision = evaluator.eval["precision"][:, :, :, 0, -1]
        per_class = {}
        for k, name in enumerate(classes):
            values = precision[:, :, k]
            values = values[values > -1]
            per_class[name] = float(values.mean()) * 100 if values.size else float("nan")
        scores[iou_type] = {name: _percent(v) for name, v in zip(STAT_NAMES, evaluator.stats)}
        scores[iou_type]["per_class"] = per_class
    return scores
