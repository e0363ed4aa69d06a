"""The official LSNet detection neck ("LSNetFPN": mmdet's FPN plus transposed-conv finer levels).

    fpn = LSNetFPN((64, 128, 256, 384), (8, 16, 32, 64), num_outs=5, extra_convs_on_input=True)   # RetinaNet
    fpn = LSNetFPN((64, 128, 256, 384), (8, 16, 32, 64), num_outs=5, num_trans_convs=1)           # Mask R-CNN
    outs = fpn(features)            # finest first; fpn.strides: (8, 16, 32, 64, 128) / (4, 8, 16, 32, 64)

Layout (the official `detection/model/lsnet_fpn.py`, mmdet 2.x FPN defaults: no norm, no activation, convs with
bias, xavier-uniform init): a 1x1 lateral conv per input level; top-down path adding the nearest-upsampled coarser
lateral; a 3x3 output conv per level. `num_trans_convs` finer levels come first: a 2x2 stride-2 transposed conv on
the (top-down summed) finest lateral, then a 3x3 conv. Coarser extra levels up to `num_outs`: a 3x3 stride-2 conv
on the last backbone feature, then on the previous output (mmdet `add_extra_convs='on_input'`), or, without extra
convs, a kernel-1 stride-2 max-pool of the last output. Submodule names follow mmdet's (without ConvModule's `.conv`)
so `lsnet.detection.mmdet` maps official weights by name. torchvision's FeaturePyramidNetwork has no transposed-conv
levels and puts its extra block on its own outputs, so this small module is written out instead.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class LSNetFPN(nn.Module):
    """features: list of (B, in_channels[i], H_i, W_i), finest first -> list of num_outs (B, out_channels, h, w).

    Args:
        in_channels / in_strides: channels and strides of the backbone levels.
        out_channels: channels of every output level (256 officially).
        num_outs: output levels in all (finer transposed-conv levels + one per input + coarser extra levels).
        extra_convs_on_input: coarser extra levels from 3x3 stride-2 convs (the first on the last input feature);
            False: kernel-1 stride-2 max-pooling of the last output.
        num_trans_convs: finer levels made by 2x2 stride-2 transposed convs.
    """

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], out_channels: int = 256,
                 num_outs: int = 5, extra_convs_on_input: bool = False, num_trans_convs: int = 0):
        super().__init__()
        if len(in_channels) != len(in_strides) or not in_channels:
            raise ValueError(f"LSNetFPN: one stride per input level; got channels {tuple(in_channels)} and strides "
                             f"{tuple(in_strides)}")
        num_extra = num_outs - len(in_channels) - num_trans_convs
        if num_extra < 0:
            raise ValueError(f"LSNetFPN: num_outs={num_outs} is fewer than the {len(in_channels)} input levels plus "
                             f"{num_trans_convs} transposed-conv levels; raise num_outs")
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.num_extra = num_extra
        self.extra_convs_on_input = extra_convs_on_input
        finer = tuple(in_strides[0] // 2 ** (k + 1) for k in reversed(range(num_trans_convs)))
        coarser = tuple(in_strides[-1] * 2 ** (k + 1) for k in range(num_extra))
        self.strides: tuple[int, ...] = finer + tuple(in_strides) + coarser

        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        if extra_convs_on_input:
            for k in range(num_extra):
                self.fpn_convs.append(nn.Conv2d(in_channels[-1] if k == 0 else out_channels, out_channels, 3,
                                                stride=2, padding=1))
        self.extra_trans_convs = nn.ModuleList(
            nn.ConvTranspose2d(out_channels, out_channels, 2, stride=2) for _ in range(num_trans_convs))
        self.extra_fpn_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in range(num_trans_convs))
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.lateral_convs):
            raise ValueError(f"LSNetFPN expects {len(self.lateral_convs)} feature levels; got {len(features)}")
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        finer, source = [], laterals[0]
        for trans_conv in self.extra_trans_convs:
            source = trans_conv(source)
            finer.insert(0, source)
        finer = [conv(x) for conv, x in zip(self.extra_fpn_convs, finer)]
        outs = [self.fpn_convs[i](x) for i, x in enumerate(laterals)]
        for k in range(self.num_extra):
            if self.extra_convs_on_input:
                outs.append(self.fpn_convs[len(laterals) + k](features[-1] if k == 0 else outs[-1]))
            else:
                outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return finer + outs


__all__ = ["LSNetFPN"]
