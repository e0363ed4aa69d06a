"""The detectors: torchvision's calling convention, labels 0..K-1, mmdet's anchors / box decoding / RoIAlign."""
import math

import pytest
import torch
from torchvision import tv_tensors
from torchvision.models.detection.image_list import ImageList

from lsnet.checkpoints import CheckpointError, load_checkpoint
from lsnet.detection import DETECTORS, build_detector, faster_rcnn, mask_rcnn, retinanet
from lsnet.detection.models import MMDetAnchorGenerator, MMDetBoxCoder, MMDetRoIAlign

SIZE = 128
LOSSES = {
    "retinanet": {"classification", "bbox_regression"},
    "faster_rcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
    "mask_rcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_mask"},
}


def _targets(num_classes: int) -> tuple[list[torch.Tensor], list[dict]]:
    images = [torch.rand(3, SIZE, 96), torch.rand(3, 96, SIZE)]
    masks = torch.zeros(2, SIZE, 96, dtype=torch.uint8)
    masks[0, 10:60, 5:50] = 1
    masks[1, 70:120, 40:90] = 1
    targets = [dict(boxes=torch.tensor([[5.0, 10.0, 50.0, 60.0], [40.0, 70.0, 90.0, 120.0]]),
                    labels=torch.tensor([0, num_classes - 1]), masks=masks),
               dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64),
                    masks=torch.zeros(0, 96, SIZE, dtype=torch.uint8))]  # an image without objects
    return images, targets


@pytest.mark.parametrize("name", DETECTORS)
def test_train_and_eval(name):
    """Train mode: the named finite losses, gradients into body, neck and heads; eval: boxes / scores / labels
    (and masks) per image, labels 0..K-1 (the R-CNN family shifts torchvision's 1..K back)."""
    torch.manual_seed(0)
    num_classes = 3
    small = {} if name == "retinanet" else dict(box_batch_size_per_image=32)  # fewer RoIs: a faster mask head
    det = build_detector(name, "lsnet_test", num_classes, min_size=SIZE, max_size=SIZE, **small).train()
    images, targets = _targets(num_classes)
    if name == "mask_rcnn":  # what lsnet.data.coco gives: tv_tensors
        targets = [dict(t, boxes=tv_tensors.BoundingBoxes(t["boxes"], format="XYXY", canvas_size=i.shape[1:]),
                        masks=tv_tensors.Mask(t["masks"])) for t, i in zip(targets, images)]
    losses = det(images, targets)
    assert set(losses) == LOSSES[name] and all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    sum(losses.values()).backward()
    for module in (det.backbone.body, det.backbone.fpn, det.head if name == "retinanet" else det.roi_heads):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    # a classifier that always says class 1: RetinaNet has no background, R-CNN's background is torchvision's 0
    with torch.no_grad():
        if name == "retinanet":
            det.head.classification_head.cls_logits.bias.copy_(torch.tensor([-9.0, 5.0, -9.0]).repeat(9))
        else:
            det.roi_heads.box_predictor.cls_score.weight.zero_()
            det.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 0.0, 9.0, 0.0]))
        outputs = det.eval()(images)
    assert len(outputs) == 2
    for image, out in zip(images, outputs):
        keys = {"boxes", "scores", "labels"} | ({"masks"} if name == "mask_rcnn" else set())
        assert set(out) == keys and 0 < len(out["boxes"]) <= 100
        assert out["boxes"].shape[1] == 4 and out["labels"].dtype == torch.int64
        assert torch.all(out["labels"] == 1)
        assert out["boxes"][:, 2].max() <= image.shape[2] and out["boxes"][:, 3].max() <= image.shape[1]
        if name == "mask_rcnn":
            assert out["masks"].shape == (len(out["boxes"]), 1, *image.shape[1:])
            assert out["masks"].min() >= 0 and out["masks"].max() <= 1


