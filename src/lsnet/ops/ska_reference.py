"""Reference small-kernel aggregation (SKA): the readable spec every fast path is tested against.

Also the export path (ONNX/TorchScript): it uses only pad, slice, mul and add, and never reads the batch size,
so exported graphs keep a dynamic batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def ska_reference(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-pixel k x k aggregation with interleaved weight sharing.

    x: (B, C, H, W); weight: (B, CW, k*k, H, W) with C % CW == 0.
    out[b, c, h, w] = sum_{i,j} x[b, c, h+i-k//2, w+j-k//2] * weight[b, c % CW, i*k+j, h, w] (zero padding).
    Channel c = g*CW + j uses weight channel j, so viewing x as (B, G, CW, H, W) lets the weights broadcast
    over G: no G-times larger weight and no k*k-times larger unfold buffer.
    """
    channels, height, width = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    weight_chs, k = int(weight.shape[1]), math.isqrt(int(weight.shape[2]))
    r = k // 2
    x_pad = F.pad(x, (r, r, r, r)).unflatten(1, (channels // weight_chs, weight_chs))  # (B, G, CW, H+2r, W+2r)
    out = None
    for i in range(k):
        for j in range(k):
            term = x_pad[..., i : i + height, j : j + width] * weight[:, None, :, i * k + j]
            out = term if out is None else out + term
    return out.flatten(1, 2)
