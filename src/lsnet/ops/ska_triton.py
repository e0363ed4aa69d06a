"""Triton SKA for GPUs (imported lazily by the dispatcher; importing `lsnet` never imports triton).

Layout: contiguous NCHW x and contiguous (B, CW, k*k, H, W) weight. fp16/bf16 load as-is and accumulate
in fp32. On CPU the kernels run under Triton's interpreter (`TRITON_INTERPRET=1`), which is how the tests
check them on a machine without a GPU.
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
def _forward_kernel(x_ptr, w_ptr, out_ptr, C, H, W, CW, K: tl.constexpr, BLOCK: tl.constexpr):
    bc = tl.program_id(0)
    pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    hw = H * W
    valid = pix < hw
    h = pix // W
    w = pix % W
    b = bc // C
    wc = (bc % C) % CW
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for t in tl.static_range(K * K):
        hi = h + t // K - K // 2
        wi = w + t % K - K // 2
        inside = valid & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
        xv = tl.load(x_ptr + bc * hw + hi * W + wi, mask=inside, other=0.0).to(tl.float32)
        wv = tl.load(w_ptr + ((b * CW + wc) * K * K + t) * hw + pix, mask=valid, other=0.0).to(tl.float32)
        acc += xv * wv
    tl.store(out_ptr + bc * hw + pix, acc.to(out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _grad_x_kernel(go_ptr, w_ptr, gx_ptr, C, H, W, CW, K: tl.constexpr, BLOCK: tl.constexpr):
    # gather form: gx[p] = sum_t go[p - d_t] * w[., t, p - d_t]
    bc = tl.program_id(0)
    pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    hw = H * W
    valid = pix < hw
    h = pix // W
    w = pix % W
    b = bc // C
    wc = (bc % C) % CW
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for t in tl.static_range(K * K):
        hq = h - (t // K - K // 2)
        wq = w - (t % K - K // 2)
        inside = valid & (hq >= 0) & (hq < H) & (wq >= 0) & (wq < W)
        q = hq * W + wq
        gv = tl.load(go_ptr + bc * hw + q, mask=inside, other=0.0).to(tl.float32)
        wv = tl.load(w_ptr + ((b * CW + wc) * K * K + t) * hw + q, mask=inside, other=0.0).to(tl.float32)
        acc += gv * wv
    tl.store(gx_ptr + bc * hw + pix, acc.to(gx_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _grad_w_kernel(go_ptr, x_ptr, gw_ptr, C, H, W, CW, K: tl.constexpr, BLOCK: tl.constexpr):
    # gw[b, j, t, p] = sum_g go[b, g*CW + j, p] * x[b, g*CW + j, p + d_t]
    bj = tl.program_id(0)
    pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    hw = H * W
    valid = pix < hw
    h = pix // W
    w = pix % W
    b = bj // CW
    j = bj % CW
    for t in tl.static_range(K * K):
        hi = h + t // K - K // 2
        wi = w + t % K - K // 2
        inside = valid & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for g in range(0, C // CW):
            base = (b * C + g * CW + j) * hw
            gv = tl.load(go_ptr + base + pix, mask=valid, other=0.0).to(tl.float32)
            xv = tl.load(x_ptr + base + hi * W + wi, mask=inside, other=0.0).to(tl.float32)
            acc += gv * xv
        tl.store(gw_ptr + (bj * K * K + t) * hw + pix, acc.to(gw_ptr.dtype.element_ty), mask=valid)


def _grid(rows: int, hw: int) -> tuple[int, int]:
    return rows, triton.cdiv(hw, _BLOCK)


def _kernel_size(weight: torch.Tensor) -> int:
    return int(round(weight.shape[2] ** 0.5))


def ska_forward(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x: (B, C, H, W), weight: (B, CW, k*k, H, W) -> (B, C, H, W), contiguous NCHW."""
    x, weight = x.contiguous(), weight.contiguous()
    batch, channels, height, width = x.shape
    out = torch.empty_like(x)
    _forward_kernel[_grid(batch * channels, height * width)](
        x, weight, out, channels, height, width, weight.shape[1], K=_kernel_size(weight), BLOCK=_BLOCK
    )
    return out


def ska_backward(
    grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, need_x: bool, need_weight: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients w.r.t. x and weight (None where not needed)."""
    grad_out, x, weight = grad_out.contiguous(), x.contiguous(), weight.contiguous()
    batch, channels, height, width = x.shape
    weight_chs, k = weight.shape[1], _kernel_size(weight)
    grad_x = grad_w = None
    if need_x:
        grad_x = torch.empty_like(x)
        _grad_x_kernel[_grid(batch * channels, height * width)](
            grad_out, weight, grad_x, channels, height, width, weight_chs, K=k, BLOCK=_BLOCK
        )
    if need_weight:
        grad_w = torch.empty_like(weight)
        _grad_w_kernel[_grid(batch * weight_chs, height * width)](
            grad_out, x, grad_w, channels, height, width, weight_chs, K=k, BLOCK=_BLOCK
        )
    return grad_x, grad_w
