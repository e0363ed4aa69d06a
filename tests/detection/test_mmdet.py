"""Official mmdet 2.x detector files -> our detectors: a synthetic state dict of mmdet's FULL layout, written from
mmdet 2.28's module names (RetinaHead, RPNHead, Shared2FCBBoxHead, FCNMaskHead, ConvModule's `.conv`) and the
official LSNetFPN's, independently of the key map in lsnet.detection.mmdet."""
import pytest
import torch
import torch.nn.functional as F

from contract import random_official_state_dict
from lsnet.checkpoints import CheckpointError
from lsnet.detection import mask_rcnn, retinanet

K, A = 3, 9  # classes; RetinaNet anchors per location
CHANNELS = (64, 128, 256, 384)  # LSNet-T


def _conv(shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    return {"weight": shape, "bias": (shape[1] if len(shape) == 4 and shape[-1] == 2 else shape[0],)}


def mmdet_layout(detector: str) -> dict[str, tuple[int, ...]]:
    """mmdet key -> shape of an LSNet-T RetinaNet / Mask R-CNN with K classes (head and neck; backbone apart)."""
    layout = {}

    def add(prefix, shape):
        layout.update({f"{prefix}.{k}": v for k, v in _conv(shape).items()})

    for i, c in enumerate(CHANNELS):
        add(f"neck.lateral_convs.{i}.conv", (256, c, 1, 1))
        add(f"neck.fpn_convs.{i}.conv", (256, 256, 3, 3))
    if detector == "retinanet":
        add("neck.fpn_convs.4.conv", (256, CHANNELS[-1], 3, 3))  # add_extra_convs='on_input'
        for i in range(4):
            add(f"bbox_head.cls_convs.{i}.conv", (256, 256, 3, 3))
            add(f"bbox_head.reg_convs.{i}.conv", (256, 256, 3, 3))
        add("bbox_head.retina_cls", (A * K, 256, 3, 3))
        add("bbox_head.retina_reg", (A * 4, 256, 3, 3))
        return layout
    add("neck.extra_trans_convs.0.conv", (256, 256, 2, 2))  # ConvTranspose2d: (in, out, k, k)
    add("neck.extra_fpn_convs.0.conv", (256, 256, 3, 3))
    add("rpn_head.rpn_conv", (256, 256, 3, 3))
    add("rpn_head.rpn_cls", (3, 256, 1, 1))
    add("rpn_head.rpn_reg", (12, 256, 1, 1))
    add("roi_head.bbox_head.shared_fcs.0", (1024, 256 * 7 * 7))
    add("roi_head.bbox_head.shared_fcs.1", (1024, 1024))
    add("roi_head.bbox_head.fc_cls", (K + 1, 1024))  # classes 0..K-1, then background
    add("roi_head.bbox_head.fc_reg", (4 * K, 1024))  # class-specific, no background
    for i in range(4):
        add(f"roi_head.mask_head.convs.{i}.conv", (256, 256, 3, 3))
    add("roi_head.mask_head.upsample", (256, 256, 2, 2))
    add("roi_head.mask_head.conv_logits", (K, 256, 1, 1))
    return layout


def mmdet_state_dict(detector: str, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    backbone = {f"backbone.{k}": v for k, v in random_official_state_dict("lsnet_t", seed).items()
                if not k.startswith("head")}  # mmdet's backbone has no classifier
    heads = {k: torch.randn(shape, generator=generator) * 0.05 for k, shape in mmdet_layout(detector).items()}
    return {**backbone, **heads}


def _save(tmp_path, state_dict, name="official.pth"):
    path = tmp_path / name
    torch.save({"meta": {"mmdet_version": "2.28.2", "epoch": 12}, "state_dict": state_dict}, path)
    return path


def test_retinanet_from_mmdet(tmp_path):
    sd = mmdet_state_dict("retinanet")
    det = retinanet("lsnet_t", num_classes=K, checkpoint=_save(tmp_path, sd)).eval()
    own = det.state_dict()
    assert torch.equal(own["backbone.body.model.stem.0.conv.weight"], sd["backbone.patch_embed.0.c.weight"])
    assert torch.equal(own["backbone.fpn.fpn_convs.4.weight"], sd["neck.fpn_convs.4.conv.weight"])
    assert torch.equal(own["head.regression_head.conv.3.0.bias"], sd["bbox_head.reg_convs.3.conv.bias"])
    # the head's outputs on a feature map are mmdet's RetinaHead computed by hand from the file's tensors
    feature = torch.randn(1, 256, 5, 4)
    x = feature
    for i in range(4):
        x = F.relu(F.conv2d(x, sd[f"bbox_head.cls_convs.{i}.conv.weight"], sd[f"bbox_head.cls_convs.{i}.conv.bias"],
                            padding=1))
    logits = F.conv2d(x, sd["bbox_head.retina_cls.weight"], sd["bbox_head.retina_cls.bias"], padding=1)
    expected = logits.permute(0, 2, 3, 1).reshape(1, -1, K)  # mmdet: (H, W, anchor, class) order
    with torch.no_grad():
        got = det.head.classification_head([feature])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_mask_rcnn_from_mmdet_reorders_classes(tmp_path):
    """mmdet's fc_cls row K (background) becomes row 0, class rows keep their order; box and mask slots for
    background are zeros; the converted heads give mmdet's class scores, boxes and masks per class."""
    sd = mmdet_state_dict("mask_rcnn")
    det = mask_rcnn("lsnet_t", num_classes=K, checkpoint=_save(tmp_path, sd)).eval()
    own = det.state_dict()
    cls_w = own["roi_heads.box_predictor.cls_score.weight"]
    assert torch.equal(cls_w[0], sd["roi_head.bbox_head.fc_cls.weight"][K])
    assert torch.equal(cls_w[1:], sd["roi_head.bbox_head.fc_cls.weight"][:K])
    reg_b = own["roi_heads.box_predictor.bbox_pred.bias"]
    assert torch.equal(reg_b[:4], torch.zeros(4)) and torch.equal(reg_b[4:], sd["roi_head.bbox_head.fc_reg.bias"])
    assert torch.equal(own["roi_heads.mask_predictor.mask_fcn_logits.weight"][1:],
                       sd["roi_head.mask_head.conv_logits.weight"])
    assert torch.equal(own["backbone.fpn.extra_trans_convs.0.weight"], sd["neck.extra_trans_convs.0.conv.weight"])
    assert torch.equal(own["rpn.head.conv.0.0.weight"], sd["rpn_head.rpn_conv.weight"])
    assert torch.equal(own["roi_heads.mask_head.2.0.bias"], sd["roi_head.mask_head.convs.2.conv.bias"])

    rois = torch.randn(2, 256, 7, 7)
    hidden = rois.flatten(1)
    for i in range(2):
        hidden = F.relu(F.linear(hidden, sd[f"roi_head.bbox_head.shared_fcs.{i}.weight"],
                                 sd[f"roi_head.bbox_head.shared_fcs.{i}.bias"]))
    mmdet_scores = F.linear(hidden, sd["roi_head.bbox_head.fc_cls.weight"], sd["roi_head.bbox_head.fc_cls.bias"])
    mmdet_scores = mmdet_scores.softmax(-1)  # mmdet: classes then background
    mmdet_deltas = F.linear(hidden, sd["roi_head.bbox_head.fc_reg.weight"], sd["roi_head.bbox_head.fc_reg.bias"])
    with torch.no_grad():
        logits, deltas = det.roi_heads.box_predictor(det.roi_heads.box_head(rois))
    scores = logits.softmax(-1)
    torch.testing.assert_close(scores[:, 1:], mmdet_scores[:, :K])  # torchvision label j + 1 = mmdet class j
    torch.testing.assert_close(scores[:, 0], mmdet_scores[:, K])
    torch.testing.assert_close(deltas[:, 4:], mmdet_deltas, rtol=1e-4, atol=1e-4)

    masks = torch.randn(1, 256, 14, 14)
    x = masks
    for i in range(4):
        x = F.relu(F.conv2d(x, sd[f"roi_head.mask_head.convs.{i}.conv.weight"],
                            sd[f"roi_head.mask_head.convs.{i}.conv.bias"], padding=1))
    x = F.relu(F.conv_transpose2d(x, sd["roi_head.mask_head.upsample.weight"], sd["roi_head.mask_head.upsample.bias"],
                                  stride=2))
    mmdet_masks = F.conv2d(x, sd["roi_head.mask_head.conv_logits.weight"], sd["roi_head.mask_head.conv_logits.bias"])
    with torch.no_grad():
        got = det.roi_heads.mask_predictor(det.roi_heads.mask_head(masks))
    torch.testing.assert_close(got[:, 1:], mmdet_masks, rtol=1e-4, atol=1e-4)


def test_mmdet_file_errors(tmp_path):
    """Another class count, a key that maps nowhere, a missing tensor: one line each, with the fix."""
    sd = mmdet_state_dict("retinanet")
    with pytest.raises(CheckpointError, match=r"has 3 classes, the model 80; build it with num_classes=3$"):
        retinanet("lsnet_t", num_classes=80, checkpoint=_save(tmp_path, sd))
    extra = dict(sd, **{"bbox_head.centerness.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"1 mmdet keys with no counterpart here \[bbox_head.centerness.weight"):
        retinanet("lsnet_t", num_classes=K, checkpoint=_save(tmp_path, extra, "extra.pth"))
    missing = {k: v for k, v in sd.items() if k != "bbox_head.retina_reg.bias"}
    with pytest.raises(CheckpointError, match=r"missing keys \[head.regression_head.bbox_reg.bias\]"):
        retinanet("lsnet_t", num_classes=K, checkpoint=_save(tmp_path, missing, "missing.pth"))
    with pytest.raises(CheckpointError, match="unexpected keys"):  # a Mask R-CNN file into a RetinaNet
        retinanet("lsnet_t", num_classes=K, checkpoint=_save(tmp_path, mmdet_state_dict("mask_rcnn"), "m.pth"))
