"""Semantic FPN and UperNet on any timm `features_only` backbone.

    from lsnet.segmentation import semantic_fpn, upernet, build_segmenter
    seg = semantic_fpn("lsnet_t", num_classes=150, backbone_checkpoint="lsnet_t.pth")   # ImageNet-initialised body
    seg = semantic_fpn("lsnet_t", num_classes=150, checkpoint="lsnet_t_semfpn.pth")      # an official mmseg model
    seg = upernet("conv2former_t", num_classes=150)                                     # + auxiliary FCN head
    out = seg(images)                       # images (B, 3, H, W) in [0, 1] -> {"out": (B, 150, H, W) logits}
    seg = build_segmenter(**seg.segmenter_config)                                       # the same architecture

Semantic FPN as `fpn_lsnet_{t,s,b}_ade20k_40k.py` (mmseg 0.30 EncoderDecoder): the body's levels of stride >= 4
(at most four; LSNet 8..64, ResNet 4..32), the LSNet FPN neck (`lsnet.detection.neck`, 256 channels, one output per
body level, no extra levels), mmseg's FPNHead (128 channels, dropout 0.1). UperNet as mmseg's `upernet_r50.py`, which
the Conv2Former (via Swin's) and UniConvNet configs use: UPerHead on the body's levels directly (512 channels, pool
scales 1, 2, 3, 6) and an auxiliary FCNHead on level 2 (256 channels, one conv, no input concat; its loss weighs
`AUX_LOSS_WEIGHT` = 0.4 in training). The logits are resized bilinearly (align_corners=False) to the input size.

The model normalises its [0, 1] input with the body's mean / std (`body_normalisation`: a backbone checkpoint's own,
else the pretrained cfg's, else ImageNet's), recorded in `segmenter_config`. Frozen BatchNorm (`freeze_bn`): the
official LSNet segmentation backbone keeps every BatchNorm of the body in eval mode in training (the Semantic FPN
default, True); mmseg's UperNet configs train the body's norms (`norm_eval=False`: the UperNet default, False).
The heads' norms always train (mmseg: SyncBN; here BatchNorm2d, which a DDP task may convert to SyncBatchNorm).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_checkpoint
from ..detection.backbone import body_normalisation, create_body, default_body_kwargs, freeze_batchnorm
from ..detection.neck import LSNetFPN
from .heads import FCNHead, FPNHead, UPerHead

SEGMENTERS = ("semantic_fpn", "upernet")
AUX_LOSS_WEIGHT = 0.4  # mmseg's auxiliary FCNHead loss weight in the UperNet configs
MIN_STRIDE = 4  # body levels used: stride >= 4 (ResNet's stride-2 stem level is dropped), at most four


class Segmenter(nn.Module):
    """body (timm features_only) -> optional neck -> decode head (+ optional auxiliary head on one body level).

    x: (B, 3, H, W) float in [0, 1] -> OrderedDict "out": (B, K, H, W) logits at the input size; in training mode with
    an auxiliary head also "aux": (B, K, H, W) (torchvision's segmentation convention).
    """

    def __init__(self, body: nn.Module, neck: nn.Module | None, decode_head: nn.Module,
                 auxiliary_head: nn.Module | None = None, *, aux_in_index: int = 2, freeze_bn: bool = True,
                 image_mean: tuple[float, ...] = (0.485, 0.456, 0.406),
                 image_std: tuple[float, ...] = (0.229, 0.224, 0.225)):
        super().__init__()
        self.body = body
        self.neck = neck
        self.decode_head = decode_head
        self.auxiliary_head = auxiliary_head
        self.aux_in_index = aux_in_index
        self.freeze_bn = freeze_bn
        self.num_classes: int = decode_head.num_classes
        self.register_buffer("image_mean", torch.tensor(image_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std).view(1, -1, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> Segmenter:
        super().train(mode)
        if mode and self.freeze_bn:
            freeze_batchnorm(self.body)
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised input -> the body's levels (finest first)."""
        return list(self.body(x))

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.image_mean.shape[1]:
            raise ValueError(f"segmenter input must be (B, {self.image_mean.shape[1]}, H, W) floats in [0, 1]; got "
                             f"{tuple(x.shape)}")
        size = x.shape[-2:]
        levels = self.features((x - self.image_mean) / self.image_std)
        logits = self.decode_head(self.neck(levels) if self.neck is not None else levels)
        out = OrderedDict(out=F.interpolate(logits, size=size, mode="bilinear", align_corners=False))
        if self.training and self.auxiliary_head is not None:
            aux = self.auxiliary_head(levels[self.aux_in_index])
            out["aux"] = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
        return out


def _body(backbone: str, *, pretrained: bool, backbone_checkpoint: str | os.PathLike | None,
          backbone_kwargs: dict[str, Any]) -> nn.Module:
    return create_body(backbone, min_stride=MIN_STRIDE, max_levels=4, pretrained=pretrained,
                       checkpoint=backbone_checkpoint, **backbone_kwargs)


def _finish(model: Segmenter, config: dict[str, Any], checkpoint: str | os.PathLike | None) -> Segmenter:
    model.segmenter_config = config
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)  # ours, or an official mmseg file (checkpoint_filter_fn below)
    return model


