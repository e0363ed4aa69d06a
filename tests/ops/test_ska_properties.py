"""SKA on random shapes, dtypes and memory layouts: every backend equals the float64 reference (output, grad x, grad
weight); `torch.library.opcheck` passes for both custom ops; an LSNet block compiled by Inductor equals eager."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strided import LAYOUTS, strided

from lsnet.layers import LSConv
from lsnet.ops import ska, ska_backend, ska_reference
from lsnet.ops.ska import NHWC, memory_order

# relative to the largest expected magnitude; low precision is computed in float32 and rounded once
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 3e-2}


@st.composite
def ska_cases(draw, max_side: int = 7, max_batch: int = 3, max_weight_chs: int = 4, max_groups: int = 3,
              kernel_sizes=(1, 3, 5, 7), dtypes=(torch.float32, torch.float64)) -> dict:
    """B, C = G * CW, H, W (1 included), odd k, a dtype, a layout for x, weight and grad_out, and a seed."""
    weight_chs, groups = draw(st.integers(1, max_weight_chs)), draw(st.integers(1, max_groups))
    return dict(batch=draw(st.integers(1, max_batch)), channels=weight_chs * groups, weight_chs=weight_chs,
                height=draw(st.integers(1, max_side)), width=draw(st.integers(1, max_side)),
                k=draw(st.sampled_from(kernel_sizes)), dtype=draw(st.sampled_from(dtypes)),
                x_layout=draw(st.sampled_from(LAYOUTS)), weight_layout=draw(st.sampled_from(LAYOUTS)),
                grad_layout=draw(st.sampled_from(LAYOUTS)), seed=draw(st.integers(0, 2**16)))


def _tensors(case: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (B, C, H, W), weight (B, CW, k*k, H, W) and grad_out in the case's dtype and layouts."""
    gen = torch.Generator().manual_seed(case["seed"])
    batch, channels, height, width = case["batch"], case["channels"], case["height"], case["width"]

    def make(shape, layout):
        return strided(torch.randn(shape, generator=gen, dtype=torch.float64).to(case["dtype"]), layout)

    return (make((batch, channels, height, width), case["x_layout"]),
            make((batch, case["weight_chs"], case["k"] ** 2, height, width), case["weight_layout"]),
            make((batch, channels, height, width), case["grad_layout"]))


def check_against_reference(backend: str, case: dict) -> None:
    """ska on `backend` equals the float64 reference in output and both gradients, for the case's tensors."""
    x, weight, grad = _tensors(case)
    x.requires_grad_()
    weight.requires_grad_()
    with ska_backend(backend):
        out = ska(x, weight)
        got = (out, *torch.autograd.grad(out, (x, weight), grad))
    x64, w64 = x.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    out64 = ska_reference(x64, w64)
    want = (out64, *torch.autograd.grad(out64, (x64, w64), grad.double()))
    tol = TOLERANCE[case["dtype"]]
    for name, g, w in zip(("out", "grad x", "grad weight"), got, want):
        assert g.dtype == case["dtype"] and g.shape == w.shape, name
        scale = max(w.abs().max().item(), 1.0)
        torch.testing.assert_close(g.double(), w, rtol=tol, atol=tol * scale, msg=lambda m, n=name: f"{n}: {m}")
    # the output keeps x's memory format: channels_last when x lies B, H, W, C in memory, else NCHW
    layout = torch.channels_last if memory_order(x) == list(NHWC) else torch.contiguous_format
    assert out.is_contiguous(memory_format=layout)


@settings(max_examples=60, deadline=None, database=None)
@given(ska_cases(max_weight_chs=20, dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16)))
def test_cpu_backend_matches_reference(case):
    """Up to 20 weight channels: the NHWC kernels' full and half SIMD chunks and the scalar tail."""
    check_against_reference("cpu", case)


@settings(max_examples=25, deadline=None, database=None)
@given(ska_cases(max_side=5, max_batch=2))
def test_reference_backend_matches_autograd_of_the_reference(case):
    """The 'reference' backend runs the written-out backward `ska_reference_backward`; autograd is the judge."""
    check_against_reference("reference", case)


@settings(max_examples=5, deadline=None, database=None)
@given(ska_cases(max_side=4, max_batch=2, max_weight_chs=2, max_groups=2, kernel_sizes=(1, 3, 5),
                 dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16)))
def triton_matches_reference(case):
    """Run by `test_triton_backend_under_interpreter` in a process with TRITON_INTERPRET=1."""
    check_against_reference("triton", case)


