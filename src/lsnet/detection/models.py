"""RetinaNet, Faster R-CNN and Mask R-CNN on any timm backbone, built from torchvision's detection parts.

    from lsnet.detection import retinanet, mask_rcnn, build_detector
    det = retinanet("lsnet_t", num_classes=80, backbone_checkpoint="lsnet_t.pth")    # ImageNet-initialised body
    det = retinanet("lsnet_t", num_classes=80, checkpoint="lsnet_t_retinanet.pth")   # an official mmdet detector
    det = build_detector(**det.detector_config)                                      # the same architecture again

The modules ARE torchvision's `RetinaNet` / `FasterRCNN` / `MaskRCNN` (torchvision's calling convention, losses,
matchers, heads, NMS), configured as the official LSNet detection configs (mmdet 2.28): the LSNet FPN
(`lsnet.detection.neck`), RetinaNet anchors of octave base scale 4 (3 scales per octave, ratios 0.5/1/2, strides
8..128), focal loss, IoU 0.5/0.4 matching with low-quality matches, top-1000 per level before NMS 0.5, score 0.05,
100 detections; Mask R-CNN anchors of scale 8 on strides 4..64, RoIAlign 7x7 / 14x14 (sampling 0) on strides 4..32,
a two-FC (1024) box head, a 4-conv mask head. Labels are 0..K-1 for every detector (the R-CNN family shifts them
to torchvision's 1..K internally, 0 being its background).

Where torchvision's defaults differ from mmdet's in a way that changes outputs, mmdet's behaviour is used, so that
official weights give official boxes:
  * anchors (`MMDetAnchorGenerator`): torchvision rounds base anchors to integers and infers each level's stride as
    image_size // feature_size (wrong when the padded size is not a multiple of the stride, e.g. stride 64 or 128 on
    a 32-padded image); mmdet keeps fractional base anchors (e.g. 40.3 px at stride 8) and fixed strides. Both centre
    anchors on the feature cell's top-left pixel (mmdet `center_offset=0`).
  * box decoding (`MMDetBoxCoder`): torchvision clamps log-size deltas only from above (log(1000/16)); mmdet clamps
    both sides ([-log(1000/16), log(1000/16)]).
  * RoIAlign (`MMDetRoIAlign`): mmcv's RoIAlign is `aligned=True` (half-pixel offset), torchvision's
    MultiScaleRoIAlign `aligned=False`; mmdet maps an RoI of scale s = sqrt(w h) to level floor(log2(s / 56 + 1e-6))
    with fixed strides, torchvision to floor(4 + log2(s / 224) + 1e-6) with strides inferred from sizes (the same
    levels; the fixed strides and mmdet's epsilon are used here).
  * R-CNN classes: mmdet's box classifier puts background LAST and regresses K class-specific boxes; torchvision's
    puts background first with K+1 boxes (`lsnet.detection.mmdet` reorders official weights).
  * RPN proposals kept per image: 1000 in training and testing as mmdet (torchvision's default: 2000 in training).
  * mask pasting (`MMDetTransform`, `paste_masks`): torchvision pastes with `paste_masks_in_image` (a 1-px padded
    mask resized into the integer box); mmdet samples the mask with grid_sample at each image pixel centre.
  * LSNet bodies are built with `attn_bias_resize="matrix"`: the official detection backbone resizes the gathered
    stage-4 bias matrix, not the bias table (`lsnet.models.lsnet.grid_attention_bias`).
With these, `benchmarks/mmdet_compare.py` finds the same detections as mmdet 2.28 on shared random weights
(RetinaNet: boxes and scores equal; Mask R-CNN: boxes within 1e-5 px, binary masks equal).
Kept from torchvision (they change training or pre-processing, not what given weights predict on a given tensor):
its losses (smooth-L1 RPN box loss, R-CNN losses normalised as torchvision does; mmdet uses L1), its matchers'
low-quality matching, input resize (floor of the scaled size, bilinear on float images; mmdet rounds and resizes
uint8 images with OpenCV), and R-CNN detections narrower than 0.01 px dropped.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import MultiScaleRoIAlign, roi_align

from ..checkpoints import load_checkpoint
from .backbone import DetectionBackbone, body_normalisation, create_body, default_body_kwargs
from .neck import LSNetFPN

DETECTORS = ("retinanet", "faster_rcnn", "mask_rcnn")
RETINANET_STRIDES = (8, 16, 32, 64, 128)
RCNN_STRIDES = (4, 8, 16, 32, 64)
ROI_LEVELS = 4  # RoIAlign on the four finest R-CNN levels (strides 4..32)


# --------------------------------------------------------------------------------------------- mmdet conventions
class MMDetAnchorGenerator(AnchorGenerator):
    """torchvision's AnchorGenerator with mmdet's anchors: fixed `strides`, base anchors not rounded.

    sizes[i]: anchor sizes (px, sqrt of the area) of level i; aspect_ratios[i]: height / width ratios.
    Per location the anchors run ratio-major, size-minor (as mmdet and torchvision both order them).
    """

    def __init__(self, sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[Sequence[float]],
                 strides: Sequence[int]):
        if not len(sizes) == len(aspect_ratios) == len(strides):
            raise ValueError(f"MMDetAnchorGenerator: one entry per level; got {len(sizes)} sizes, "
                             f"{len(aspect_ratios)} ratio sets, {len(strides)} strides")
        super().__init__(tuple(tuple(s) for s in sizes), tuple(tuple(a) for a in aspect_ratios))
        self.strides = tuple(int(s) for s in strides)

    def generate_anchors(self, scales: Sequence[float], aspect_ratios: Sequence[float],
                         dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """(len(ratios) * len(scales), 4) zero-centred XYXY anchors, not rounded."""
        scales = torch.as_tensor(scales, dtype=dtype, device=device)
        h_ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device).sqrt()
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2

    def forward(self, image_list: ImageList, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feature_maps) != len(self.strides):
            raise ValueError(f"MMDetAnchorGenerator: {len(self.strides)} levels configured, got {len(feature_maps)}")
        device = feature_maps[0].device
        grid_sizes = [list(f.shape[-2:]) for f in feature_maps]
        strides = [[torch.tensor(s, device=device), torch.tensor(s, device=device)] for s in self.strides]
        self.set_cell_anchors(feature_maps[0].dtype, device)
        levels = self.grid_anchors(grid_sizes, strides)
        return [torch.cat(levels) for _ in image_list.image_sizes]


class MMDetBoxCoder(BoxCoder):
    """torchvision's BoxCoder, decoding with mmdet's two-sided clamp of the log-size deltas."""

    def decode_single(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        codes = rel_codes.clone()
        _, _, ww, wh = self.weights
        codes[:, 2::4] = codes[:, 2::4].clamp(min=-self.bbox_xform_clip * ww)
        codes[:, 3::4] = codes[:, 3::4].clamp(min=-self.bbox_xform_clip * wh)
        return super().decode_single(codes, boxes)


class MMDetRoIAlign(MultiScaleRoIAlign):
    """Multi-level RoIAlign as mmdet's SingleRoIExtractor: `aligned=True`, fixed strides, mmdet's level mapping.

    x: feature maps by name; boxes: per image (N_i, 4) XYXY in input pixels -> (sum N_i, C, *output_size).
    """

    def __init__(self, featmap_names: Sequence[str], output_size: int, strides: Sequence[int],
                 sampling_ratio: int = 0, finest_scale: int = 56):
        super().__init__(list(featmap_names), output_size, sampling_ratio)
        self.strides = tuple(strides)
        self.finest_scale = finest_scale

    def roi_levels(self, rois: torch.Tensor) -> torch.Tensor:
        """(N, 5) RoIs -> (N,) level index: floor(log2(sqrt(area) / finest_scale + 1e-6)), clamped."""
        scale = ((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2])).sqrt()
        return (scale / self.finest_scale + 1e-6).log2().floor().clamp(0, len(self.strides) - 1).long()

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        features = [x[name] for name in self.featmap_names]
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])
        out = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        levels = self.roi_levels(rois)
        for level, (feature, stride) in enumerate(zip(features, self.strides)):
            index = torch.where(levels == level)[0]
            out[index] = roi_align(feature, rois[index], self.output_size, 1.0 / stride, self.sampling_ratio,
                                   aligned=True).to(out.dtype)
        return out


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int,
                max_elements: int = 1 << 25) -> torch.Tensor:
    """(N, 1, m, m) mask probabilities in their boxes (N, 4 XYXY pixels) -> (N, 1, height, width), as mmdet's
    `_do_paste_mask` (bilinear grid_sample at pixel centres, zero outside; its GPU path, the whole image)."""
    out = masks.new_zeros((len(masks), 1, height, width))
    ys = torch.arange(height, device=masks.device, dtype=torch.float32) + 0.5
    xs = torch.arange(width, device=masks.device, dtype=torch.float32) + 0.5
    step = max(1, max_elements // max(1, height * width))
    for start in range(0, len(masks), step):
        x0, y0, x1, y1 = boxes[start:start + step].float().split(1, dim=1)
        gy = ((ys - y0) / (y1 - y0) * 2 - 1).nan_to_num(0.0, 0.0, 0.0)  # (n, H); degenerate boxes -> 0 as mmdet
        gx = ((xs - x0) / (x1 - x0) * 2 - 1).nan_to_num(0.0, 0.0, 0.0)  # (n, W)
        n = len(gy)
        grid = torch.stack([gx[:, None, :].expand(n, height, width), gy[:, :, None].expand(n, height, width)], 3)
        out[start:start + step] = F.grid_sample(masks[start:start + step].float(), grid,
                                                align_corners=False).to(out.dtype)
    return out


class MMDetTransform(GeneralizedRCNNTransform):
    """torchvision's resize / normalise / batch transform; detections' masks pasted as mmdet does (`paste_masks`)."""

    def postprocess(self, result: list[dict[str, torch.Tensor]], image_shapes: list[tuple[int, int]],
                    original_image_sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        if self.training:
            return result
        for pred, resized, original in zip(result, image_shapes, original_image_sizes):
            pred["boxes"] = resize_boxes(pred["boxes"], resized, original)
            if "masks" in pred:
                pred["masks"] = paste_masks(pred["masks"], pred["boxes"], *original)
        return result


# ------------------------------------------------------------------------------------------------- detectors
def _plain_targets(targets: list[dict[str, torch.Tensor]] | None, num_classes: int,
                   shift: int) -> list[dict[str, torch.Tensor]] | None:
    """tv_tensors -> plain tensors; labels checked to be 0..K-1 and shifted by `shift`."""
    if targets is None:
        return None
    out = []
    for i, target in enumerate(targets):
        target = {k: v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v for k, v in target.items()}
        labels = target.get("labels")
        if labels is not None and labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"target {i}: labels must be class indices 0..{num_classes - 1}; got "
                             f"{labels.min().item()}..{labels.max().item()} (map dataset category ids to 0..K-1)")
        if labels is not None:
            target["labels"] = labels.long() + shift
        out.append(target)
    return out


class LSNetRetinaNet(RetinaNet):
    """torchvision RetinaNet (labels 0..K-1 in and out) with the mmdet conventions above."""

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None):
        return super().forward(images, _plain_targets(targets, self.head.classification_head.num_classes, 0))


class _ShiftedLabels:
    """R-CNN mixin: labels 0..K-1 in and out; torchvision's 0 (background) stays internal."""

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None):
        num_classes = self.roi_heads.box_predictor.cls_score.out_features - 1
        out = super().forward(images, _plain_targets(targets, num_classes, 1))
        if not self.training:
            for detection in out:
                detection["labels"] = detection["labels"] - 1
        return out


