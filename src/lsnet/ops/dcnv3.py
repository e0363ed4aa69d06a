"""DCNv3 core (deformable convolution v3, as modified by UniConvNet): checks, a reference and a fast path.

    out = dcnv3(value, offset, mask, kernel_size=3, stride=1, pad=1, dilation=1, group=G, offset_scale=1.0)

All tensors are channels-last: value (B, H, W, C) with C = G * D, offset (B, Ho, Wo, G * K * 2),
mask (B, Ho, Wo, G * K), out (B, Ho, Wo, C), K = kernel_size ** 2 and
Ho = (H + 2 * pad - dilation * (kernel_size - 1) - 1) // stride + 1 (same for Wo).

For output pixel (ho, wo), group g and sampling point p = i * kernel_size + j (column-major: i walks x, j walks y),
the sample position in input pixels (integer = pixel centre, no padding offset) is
    x = wo * stride - pad + c + (i * dilation - c) * offset_scale + offset[..., (g * K + p) * 2 + 0] * offset_scale
    y = ho * stride - pad + c + (j * dilation - c) * offset_scale + offset[..., (g * K + p) * 2 + 1] * offset_scale
with c = dilation * (kernel_size - 1) // 2, and
    out[b, ho, wo, g * D + d] = sum_p mask[b, ho, wo, g * K + p] * bilinear(value[b, :, :, g * D + d], y, x).
The mask is used raw (UniConvNet removed InternImage's softmax). Bilinear sampling reads the four neighbouring
pixels; a neighbour outside the image contributes 0 (the rule of the official CUDA kernel, and of zero padding).

Backends:
  reference    `dcnv3_reference`: loop over the K points with explicit gathers; the spec; float64-gradcheckable
  grid_sample  `dcnv3_grid_sample`: one `F.grid_sample` call over all points and groups (zeros padding,
               align_corners=False), then the mask-weighted sum; differentiable in all three inputs
"auto" (default) runs grid_sample. Force one with `backend=`, `set_dcnv3_backend(name)` or
`LSNET_DCNV3_BACKEND=<name>`. Both compute in at least float32 (float16/bfloat16 inputs are upcast, like the
official kernel's opmath; the result has value's dtype) and in float64 for float64 inputs. Both use only standard
PyTorch ops (no custom op), so tracing, torch.compile and ONNX export see ordinary graphs (grid_sample needs ONNX
opset >= 16). Inputs may have any strides (reshape copies where it must). `torch.utils.flop_counter` counts neither
grid_sample nor the mask-weighted sum, so FLOP counts made with it leave out the sampling (as fvcore does for the
official CUDA op).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

__all__ = ["dcnv3", "dcnv3_reference", "dcnv3_grid_sample", "dcnv3_output_size", "set_dcnv3_backend",
           "get_dcnv3_backend", "DCNV3_BACKENDS"]

DCNV3_BACKENDS = ("auto", "reference", "grid_sample")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_backend_override: str | None = None


def set_dcnv3_backend(name: str | None) -> None:
    """Force a backend for every later call (None or "auto" restores the default)."""
    global _backend_override
    if name is not None and name not in DCNV3_BACKENDS:
        raise ValueError(f"dcnv3: unknown backend {name!r}; choose one of {DCNV3_BACKENDS}")
    _backend_override = None if name in (None, "auto") else name


def get_dcnv3_backend() -> str:
    """The requested backend: the setter's value, else $LSNET_DCNV3_BACKEND, else "auto"."""
    if _backend_override is not None:
        return _backend_override
    name = os.environ.get("LSNET_DCNV3_BACKEND", "auto").strip().lower() or "auto"
    if name not in DCNV3_BACKENDS:
        raise ValueError(f"dcnv3: LSNET_DCNV3_BACKEND={name!r} is not a backend; use one of {DCNV3_BACKENDS}")
    return name


def dcnv3_output_size(size: int, kernel_size: int, stride: int, pad: int, dilation: int) -> int:
    """Output length along one spatial axis (the usual convolution arithmetic)."""
    return (size + 2 * pad - dilation * (kernel_size - 1) - 1) // stride + 1


