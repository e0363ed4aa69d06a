"""Official mmseg 0.30 segmenters (e.g. `lsnet_{t,s,b}_semfpn.pth`) -> our segmenters, by name.

    seg = semantic_fpn("lsnet_t", num_classes=150, checkpoint="lsnet_t_semfpn.pth")   # read by lsnet.checkpoints

`lsnet.checkpoints.fit_state_dict` calls `lsnet.segmentation.models.checkpoint_filter_fn`, which converts a state
dict in mmseg's EncoderDecoder layout here; the loader's strict fit check then names any key left over or missing.
Names are mmseg 0.30's (`FPNHead.scale_heads`, `UPerHead.psp_modules / bottleneck / lateral_convs / fpn_convs /
fpn_bottleneck`, `FCNHead.convs`, `BaseDecodeHead.conv_seg`, mmcv ConvModule's `.conv` / `.bn`) and the official
`LSNetFPN`'s (`lateral_convs`, `fpn_convs`; convs without norm):

    backbone.<official body>                     -> body.model.<ours>   (the body family's checkpoint_filter_fn)
    neck.{lateral,fpn}_convs.N.conv.*            -> neck.{lateral,fpn}_convs.N.*
    decode_head.scale_heads.I.J.{conv,bn}.*      -> decode_head.scale_heads.I.J.{0,1}.*
    decode_head.psp_modules.I.1.{conv,bn}.*      -> decode_head.psp_modules.I.1.{0,1}.*
    decode_head.{bottleneck,fpn_bottleneck}.{conv,bn}.*, decode_head.{lateral,fpn}_convs.N.{conv,bn}.*  -> .{0,1}.*
    auxiliary_head.convs.N.{conv,bn}.*           -> auxiliary_head.convs.N.{0,1}.*
    {decode,auxiliary}_head.conv_seg.*           -> unchanged
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from ..detection.mmdet import map_openmmlab_keys

_CONV_MODULES = (r"decode_head\.(?:scale_heads\.\d+\.\d+|psp_modules\.\d+\.1|bottleneck|fpn_bottleneck|"
                 r"lateral_convs\.\d+|fpn_convs\.\d+)|auxiliary_head\.convs\.\d+")
_RENAMES = tuple((re.compile(p), r) for p, r in (
    (r"^neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.(weight|bias)$", r"neck.\1.\2.\3"),
    (rf"^({_CONV_MODULES})\.conv\.weight$", r"\1.0.weight"),
    (rf"^({_CONV_MODULES})\.bn\.(weight|bias|running_mean|running_var|num_batches_tracked)$", r"\1.1.\2"),
    (r"^(decode_head|auxiliary_head)\.conv_seg\.(weight|bias)$", r"\1.conv_seg.\2"),
))


def is_mmseg_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is in mmseg's EncoderDecoder layout ('backbone.' and 'decode_head.' prefixes; ours
    has 'body.' instead of 'backbone.')."""
    keys = list(state_dict)
    return any(k.startswith("backbone.") for k in keys) and any(k.startswith("decode_head.") for k in keys)


def check_num_classes(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> None:
    """ValueError (one line, the fix) when a segmenter state dict in our keys has another class count than `model`."""
    own = model.state_dict()
    for key in ("decode_head.conv_seg.bias", "auxiliary_head.conv_seg.bias"):
        if key in state_dict and key in own and state_dict[key].shape != own[key].shape:
            file_classes, model_classes = state_dict[key].shape[0], own[key].shape[0]
            raise ValueError(f"the file's segmenter has {file_classes} classes, the model {model_classes}; build it "
                             f"with num_classes={file_classes}")


def convert_mmseg_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """mmseg 0.30 Semantic FPN / UperNet state dict -> `model`'s keys.

    Raises ValueError (wrapped by the loader into a one-line CheckpointError) for keys it cannot map or a class
    count that differs from the model's.
    """
    inner = getattr(model.body, "model", None)  # timm's FeatureGetterNet wraps the classifier-shaped model
    out = map_openmmlab_keys(state_dict, inner, "body.model." if inner is not None else "body.", _RENAMES,
                             "mmseg", "Semantic FPN (FPNHead on the LSNet FPN) and UperNet (UPerHead + FCNHead)")
    check_num_classes(out, model)
    return out


__all__ = ["check_num_classes", "convert_mmseg_state_dict", "is_mmseg_state_dict"]
