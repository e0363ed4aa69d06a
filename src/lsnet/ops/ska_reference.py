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


def ska_reference_backward(
    grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of `ska_reference` w.r.t. x (B, C, H, W) and weight (B, CW, k*k, H, W), written out.

    grad_weight[:, j, t] = sum_g grad_out[:, g*CW + j] * x shifted by tap t;
    grad_x = sum_t (grad_out * weight[:, c % CW, t]) shifted back by tap t.
    """
    channels, height, width = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    weight_chs, k = int(weight.shape[1]), math.isqrt(int(weight.shape[2]))
    r = k // 2
    groups = channels // weight_chs
    x_pad = F.pad(x, (r, r, r, r)).unflatten(1, (groups, weight_chs))
    grad_g = grad_out.unflatten(1, (groups, weight_chs))
    grad_x_pad = torch.zeros_like(x_pad)
    grad_w = []
    for i in range(k):
        for j in range(k):
            window = (..., slice(i, i + height), slice(j, j + width))
            grad_w.append((grad_g * x_pad[window]).sum(1))
            grad_x_pad[window] += grad_g * weight[:, None, :, i * k + j]
    grad_x = grad_x_pad[..., r : r + height, r : r + width].flatten(1, 2)
    return grad_x, torch.stack(grad_w, dim=2)