class LSNetFasterRCNN(_ShiftedLabels, FasterRCNN):
    """torchvision FasterRCNN (labels 0..K-1) with the mmdet conventions above."""


class LSNetMaskRCNN(_ShiftedLabels, MaskRCNN):
    """torchvision MaskRCNN (labels 0..K-1, masks (N, 1, H, W) probabilities) with the mmdet conventions above."""


def _backbone(backbone: str, strides: tuple[int, ...], extra_convs_on_input: bool, *, freeze_bn: bool,
              pretrained: bool, backbone_checkpoint: str | os.PathLike | None,
              backbone_kwargs: dict[str, Any]) -> DetectionBackbone:
    """Body levels of stride >= strides[0] (<= 4 of them) + the LSNet FPN up to `strides` (transposed-conv levels
    below the body's finest stride, extra levels above its coarsest)."""
    body = create_body(backbone, min_stride=strides[0], max_levels=4, pretrained=pretrained,
                       checkpoint=backbone_checkpoint, **backbone_kwargs)
    body_strides = tuple(body.feature_info.reduction())
    num_trans = max(0, round(math.log2(body_strides[0] / strides[0])))
    neck = LSNetFPN(body.feature_info.channels(), body_strides, 256, num_outs=max(len(strides), num_trans + len(
        body_strides)), extra_convs_on_input=extra_convs_on_input, num_trans_convs=num_trans)
    return DetectionBackbone(body, neck, freeze_bn=freeze_bn)