def test_padded_weight_rows_on_the_cpu_backend():
    """The reproduced bug: a weight whose last dim is contiguous but whose rows are padded (max error was 17.8)."""
    check_against_reference("cpu", dict(batch=2, channels=8, weight_chs=4, height=5, width=6, k=3,
                                        dtype=torch.float32, x_layout="contiguous", weight_layout="padded_rows",
                                        grad_layout="contiguous", seed=0))


def test_cpu_kernels_refuse_layouts_they_cannot_read():
    """The last check before C raises on a stride the kernel would misread, instead of answering wrong."""
    from lsnet.ops import ska_cpu

    x, out = torch.randn(1, 4, 5, 6), torch.empty(1, 4, 5, 6)
    weight = torch.randn(1, 2, 9, 5, 9)[..., :6]
    with pytest.raises(RuntimeError, match="weight shape"):
        ska_cpu._call("forward", False, x, weight, out, weight, 3)
    with pytest.raises(RuntimeError, match="contiguous in"):
        ska_cpu._call("forward", False, x.transpose(2, 3).contiguous().transpose(2, 3), weight.contiguous(), out,
                      weight.contiguous(), 3)
    grad_w = torch.empty(1, 2, 9, 5, 6).expand(2, -1, -1, -1, -1)
    x = torch.randn(2, 4, 5, 6).contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="overlap"):
        ska_cpu._call("grad_w", True, x, x, grad_w, grad_w, 3)


# (x layout, weight layout): the layouts whose output strides a fake kernel can get wrong
OPCHECK_LAYOUTS = [("contiguous", "contiguous"), ("channels_last", "channels_last"), ("channels_last", "contiguous"),
                   ("contiguous", "channels_last"), ("expanded_batch", "padded_rows"), ("transposed", "reversed")]


def run_opchecks(backend: str, layouts=OPCHECK_LAYOUTS, shape=(2, 8, 5, 4, 2, 3)) -> None:
    """opcheck lsnet::ska (with autograd) and lsnet::ska_backward on `backend`, in each (x, weight) layout; the
    backward op also with only one gradient requested (first layout)."""
    batch, channels, height, width, weight_chs, k = shape
    for i, (x_layout, weight_layout) in enumerate(layouts):
        case = dict(batch=batch, channels=channels, weight_chs=weight_chs, height=height, width=width, k=k,
                    dtype=torch.float32, x_layout=x_layout, weight_layout=weight_layout, grad_layout=x_layout,
                    seed=0)
        x, weight, grad = _tensors(case)
        with ska_backend(backend):
            torch.library.opcheck(torch.ops.lsnet.ska.default, (x.requires_grad_(), weight.requires_grad_()))
            for need in ((True, True), (True, False), (False, True))[: 3 if i == 0 else 1]:
                torch.library.opcheck(torch.ops.lsnet.ska_backward.default,
                                      (grad, x.detach(), weight.detach(), *need))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_opcheck(backend):
    run_opchecks(backend)


def test_triton_backend_under_interpreter():
    """Triton's kernels on CPU (TRITON_INTERPRET=1 is read when the kernels are defined, hence a fresh process):
    the property test with a few tiny cases, and opcheck on channels_last (outputs are allocated by the dispatcher
    for every backend, so the other layouts' strides are the cpu/reference opchecks' business)."""
    pytest.importorskip("triton")
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('props', {__file__!r})\n"
        "props = importlib.util.module_from_spec(spec); spec.loader.exec_module(props)\n"
        "props.triton_matches_reference()\n"
        "props.run_opchecks('triton', [('channels_last', 'channels_last')], shape=(1, 4, 3, 2, 2, 3))\n"
        "print('triton-interpreter-ok')\n"
    )
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), *sys.path]))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "triton-interpreter-ok" in result.stdout


def test_inductor_compiles_an_lsconv_block():
    """The default Inductor backend (not backend="eager") on a real LSConv block, forward and backward, equals
    eager in output, input gradient and every parameter gradient. Inductor sees lsnet::ska through its fake
    kernels, so this fails if their strides disagree with the real kernels'. channels_last: the NHWC kernels."""
    import torch._inductor.config as inductor_config

    torch.manual_seed(0)
    memory_format = torch.channels_last
    eager = LSConv(16, kernel_groups=8).double().to(memory_format=memory_format)
    compiled_block = copy.deepcopy(eager)
    x = torch.randn(2, 16, 7, 6, dtype=torch.float64).contiguous(memory_format=memory_format)
    x_eager, x_compiled = x.clone().requires_grad_(), x.clone().requires_grad_()
    with inductor_config.patch(compile_threads=1):  # no worker pool to start on a small machine
        out = torch.compile(compiled_block)(x_compiled)
        out.square().sum().backward()
    expected = eager(x_eager)
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x_compiled.grad, x_eager.grad, rtol=1e-10, atol=1e-10)
    for (name, p), q in zip(compiled_block.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")

