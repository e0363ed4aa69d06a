"""Reference small-kernel aggregation (SKA): the readable spec every fast path is tested against.

Also the export path (ONNX/TorchScript): it uses only pad, slice, mul and add.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ska_reference(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-pixel k x k aggregation with interleaved weight sharing.

    x: (B, C, H, W); weight: (B, CW, k*k, H, W) with C % CW == 0.
    out[b, c, h, w] = sum_{i,j} x[b, c, h+i-k//2, w+j-k//2] * weight[b, c % CW, i*k+j, h, w] (zero padding).
    Channel c = g*CW + j uses weight channel j, so viewing x as (B, G, CW, H, W) lets the weights broadcast
    over G: no G-times larger weight and no k*k-times larger unfold buffer.
    """
    batch, channels, height, width = x.shape
    weight_chs, taps = weight.shape[1], weight.shape[2]
    k = int(round(taps**0.5))
    r = k // 2
    groups = channels // weight_chs
    x_pad = F.pad(x, (r, r, r, r))
    out = x.new_zeros((batch, groups, weight_chs, height, width))
    for i in range(k):
        for j in range(k):
            shifted = x_pad[:, :, i : i + height, j : j + width].reshape(batch, groups, weight_chs, height, width)
            out = out + shifted * weight[:, None, :, i * k + j]
    return out.reshape(batch, channels, height, width)
