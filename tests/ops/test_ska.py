"""SKA: the reference is the spec; every backend must agree with it (values and both gradients)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lsnet.ops import resolve_ska_backend, ska, ska_backend, ska_cpu, ska_reference

# (B, C, H, W, weight channels, k): batch 1, odd sizes, H or W = 1, C/CW not a power of two, k = 5
SHAPES = [
    (2, 16, 7, 5, 2, 3),
    (1, 8, 1, 9, 8, 3),
    (1, 24, 9, 1, 3, 3),
    (3, 12, 6, 6, 4, 5),
    (2, 40, 5, 3, 40, 3),
    (1, 96, 7, 7, 12, 3),
    (2, 64, 14, 14, 8, 3),
    (1, 16, 9, 10, 4, 7),
]


def unfold_spec(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """An independent statement of the spec: im2col and the weights tiled over channel groups (c % CW)."""
    batch, channels, height, width = x.shape
    k = int(weight.shape[2] ** 0.5)
    cols = F.unfold(x, k, padding=k // 2).view(batch, channels, k * k, height, width)
    return (cols * weight.repeat(1, channels // weight.shape[1], 1, 1, 1)).sum(2)


def test_reference_matches_the_spec_formula():
    torch.manual_seed(0)
    x, w = torch.randn(2, 12, 5, 6, dtype=torch.float64), torch.randn(2, 4, 9, 5, 6, dtype=torch.float64)
    out = ska_reference(x, w)
    torch.testing.assert_close(out, unfold_spec(x, w))
    # one element by hand: interior pixel, channel 5 uses weight channel 5 % 4 = 1
    b, c, h, j = 1, 5, 2, 3
    manual = sum(x[b, c, h + i - 1, j + q - 1] * w[b, c % 4, i * 3 + q, h, j] for i in range(3) for q in range(3))
    torch.testing.assert_close(out[b, c, h, j], manual)


def test_interleaved_not_contiguous_sharing():
    """Channels c and c + C/G share a kernel; channels 0 and 1 do not (the common porting bug)."""
    x = torch.zeros(1, 4, 3, 3)
    x[:, :, 1, 1] = 1.0
    w = torch.zeros(1, 2, 9, 3, 3)
    w[0, 0, 4] = 1.0  # weight channel 0: identity kernel; weight channel 1: all zero
    out = ska_reference(x, w)
    assert out[0, 0, 1, 1] == 1 and out[0, 2, 1, 1] == 1
    assert out[0, 1, 1, 1] == 0 and out[0, 3, 1, 1] == 0


def test_reference_gradcheck_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 9, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ska_reference, (x, w))


def _compare(backend: str, shape, dtype=torch.float32, channels_last=False, non_contiguous=False, tol=1e-5):
    batch, channels, height, width, weight_chs, k = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(batch, channels, height, width, generator=gen, dtype=dtype)
    w = torch.randn(batch, weight_chs, k * k, height, width, generator=gen, dtype=dtype)
    if non_contiguous:  # strided views of larger tensors
        x = torch.randn(batch, channels, height, 2 * width, generator=gen, dtype=dtype)[..., ::2]
        w = torch.randn(batch, weight_chs, k * k, height, width, 2, generator=gen, dtype=dtype)[..., 0]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(batch, channels, height, width, generator=gen, dtype=dtype)

    xr, wr = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ska_reference(xr, wr).backward(grad.double())
    xf, wf = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    with ska_backend(backend):
        out = ska(xf, wf)
    out.backward(grad)
    expected = ska_reference(xr.detach(), wr.detach())
    for got, want in ((out, expected), (xf.grad, xr.grad), (wf.grad, wr.grad)):
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol * want.abs().max().item())
    if channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "non_contiguous"])
def test_cpu_backend_matches_reference(shape, layout):
    _compare("cpu", shape, channels_last=layout == "channels_last", non_contiguous=layout == "non_contiguous")


def test_cpu_backend_kernels_beyond_7x7_use_the_reference():
    _compare("cpu", (1, 8, 11, 10, 2, 9))
    _compare("cpu", (1, 8, 11, 10, 2, 9), channels_last=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_cpu_backend_dtypes(dtype):
    _compare("cpu", SHAPES[0], dtype=dtype, tol=1e-12 if dtype == torch.float64 else 2e-2)


def test_channels_last_weights_from_a_channels_last_conv():
    """LKP in channels_last produces (B, CW*9, H, W) channels_last, viewed as (B, CW, 9, H, W)."""
    torch.manual_seed(0)
    x = torch.randn(2, 32, 6, 5).contiguous(memory_format=torch.channels_last)
    w = torch.randn(2, 36, 6, 5).contiguous(memory_format=torch.channels_last).reshape(2, 4, 9, 6, 5)
    torch.testing.assert_close(ska(x, w), ska_reference(x, w))


def test_fast_cpu_path_never_falls_back_silently(monkeypatch):
    monkeypatch.setenv("LSNET_SKA_BACKEND", "cpu")
    assert ska_cpu.is_available(), "the C kernels must build on this machine (gcc is part of the image)"


def test_forced_backend_that_cannot_run_fails_loudly(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, w = torch.randn(1, 8, 4, 4), torch.randn(1, 1, 9, 4, 4)
    with ska_backend("triton"), pytest.raises(RuntimeError, match="backend 'triton' was requested but cannot run"):
        ska(x, w)
    monkeypatch.setenv("LSNET_SKA_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="LSNET_SKA_BACKEND='nonsense'"):
        ska(x, w)


@pytest.mark.parametrize(
    "x_shape, w_shape, dtype, error, match",
    [
        ((8, 4, 4), (1, 1, 9, 4, 4), torch.float32, ValueError, r"x must be \(B, C, H, W\)"),
        ((1, 8, 4, 4), (1, 1, 9, 4, 5), torch.float32, ValueError, "spatial dims must match"),
        ((2, 8, 4, 4), (1, 1, 9, 4, 4), torch.float32, ValueError, "batch and spatial dims must match"),
        ((1, 8, 4, 4), (1, 1, 8, 4, 4), torch.float32, ValueError, "k\\*k for an odd k"),
        ((1, 8, 4, 4), (1, 1, 16, 4, 4), torch.float32, ValueError, "k\\*k for an odd k"),
        ((1, 8, 4, 4), (1, 3, 9, 4, 4), torch.float32, ValueError, "multiple of weight channels"),
        ((1, 8, 4, 4), (1, 1, 9, 4, 4), torch.int32, TypeError, "dtype must be one of"),
    ],
)
def test_input_validation(x_shape, w_shape, dtype, error, match):
    x = torch.ones(x_shape, dtype=dtype)
    w = torch.ones(w_shape, dtype=dtype)
    with pytest.raises(error, match=match):
        ska(x, w)


def test_mixed_dtypes_and_devices_rejected():
    with pytest.raises(TypeError, match=r"share a dtype.*\(cast one of them\)"):
        ska(torch.ones(1, 8, 4, 4), torch.ones(1, 1, 9, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"same device; got cpu and meta \(move one with \.to\(x\.device\)\)"):
        ska(torch.ones(1, 8, 4, 4), torch.ones(1, 1, 9, 4, 4, device="meta"))
    with ska_backend("cpu"), pytest.raises(RuntimeError, match="needs CPU tensors.*LSNET_SKA_BACKEND=auto"):
        resolve_ska_backend(torch.device("cuda"))


def test_the_custom_ops_check_their_inputs_too():
    """torch.ops.lsnet.ska called directly (as compiled graphs do) never hands a bad shape to a kernel."""
    x, w = torch.ones(1, 8, 4, 4), torch.ones(1, 1, 9, 4, 4)
    with pytest.raises(ValueError, match="multiple of weight channels"):
        torch.ops.lsnet.ska(x, torch.ones(1, 3, 9, 4, 4))
    with pytest.raises(ValueError, match=r"grad_out must have x's shape \(1, 8, 4, 4\); got \(1, 8, 4, 5\)"):
        torch.ops.lsnet.ska_backward(torch.ones(1, 8, 4, 5), x, w, True, True)
    with pytest.raises(TypeError, match=r"dtype must be one of.*\(cast with \.float\(\)\)"):
        torch.ops.lsnet.ska(x.int(), w.int())


def test_empty_inputs():
    for shape in ((0, 8, 4, 4), (2, 8, 0, 3), (2, 0, 3, 3)):
        x = torch.randn(shape, requires_grad=True)
        w = torch.randn(shape[0], 2, 9, *shape[2:], requires_grad=True)
        out = ska(x, w)
        out.sum().backward()
        assert out.shape == x.shape and not w.grad.any() and x.grad.shape == x.shape


def test_flop_counter_sees_k2_macs_per_output():
    x, w = torch.randn(2, 16, 5, 7), torch.randn(2, 2, 9, 5, 7)
    with FlopCounterMode(display=False) as counter:
        ska(x, w)
    assert counter.get_total_flops() == 2 * 9 * x.numel()  # FlopCounterMode counts a multiply-add as 2


def test_torch_compile_and_export():
    x, w = torch.randn(1, 16, 6, 6), torch.randn(1, 2, 9, 6, 6)
    compiled = torch.compile(lambda a, b: ska(a, b) * 2, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, w), ska_reference(x, w) * 2)

    class Wrap(torch.nn.Module):
        def forward(self, a, b):
            return ska(a, b)

    exported = torch.export.export(Wrap(), (x, w))
    assert any("lsnet.ska" in str(node.target) for node in exported.graph.nodes)
    torch.testing.assert_close(exported.module()(x, w), ska_reference(x, w))
    traced = torch.jit.trace(Wrap(), (x, w))  # tracing records the standard-op reference
    torch.testing.assert_close(traced(x, w), ska_reference(x, w))


@pytest.mark.parametrize("shape", SHAPES[:4])
def test_reference_backend_through_the_dispatcher(shape):
    """The written-out reference backward (used by the op's 'reference' backend) equals autograd's."""
    _compare("reference", shape, dtype=torch.float64, tol=1e-12)


def test_import_is_light():
    """`import lsnet` neither imports our Triton module nor compiles the C kernels."""
    script = (
        "import sys, lsnet, lsnet.ops.ska_cpu as c; "
        "assert 'lsnet.ops.ska_triton' not in sys.modules; assert c._library is None; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]
