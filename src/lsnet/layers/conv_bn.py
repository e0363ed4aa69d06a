"""Conv/Linear + BatchNorm pairs that fold into one layer for deployment."""
from __future__ import annotations

import torch
from torch import nn


class ConvBN(nn.Sequential):
    """Conv2d (no bias) followed by BatchNorm2d; `fuse()` folds them into one biased Conv2d.

    x: (B, in_chs, H, W) -> (B, out_chs, H', W').
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv, bn = self.conv, self.bn
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype,
        )
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        return fused


class BNLinear(nn.Sequential):
    """BatchNorm1d followed by Linear (the LeViT-style classifier); `fuse()` folds them into one Linear.

    x: (B, in_features) -> (B, out_features).
    """

    def __init__(self, in_features: int, out_features: int, std: float = 0.02):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_features)
        self.fc = nn.Linear(in_features, out_features)
        nn.init.trunc_normal_(self.fc.weight, std=std)
        nn.init.zeros_(self.fc.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        bn, fc = self.norm, self.fc
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        shift = bn.bias - bn.running_mean * scale
        fused = nn.Linear(fc.in_features, fc.out_features, device=fc.weight.device, dtype=fc.weight.dtype)
        fused.weight.copy_(fc.weight * scale[None, :])
        fused.bias.copy_(fc.bias + fc.weight @ shift)
        return fused
