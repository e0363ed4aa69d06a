"""Our RetinaNet / Mask R-CNN against mmdet 2.28's on the same random weights and the same LSNet-T body (CPU).

The official LSNet detectors run in mmdet 2.28 + mmcv-full 1.7; this checks that the same weights give the same
detections through `lsnet.detection` (the mmdet key map, class order, anchors, box coder, NMS, RoIAlign levels).
mmcv is installed WITHOUT compiled ops (`MMCV_WITH_OPS=0`): the two ops the test path needs, NMS and RoIAlign, are
stood in for by torchvision's (mmcv's CUDA/CPU kernels compute the same functions), injected as `mmcv._ext` below.
The body is our LSNet-T in both (registered as an mmdet backbone), so neck + heads + post-processing are compared.

    python3 -m venv /tmp/mmdet-venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/mmdet-venv/lib/python3.11/site-packages/project.pth
    /tmp/mmdet-venv/bin/pip install "setuptools<70" wheel six platformdirs pycocotools terminaltables
    MMCV_WITH_OPS=0 /tmp/mmdet-venv/bin/pip install --no-build-isolation --no-deps mmcv==1.7.2 mmdet==2.28.2 addict yapf
    PYTHONPATH=src /tmp/mmdet-venv/bin/python benchmarks/mmdet_compare.py \
        --lsnet-fpn <a jameslahm/lsnet checkout>/detection/model/lsnet_fpn.py
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import torchvision


def _stub_mmcv_ext() -> None:
    ext = types.ModuleType("mmcv._ext")
    ext.nms = lambda boxes, scores, iou_threshold=0.5, offset=0: torchvision.ops.nms(boxes, scores, iou_threshold)

    def roi_align_forward(input, rois, output, argmax_y, argmax_x, aligned_height, aligned_width, spatial_scale,
                          sampling_ratio, pool_mode, aligned):
        assert pool_mode == 1  # avg
        output.copy_(torchvision.ops.roi_align(input, rois, (aligned_height, aligned_width), spatial_scale,
                                               sampling_ratio, aligned))

    ext.roi_align_forward = roi_align_forward

    def missing(name):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise NotImplementedError(f"mmcv._ext stub: {name} is not available")

        return unavailable

    ext.__getattr__ = missing
    sys.modules["mmcv._ext"] = ext


def _register(lsnet_fpn: Path) -> None:
    from mmdet.models.builder import BACKBONES

    from lsnet.models.lsnet import MODEL_ARGS, LSNet

    spec = importlib.util.spec_from_file_location("official_lsnet_fpn", lsnet_fpn)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # registers LSNetFPN in mmdet's NECKS

    @BACKBONES.register_module()
    class OurLSNetT(LSNet):
        def __init__(self):
            super().__init__(**MODEL_ARGS["lsnet_t"], num_classes=0, attn_bias_resize="matrix")

        def init_weights(self):
            pass

        def forward(self, x):
            return tuple(self.forward_intermediates(x, intermediates_only=True))


NECK = dict(type="LSNetFPN", in_channels=[64, 128, 256, 384], out_channels=256, start_level=0, num_outs=5)
RETINANET = dict(
    type="RetinaNet", backbone=dict(type="OurLSNetT"), neck=dict(NECK, add_extra_convs="on_input"),
    bbox_head=dict(type="RetinaHead", num_classes=80, in_channels=256, stacked_convs=4, feat_channels=256,
                   anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3,
                                         ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128]),
                   bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
                   loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                   loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                  max_per_img=100))
_ROI = dict(type="SingleRoIExtractor", out_channels=256, featmap_strides=[4, 8, 16, 32])
MASK_RCNN = dict(
    type="MaskRCNN", backbone=dict(type="OurLSNetT"), neck=dict(NECK, num_extra_trans_convs=1),
    rpn_head=dict(type="RPNHead", in_channels=256, feat_channels=256,
                  anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0],
                                        strides=[4, 8, 16, 32, 64]),
                  bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
                  loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True), loss_bbox=dict(type="L1Loss")),
    roi_head=dict(
        type="StandardRoIHead",
        bbox_roi_extractor=dict(_ROI, roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0)),
        bbox_head=dict(type="Shared2FCBBoxHead", in_channels=256, fc_out_channels=1024, roi_feat_size=7,
                       num_classes=80, reg_class_agnostic=False,
                       bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4,
                                       target_stds=[0.1, 0.1, 0.2, 0.2]),
                       loss_cls=dict(type="CrossEntropyLoss"), loss_bbox=dict(type="L1Loss")),
        mask_roi_extractor=dict(_ROI, roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0)),
        mask_head=dict(type="FCNMaskHead", num_convs=4, in_channels=256, conv_out_channels=256, num_classes=80,
                       loss_mask=dict(type="CrossEntropyLoss", use_mask=True))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
                  rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100,
                            mask_thr_binary=0.5)))


def _mmdet_model(cfg: dict, seed: int) -> torch.nn.Module:
    from mmcv import ConfigDict
    from mmdet.models import build_detector

    torch.manual_seed(seed)
    model = build_detector(ConfigDict(cfg))
    model.init_weights()
    with torch.no_grad():  # spread the random scores so that detections pass the 0.05 threshold
        for name, p in model.named_parameters():
            if name.endswith("attention_biases"):  # zeros at init: make the stage-4 bias resize matter
                p.normal_(0, 1.0)
            elif name.startswith("backbone.") and name.endswith("bn.weight") and not p.any():
                p.normal_(0, 0.2)  # LSNet zero-inits its residual branches' last BN: switch them on
            elif name.endswith(("retina_cls.bias", "rpn_cls.bias")):
                p.normal_(-1.0, 0.5)
            elif "fc_cls" in name:
                p.normal_(0, 0.05 if name.endswith("weight") else 1.0)
    return model.eval()


def _mmdet_detections(model, image: torch.Tensor, masks: bool):
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    h, w = image.shape[-2:]
    meta = dict(img_shape=(h, w, 3), ori_shape=(h, w, 3), pad_shape=(h, w, 3), batch_input_shape=(h, w),
                scale_factor=np.ones(4, dtype=np.float32), flip=False)
    with torch.no_grad():
        result = model.simple_test(((image - mean) / std)[None], [meta], rescale=True)[0]
    boxes_per_class = result[0] if masks else result
    boxes = np.concatenate(boxes_per_class)
    labels = np.concatenate([np.full(len(b), c) for c, b in enumerate(boxes_per_class)])
    out = dict(boxes=torch.from_numpy(boxes[:, :4]), scores=torch.from_numpy(boxes[:, 4]),
               labels=torch.from_numpy(labels))
    if masks:
        out["masks"] = torch.from_numpy(np.concatenate([np.stack(m) for m in result[1] if len(m)]))
    return out


def _sorted(det: dict) -> dict:
    """By score, ties (equal scores of different anchors) by label and box."""
    keys = [det["boxes"][:, i].numpy() for i in reversed(range(4))]
    order = torch.from_numpy(np.lexsort([*keys, det["labels"].numpy(), -det["scores"].numpy()]))
    return {k: v[order] for k, v in det.items()}


def compare(detector: str, lsnet_fpn: Path, seed: int = 0) -> dict:
    from lsnet.detection import build_detector

    masks = detector == "mask_rcnn"
    theirs = _mmdet_model(MASK_RCNN if masks else RETINANET, seed)
    torch.manual_seed(seed + 1)
    image = torch.rand(3, 256, 320)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mmdet.pth"
        torch.save(dict(meta=dict(mmdet_version="2.28.2"), state_dict=theirs.state_dict()), path)
        ours = build_detector(detector, "lsnet_t", 80, min_size=256, max_size=1333, checkpoint=path).eval()
    reference = _sorted(_mmdet_detections(theirs, image, masks))
    with torch.no_grad():
        got = _sorted(ours([image])[0])
    n = min(len(reference["scores"]), len(got["scores"]))
    report = dict(detector=detector, mmdet=len(reference["scores"]), ours=len(got["scores"]),
                  max_box_diff=float((reference["boxes"][:n] - got["boxes"][:n]).abs().max()) if n else 0.0,
                  max_score_diff=float((reference["scores"][:n] - got["scores"][:n]).abs().max()) if n else 0.0,
                  labels_equal=bool(torch.equal(reference["labels"][:n], got["labels"][:n])))
    if masks and n:
        binary = got["masks"][:n, 0] >= 0.5  # mmdet's mask_thr_binary test
        inter = (binary & reference["masks"][:n]).sum((1, 2)).float()
        union = (binary | reference["masks"][:n]).sum((1, 2)).float()
        report["mask_iou_mean"] = float(torch.where(union > 0, inter / union.clamp(min=1), 1.0).mean())  # empty: 1
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lsnet-fpn", type=Path, required=True, help="the official detection/model/lsnet_fpn.py")
    parser.add_argument("--detectors", nargs="+", default=["retinanet", "mask_rcnn"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    _stub_mmcv_ext()
    _register(args.lsnet_fpn)
    for detector in args.detectors:
        print(compare(detector, args.lsnet_fpn, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