def _finish(model: torch.nn.Module, config: dict[str, Any], checkpoint: str | os.PathLike | None) -> torch.nn.Module:
    model.detector_config = config
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)  # ours, or an official mmdet file (checkpoint_filter_fn below)
    return model


def retinanet(backbone: str, num_classes: int, *, backbone_checkpoint: str | os.PathLike | None = None,
              checkpoint: str | os.PathLike | None = None, pretrained: bool = False, freeze_bn: bool = True,
              min_size: int = 800, max_size: int = 1333, backbone_kwargs: dict | None = None,
              **detector_kwargs: Any) -> LSNetRetinaNet:
    """RetinaNet as `retinanet_lsnet_{t,s,b}_fpn_1x_coco.py`; num_classes: object classes (labels 0..K-1).

    backbone_checkpoint: classification weights for the body; checkpoint: a whole detector (ours or official
    mmdet); pretrained: timm hub weights for the body; detector_kwargs: torchvision RetinaNet arguments.
    """
    _check_classes(num_classes)
    backbone_kwargs = default_body_kwargs(backbone, backbone_kwargs)
    net = _backbone(backbone, RETINANET_STRIDES, True, freeze_bn=freeze_bn, pretrained=pretrained,
                    backbone_checkpoint=backbone_checkpoint, backbone_kwargs=backbone_kwargs)
    strides = net.strides
    octave = [4 * 2 ** (i / 3) for i in range(3)]
    anchors = MMDetAnchorGenerator([[s * o for o in octave] for s in strides], [[0.5, 1.0, 2.0]] * len(strides),
                                   strides)
    detector_kwargs = {**body_normalisation(net.body), **detector_kwargs}
    settings = dict(score_thresh=0.05, nms_thresh=0.5, detections_per_img=100, fg_iou_thresh=0.5,
                    bg_iou_thresh=0.4, topk_candidates=1000, size_divisible=32, **detector_kwargs)
    head = RetinaNetHead(net.out_channels, anchors.num_anchors_per_location()[0], num_classes)
    model = LSNetRetinaNet(net, num_classes, min_size=min_size, max_size=max_size, anchor_generator=anchors,
                           head=head, **settings)
    model.box_coder = MMDetBoxCoder((1.0, 1.0, 1.0, 1.0))
    config = dict(detector="retinanet", backbone=backbone, num_classes=num_classes, min_size=min_size,
                  max_size=max_size, freeze_bn=freeze_bn, backbone_kwargs=backbone_kwargs, **detector_kwargs)
    return _finish(model, config, checkpoint)


