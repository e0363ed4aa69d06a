"""DCNv3 core: the reference is checked against a scalar transcription of the official kernel's rules, the fast path
against the reference (values and all three gradients), and the layer's init and errors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strided import LAYOUTS, strided

from lsnet.layers.dcnv3 import DCNv3
from lsnet.ops.dcnv3 import dcnv3, dcnv3_grid_sample, dcnv3_output_size, dcnv3_reference, set_dcnv3_backend

F64 = torch.float64


def _inputs(batch, height, width, group, depth, k=3, stride=1, pad=1, dilation=1, offset_std=1.5, dtype=F64,
            seed=0):
    gen = torch.Generator().manual_seed(seed)
    out_h = dcnv3_output_size(height, k, stride, pad, dilation)
    out_w = dcnv3_output_size(width, k, stride, pad, dilation)
    value = torch.randn(batch, height, width, group * depth, generator=gen, dtype=dtype)
    offset = torch.randn(batch, out_h, out_w, group * k * k * 2, generator=gen, dtype=dtype) * offset_std
    mask = torch.randn(batch, out_h, out_w, group * k * k, generator=gen, dtype=dtype)
    return value, offset, mask


def _scalar_spec(value, offset, mask, k, stride, pad, dilation, group, scale):
    """Per-element transcription of the official CUDA im2col rules (loc > -1 && loc < size; per-corner checks)."""
    batch, height, width, channels = value.shape
    _, out_h, out_w, _ = offset.shape
    depth = channels // group
    out = torch.zeros(batch, out_h, out_w, channels, dtype=value.dtype)
    half = dilation * (k - 1) // 2
    for b in range(batch):
        for ho in range(out_h):
            for wo in range(out_w):
                top_left_x = half - pad + wo * stride - half * scale
                top_left_y = half - pad + ho * stride - half * scale
                for g in range(group):
                    acc = torch.zeros(depth, dtype=value.dtype)
                    point = 0
                    for i in range(k):  # x
                        for j in range(k):  # y
                            ox = float(offset[b, ho, wo, (g * k * k + point) * 2])
                            oy = float(offset[b, ho, wo, (g * k * k + point) * 2 + 1])
                            x = top_left_x + (i * dilation + ox) * scale
                            y = top_left_y + (j * dilation + oy) * scale
                            weight = float(mask[b, ho, wo, g * k * k + point])
                            point += 1
                            if not (y > -1 and x > -1 and y < height and x < width):
                                continue
                            y0, x0 = math.floor(y), math.floor(x)
                            ly, lx = y - y0, x - x0
                            for yy, xx, w in ((y0, x0, (1 - ly) * (1 - lx)), (y0, x0 + 1, (1 - ly) * lx),
                                              (y0 + 1, x0, ly * (1 - lx)), (y0 + 1, x0 + 1, ly * lx)):
                                if 0 <= yy <= height - 1 and 0 <= xx <= width - 1:
                                    acc += weight * w * value[b, yy, xx, g * depth:(g + 1) * depth]
                    out[b, ho, wo, g * depth:(g + 1) * depth] = acc
    return out


@pytest.mark.parametrize("k, stride, pad, dilation, scale", [(3, 1, 1, 1, 1.0), (3, 2, 1, 1, 1.0), (3, 1, 2, 2, 0.5),
                                                             (5, 1, 2, 1, 2.0), (3, 2, 0, 1, 1.0)])
def test_reference_matches_official_rules(k, stride, pad, dilation, scale):
    value, offset, mask = _inputs(1, 4, 5, 2, 2, k, stride, pad, dilation, offset_std=2.0)
    expected = _scalar_spec(value, offset, mask, k, stride, pad, dilation, 2, scale)
    got = dcnv3_reference(value, offset, mask, k, stride, pad, dilation, 2, scale)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_point_order_is_column_major():
    """Zero offsets and a one-hot mask at point p = i*3 + j shift the image by (dx, dy) = (i - 1, j - 1)."""
    value, offset, _ = _inputs(2, 5, 6, 3, 2)
    padded = F.pad(value.permute(0, 3, 1, 2), (1, 1, 1, 1)).permute(0, 2, 3, 1)
    for p in range(9):
        mask = torch.zeros(2, 5, 6, 3, 9, dtype=F64)
        mask[..., p] = 1
        out = dcnv3(value, torch.zeros_like(offset), mask.flatten(3), group=3, backend="reference")
        dx, dy = p // 3 - 1, p % 3 - 1
        assert torch.equal(out, padded[:, 1 + dy:6 + dy, 1 + dx:7 + dx]), p


@pytest.mark.parametrize("fn", [dcnv3_reference, dcnv3_grid_sample])
def test_gradcheck_float64(fn):
    value, offset, mask = _inputs(1, 3, 4, 2, 2, offset_std=1.0, seed=3)
    inputs = tuple(t.clone().requires_grad_() for t in (value, offset, mask))
    assert torch.autograd.gradcheck(lambda v, o, m: fn(v, o, m, 3, 1, 1, 1, 2, 1.0), inputs)


# (B, H, W, G, D, k, stride, pad, dilation, scale): batch 1, odd sizes, H or W = 1, many groups, strided/dilated
SHAPES = [
    (2, 7, 5, 3, 8, 3, 1, 1, 1, 1.0),
    (1, 1, 9, 2, 4, 3, 1, 1, 1, 1.0),
    (1, 6, 1, 1, 16, 3, 1, 1, 1, 1.0),
    (2, 9, 8, 4, 2, 3, 2, 1, 1, 1.0),
    (1, 8, 7, 2, 3, 3, 1, 2, 2, 0.5),
    (1, 5, 6, 1, 4, 5, 1, 2, 1, 1.5),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_fast_path_matches_reference(shape, dtype):
    batch, height, width, group, depth, k, stride, pad, dilation, scale = shape
    value, offset, mask = _inputs(batch, height, width, group, depth, k, stride, pad, dilation, offset_std=3.0,
                                  dtype=dtype)  # std 3 px: many samples partly or fully outside the image
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == F64 else dict(rtol=1e-4, atol=1e-4)
    results = []
    for fn in (dcnv3_reference, dcnv3_grid_sample):
        leaves = [t.clone().requires_grad_() for t in (value, offset, mask)]
        out = fn(*leaves, k, stride, pad, dilation, group, scale)
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=dtype)
        results.append((out, *torch.autograd.grad(out, leaves, grad_out)))
    for ref, fast in zip(*results):
        torch.testing.assert_close(fast, ref, **tol)


def test_fast_path_at_integer_positions_and_borders():
    """Exactly-integer positions (sample = pixel), half a pixel outside (0.5 weight) and far outside (0)."""
    value, _, _ = _inputs(1, 4, 5, 1, 3)
    for shift in (0.0, 1.0, -2.0, 0.5, -1.5, 4.0, 1e3, -1e3):
        offset = torch.full((1, 4, 5, 18), shift, dtype=F64)
        mask = torch.ones(1, 4, 5, 9, dtype=F64)
        ref = dcnv3_reference(value, offset, mask, 3, 1, 1, 1, 1, 1.0)
        fast = dcnv3_grid_sample(value, offset, mask, 3, 1, 1, 1, 1, 1.0)
        torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    # integer offsets (x + 1, y + 2) for every point: the 3x3 window sum around (h + 2, w + 1), zeros outside
    offset = torch.zeros(1, 4, 5, 9, 2, dtype=F64)
    offset[..., 0], offset[..., 1] = 1.0, 2.0
    for fn in (dcnv3_reference, dcnv3_grid_sample):
        out = fn(value, offset.flatten(3), torch.ones(1, 4, 5, 9, dtype=F64), 3, 1, 1, 1, 1, 1.0)
        torch.testing.assert_close(out, _window_sum(value, 1, 2), rtol=1e-12, atol=1e-12)


def _window_sum(value, shift_x, shift_y):
    """Sum over the 3x3 window around (h + shift_y, w + shift_x) of the zero-padded image."""
    _, height, width, _ = value.shape
    out = torch.zeros_like(value)
    for h in range(height):
        for w in range(width):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    y, x = h + dy + shift_y, w + dx + shift_x
                    if 0 <= y < height and 0 <= x < width:
                        out[:, h, w] += value[:, y, x]
    return out


def test_non_contiguous_inputs():
    value, offset, mask = _inputs(2, 6, 7, 2, 4, dtype=torch.float32)
    expected = dcnv3(value, offset, mask, group=2)
    value_nc = value.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)  # channels-first memory
    offset_nc = torch.stack([offset, offset], dim=-1)[..., 0]  # strided last dim
    assert not value_nc.is_contiguous() and not offset_nc.is_contiguous()
    for backend in ("reference", "grid_sample"):
        torch.testing.assert_close(dcnv3(value_nc, offset_nc, mask.transpose(1, 2).contiguous().transpose(1, 2),
                                         group=2, backend=backend), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_samples_in_float32(dtype):
    """Positions in half precision would be off by whole pixels at large sizes; only the output is rounded."""
    value, offset, mask = _inputs(1, 5, 40, 2, 4, dtype=dtype)
    offset = offset + 20  # large absolute positions, where a 16-bit grid is coarse
    expected = dcnv3_reference(value.double(), offset.double(), mask.double(), 3, 1, 1, 1, 2, 1.0)
    for backend in ("reference", "grid_sample"):
        out = dcnv3(value, offset, mask, group=2, backend=backend)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=2e-2)


def test_backend_selection(monkeypatch):
    value, offset, mask = _inputs(1, 4, 4, 1, 2)
    calls = []
    import lsnet.ops.dcnv3 as module

    monkeypatch.setattr(module, "dcnv3_reference", lambda *a: calls.append("reference") or a[0])
    monkeypatch.setattr(module, "dcnv3_grid_sample", lambda *a: calls.append("grid_sample") or a[0])
    dcnv3(value, offset, mask)
    monkeypatch.setenv("LSNET_DCNV3_BACKEND", "reference")
    dcnv3(value, offset, mask)
    set_dcnv3_backend("grid_sample")
    try:
        dcnv3(value, offset, mask)
        dcnv3(value, offset, mask, backend="reference")
    finally:
        set_dcnv3_backend(None)
    assert calls == ["grid_sample", "reference", "grid_sample", "reference"]
    monkeypatch.setenv("LSNET_DCNV3_BACKEND", "cuda")
    with pytest.raises(ValueError, match="not a backend"):
        dcnv3(value, offset, mask)


@pytest.mark.parametrize("change, message", [
    (dict(value=torch.zeros(1, 4, 4)), "value must be 4-D"),
    (dict(offset=torch.zeros(1, 4, 4, 17, dtype=F64)), r"offset must be \(B, Ho, Wo, G\*K\*2\) = \(1, 4, 4, 36\)"),
    (dict(mask=torch.zeros(1, 3, 4, 18, dtype=F64)), r"mask must be \(B, Ho, Wo, G\*K\) = \(1, 4, 4, 18\)"),
    (dict(group=3), "group must be a positive divisor of value channels"),
    (dict(stride=0), "stride must be an int >= 1"),
    (dict(mask=torch.zeros(1, 4, 4, 18, dtype=torch.float32)), "must share a dtype"),
    (dict(value=torch.zeros(1, 4, 4, 4, dtype=torch.int64)), r"dtypes must be.*\(cast with \.float\(\)\)"),
    (dict(mask=torch.zeros(1, 4, 4, 18, dtype=F64, device="meta")), r"one device.*\(move them with \.to\(value"),
    (dict(pad=0, kernel_size=5), "too small"),
    (dict(backend="cuda"), "unknown backend"),
    (dict(offset="x"), "offset must be a tensor"),
])
def test_validation_errors(change, message):
    value, offset, mask = _inputs(1, 4, 4, 2, 2)
    kwargs = dict(value=value, offset=offset, mask=mask, group=2)
    kwargs.update(change)
    with pytest.raises((ValueError, TypeError), match=message):
        dcnv3(**kwargs)


def test_group_is_inferred_from_mask():
    value, offset, mask = _inputs(1, 4, 4, 2, 2)
    torch.testing.assert_close(dcnv3(value, offset, mask), dcnv3(value, offset, mask, group=2))


def test_layer_init_shapes_and_errors():
    layer = DCNv3(24, group=3)
    for proj in (layer.offset_proj, layer.mask_proj):
        assert not proj.weight.any() and not proj.bias.any()
    assert layer.offset_proj.out_features == 3 * 9 * 2 and layer.mask_proj.out_features == 3 * 9
    bound = math.sqrt(6 / (24 + 24))
    assert layer.input_proj.weight.abs().max() <= bound and not layer.input_proj.bias.any()
    x = torch.randn(2, 5, 7, 24)
    assert not layer(x).any()  # zero mask at init -> zero sampling -> output_proj bias (0)
    torch.nn.init.normal_(layer.mask_proj.bias)
    torch.nn.init.normal_(layer.offset_proj.weight, std=0.5)
    out = layer(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None for p in layer.parameters())
    with pytest.raises(ValueError, match=r"expected channels-last input \(B, H, W, 24\)"):
        layer(torch.randn(2, 24, 5, 7))
    with pytest.raises(ValueError, match="must be divisible by group"):
        DCNv3(20, group=3)


NAMES = ("out", "grad value", "grad offset", "grad mask")
TOLERANCE = {F64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}


@st.composite
def dcnv3_cases(draw) -> dict:
    """Random geometry (output at least 1x1), dtype, a layout for each input (and the output gradient), a seed."""
    k, stride, dilation = draw(st.sampled_from((1, 3, 5))), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    height, width, pad = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(0, 2))
    assume(min(dcnv3_output_size(s, k, stride, pad, dilation) for s in (height, width)) >= 1)
    layouts = st.sampled_from(LAYOUTS)
    return dict(batch=draw(st.integers(1, 2)), height=height, width=width, group=draw(st.integers(1, 3)),
                depth=draw(st.integers(1, 4)), k=k, stride=stride, pad=pad, dilation=dilation,
                scale=draw(st.sampled_from((0.5, 1.0, 1.5))),
                dtype=draw(st.sampled_from((F64, torch.float32, torch.float16, torch.bfloat16))),
                layouts=[draw(layouts) for _ in range(4)], seed=draw(st.integers(0, 2**16)))


@settings(max_examples=40, deadline=None, database=None)
@given(dcnv3_cases())
def test_backends_match_the_float64_reference_in_any_layout(case):
    """Both backends through `dcnv3` (checks included), inputs in any strides, against the float64 reference:
    output and the gradients of value, offset and mask. The offset gradient jumps where a sample crosses a pixel
    row or column, so outside float64 (where positions round differently) only the continuous ones are compared."""
    geometry = [case[n] for n in ("k", "stride", "pad", "dilation")]
    value, offset, mask = _inputs(case["batch"], case["height"], case["width"], case["group"], case["depth"],
                                  *geometry, offset_std=2.0, seed=case["seed"])
    grad = torch.randn(mask.shape[:3] + value.shape[3:], generator=torch.Generator().manual_seed(1), dtype=F64)
    inputs = [strided(t.to(case["dtype"]), layout) for t, layout in zip((value, offset, mask, grad),
                                                                           case["layouts"])]
    leaves64 = [t.detach().double().requires_grad_() for t in inputs[:3]]
    out64 = dcnv3_reference(*leaves64, *geometry, case["group"], case["scale"])
    want = (out64, *torch.autograd.grad(out64, leaves64, inputs[3].double()))
    compared = (0, 1, 2, 3) if case["dtype"] == F64 else (0, 1, 3)
    tol = TOLERANCE[case["dtype"]]
    for backend in ("reference", "grid_sample"):
        leaves = [t.detach().requires_grad_() for t in inputs[:3]]
        out = dcnv3(*leaves, *geometry, case["group"], case["scale"], backend=backend)
        got = (out, *torch.autograd.grad(out, leaves, inputs[3]))
        for i in compared:
            assert got[i].dtype == case["dtype"] and got[i].shape == want[i].shape
            scale = max(want[i].abs().max().item(), 1.0)
            torch.testing.assert_close(got[i].double(), want[i], rtol=tol, atol=tol * scale,
                                       msg=lambda m, b=backend, n=NAMES[i]: f"{b}, {n}: {m}")
