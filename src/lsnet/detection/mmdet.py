"""Official LSNet detectors (mmdet 2.x checkpoints) -> our torchvision detectors, by name.

    det = retinanet("lsnet_t", num_classes=80, checkpoint="lsnet_t_retinanet.pth")   # read by lsnet.checkpoints

`lsnet.checkpoints.fit_state_dict` calls `lsnet.detection.models.checkpoint_filter_fn`, which converts a state
dict in mmdet's layout here; the loader's strict fit check then names any key left over or missing. Names are
mmdet 2.28's (`RetinaHead`, `RPNHead`, `Shared2FCBBoxHead`, `FCNMaskHead`, ConvModule's `.conv`) and the official
`LSNetFPN`'s (`lateral_convs`, `fpn_convs`, `extra_trans_convs`, `extra_fpn_convs`):

    backbone.<official LSNet>                 -> backbone.body.model.<ours>   (LSNet's checkpoint_filter_fn)
    neck.<module>.N.conv.*                    -> backbone.fpn.<module>.N.*
    bbox_head.{cls,reg}_convs.N.conv.*        -> head.{classification,regression}_head.conv.N.0.*
    bbox_head.retina_cls / retina_reg         -> head.classification_head.cls_logits / regression_head.bbox_reg
    rpn_head.rpn_conv / rpn_cls / rpn_reg     -> rpn.head.conv.0.0 / cls_logits / bbox_pred
    roi_head.bbox_head.shared_fcs.0 / 1       -> roi_heads.box_head.fc6 / fc7
    roi_head.bbox_head.fc_cls / fc_reg        -> roi_heads.box_predictor.cls_score / bbox_pred
    roi_head.mask_head.convs.N.conv.*         -> roi_heads.mask_head.N.0.*
    roi_head.mask_head.upsample / conv_logits -> roi_heads.mask_predictor.conv5_mask / mask_fcn_logits

Class order: mmdet's box classifier has classes 0..K-1 then background (row K); torchvision's has background
first, so fc_cls rows become [K, 0, ..., K-1]. mmdet regresses K class-specific boxes and predicts K masks;
torchvision has a slot for background in both, filled with zeros (never used at inference).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from ..checkpoints import family_filter_fn

MMDET_PREFIXES = ("backbone.", "neck.", "bbox_head.", "rpn_head.", "roi_head.")

_RENAMES = (  # (mmdet pattern, ours); applied to the whole key
    (r"^neck\.(lateral_convs|fpn_convs|extra_trans_convs|extra_fpn_convs)\.(\d+)\.conv\.", r"backbone.fpn.\1.\2."),
    (r"^bbox_head\.cls_convs\.(\d+)\.conv\.", r"head.classification_head.conv.\1.0."),
    (r"^bbox_head\.reg_convs\.(\d+)\.conv\.", r"head.regression_head.conv.\1.0."),
    (r"^bbox_head\.retina_cls\.", "head.classification_head.cls_logits."),
    (r"^bbox_head\.retina_reg\.", "head.regression_head.bbox_reg."),
    (r"^rpn_head\.rpn_conv\.", "rpn.head.conv.0.0."),
    (r"^rpn_head\.rpn_cls\.", "rpn.head.cls_logits."),
    (r"^rpn_head\.rpn_reg\.", "rpn.head.bbox_pred."),
    (r"^roi_head\.bbox_head\.shared_fcs\.0\.", "roi_heads.box_head.fc6."),
    (r"^roi_head\.bbox_head\.shared_fcs\.1\.", "roi_heads.box_head.fc7."),
    (r"^roi_head\.bbox_head\.fc_cls\.", "roi_heads.box_predictor.cls_score."),
    (r"^roi_head\.bbox_head\.fc_reg\.", "roi_heads.box_predictor.bbox_pred."),
    (r"^roi_head\.mask_head\.convs\.(\d+)\.conv\.", r"roi_heads.mask_head.\1.0."),
    (r"^roi_head\.mask_head\.upsample\.", "roi_heads.mask_predictor.conv5_mask."),
    (r"^roi_head\.mask_head\.conv_logits\.", "roi_heads.mask_predictor.mask_fcn_logits."),
)
_RENAMES = tuple((re.compile(p), r) for p, r in _RENAMES)


def is_mmdet_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is in mmdet's detector layout (a 'neck.' and a head prefix)."""
    keys = list(state_dict)
    return any(k.startswith("neck.") for k in keys) and any(
        k.startswith(("bbox_head.", "rpn_head.", "roi_head.")) for k in keys)