def _rcnn(cls: type, name: str, backbone: str, num_classes: int, masks: bool, *,
          backbone_checkpoint: str | os.PathLike | None, checkpoint: str | os.PathLike | None, pretrained: bool,
          freeze_bn: bool, min_size: int, max_size: int, backbone_kwargs: dict | None,
          detector_kwargs: dict[str, Any]) -> torch.nn.Module:
    _check_classes(num_classes)
    backbone_kwargs = default_body_kwargs(backbone, backbone_kwargs)
    net = _backbone(backbone, RCNN_STRIDES, False, freeze_bn=freeze_bn, pretrained=pretrained,
                    backbone_checkpoint=backbone_checkpoint, backbone_kwargs=backbone_kwargs)
    strides = net.strides
    anchors = MMDetAnchorGenerator([[8 * s] for s in strides], [[0.5, 1.0, 2.0]] * len(strides), strides)
    names = [str(i) for i in range(ROI_LEVELS)]
    detector_kwargs = {**body_normalisation(net.body), **detector_kwargs}
    settings = dict(
        rpn_pre_nms_top_n_train=2000, rpn_post_nms_top_n_train=1000, rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7, box_score_thresh=0.05, box_nms_thresh=0.5,
        box_detections_per_img=100, size_divisible=32,
        box_roi_pool=MMDetRoIAlign(names, 7, strides[:ROI_LEVELS]))
    if masks:
        settings["mask_roi_pool"] = MMDetRoIAlign(names, 14, strides[:ROI_LEVELS])
    settings.update(detector_kwargs)
    model = cls(net, num_classes + 1, min_size=min_size, max_size=max_size, rpn_anchor_generator=anchors, **settings)
    model.transform = MMDetTransform(min_size, max_size, settings["image_mean"], settings["image_std"],
                                     size_divisible=settings["size_divisible"], fixed_size=settings.get("fixed_size"),
                                     _skip_resize=settings.get("_skip_resize", False))
    model.rpn.box_coder = MMDetBoxCoder((1.0, 1.0, 1.0, 1.0))
    model.roi_heads.box_coder = MMDetBoxCoder((10.0, 10.0, 5.0, 5.0))  # mmdet target_stds (0.1, 0.1, 0.2, 0.2)
    config = dict(detector=name, backbone=backbone, num_classes=num_classes, min_size=min_size, max_size=max_size,
                  freeze_bn=freeze_bn, backbone_kwargs=backbone_kwargs, **detector_kwargs)
    return _finish(model, config, checkpoint)


