"""Confusion-matrix scores against a hand-computed case and an independent per-class numpy computation (mmseg
0.30's intersect_and_union / total_area_to_metrics definitions, written out class by class)."""
import math

import numpy as np
import pytest
import torch

from lsnet.segmentation.metrics import confusion_matrix, segmentation_scores

IGNORE = 255


def test_hand_computed_case():
    """4 classes: 0 and 1 present in both; 2 predicted but absent from the ground truth; 3 absent from both; two
    ignored pixels (one predicted 3, one predicted 2) count nowhere."""
    target = torch.tensor([[0, 0, 0, 1],
                           [1, 1, IGNORE, IGNORE]])
    pred = torch.tensor([[0, 0, 1, 1],
                         [1, 2, 3, 2]])
    m = confusion_matrix(pred, target, 4, ignore_index=IGNORE)
    assert m.dtype == torch.int64
    assert m.tolist() == [[2, 1, 0, 0],
                          [0, 2, 1, 0],
                          [0, 0, 0, 0],
                          [0, 0, 0, 0]]
    s = segmentation_scores(m, ["a", "b", "c", "d"])
    # IoU: a 2 / (3 + 2 - 2) = 2/3, b 2 / (3 + 3 - 2) = 1/2, c 0 / 1 = 0, d 0/0 -> NaN (out of the mean)
    assert s["per_class"]["a"]["IoU"] == pytest.approx(200 / 3)
    assert s["per_class"]["b"]["IoU"] == pytest.approx(50)
    assert s["per_class"]["c"]["IoU"] == 0
    assert math.isnan(s["per_class"]["d"]["IoU"])
    assert s["mIoU"] == pytest.approx((200 / 3 + 50 + 0) / 3)
    # Acc: a 2/3, b 2/3; c and d absent from the ground truth -> NaN, out of mAcc
    assert s["per_class"]["a"]["Acc"] == pytest.approx(200 / 3) and s["per_class"]["b"]["Acc"] == pytest.approx(200 / 3)
    assert math.isnan(s["per_class"]["c"]["Acc"]) and math.isnan(s["per_class"]["d"]["Acc"])
    assert s["mAcc"] == pytest.approx(200 / 3)
    assert s["aAcc"] == pytest.approx(400 / 6)  # 4 of the 6 labelled pixels right


def _numpy_reference(preds, targets, num_classes, ignore):
    """Per-class pixel sets, class by class (no confusion matrix): mmseg's areas and metrics."""
    correct = labelled = 0
    inter, union, label = np.zeros(num_classes), np.zeros(num_classes), np.zeros(num_classes)
    for p, t in zip(preds, targets):
        keep = t != ignore
        p, t = p[keep], t[keep]
        correct += int((p == t).sum())
        labelled += t.size
        for c in range(num_classes):
            inter[c] += np.logical_and(p == c, t == c).sum()
            union[c] += np.logical_or(p == c, t == c).sum()
            label[c] += (t == c).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = inter / union, inter / label
    return iou, acc, correct / labelled


def test_against_numpy_over_several_images():
    rng = np.random.default_rng(0)
    k = 6
    preds, targets = [], []
    matrix = torch.zeros(k, k, dtype=torch.int64)
    for h, w in ((13, 7), (5, 11), (9, 9)):
        t = rng.integers(0, k - 1, size=(h, w))  # class 5 never in the ground truth
        t[rng.random((h, w)) < 0.2] = IGNORE
        p = rng.integers(0, k - 2, size=(h, w))  # ... and class 4, 5 never predicted: 5 absent from both
        preds.append(p)
        targets.append(t)
        matrix += confusion_matrix(torch.from_numpy(p), torch.from_numpy(t), k, ignore_index=IGNORE)
    iou, acc, a_acc = _numpy_reference(preds, targets, k, IGNORE)
    s = segmentation_scores(matrix)
    got_iou = np.array([s["per_class"][str(c)]["IoU"] for c in range(k)])
    got_acc = np.array([s["per_class"][str(c)]["Acc"] for c in range(k)])
    np.testing.assert_allclose(got_iou, iou * 100, equal_nan=True)
    np.testing.assert_allclose(got_acc, acc * 100, equal_nan=True)
    assert math.isnan(got_iou[5]) and got_iou[4] == 0  # absent from both / in the ground truth, never predicted
    assert s["mIoU"] == pytest.approx(np.nanmean(iou) * 100)
    assert s["mAcc"] == pytest.approx(np.nanmean(acc) * 100)
    assert s["aAcc"] == pytest.approx(a_acc * 100)
    # a batch (B, H, W) gives the sum of its images' matrices
    batch_p = torch.from_numpy(np.stack([preds[2], preds[2]]))
    batch_t = torch.from_numpy(np.stack([targets[2], targets[2]]))
    single = confusion_matrix(torch.from_numpy(preds[2]), torch.from_numpy(targets[2]), k)
    assert torch.equal(confusion_matrix(batch_p, batch_t, k), 2 * single)


def test_nothing_labelled_gives_nan_means():
    m = confusion_matrix(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), IGNORE), 3)
    s = segmentation_scores(m)
    assert m.sum() == 0 and all(math.isnan(s[k]) for k in ("mIoU", "mAcc", "aAcc"))


@pytest.mark.parametrize("pred, target, match", [
    (torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), "differ in shape"),
    (torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long), "integer label maps"),
    (torch.zeros(2, 2, dtype=torch.long), torch.tensor([[0, 3], [1, IGNORE]]), r"target values 0\.\.3 outside 0\.\.2"),
    (torch.tensor([[0, -1], [1, 1]]), torch.zeros(2, 2, dtype=torch.long), "prediction values"),
])
def test_bad_input_is_one_line(pred, target, match):
    with pytest.raises((ValueError, TypeError), match=match) as err:
        confusion_matrix(pred, target, 3)
    assert "\n" not in str(err.value)


def test_scores_bad_input():
    with pytest.raises(ValueError, match="square"):
        segmentation_scores(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="one name per class"):
        segmentation_scores(torch.eye(3), ["a", "b"])
