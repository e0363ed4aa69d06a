"""Triton SKA for GPUs (imported lazily by the dispatcher; importing `lsnet` never imports triton).

Layout: every kernel takes every tensor's strides, so x, weight and grad_out may have any strides (sliced,
padded, channels_last, expanded with zero strides) and the outputs are written in whatever dense layout the
dispatcher allocated (`ska.output_layout`), with no copies. Offsets are computed in int64. fp16/bf16 load as-is
and accumulate in fp32, fp32 in fp32, fp64 in fp64. On CPU the kernels run under Triton's interpreter
(`TRITON_INTERPRET=1`), which is how the tests check them on a machine without a GPU.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_BLOCK = 256


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _forward_kernel(x_ptr, w_ptr, out_ptr, C, H, W, CW, sxb, sxc, sxh, sxw, swb, swj, swt, swh, sww,
                    sob, soc, soh, sow, K: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    bc = tl.program_id(0).to(tl.int64)
    pix = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = pix < H * W
    h = pix // W
    w = pix % W
    b = bc // C
    c = bc % C
    x_base = x_ptr + b * sxb + c * sxc
    w_base = w_ptr + b * swb + (c % CW) * swj + h * swh + w * sww
    acc = tl.zeros((BLOCK,), dtype=ACC)
    for t in tl.static_range(K * K):
        hi = h + t // K - K // 2
        wi = w + t % K - K // 2
        inside = valid & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
        xv = tl.load(x_base + hi * sxh + wi * sxw, mask=inside, other=0.0).to(ACC)
        wv = tl.load(w_base + t * swt, mask=valid, other=0.0).to(ACC)
        acc += xv * wv
    out = out_ptr + b * sob + c * soc + h * soh + w * sow
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _grad_x_kernel(go_ptr, w_ptr, gx_ptr, C, H, W, CW, sgb, sgc, sgh, sgw, swb, swj, swt, swh, sww,
                   sxb, sxc, sxh, sxw, K: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    # gather form: gx[p] = sum_t go[p - d_t] * w[., t, p - d_t]
    bc = tl.program_id(0).to(tl.int64)
    pix = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = pix < H * W
    h = pix // W
    w = pix % W
    b = bc // C
    c = bc % C
    go_base = go_ptr + b * sgb + c * sgc
    w_base = w_ptr + b * swb + (c % CW) * swj
    acc = tl.zeros((BLOCK,), dtype=ACC)
    for t in tl.static_range(K * K):
        hq = h - (t // K - K // 2)
        wq = w - (t % K - K // 2)
        inside = valid & (hq >= 0) & (hq < H) & (wq >= 0) & (wq < W)
        gv = tl.load(go_base + hq * sgh + wq * sgw, mask=inside, other=0.0).to(ACC)
        wv = tl.load(w_base + t * swt + hq * swh + wq * sww, mask=inside, other=0.0).to(ACC)
        acc += gv * wv
    gx = gx_ptr + b * sxb + c * sxc + h * sxh + w * sxw
    tl.store(gx, acc.to(gx_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _grad_w_kernel(go_ptr, x_ptr, gw_ptr, C, H, W, CW, sgb, sgc, sgh, sgw, sxb, sxc, sxh, sxw,
                   swb, swj, swt, swh, sww, K: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    # gw[b, j, t, p] = sum_g go[b, g*CW + j, p] * x[b, g*CW + j, p + d_t]
    bj = tl.program_id(0).to(tl.int64)
    pix = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = pix < H * W
    h = pix // W
    w = pix % W
    b = bj // CW
    j = bj % CW
    gw_base = gw_ptr + b * swb + j * swj + h * swh + w * sww
    for t in tl.static_range(K * K):
        hi = h + t // K - K // 2
        wi = w + t % K - K // 2
        inside = valid & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
        acc = tl.zeros((BLOCK,), dtype=ACC)
        for g in range(0, C // CW):
            c = g * CW + j
            gv = tl.load(go_ptr + b * sgb + c * sgc + h * sgh + w * sgw, mask=valid, other=0.0).to(ACC)
            xv = tl.load(x_ptr + b * sxb + c * sxc + hi * sxh + wi * sxw, mask=inside, other=0.0).to(ACC)
            acc += gv * xv
        tl.store(gw_base + t * swt, acc.to(gw_ptr.dtype.element_ty), mask=valid)


def _launch(kernel, rows: int, x_shape: torch.Size, weight: torch.Tensor, *tensors: torch.Tensor) -> None:
    """Launch `kernel` over (rows, pixel blocks) with the pointers of `tensors` followed by all their strides."""
    _, channels, height, width = x_shape
    acc = tl.float64 if tensors[0].dtype == torch.float64 else tl.float32
    strides = [s for t in tensors for s in t.stride()]
    kernel[(rows, triton.cdiv(height * width, _BLOCK))](
        *tensors, channels, height, width, weight.shape[1], *strides,
        K=int(round(weight.shape[2] ** 0.5)), BLOCK=_BLOCK, ACC=acc,
    )


def ska_forward(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> None:
    """Fill out (B, C, H, W) with ska(x, weight); x: (B, C, H, W), weight: (B, CW, k*k, H, W), any strides."""
    _launch(_forward_kernel, x.shape[0] * x.shape[1], x.shape, weight, x, weight, out)


def ska_backward(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, grad_x: torch.Tensor | None,
                 grad_w: torch.Tensor | None) -> None:
    """Fill grad_x (B, C, H, W) and grad_w (B, CW, k*k, H, W) where not None; inputs in any strides."""
    if grad_x is not None:
        _launch(_grad_x_kernel, x.shape[0] * x.shape[1], x.shape, weight, grad_out, weight, grad_x)
    if grad_w is not None:
        _launch(_grad_w_kernel, x.shape[0] * weight.shape[1], x.shape, weight, grad_out, x, grad_w)
