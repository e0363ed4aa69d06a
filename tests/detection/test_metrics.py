"""The COCO metric wrapper against hand-computed APs: exact matches, a false positive ranked above a true positive
(COCO's 101-point interpolation done by hand), a box between IoU .5 and .75, RLE masks, per-class AP, no results."""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from lsnet.detection.metrics import coco_evaluate, to_coco_results

SIZE = 100


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}


def box_mask(x: int, y: int, w: int, h: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[y:y + h, x:x + w] = 1
    return mask


def ground_truth(boxes: list[tuple[int, int, list[int]]], num_images: int = 2, categories=(1, 2, 5)) -> COCO:
    """A COCO of `(image_id, category_id, [x, y, w, h])` boxes with their box-shaped RLE masks."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "width": SIZE, "height": SIZE, "file_name": f"{i}.png"} for i in range(1, num_images + 1)],
        "categories": [{"id": c, "name": f"class{c}"} for c in categories],
        "annotations": [{"id": k, "image_id": image_id, "category_id": cat, "bbox": box, "area": box[2] * box[3],
                         "iscrowd": 0, "segmentation": rle(box_mask(*box))}
                        for k, (image_id, cat, box) in enumerate(boxes, 1)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def result(image_id: int, category_id: int, box, score: float) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": list(box), "score": score}


def interpolated_ap(hits: list[bool], num_gt: int) -> float:
    """COCO's AP of one class at one IoU threshold, by hand: detections sorted by score (hits: TP or FP), precision
    made monotone from the right, sampled at the 101 recall points 0, .01, .., 1 (0 where recall is not reached)."""
    tp = np.cumsum(hits)
    recall = tp / num_gt
    precision = tp / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    samples = [envelope[np.argmax(recall >= r)] if (recall >= r).any() else 0.0 for r in np.linspace(0, 1, 101)]
    return float(np.mean(samples)) * 100


def test_exact_matches_score_100():
    gt = ground_truth([(1, 1, [10, 10, 40, 40]), (2, 1, [50, 50, 20, 20])])  # a medium and a small object
    results = [result(1, 1, [10, 10, 40, 40], 0.9), result(2, 1, [50, 50, 20, 20], 0.8)]
    scores = coco_evaluate(gt, results)["bbox"]
    assert [scores[k] for k in ("AP", "AP50", "AP75", "APs", "APm")] == pytest.approx([100] * 5)
    assert math.isnan(scores["APl"]), "no large ground truth: undefined, NaN"
    assert scores["per_class"]["class1"] == pytest.approx(100) and math.isnan(scores["per_class"]["class2"])


def test_a_false_positive_above_a_true_positive_gives_the_interpolated_curve():
    # sorted: TP (0.9), FP (0.8), TP (0.7); 2 GT -> precision 1, 1/2, 2/3 at recall .5, .5, 1
    # monotone precision 1, 2/3, 2/3 -> 51 recall points (0 .. .50) at 1, 50 points (.51 .. 1) at 2/3
    gt = ground_truth([(1, 1, [10, 10, 40, 40]), (2, 1, [50, 50, 20, 20])])
    results = [result(1, 1, [10, 10, 40, 40], 0.9), result(1, 1, [60, 60, 30, 30], 0.8),
               result(2, 1, [50, 50, 20, 20], 0.7)]
    expected = (51 + 50 * 2 / 3) / 101 * 100
    assert interpolated_ap([True, False, True], 2) == pytest.approx(expected)
    scores = coco_evaluate(gt, results)["bbox"]
    assert scores["AP"] == pytest.approx(expected) and scores["AP50"] == pytest.approx(expected)
    # the false positive ranked last instead: no precision lost before full recall
    results[1]["score"] = 0.1
    assert coco_evaluate(gt, results)["bbox"]["AP"] == pytest.approx(100)


def test_iou_between_050_and_075_counts_for_ap50_only():
    # IoU 1000 / 1600 = 0.625: a match at thresholds .50, .55, .60 of the ten (.50:.05:.95)
    gt = ground_truth([(1, 1, [20, 20, 40, 40])])
    scores = coco_evaluate(gt, [result(1, 1, [20, 20, 40, 25], 0.9)])["bbox"]
    assert scores["AP50"] == pytest.approx(100) and scores["AP75"] == 0
    assert scores["AP"] == pytest.approx(30)


def test_per_class_ap_and_segm_from_rle_masks():
    gt = ground_truth([(1, 1, [10, 10, 20, 20]), (2, 2, [20, 20, 10, 8])])
    exact = torch.zeros(1, 1, SIZE, SIZE)
    exact[0, 0, 10:30, 10:30] = 0.9
    partial = torch.full((2, 1, SIZE, SIZE), 0.4)  # 0.4 < mask_threshold everywhere ...
    partial[0, 0, 20:25, 20:30] = 0.6  # ... but 5 of class2's 8 rows: mask IoU 50 / 80 = 0.625
    outputs = [
        {"boxes": torch.tensor([[10.0, 10, 30, 30]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([0]),
         "masks": exact},
        {"boxes": torch.tensor([[20.0, 20, 30, 28], [70, 70, 90, 90]]), "scores": torch.tensor([0.8, 0.7]),
         "labels": torch.tensor([1, 2]), "masks": partial},  # the second: class5, which has no ground truth
    ]
    results = to_coco_results(outputs, [1, 2], cat_ids=[1, 2, 5])
    scores = coco_evaluate(gt, results, iou_types=("bbox", "segm"), classes=["a", "b", "c"])
    assert [scores["bbox"]["per_class"][name] for name in "ab"] == pytest.approx([100, 100])
    assert scores["segm"]["per_class"]["a"] == pytest.approx(100)
    assert scores["segm"]["per_class"]["b"] == pytest.approx(30)
    assert math.isnan(scores["segm"]["per_class"]["c"]), "no ground truth of class c: NaN, not a score"
    assert scores["segm"]["AP"] == pytest.approx(65) and scores["segm"]["AP50"] == pytest.approx(100)
    assert scores["bbox"]["AP"] == pytest.approx(100)


def test_no_results_score_zero():
    gt = ground_truth([(1, 1, [10, 10, 40, 40]), (2, 2, [50, 50, 20, 20])])
    scores = coco_evaluate(gt, [], iou_types=("bbox", "segm"))
    for iou_type in ("bbox", "segm"):
        assert scores[iou_type]["AP"] == 0 and scores[iou_type]["APs"] == 0 and math.isnan(scores[iou_type]["APl"])
        assert scores[iou_type]["per_class"]["class1"] == 0 and math.isnan(scores[iou_type]["per_class"]["class5"])


def test_to_coco_results_converts_boxes_labels_and_masks():
    masks = torch.zeros(2, 1, 8, 6)
    masks[0, 0, 1:3, 2:5] = 0.7
    masks[1, 0, 5:, :] = 0.3
    output = {"boxes": torch.tensor([[1.0, 2, 4, 6], [0, 0, 6, 8]]), "scores": torch.tensor([0.75, 0.5]),
              "labels": torch.tensor([2, 0]), "masks": masks}
    entries = to_coco_results([output], [42], cat_ids=[11, 12, 13])
    assert [(e["image_id"], e["category_id"], e["bbox"], e["score"]) for e in entries] == [
        (42, 13, [1.0, 2.0, 3.0, 4.0], 0.75), (42, 11, [0.0, 0.0, 6.0, 8.0], 0.5)]
    assert np.array_equal(mask_utils.decode(entries[0]["segmentation"]), (masks[0, 0] > 0.5).numpy())
    assert mask_utils.decode(entries[1]["segmentation"]).sum() == 0 and isinstance(
        entries[0]["segmentation"]["counts"], str)
    assert to_coco_results([{k: v[:0] for k, v in output.items()}], [42], [11, 12, 13]) == []


def test_agrees_with_faster_coco_eval_on_a_noisy_case():
    faster = pytest.importorskip("faster_coco_eval")
    rng = np.random.default_rng(0)
    boxes, results = [], []
    for image_id in range(1, 6):
        for _ in range(4):
            x, y, w, h = (int(v) for v in rng.integers(0, 50, 2).tolist() + rng.integers(5, 50, 2).tolist())
            cat = int(rng.choice([1, 2, 5]))
            boxes.append((image_id, cat, [x, y, w, h]))
            jitter = rng.normal(0, 4, 4)
            results.append(result(image_id, cat if rng.random() < 0.8 else 1, [x + jitter[0], y + jitter[1],
                                  max(1.0, w + jitter[2]), max(1.0, h + jitter[3])], float(rng.random())))
    gt = ground_truth(boxes, num_images=5)
    ours = coco_evaluate(gt, results)["bbox"]
    gt_fast = faster.COCO(gt.dataset)
    evaluator = faster.COCOeval_faster(gt_fast, gt_fast.loadRes([dict(r) for r in results]), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    reference = dict(zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), evaluator.stats[:6] * 100))
    assert 0 < ours["AP"] < 100
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, abs=1e-6) or (value < 0 and math.isnan(ours[key])), key


def test_bad_input_messages():
    gt = ground_truth([(1, 1, [10, 10, 40, 40])])
    with pytest.raises(ValueError, match="results for image ids \\[7\\] that the ground truth does not have"):
        coco_evaluate(gt, [result(7, 1, [0, 0, 5, 5], 0.5)])
    with pytest.raises(ValueError, match="1 of 1 results have no 'segmentation'.*pass masks to to_coco_results"):
        coco_evaluate(gt, [result(1, 1, [0, 0, 5, 5], 0.5)], iou_types=("segm",))
    with pytest.raises(ValueError, match="2 class names for 3 categories"):
        coco_evaluate(gt, [], classes=["a", "b"])
    with pytest.raises(ValueError, match="unknown iou type 'keypoints'"):
        coco_evaluate(gt, [], iou_types=("keypoints",))
    del gt.dataset["annotations"][0]["segmentation"]
    with pytest.raises(ValueError, match="'segm' needs a segmentation for every ground-truth annotation"):
        coco_evaluate(gt, [], iou_types=("segm",))
    output = {"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": torch.tensor([3])}
    with pytest.raises(ValueError, match="labels 3..3 for 3 categories"):
        to_coco_results([output], [1], [1, 2, 5])
    with pytest.raises(ValueError, match="1 outputs for 2 image ids"):
        to_coco_results([output], [1, 2], [1, 2, 5])
