"""Receptive-Field Aggregator (RFA) of UniConvNet (ICCV 2025, Sec. 2.1-2.3), a plug-and-play token mixer.

    rfa = ReceptiveFieldAggregator(dim=64)             # three layers, kernels 7, 9, 11
    y = rfa(x)                                         # x: (B, 64, H, W) -> y: (B, 64, H, W)

The official code calls it `ConvMod`; UniConvNet's checkpoint filter maps its key names onto these modules.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import LayerNorm2d
from torch import nn

__all__ = ["LayerOperator", "ReceptiveFieldAggregator"]


class LayerOperator(nn.Module):
    """Layer operator n of the RFA (paper Sec. 2.2, Fig. 3 right).

    a_in: (B, n*q, H, W) (the aggregated head A_n), head: (B, q, H, W) (the fresh head H_n)
    -> A_{n+1}: (B, (n+1)*q, H, W) = concat[discriminator (q), amplifier (n*q)] (discriminator first).
        â   = norm(a_in)                                   (Identity in layer 1: the RFA normalises its input)
        ctx = large_kernel(â)    PW 1x1 -> GELU -> depthwise K x K      (large receptive field)
        amp = amp_proj(ctx * value(â))                     Amplifier: ctx re-weights the features, then 1x1
        dis = small_kernel(head_proj(head)) + context_proj(ctx)
                                                           Discriminator: small k x k response of the new head
                                                           plus the large-kernel response (1x1 to q channels
                                                           for n > 1, identity for n = 1)
    Official names, layer n: norm{n} (n > 1), a{n}.0 / a{n}.2, v{n}, v{n}1, v{n}2, proj{n} (n > 1), conv3_{n}.
    """

    def __init__(self, in_chs: int, head_chs: int, kernel_size: int, small_kernel_size: int = 3,
                 norm: bool = True, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.norm = LayerNorm2d(in_chs, eps=1e-6, **dd) if norm else nn.Identity()
        self.large_kernel = nn.Sequential(
            nn.Conv2d(in_chs, in_chs, 1, **dd),
            nn.GELU(),
            nn.Conv2d(in_chs, in_chs, kernel_size, padding=kernel_size // 2, groups=in_chs, **dd),
        )
        self.value = nn.Conv2d(in_chs, in_chs, 1, **dd)
        self.amp_proj = nn.Conv2d(in_chs, in_chs, 1, **dd)
        self.head_proj = nn.Conv2d(head_chs, head_chs, 1, **dd)
        self.small_kernel = nn.Conv2d(head_chs, head_chs, small_kernel_size, padding=small_kernel_size // 2,
                                      groups=head_chs, **dd)
        self.context_proj = nn.Identity() if in_chs == head_chs else nn.Conv2d(in_chs, head_chs, 1, **dd)

    def forward(self, a_in: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        a_in = self.norm(a_in)
        context = self.large_kernel(a_in)
        amplified = self.amp_proj(context * self.value(a_in))
        discriminated = self.small_kernel(self.head_proj(head)) + self.context_proj(context)
        return torch.cat((discriminated, amplified), dim=1)


class ReceptiveFieldAggregator(nn.Module):
    """N-layer Receptive-Field Aggregator (paper Sec. 2.1, Fig. 3 left); N = len(kernel_sizes), 3 in UniConvNet.

    x: (B, dim, H, W) -> (B, dim, H, W), any H, W; dim must be divisible by N + 1.
    The normalised input (channels-first LayerNorm, eps 1e-6) is split along channels into N + 1 heads of
    q = dim / (N + 1) channels: A_1, H_1, ..., H_N. Layer operator n (kernel K_n) takes the aggregated head A_n
    (n*q channels) and the fresh head H_n and returns A_{n+1} with (n+1)*q channels; the output is A_{N+1}.
    Each layer pairs an *amplifier* (a large depthwise kernel whose response multiplies the features, widening
    and amplifying the receptive field) with a *discriminator* (a small k x k kernel on a new head, adding
    near-centre impact), so the stacked receptive fields keep an asymptotically Gaussian profile. No output
    projection (as in the official code). Default init: PyTorch's; UniConvNet re-initialises every conv with
    trunc_normal(std=0.02) and zero bias.
    """

    def __init__(self, dim: int, kernel_sizes: Sequence[int] = (7, 9, 11), small_kernel_size: int = 3,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        num_layers = len(kernel_sizes)
        if num_layers < 1 or dim % (num_layers + 1):
            raise ValueError(f"ReceptiveFieldAggregator: dim ({dim}) must be divisible by len(kernel_sizes) + 1 "
                             f"({num_layers + 1}) for kernel_sizes={tuple(kernel_sizes)}")
        if any(k < 1 or k % 2 == 0 for k in (*kernel_sizes, small_kernel_size)):
            raise ValueError(f"ReceptiveFieldAggregator: kernel sizes must be odd; got kernel_sizes="
                             f"{tuple(kernel_sizes)}, small_kernel_size={small_kernel_size}")
        self.dim = dim
        self.head_dim = dim // (num_layers + 1)
        self.kernel_sizes = tuple(kernel_sizes)
        self.norm = LayerNorm2d(dim, eps=1e-6, **dd)
        self.layers = nn.ModuleList(
            LayerOperator((n + 1) * self.head_dim, self.head_dim, k, small_kernel_size, norm=n > 0, **dd)
            for n, k in enumerate(kernel_sizes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = self.norm(x).split(self.head_dim, dim=1)
        aggregated = heads[0]
        for n, layer in enumerate(self.layers):  # (enumerate, not zip: TorchScript needs a static length)
            aggregated = layer(aggregated, heads[n + 1])
        return aggregated

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kernel_sizes={self.kernel_sizes}"
