"""Segmentation decode heads with mmseg 0.30's layouts: Semantic FPN (`FPNHead`), UperNet (`UPerHead`) and the
auxiliary `FCNHead`.

    head = FPNHead((256,) * 4, (8, 16, 32, 64), num_classes=150)        # LSNet-T's FPN levels
    logits = head(features)                                             # (B, 150, H/8, W/8), the finest level's size

Every 3x3 / 1x1 conv-norm-ReLU is torchvision's `Conv2dNormActivation` (conv without bias, BatchNorm, ReLU), the
counterpart of mmcv's `ConvModule` with a norm: mmseg's `<name>.conv.*` / `<name>.bn.*` are our `<name>.0.*` /
`<name>.1.*` (`lsnet.segmentation.mmseg`). Every head ends as mmseg's `BaseDecodeHead.cls_seg`: Dropout2d, then the
1x1 classifier `conv_seg` (init normal std 0.01, bias 0). Convs of the conv-norm-ReLU blocks are initialised as
mmcv's ConvModule does (kaiming normal, fan_out, ReLU gain), norms to weight 1 / bias 0. Bilinear resizing uses
align_corners=False throughout (mmseg's default for these heads).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> Conv2dNormActivation:
    return Conv2dNormActivation(in_channels, out_channels, kernel_size)  # padding k // 2, no bias, BN, ReLU


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class _DecodeHead(nn.Module):
    """The classifier every head ends with: Dropout2d(dropout), 1x1 conv `conv_seg` (channels -> num_classes)."""

    def __init__(self, channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.num_classes = num_classes
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(x))


class FPNHead(_DecodeHead):
    """Semantic FPN head (Kirillov et al. 2019; mmseg `FPNHead`): features (list of (B, C_i, H_i, W_i), finest
    first) -> (B, num_classes, H_0, W_0) logits at the finest level's size.

    Level i goes through max(1, log2(s_i / s_0)) 3x3 conv-norm-ReLU blocks, each followed by a 2x bilinear upsampling
    when s_i > s_0 (`scale_heads[i]`: conv, upsample, conv, upsample, ...); the levels are summed (each resized
    bilinearly to level 0's size first, as mmseg does for odd sizes), then dropout and the 1x1 classifier.
    Only the strides' ratios matter: LSNet's levels at 8..64 give a sum at stride 8, ResNet's 4..32 at stride 4.
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], num_classes: int, channels: int = 128,
                 dropout: float = 0.1):
        super().__init__(channels, num_classes, dropout)
        if len(in_channels) != len(strides) or not strides or min(strides) != strides[0]:
            raise ValueError(f"FPNHead: one stride per level, the finest first; got channels {tuple(in_channels)} "
                             f"and strides {tuple(strides)}")
        self.strides = tuple(strides)
        self.scale_heads = nn.ModuleList()
        for c, s in zip(in_channels, strides):
            layers: list[nn.Module] = []
            for k in range(max(1, round(math.log2(s / strides[0])))):
                layers.append(_conv_bn_relu(c if k == 0 else channels, channels, 3))
                if s != strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self.init_weights()

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.scale_heads):
            raise ValueError(f"FPNHead expects {len(self.scale_heads)} feature levels; got {len(features)}")
        out = self.scale_heads[0](features[0])
        for head, x in zip(self.scale_heads[1:], features[1:]):
            out = out + _resize(head(x), out.shape[-2:])
        return self.cls_seg(out)


class UPerHead(_DecodeHead):
    """UperNet head (Xiao et al. 2018; mmseg `UPerHead`): features (list of (B, C_i, H_i, W_i), finest first) ->
    (B, num_classes, H_0, W_0) logits at the finest level's size.

    Pyramid pooling on the last level (`psp_modules[j]`: adaptive average pool to pool_scales[j], 1x1 conv-norm-ReLU,
    bilinear back; concatenated with the input, 3x3 `bottleneck`) forms the top lateral; the others are 1x1
    `lateral_convs`; top-down path adding bilinearly resized coarser laterals; 3x3 `fpn_convs` on all but the top;
    every level resized to the finest and concatenated; 3x3 `fpn_bottleneck`; dropout; 1x1 classifier.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 512,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1):
        super().__init__(channels, num_classes, dropout)
        if len(in_channels) < 1:
            raise ValueError("UPerHead needs at least one feature level")
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), _conv_bn_relu(in_channels[-1], channels, 1)) for s in pool_scales)
        self.bottleneck = _conv_bn_relu(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(_conv_bn_relu(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(_conv_bn_relu(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = _conv_bn_relu(len(in_channels) * channels, channels, 3)
        self.init_weights()

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.lateral_convs) + 1:
            raise ValueError(f"UPerHead expects {len(self.lateral_convs) + 1} feature levels; got {len(features)}")
        top = features[-1]
        pooled = [_resize(psp(top), top.shape[-2:]) for psp in self.psp_modules]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, features)]
        laterals.append(self.bottleneck(torch.cat([top, *pooled], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [_resize(x, size) for x in outs[1:]]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


class FCNHead(_DecodeHead):
    """Auxiliary FCN head (mmseg `FCNHead`, concat_input=False): one feature level (B, in_channels, h, w) ->
    (B, num_classes, h, w): `num_convs` conv-norm-ReLU blocks (`convs`), dropout, 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, num_convs: int = 1,
                 kernel_size: int = 3, dropout: float = 0.1):
        super().__init__(channels, num_classes, dropout)
        if num_convs < 1:
            raise ValueError(f"FCNHead: num_convs must be >= 1; got {num_convs}")
        self.convs = nn.Sequential(*(_conv_bn_relu(in_channels if i == 0 else channels, channels, kernel_size)
                                     for i in range(num_convs)))
        self.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_seg(self.convs(x))


__all__ = ["FCNHead", "FPNHead", "UPerHead"]
