"""Edge cases of the C kernels in `ska_cpu.c` against the float64 reference: row widths around the vector width
(tails, rows narrower than a vector), channel groups that do not fill a channel block, work that splits unevenly
over 1 and 2 threads, batch 1, k = 1, 3, 5, 7, both layouts, non-contiguous inputs, float32 and float64, forward
and both gradients."""
from __future__ import annotations

import pytest
import torch

from lsnet.ops import ska, ska_backend, ska_reference

# (B, C, H, W, weight channels CW, k). Vectors hold 4 (float64, AVX2), 8 or 16 lanes; NCHW channel blocks hold 8
# of the G = C // CW channels that share a weight channel.
CASES = [
    (1, 9, 7, 7, 1, 3),  # the LSNet 7x7 map (one vector per row with a spare lane), G = 9: a block of 8 and 1
    (1, 6, 3, 1, 2, 3),  # W = 1
    (2, 4, 1, 5, 4, 3),  # H = 1: every row ends its plane
    (1, 8, 5, 2, 8, 7),  # kernel wider than the map
    (3, 33, 5, 9, 3, 3),  # W = 9: one full vector and an overlapping one (float32), G = 11, B*C odd
    (1, 34, 4, 13, 2, 5),  # W = 13, G = 17: blocks of 8, 8, 1
    (2, 16, 6, 16, 16, 3),  # W = 16: whole vectors, G = 1
    (1, 10, 3, 17, 5, 7),  # W = 17: a tail after two vectors
    (1, 24, 11, 23, 3, 1),  # k = 1, W = 23
    (2, 12, 9, 8, 4, 5),  # W = 8: exactly one float32 vector, two float64 ones
]


def _inputs(shape, dtype, layout):
    batch, channels, height, width, weight_chs, k = shape
    gen = torch.Generator().manual_seed(sum(shape) + len(layout))
    x = torch.randn(batch, channels, height, width, generator=gen, dtype=dtype)
    w = torch.randn(batch, weight_chs, k * k, height, width, generator=gen, dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "non_contiguous":  # every other column of a wider x; weight a slice of a larger last dim
        x = torch.randn(batch, channels, height, 2 * width, generator=gen, dtype=dtype)[..., ::2]
        w = torch.randn(batch, weight_chs, k * k, height, width, 3, generator=gen, dtype=dtype)[..., 1]
    grad = torch.randn(batch, channels, height, width, generator=gen, dtype=dtype)
    return x, w, grad


@pytest.fixture(params=[1, 2], ids=lambda n: f"{n}threads")
def threads(request):
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "non_contiguous"])
@pytest.mark.parametrize("shape", CASES, ids=lambda s: "B{}C{}H{}W{}CW{}k{}".format(*s))
def test_kernels_match_the_float64_reference(shape, layout, dtype, threads):
    x, w, grad = _inputs(shape, dtype, layout)
    xr, wr = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    expected = ska_reference(xr, wr)
    expected.backward(grad.double())
    xf, wf = x.detach().requires_grad_(), w.detach().requires_grad_()
    with ska_backend("cpu"):
        out = ska(xf, wf)
    out.backward(grad)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for name, got, want in (("out", out, expected), ("grad x", xf.grad, xr.grad), ("grad weight", wf.grad, wr.grad)):
        torch.testing.assert_close(got.double(), want.detach(), rtol=tol, atol=tol * want.abs().max().item(),
                                   msg=lambda m, name=name: f"{name}: {m}")