def test_labels_must_be_class_indices():
    det = retinanet("lsnet_test", num_classes=3, min_size=SIZE, max_size=SIZE)
    images, targets = _targets(3)
    targets[0]["labels"] = torch.tensor([0, 3])
    with pytest.raises(ValueError, match=r"labels must be class indices 0\.\.2; got 0\.\.3"):
        det(images, targets)


def test_retinanet_anchors_are_mmdets():
    """One anchor by hand, mmdet's formula: w = stride * octave_base * 2^(i/3) / sqrt(ratio), centre at
    (col * stride, row * stride); not rounded; fixed strides even where the padded image does not divide."""
    det = retinanet("lsnet_test", num_classes=3)
    generator = det.anchor_generator
    assert isinstance(generator, MMDetAnchorGenerator) and generator.strides == (8, 16, 32, 64, 128)
    features = [torch.zeros(1, 1, math.ceil(224 / s), math.ceil(224 / s)) for s in generator.strides]
    anchors = generator(ImageList(torch.zeros(1, 3, 224, 224), [(200, 200)]), features)[0]
    assert len(anchors) == 9 * sum(f.shape[-1] ** 2 for f in features)
    # level 0 (stride 8, 28 x 28), row 1, col 2, ratio 0.5 (index 0), scale 2^(1/3) (index 1)
    w = 8 * 4 * 2 ** (1 / 3) / math.sqrt(0.5)
    h = 8 * 4 * 2 ** (1 / 3) * math.sqrt(0.5)
    expected = torch.tensor([16 - w / 2, 8 - h / 2, 16 + w / 2, 8 + h / 2])
    torch.testing.assert_close(anchors[(1 * 28 + 2) * 9 + 1], expected)
    assert expected[0] != expected[0].round()  # torchvision's default would round it
    # stride-128 level: 2 x 2 cells on a 224 px image (torchvision would infer stride 224 // 2 = 112)
    start = 9 * sum(f.shape[-1] ** 2 for f in features[:4])
    centre = anchors[start + 9 * 3 + 4].reshape(2, 2).mean(0)  # row 1, col 1, ratio 1, scale 1
    torch.testing.assert_close(centre, torch.tensor([128.0, 128.0]))


def test_rpn_anchors_and_roi_settings():
    det = mask_rcnn("lsnet_test", num_classes=3)
    generator = det.rpn.anchor_generator
    assert generator.strides == (4, 8, 16, 32, 64)
    base = generator.cell_anchors[0]  # stride 4, scale 8: ratios 0.5, 1, 2
    torch.testing.assert_close(base[0], torch.tensor([-16 * math.sqrt(2), -8 * math.sqrt(2),
                                                      16 * math.sqrt(2), 8 * math.sqrt(2)]))
    for pool, size in ((det.roi_heads.box_roi_pool, 7), (det.roi_heads.mask_roi_pool, 14)):
        assert pool.strides == (4, 8, 16, 32) and pool.output_size == (size, size) and pool.sampling_ratio == 0
    assert det.rpn._post_nms_top_n == dict(training=1000, testing=1000)
    assert det.rpn._pre_nms_top_n == dict(training=2000, testing=1000)
    assert (det.roi_heads.score_thresh, det.roi_heads.nms_thresh, det.roi_heads.detections_per_img) == (0.05, 0.5, 100)


def test_box_coder_clamps_both_sides():
    """mmdet clamps log-size deltas to +-log(1000/16); torchvision only from above."""
    coder = MMDetBoxCoder((10.0, 10.0, 5.0, 5.0))
    anchor = torch.tensor([[0.0, 0.0, 100.0, 50.0]])
    deltas = torch.tensor([[1.0, -2.0, -5.0 * 10, 5.0 * 10]])  # dx 0.1, dy -0.2, dw -10 (clamped), dh 10 (clamped)
    clip = math.log(1000 / 16)
    w, h = 100 * math.exp(-clip), 50 * math.exp(clip)
    cx, cy = 50 + 0.1 * 100, 25 - 0.2 * 50
    expected = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
    torch.testing.assert_close(coder.decode(deltas, [anchor]).reshape(1, 4), expected)


