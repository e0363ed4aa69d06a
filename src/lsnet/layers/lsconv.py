"""LS convolution (LSNet, CVPR 2025, Sec. 3.2): large-kernel perception (LKP) feeding small-kernel aggregation (SKA)."""
from __future__ import annotations

import torch
from timm.layers import DropPath
from torch import nn

from ..ops import ska
from ._fx import fx_tracing
from .conv_bn import ConvBN

_Device = torch.device | str | None


class LargeKernelPerception(nn.Module):
    """LKP: see large, then predict a per-pixel k x k aggregation kernel for every group of channels.

    x: (B, dim, H, W) -> weights (B, dim // kernel_groups, small_kernel**2, H, W).
    1x1 (dim -> dim/2) + ReLU -> large-kernel depthwise conv -> 1x1 + ReLU -> 1x1 to k*k weights per weight
    channel -> GroupNorm over each weight channel's k*k taps and all pixels. `large_kernel=0` removes the
    large-kernel depthwise conv (the paper's "w/o LKP" ablation).
    """

    conv_act_pairs = (("pw_in", "act_in"), ("pw_mid", "act_mid"))  # fused into one call by lsnet.deploy.fuse

    def __init__(self, dim: int, large_kernel: int = 7, small_kernel: int = 3, kernel_groups: int = 8,
                 device: _Device = None, dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if dim % kernel_groups or dim % 2:
            raise ValueError(f"LKP: dim ({dim}) must be even and divisible by kernel_groups ({kernel_groups})")
        hidden = dim // 2
        self.weight_chs = dim // kernel_groups
        self.small_kernel = small_kernel
        self.taps = small_kernel * small_kernel
        self.pw_in = ConvBN(dim, hidden, **dd)
        self.act_in = nn.ReLU()
        self.dw_large = ConvBN(hidden, hidden, large_kernel, groups=hidden, **dd) if large_kernel else nn.Identity()
        self.pw_mid = ConvBN(hidden, hidden, **dd)
        self.act_mid = nn.ReLU()
        self.to_weights = nn.Conv2d(hidden, self.taps * self.weight_chs, 1, **dd)
        self.norm = nn.GroupNorm(self.weight_chs, self.taps * self.weight_chs, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_mid(self.pw_mid(self.dw_large(self.act_in(self.pw_in(x)))))
        weights = self.norm(self.to_weights(x))
        batch, _, height, width = weights.shape
        # channel j*k*k + t is tap t of weight channel j
        return weights.reshape(batch, self.weight_chs, self.taps, height, width)


class LSConv(nn.Module):
    """LS convolution with its residual: x + drop_path(BN(SKA(x, LKP(x)))).

    x: (B, dim, H, W) -> (B, dim, H, W). Channel c aggregates with the kernel of weight channel
    c % (dim // kernel_groups) (interleaved sharing, as in the official Triton kernel).
    """

    def __init__(
        self,
        dim: int,
        large_kernel: int = 7,
        small_kernel: int = 3,
        kernel_groups: int = 8,
        drop_path: float = 0.0,
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.lkp = LargeKernelPerception(dim, large_kernel, small_kernel, kernel_groups, **dd)
        self.norm = nn.BatchNorm2d(dim, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def aggregate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixing branch without residual, and the SKA weights that produced it (for inspection)."""
        weights = self.lkp(x)
        # TorchScript and torch.fx record the registered op `lsnet::ska` as one node (ska()'s input checks branch
        # on shapes, which neither can follow; the shapes here are right by construction); eager calls ska()
        if torch.jit.is_scripting():  # noqa: SIM114  (`is_scripting() or ...` would make TorchScript compile both)
            out = torch.ops.lsnet.ska(x, weights)
        elif fx_tracing():
            out = torch.ops.lsnet.ska(x, weights)
        else:
            out = ska(x, weights)
        return self.norm(out), weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.aggregate(x)[0])
