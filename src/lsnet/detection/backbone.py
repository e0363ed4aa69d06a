"""Detection backbones: any timm model with `features_only` as the body, an FPN neck on top.

    body = create_body("lsnet_t", checkpoint="lsnet_t.pth")        # official / our classification checkpoint
    backbone = DetectionBackbone(body, LSNetFPN(body.feature_info.channels(), num_outs=5))
    features = backbone(images)                                    # OrderedDict '0'.. of (B, 256, H/s, W/s)

The body's classification checkpoint goes through `lsnet.checkpoints` (the one loader): it is fitted to the
classifier the file was trained as (family key map, LSNet bias-table resize, classifier dropped, stem adapted) and
then handed to timm's features_only build as its pretrained state dict.

Frozen BatchNorm (`freeze_bn=True`, the detection default): in training mode every BatchNorm of the body stays in
eval mode -- running statistics frozen, affine weight and bias still trained -- as the official LSNet detection
backbone's `train()` does.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoints import create_model, fit_state_dict, read_checkpoint
from ..data.factory import channel_stats


class BackboneError(ValueError):
    """A backbone that cannot serve a detector (no features_only, too few levels); the message says the fix."""


def is_lsnet(name: str) -> bool:
    """Whether timm's `name` is an LSNet variant (lsnet.models.lsnet)."""
    import timm

    import lsnet.models  # noqa: F401  (registers the families)

    # timm keys a family by its module's basename
    return timm.is_model(name) and timm.models.is_model_in_modules(name, ["lsnet"])


def create_body(name: str, *, min_stride: int = 1, max_levels: int = 4, pretrained: bool = False,
                checkpoint: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """timm `features_only` model of `name` returning its coarsest feature levels of stride >= `min_stride`, at most
    `max_levels` (feature_info gives their channels / strides), optionally initialised from a classification
    `checkpoint` (any layout `lsnet.checkpoints` reads: official, timm, our runs) or timm's `pretrained` weights.
    kwargs: model arguments.
    """
    weights = None
    if checkpoint is not None:
        ckpt = read_checkpoint(checkpoint)
        reference = create_model(name, **kwargs)  # the classifier the file was trained as
        weights = fit_state_dict(ckpt.state_dict(), reference, source=repr(str(ckpt.path)))
    load = dict(pretrained=True, pretrained_cfg_overlay=dict(state_dict=weights)) if weights else dict(
        pretrained=pretrained)
    body = _features_model(name, None, **load, **kwargs)
    strides = body.feature_info.reduction()
    if any(b <= a for a, b in zip(strides, strides[1:])):
        raise BackboneError(f"backbone {name!r} gives feature levels at strides {strides}; an FPN needs each level "
                            "coarser than the one before: pick a hierarchical backbone (lsnet_t, resnet18, ...)")
    keep = [i for i, s in enumerate(strides) if s >= min_stride][-max_levels:]
    if not keep:
        raise BackboneError(f"backbone {name!r} has no feature level of stride >= {min_stride} (strides {strides})")
    if len(keep) < len(strides):  # e.g. ResNet's stride-2 level: rebuild with only the levels used
        body = _features_model(name, tuple(body.feature_info.out_indices[i] for i in keep), **load, **kwargs)
    if checkpoint is not None and ckpt.config.get("mean") and ckpt.config.get("std"):
        # the body computes what it learnt only on inputs normalised as in its training run (e.g. Fashion-MNIST's
        # grey statistics, not ImageNet's): the detector normalises with these (see body_normalisation)
        in_chans = kwargs.get("in_chans", 3)
        body.pretrained_cfg = {**(getattr(body, "pretrained_cfg", None) or {}),
                               "mean": channel_stats(ckpt.config["mean"], in_chans),
                               "std": channel_stats(ckpt.config["std"], in_chans)}
    return body


def _features_model(name: str, out_indices: tuple[int, ...] | None, **kwargs: Any) -> nn.Module:
    if out_indices is not None:
        kwargs["out_indices"] = out_indices
    try:
        return create_model(name, features_only=True, **kwargs)
    except (RuntimeError, NotImplementedError) as err:
        if "feature" not in str(err).lower():
            raise
        raise BackboneError(f"backbone {name!r} has no timm features_only support ({_first_line(err)}); pick a model "
                            "with feature maps, e.g. lsnet_t, resnet18, efficientvit_m4, repvit_m1_0") from err


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:160]


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm inside `module` in eval mode (running statistics frozen; affine weights still trained).
    Called after `module.train()`, as the official LSNet backbones' `train()` does."""
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.eval()


def body_normalisation(body: nn.Module) -> dict[str, Any]:
    """Input mean / std of a body: its pretrained_cfg's (a backbone checkpoint's own, see create_body), else
    ImageNet's, as dict(image_mean=[...], image_std=[...])."""
    cfg = getattr(body, "pretrained_cfg", None) or {}
    return dict(image_mean=list(cfg.get("mean", (0.485, 0.456, 0.406))),
                image_std=list(cfg.get("std", (0.229, 0.224, 0.225))))


def default_body_kwargs(name: str, backbone_kwargs: dict | None) -> dict[str, Any]:
    """Model arguments of a dense-prediction body: LSNet bodies resize the gathered stage-4 bias matrix
    (`attn_bias_resize="matrix"`), as the official detection and segmentation backbones (and their weights) do."""
    kwargs = dict(backbone_kwargs or {})
    if is_lsnet(name):
        kwargs.setdefault("attn_bias_resize", "matrix")
    return kwargs


class DetectionBackbone(nn.Module):
    """Body (timm features_only) -> neck; x: (B, 3, H, W) -> OrderedDict '0'..'n-1' of (B, out_channels, h, w),
    finest level first. `out_channels` and `strides` (one per output level) are what torchvision's detectors read.

    freeze_bn: keep every BatchNorm of the body in eval mode in training (statistics frozen, affine trained).
    """

    def __init__(self, body: nn.Module, neck: nn.Module, freeze_bn: bool = True):
        super().__init__()
        self.body = body
        self.fpn = neck
        self.freeze_bn = freeze_bn
        self.out_channels: int = neck.out_channels
        self.strides: tuple[int, ...] = neck.strides

    def train(self, mode: bool = True) -> DetectionBackbone:
        super().train(mode)
        if mode and self.freeze_bn:
            freeze_batchnorm(self.body)
        return self

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.fpn(list(self.body(x)))
        return OrderedDict((str(i), f) for i, f in enumerate(features))


__all__ = ["BackboneError", "DetectionBackbone", "body_normalisation", "create_body", "default_body_kwargs",
           "freeze_batchnorm", "is_lsnet"]