def _check_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be the number of classes scored (>= 1; the ignore index is not a "
                         f"class); got {num_classes!r}")


def semantic_fpn(backbone: str, num_classes: int, *, backbone_checkpoint: str | os.PathLike | None = None,
                 checkpoint: str | os.PathLike | None = None, pretrained: bool = False, freeze_bn: bool = True,
                 backbone_kwargs: dict | None = None, channels: int = 128, neck_channels: int = 256,
                 dropout: float = 0.1, image_mean: list[float] | None = None,
                 image_std: list[float] | None = None) -> Segmenter:
    """Semantic FPN as `fpn_lsnet_{t,s,b}_ade20k_40k.py`; num_classes: classes scored (labels 0..K-1).

    backbone_checkpoint: classification weights for the body; checkpoint: a whole segmenter (ours or official
    mmseg); pretrained: timm hub weights for the body; channels: the head's (128); neck_channels: the FPN's (256);
    image_mean / image_std: input normalisation (default: the body's, `body_normalisation`).
    """
    _check_classes(num_classes)
    backbone_kwargs = default_body_kwargs(backbone, backbone_kwargs)
    body = _body(backbone, pretrained=pretrained, backbone_checkpoint=backbone_checkpoint,
                 backbone_kwargs=backbone_kwargs)
    strides = tuple(body.feature_info.reduction())
    neck = LSNetFPN(body.feature_info.channels(), strides, neck_channels, num_outs=len(strides))
    head = FPNHead([neck_channels] * len(strides), strides, num_classes, channels=channels, dropout=dropout)
    norm = _normalisation(body, image_mean, image_std)
    model = Segmenter(body, neck, head, freeze_bn=freeze_bn, image_mean=norm["image_mean"],
                      image_std=norm["image_std"])
    config = dict(segmenter="semantic_fpn", backbone=backbone, num_classes=num_classes, freeze_bn=freeze_bn,
                  backbone_kwargs=backbone_kwargs, channels=channels, neck_channels=neck_channels, dropout=dropout,
                  **norm)
    return _finish(model, config, checkpoint)