def _base_positions(out_h: int, out_w: int, kernel_size: int, stride: int, pad: int, dilation: int,
                    offset_scale: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Undeformed sample positions in input pixels, (Ho, Wo, 1, K, 2) as (x, y), points column-major."""
    centre = dilation * (kernel_size - 1) // 2
    ys = torch.arange(out_h, dtype=dtype, device=device) * stride + (centre - pad)
    xs = torch.arange(out_w, dtype=dtype, device=device) * stride + (centre - pad)
    taps = (torch.arange(kernel_size, dtype=dtype, device=device) * dilation - centre) * offset_scale
    # point p = i * k + j: x from i (outer), y from j (inner)
    tap_x = taps.repeat_interleave(kernel_size)
    tap_y = taps.repeat(kernel_size)
    pos_x = xs.view(1, out_w, 1, 1) + tap_x.view(1, 1, 1, -1)
    pos_y = ys.view(out_h, 1, 1, 1) + tap_y.view(1, 1, 1, -1)
    return torch.stack(torch.broadcast_tensors(pos_x, pos_y), dim=-1)


def _bilinear_gather(flat: torch.Tensor, height: int, width: int, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of `flat` (B, H*W, G, D) at pixel positions y, x (B, Ho, Wo, G) -> (B, Ho, Wo, G, D).

    Each of the four neighbours contributes only if it lies inside the image.
    """
    batch, _, groups, depth = flat.shape
    y0, x0 = torch.floor(y), torch.floor(x)
    ly, lx = y - y0, x - x0
    out = None
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            yc, xc = y0 + dy, x0 + dx
            inside = (yc >= 0) & (yc <= height - 1) & (xc >= 0) & (xc <= width - 1)
            index = (yc.clamp(0, height - 1) * width + xc.clamp(0, width - 1)).long()
            index = index.reshape(batch, -1, groups, 1).expand(-1, -1, -1, depth)
            corner = torch.gather(flat, 1, index).reshape(*y.shape, depth)
            term = (wy * wx * inside.to(wy.dtype)).unsqueeze(-1) * corner
            out = term if out is None else out + term
    return out


def dcnv3_reference(value: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_size: int = 3,
                    stride: int = 1, pad: int = 1, dilation: int = 1, group: int = 1,
                    offset_scale: float = 1.0) -> torch.Tensor:
    """The DCNv3 core written out point by point (see the module docstring); no input checks.

    value (B, H, W, G*D), offset (B, Ho, Wo, G*K*2), mask (B, Ho, Wo, G*K) -> (B, Ho, Wo, G*D).
    Computes in value's dtype, at least float32 (like the official kernel's opmath), and returns value's dtype;
    the base grid is built in that dtype (the official PyTorch reference builds it in float32 even for float64).
    """
    batch, height, width, channels = value.shape
    _, out_h, out_w, _ = offset.shape
    points = kernel_size * kernel_size
    compute = torch.promote_types(value.dtype, torch.float32)
    flat = value.to(compute).reshape(batch, height * width, group, channels // group)
    offset = offset.to(compute).reshape(batch, out_h, out_w, group, points, 2)
    mask = mask.to(compute).reshape(batch, out_h, out_w, group, points)
    base = _base_positions(out_h, out_w, kernel_size, stride, pad, dilation, offset_scale, compute, value.device)
    out = None
    for p in range(points):
        x = base[..., p, 0] + offset[..., p, 0] * offset_scale
        y = base[..., p, 1] + offset[..., p, 1] * offset_scale
        term = mask[..., p].unsqueeze(-1) * _bilinear_gather(flat, height, width, y, x)
        out = term if out is None else out + term
    return out.reshape(batch, out_h, out_w, channels).to(value.dtype)


def dcnv3_grid_sample(value: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_size: int = 3,
                      stride: int = 1, pad: int = 1, dilation: int = 1, group: int = 1,
                      offset_scale: float = 1.0) -> torch.Tensor:
    """The DCNv3 core as one `F.grid_sample` over all groups and points; no input checks.

    Same signature and result as `dcnv3_reference`. With align_corners=False, pixel x maps to the normalised
    coordinate (2x + 1) / W - 1, and padding_mode='zeros' drops out-of-image neighbours exactly like the reference.
    float16/bfloat16 inputs are sampled in float32 (as under CUDA autocast) and the result cast back.
    """
    batch, height, width, channels = value.shape
    _, out_h, out_w, _ = offset.shape
    points = kernel_size * kernel_size
    depth = channels // group
    compute = torch.promote_types(value.dtype, torch.float32)
    base = _base_positions(out_h, out_w, kernel_size, stride, pad, dilation, offset_scale, compute, value.device)
    pos = base + offset.to(compute).reshape(batch, out_h, out_w, group, points, 2) * offset_scale
    scale = pos.new_tensor((2.0 / width, 2.0 / height))
    shift = pos.new_tensor((1.0 / width - 1.0, 1.0 / height - 1.0))
    grid = (pos * scale + shift).permute(0, 3, 1, 2, 4, 5).reshape(batch * group, out_h * out_w, points, 2)
    # (B, H, W, G*D) -> (B*G, D, H, W)
    planes = value.to(compute).reshape(batch, height * width, group, depth).permute(0, 2, 3, 1)
    planes = planes.reshape(batch * group, depth, height, width)
    sampled = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)  # (B*G, D, Ho*Wo, K)
    weights = mask.to(compute).reshape(batch, out_h * out_w, group, points).permute(0, 2, 1, 3)
    weights = weights.reshape(batch * group, 1, out_h * out_w, points)
    out = (sampled * weights).sum(-1)  # (B*G, D, Ho*Wo)
    out = out.reshape(batch, group * depth, out_h, out_w).permute(0, 2, 3, 1).reshape(batch, out_h, out_w, channels)
    return out.to(value.dtype)


def _check_inputs(value, offset, mask, kernel_size, stride, pad, dilation, group, offset_scale) -> int:
    """Validate the call and return the group count (inferred from mask when `group` is None)."""
    for name, t in (("value", value), ("offset", offset), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"dcnv3: {name} must be a tensor; got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"dcnv3: {name} must be 4-D channels-last (B, H, W, C); got shape {tuple(t.shape)}")
    for name, v, low in (("kernel_size", kernel_size, 1), ("stride", stride, 1), ("dilation", dilation, 1),
                         ("pad", pad, 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ValueError(f"dcnv3: {name} must be an int >= {low}; got {v!r}")
    if not isinstance(offset_scale, (int, float)) or isinstance(offset_scale, bool):
        raise TypeError(f"dcnv3: offset_scale must be a float; got {type(offset_scale).__name__}")
    points = kernel_size * kernel_size
    batch, height, width, channels = value.shape
    if group is None:
        if mask.shape[-1] % points:
            raise ValueError(f"dcnv3: mask channels ({mask.shape[-1]}) must be group * kernel_size**2 "
                             f"(kernel_size={kernel_size}); pass group= explicitly")
        group = mask.shape[-1] // points
    if not isinstance(group, int) or isinstance(group, bool) or group < 1 or channels % group:
        raise ValueError(f"dcnv3: group must be a positive divisor of value channels ({channels}); got {group!r}")
    out_h = dcnv3_output_size(height, kernel_size, stride, pad, dilation)
    out_w = dcnv3_output_size(width, kernel_size, stride, pad, dilation)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"dcnv3: input {height}x{width} is too small for kernel_size={kernel_size}, pad={pad}, "
                         f"dilation={dilation} (output would be {out_h}x{out_w}); increase pad or the input size")
    expected_offset = (batch, out_h, out_w, group * points * 2)
    if tuple(offset.shape) != expected_offset:
        raise ValueError(f"dcnv3: offset must be (B, Ho, Wo, G*K*2) = {expected_offset} for value "
                         f"{tuple(value.shape)}, group={group}, kernel_size={kernel_size}; got {tuple(offset.shape)}")
    expected_mask = (batch, out_h, out_w, group * points)
    if tuple(mask.shape) != expected_mask:
        raise ValueError(f"dcnv3: mask must be (B, Ho, Wo, G*K) = {expected_mask} for value "
                         f"{tuple(value.shape)}, group={group}, kernel_size={kernel_size}; got {tuple(mask.shape)}")
    if not (value.device == offset.device == mask.device):
        raise ValueError(f"dcnv3: value, offset and mask must be on one device; got {value.device}, "
                         f"{offset.device}, {mask.device} (move them with .to(value.device))")
    dtypes = (value.dtype, offset.dtype, mask.dtype)
    if any(d not in _FLOAT_DTYPES for d in dtypes):
        raise TypeError(f"dcnv3: dtypes must be float16/bfloat16/float32/float64; got {dtypes} (cast with .float())")
    if len(set(dtypes)) != 1 and not torch.is_autocast_enabled():
        raise TypeError(f"dcnv3: value, offset and mask must share a dtype; got {dtypes} (cast them)")
    return group


def dcnv3(value: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_size: int = 3, stride: int = 1,
          pad: int = 1, dilation: int = 1, group: int | None = None, offset_scale: float = 1.0,
          backend: str | None = None) -> torch.Tensor:
    """Deformable convolution v3 core (UniConvNet variant: raw mask, column-major points).

    value: (B, H, W, G*D); offset: (B, Ho, Wo, G*K*2) as (x, y) pairs per point; mask: (B, Ho, Wo, G*K),
    K = kernel_size**2 -> (B, Ho, Wo, G*D). `group` defaults to mask channels // K. `backend` overrides
    `set_dcnv3_backend` / $LSNET_DCNV3_BACKEND for this call ("auto", "reference" or "grid_sample").
    """
    group = _check_inputs(value, offset, mask, kernel_size, stride, pad, dilation, group, offset_scale)
    if backend is None:
        backend = get_dcnv3_backend()
    elif backend not in DCNV3_BACKENDS:
        raise ValueError(f"dcnv3: unknown backend {backend!r}; choose one of {DCNV3_BACKENDS}")
    if value.dtype != offset.dtype or value.dtype != mask.dtype:  # mixed only under autocast
        offset, mask = offset.to(value.dtype), mask.to(value.dtype)
    fn = dcnv3_reference if backend == "reference" else dcnv3_grid_sample
    return fn(value, offset, mask, kernel_size, stride, pad, dilation, group, float(offset_scale))