def _body_model(model: nn.Module) -> nn.Module:
    body = model.backbone.body
    inner = getattr(body, "model", None)
    if inner is None or not hasattr(body, "feature_info"):
        raise ValueError(f"official mmdet detectors hold LSNet backbones, but this detector's body is a "
                         f"{type(body).__name__}; build it with backbone='lsnet_t' / 'lsnet_s' / 'lsnet_b'")
    return inner


def map_openmmlab_keys(state_dict: Mapping[str, torch.Tensor], body: nn.Module | None, body_prefix: str,
                       renames: tuple[tuple[re.Pattern, str], ...], kind: str, mapped: str) -> dict[str, torch.Tensor]:
    """An OpenMMLab (mmdet / mmseg) state dict in our keys: its 'backbone.' entries through the family
    `checkpoint_filter_fn` of `body` (the classifier-shaped body model; None: unchanged) under `body_prefix`, every
    other key through the first (pattern, replacement) of `renames` that matches. ValueError naming the keys no
    pattern maps; `kind` names the layout ('mmdet'), `mapped` the models that are mapped."""
    weights = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
    filter_fn = family_filter_fn(body) if body is not None else None
    out = {body_prefix + k: v for k, v in (filter_fn(weights, body) if filter_fn else weights).items()}
    unknown = []
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            continue
        for pattern, replacement in renames:
            if pattern.match(key):
                out[pattern.sub(replacement, key, count=1)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{len(unknown)} {kind} keys with no counterpart here [{', '.join(unknown[:5])}]: only "
                         f"{mapped} are mapped")
    return out


def check_num_classes(converted: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> None:
    """ValueError (one line, the fix) when a detector state dict in our keys has another class count than the
    model's state dict `own`."""
    for key, per_class, extra in (("head.classification_head.cls_logits.bias", None, 0),
                                  ("roi_heads.box_predictor.cls_score.bias", 1, 1)):
        if key in converted and key in own:
            if per_class is None:  # RetinaNet: anchors * classes outputs
                anchors = own["head.regression_head.bbox_reg.bias"].shape[0] // 4
                file_classes, model_classes = converted[key].shape[0] // anchors, own[key].shape[0] // anchors
            else:
                file_classes, model_classes = converted[key].shape[0] - extra, own[key].shape[0] - extra
            if file_classes != model_classes:
                raise ValueError(f"the file's detector has {file_classes} classes, the model {model_classes}; "
                                 f"build it with num_classes={file_classes}")


def convert_mmdet_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """mmdet 2.x RetinaNet / Faster / Mask R-CNN state dict -> `model`'s keys and class order.

    Raises ValueError (wrapped by the loader into a one-line CheckpointError) for keys it cannot map or a class
    count that differs from the model's.
    """
    out = map_openmmlab_keys(state_dict, _body_model(model), "backbone.body.model.", _RENAMES, "mmdet",
                             "RetinaNet, Faster R-CNN and Mask R-CNN with the LSNet FPN")
    own = model.state_dict()
    check_num_classes(out, own)
    _background_first(out)
    return out


def _background_first(sd: dict[str, torch.Tensor]) -> None:
    """mmdet R-CNN class order (classes, then background; no background box/mask) -> torchvision's, in place."""
    for suffix in ("weight", "bias"):
        cls = sd.get(f"roi_heads.box_predictor.cls_score.{suffix}")
        if cls is not None:
            sd[f"roi_heads.box_predictor.cls_score.{suffix}"] = torch.cat([cls[-1:], cls[:-1]])
        reg = sd.get(f"roi_heads.box_predictor.bbox_pred.{suffix}")
        if reg is not None:
            sd[f"roi_heads.box_predictor.bbox_pred.{suffix}"] = torch.cat([reg.new_zeros((4, *reg.shape[1:])), reg])
        logits = sd.get(f"roi_heads.mask_predictor.mask_fcn_logits.{suffix}")
        if logits is not None:
            sd[f"roi_heads.mask_predictor.mask_fcn_logits.{suffix}"] = torch.cat(
                [logits.new_zeros((1, *logits.shape[1:])), logits])


__all__ = ["MMDET_PREFIXES", "check_num_classes", "convert_mmdet_state_dict", "is_mmdet_state_dict"]