def upernet(backbone: str, num_classes: int, *, backbone_checkpoint: str | os.PathLike | None = None,
            checkpoint: str | os.PathLike | None = None, pretrained: bool = False, freeze_bn: bool = False,
            backbone_kwargs: dict | None = None, aux_head: bool = True, channels: int = 512,
            pool_scales: tuple[int, ...] | list[int] = (1, 2, 3, 6), aux_channels: int = 256, aux_in_index: int = 2,
            dropout: float = 0.1, image_mean: list[float] | None = None,
            image_std: list[float] | None = None) -> Segmenter:
    """UperNet as mmseg's `upernet_r50.py` (the Conv2Former / UniConvNet ADE20K decoder); arguments as
    `semantic_fpn`, plus aux_head: the auxiliary FCNHead on body level `aux_in_index` (2) with `aux_channels` (256);
    channels / pool_scales: the UPerHead's (512; 1, 2, 3, 6)."""
    _check_classes(num_classes)
    backbone_kwargs = default_body_kwargs(backbone, backbone_kwargs)
    body = _body(backbone, pretrained=pretrained, backbone_checkpoint=backbone_checkpoint,
                 backbone_kwargs=backbone_kwargs)
    in_channels = body.feature_info.channels()
    head = UPerHead(in_channels, num_classes, channels=channels, pool_scales=tuple(pool_scales), dropout=dropout)
    auxiliary = None
    if aux_head:
        if not -len(in_channels) <= aux_in_index < len(in_channels):
            raise ValueError(f"upernet: aux_in_index={aux_in_index} but backbone {backbone!r} gives "
                             f"{len(in_channels)} levels; pass aux_in_index in 0..{len(in_channels) - 1}")
        auxiliary = FCNHead(in_channels[aux_in_index], num_classes, channels=aux_channels, dropout=dropout)
    norm = _normalisation(body, image_mean, image_std)
    model = Segmenter(body, None, head, auxiliary, aux_in_index=aux_in_index, freeze_bn=freeze_bn,
                      image_mean=norm["image_mean"], image_std=norm["image_std"])
    config = dict(segmenter="upernet", backbone=backbone, num_classes=num_classes, freeze_bn=freeze_bn,
                  backbone_kwargs=backbone_kwargs, aux_head=aux_head, channels=channels,
                  pool_scales=list(pool_scales), aux_channels=aux_channels, aux_in_index=aux_in_index,
                  dropout=dropout, **norm)
    return _finish(model, config, checkpoint)


def _normalisation(body: nn.Module, mean: list[float] | None, std: list[float] | None) -> dict[str, list[float]]:
    norm = body_normalisation(body)
    return dict(image_mean=list(mean) if mean is not None else norm["image_mean"],
                image_std=list(std) if std is not None else norm["image_std"])


_BUILDERS = {"semantic_fpn": semantic_fpn, "upernet": upernet}


def build_segmenter(segmenter: str | None = None, backbone: str | None = None, num_classes: int | None = None, *,
                    name: str | None = None, **kwargs: Any) -> Segmenter:
    """`semantic_fpn` / `upernet` by name (`segmenter` or `name`, one of SEGMENTERS);
    `build_segmenter(**model.segmenter_config)` rebuilds a segmenter's architecture."""
    segmenter = segmenter or name
    if segmenter not in _BUILDERS:
        raise ValueError(f"unknown segmenter {segmenter!r}; choose one of {SEGMENTERS}")
    if backbone is None or num_classes is None:
        raise TypeError(f"build_segmenter({segmenter!r}): pass backbone= (a timm model name) and num_classes=")
    return _BUILDERS[segmenter](backbone, num_classes, **kwargs)


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: Segmenter) -> dict[str, torch.Tensor]:
    """Found by `lsnet.checkpoints.fit_state_dict` for the segmenters here: an official mmseg 0.30 state dict is
    converted (`lsnet.segmentation.mmseg`); ours passes through. Another class count is a one-line error."""
    from .mmseg import check_num_classes, convert_mmseg_state_dict, is_mmseg_state_dict

    if is_mmseg_state_dict(state_dict):
        return convert_mmseg_state_dict(state_dict, model)
    check_num_classes(state_dict, model)
    return OrderedDict(state_dict)


__all__ = ["AUX_LOSS_WEIGHT", "SEGMENTERS", "Segmenter", "build_segmenter", "checkpoint_filter_fn", "semantic_fpn",
           "upernet"]