def faster_rcnn(backbone: str, num_classes: int, *, backbone_checkpoint: str | os.PathLike | None = None,
                checkpoint: str | os.PathLike | None = None, pretrained: bool = False, freeze_bn: bool = True,
                min_size: int = 800, max_size: int = 1333, backbone_kwargs: dict | None = None,
                **detector_kwargs: Any) -> LSNetFasterRCNN:
    """Faster R-CNN: the Mask R-CNN below without its mask branch; arguments as `retinanet`."""
    return _rcnn(LSNetFasterRCNN, "faster_rcnn", backbone, num_classes, False,
                 backbone_checkpoint=backbone_checkpoint, checkpoint=checkpoint, pretrained=pretrained,
                 freeze_bn=freeze_bn, min_size=min_size, max_size=max_size, backbone_kwargs=backbone_kwargs,
                 detector_kwargs=detector_kwargs)


def mask_rcnn(backbone: str, num_classes: int, *, backbone_checkpoint: str | os.PathLike | None = None,
              checkpoint: str | os.PathLike | None = None, pretrained: bool = False, freeze_bn: bool = True,
              min_size: int = 800, max_size: int = 1333, backbone_kwargs: dict | None = None,
              **detector_kwargs: Any) -> LSNetMaskRCNN:
    """Mask R-CNN as `mask_rcnn_lsnet_{t,s,b}_fpn_1x_coco.py`; arguments as `retinanet` (torchvision MaskRCNN
    arguments in detector_kwargs)."""
    return _rcnn(LSNetMaskRCNN, "mask_rcnn", backbone, num_classes, True,
                 backbone_checkpoint=backbone_checkpoint, checkpoint=checkpoint, pretrained=pretrained,
                 freeze_bn=freeze_bn, min_size=min_size, max_size=max_size, backbone_kwargs=backbone_kwargs,
                 detector_kwargs=detector_kwargs)


_BUILDERS = {"retinanet": retinanet, "faster_rcnn": faster_rcnn, "mask_rcnn": mask_rcnn}


def build_detector(detector: str | None = None, backbone: str | None = None, num_classes: int | None = None, *,
                   name: str | None = None, **kwargs: Any) -> torch.nn.Module:
    """`retinanet` / `faster_rcnn` / `mask_rcnn` by name (`detector` or `name`, one of DETECTORS);
    `build_detector(**model.detector_config)` rebuilds a detector's architecture."""
    detector = detector or name
    if detector not in _BUILDERS:
        raise ValueError(f"unknown detector {detector!r}; choose one of {DETECTORS}")
    if backbone is None or num_classes is None:
        raise TypeError(f"build_detector({detector!r}): pass backbone= (a timm model name) and num_classes=")
    return _BUILDERS[detector](backbone, num_classes, **kwargs)


def _check_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be the number of object classes (>= 1, no background); got "
                         f"{num_classes!r}")


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Found by `lsnet.checkpoints.fit_state_dict` for the detectors here: an official mmdet detector state dict
    is converted (`lsnet.detection.mmdet`); ours passes through. Another class count is a one-line error."""
    from .mmdet import check_num_classes, convert_mmdet_state_dict, is_mmdet_state_dict

    if is_mmdet_state_dict(state_dict):
        return convert_mmdet_state_dict(state_dict, model)
    check_num_classes(state_dict, model.state_dict())
    return OrderedDict(state_dict)


__all__ = ["DETECTORS", "LSNetFasterRCNN", "LSNetMaskRCNN", "LSNetRetinaNet", "MMDetAnchorGenerator",
           "MMDetBoxCoder", "MMDetRoIAlign", "build_detector", "checkpoint_filter_fn", "faster_rcnn", "mask_rcnn",
           "retinanet"]