def test_roi_align_levels_and_half_pixel_offset():
    """mmdet's level of an RoI: floor(log2(sqrt(area) / 56)); mmcv's aligned=True sampling (half-pixel shift)."""
    pool = MMDetRoIAlign(["0", "1", "2", "3"], 2, (4, 8, 16, 32))
    rois = torch.tensor([[0, 0, 0, 100, 100], [0, 0, 0, 120, 120], [0, 0, 0, 250, 250], [0, 0, 0, 900, 900.0]])
    assert pool.roi_levels(rois).tolist() == [0, 1, 2, 3]
    ramp = torch.arange(64.0).repeat(64, 1)[None, None]  # value = column index on every level
    features = {str(i): ramp for i in range(4)}
    out = pool(features, [torch.tensor([[0.0, 0.0, 32.0, 32.0]])], [(256, 256)])  # level 0, stride 4: 8 x 8 cells
    # bins of 4 cells, 2 samples each at -0.5 + {1, 3} (+4): columns 0.5, 2.5 -> 1.5 and 4.5, 6.5 -> 5.5
    torch.testing.assert_close(out[0, 0], torch.tensor([[1.5, 5.5], [1.5, 5.5]]))


def test_detector_config_round_trip(tmp_path):
    """build_detector(**detector_config) rebuilds the same architecture (same seed: the same tensors), and our
    checkpoint container loads back through lsnet.checkpoints."""
    torch.manual_seed(0)
    det = mask_rcnn("lsnet_test", num_classes=4, min_size=SIZE, max_size=160, box_detections_per_img=50)
    config = det.detector_config
    assert config["detector"] == "mask_rcnn" and config["backbone"] == "lsnet_test" and config["num_classes"] == 4
    assert (config["min_size"], config["max_size"], config["freeze_bn"]) == (SIZE, 160, True)
    assert config["box_detections_per_img"] == 50 and config["backbone_kwargs"] == {"attn_bias_resize": "matrix"}
    torch.manual_seed(0)
    again = build_detector(**config)
    assert again.roi_heads.detections_per_img == 50 and again.transform.max_size == 160
    ours, theirs = det.state_dict(), again.state_dict()
    assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)

    torch.save({"model": ours, "config": {"task": "detection", "model": config}}, tmp_path / "best.pth")
    fresh = faster_rcnn("lsnet_test", num_classes=4)
    with pytest.raises(CheckpointError, match="unexpected keys"):  # a mask head in the file, none in a Faster R-CNN
        load_checkpoint(fresh, tmp_path / "best.pth")
    with pytest.raises(CheckpointError, match=r"has 4 classes, the model 2; build it with num_classes=4$"):
        mask_rcnn("lsnet_test", num_classes=2, checkpoint=tmp_path / "best.pth")
    loaded = mask_rcnn("lsnet_test", num_classes=4, checkpoint=tmp_path / "best.pth")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in ours.items())


def test_bad_detector_arguments():
    with pytest.raises(ValueError, match="unknown detector 'yolo'; choose one of"):
        build_detector("yolo", "lsnet_test", 3)
    with pytest.raises(ValueError, match="num_classes must be the number of object classes"):
        retinanet("lsnet_test", num_classes=0)


def test_masks_pasted_as_mmdet():
    """mmdet's _do_paste_mask: bilinear samples of the mask at every image pixel centre, zero outside. A 2 x 2 mask
    [[1, 0], [0, 0]] in the box (0, 0, 4, 4): pixel centres fall at mask coordinates -0.25, 0.25, 0.75, 1.25, so each
    axis weighs 0.75, 0.75, 0.25, 0 (the zero border and the zero cell)."""
    from lsnet.detection.models import paste_masks

    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    axis = torch.tensor([0.75, 0.75, 0.25, 0.0])
    out = paste_masks(mask, torch.tensor([[0.0, 0.0, 4.0, 4.0]]), 5, 6)
    expected = torch.zeros(1, 1, 5, 6)
    expected[0, 0, :4, :4] = axis[:, None] * axis[None, :]
    torch.testing.assert_close(out, expected)
