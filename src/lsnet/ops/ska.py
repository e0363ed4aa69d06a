"""Small-kernel aggregation (SKA): input checks, backend choice, autograd, torch.compile and FLOP counting.

    out = ska(x, weight)    # x: (B, C, H, W), weight: (B, C // G, k*k, H, W), odd k

Backends (one op, several implementations):
  reference  `ska_reference.py`: pure PyTorch shift-and-add; the spec; the export (ONNX/trace) path
  cpu        `ska_cpu.py` + `ska_cpu.c`: fused C kernels, compiled lazily and cached
  triton     `ska_triton.py`: GPU kernels (or CPU under TRITON_INTERPRET=1), imported lazily
"auto" picks triton on CUDA, cpu on CPU, and falls back to reference with a one-line warning when the chosen
one cannot run. Force one with `LSNET_SKA_BACKEND=<name>` or `set_ska_backend(name)`; a forced backend that
cannot run raises instead of falling back.

The op is registered as `torch.ops.lsnet.ska` (a `torch.library.custom_op` with a fake kernel and autograd;
its backward is `torch.ops.lsnet.ska_backward`), so torch.compile/torch.export see one opaque node, and
`torch.utils.flop_counter` counts it as k*k multiply-adds per output element. Both ops check their inputs.

Layouts: inputs may have any strides. The ops allocate every output themselves, by one rule that the real and the
fake kernels share (`_empty_outputs`): out and grad x are channels_last when x lies B, H, W, C in memory
(`output_layout`), else contiguous; grad weight is dense in weight's memory order. Backends fill those tensors.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator

import torch
from torch.utils.flop_counter import register_flop_formula

from .ska_reference import ska_reference, ska_reference_backward

__all__ = ["ska", "ska_reference", "set_ska_backend", "get_ska_backend", "ska_backend", "resolve_ska_backend",
           "BACKENDS"]

_logger = logging.getLogger(__name__)
BACKENDS = ("auto", "reference", "cpu", "triton")
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_backend_override: str | None = None
_reported: set[str] = set()


def _log_once(level: int, message: str) -> None:
    if message not in _reported:
        _reported.add(message)
        _logger.log(level, message)


def set_ska_backend(name: str | None) -> None:
    """Force a backend for every later call (None or "auto" restores automatic choice)."""
    global _backend_override
    if name is not None and name not in BACKENDS:
        raise ValueError(f"ska: unknown backend {name!r}; choose one of {BACKENDS}")
    _backend_override = None if name in (None, "auto") else name


def get_ska_backend() -> str:
    """The requested backend: the setter's value, else $LSNET_SKA_BACKEND, else "auto"."""
    if _backend_override is not None:
        return _backend_override
    name = os.environ.get("LSNET_SKA_BACKEND", "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        raise ValueError(f"ska: LSNET_SKA_BACKEND={name!r} is not a backend; use one of {BACKENDS}")
    return name


@contextlib.contextmanager
def ska_backend(name: str) -> Iterator[None]:
    """Context manager form of `set_ska_backend`."""
    previous = _backend_override
    set_ska_backend(name)
    try:
        yield
    finally:
        set_ska_backend(previous)


def _triton_runs_on(device: torch.device) -> str | None:
    """None if the triton backend can run on `device`, else the reason."""
    try:
        from . import ska_triton
    except ImportError as err:
        return f"triton is not installed ({err}); `pip install triton` or use LSNET_SKA_BACKEND=reference"
    if device.type == "cuda" or ska_triton.interpreter_enabled():
        return None
    return f"triton needs a CUDA tensor (got {device.type}); set TRITON_INTERPRET=1 to run it on CPU for testing"


def _cpu_runs_on(device: torch.device) -> str | None:
    if device.type != "cpu":
        return f"the cpu backend needs CPU tensors (got {device.type}); use LSNET_SKA_BACKEND=auto or move them"
    from . import ska_cpu

    try:
        ska_cpu.load_library()
    except RuntimeError as err:
        return str(err)
    return None


_AVAILABILITY = {"cpu": _cpu_runs_on, "triton": _triton_runs_on, "reference": lambda device: None}


def resolve_ska_backend(device: torch.device) -> str:
    """The backend that will run for tensors on `device` (raises if a forced backend cannot)."""
    requested = get_ska_backend()
    if requested != "auto":
        reason = _AVAILABILITY[requested](device)
        if reason is not None:
            raise RuntimeError(f"ska: backend {requested!r} was requested but cannot run: {reason}")
        return requested
    preferred = "triton" if device.type == "cuda" else "cpu" if device.type == "cpu" else "reference"
    reason = _AVAILABILITY[preferred](device)
    if reason is None:
        _log_once(logging.INFO, f"ska: using the {preferred} backend on {device.type}")
        return preferred
    _log_once(logging.WARNING, f"ska: falling back to the slow reference backend on {device.type}: {reason}")
    return "reference"


def _check_inputs(x: torch.Tensor, weight: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(f"ska: x and weight must be tensors; got {type(x).__name__} and {type(weight).__name__}")
    if x.dim() != 4 or weight.dim() != 5:
        raise ValueError(
            f"ska: x must be (B, C, H, W) and weight (B, C//G, k*k, H, W); got x {tuple(x.shape)} and weight "
            f"{tuple(weight.shape)}"
        )
    batch, channels, height, width = x.shape
    if weight.shape[0] != batch or tuple(weight.shape[3:]) != (height, width):
        raise ValueError(
            f"ska: weight batch and spatial dims must match x: weight {tuple(weight.shape)} vs x {tuple(x.shape)}; "
            "weight must be (B, C//G, k*k, H, W)"
        )
    taps = int(weight.shape[2])
    k = math.isqrt(taps)
    if k * k != taps or k % 2 == 0:
        raise ValueError(f"ska: weight dim 2 must be k*k for an odd k (9, 25, 49, ...); got {taps}")
    if weight.shape[1] == 0 or channels % weight.shape[1] != 0:
        raise ValueError(
            f"ska: x channels ({channels}) must be a multiple of weight channels ({weight.shape[1]}); channel c uses "
            "weight channel c % (C//G)"
        )
    if x.device != weight.device:
        raise ValueError(f"ska: x and weight must be on the same device; got {x.device} and {weight.device} "
                         "(move one with .to(x.device))")
    if x.dtype not in SUPPORTED_DTYPES or weight.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"ska: dtype must be one of float16/bfloat16/float32/float64; got {x.dtype} and {weight.dtype} "
                        "(cast with .float())")
    if x.dtype != weight.dtype:
        raise TypeError(f"ska: x and weight must share a dtype; got {x.dtype} and {weight.dtype} (cast one of them)")


def _module(name: str):
    if name == "cpu":
        from . import ska_cpu

        return ska_cpu
    from . import ska_triton

    return ska_triton


def memory_order(t: torch.Tensor) -> list[int]:
    """t's dims from outermost to innermost in memory: zero-stride (expanded) dims first, then by decreasing
    stride; ties keep dim order."""
    return sorted(range(t.dim()), key=lambda d: (0 if t.stride(d) == 0 else 1, -t.stride(d)))


def _empty_in_order(like: torch.Tensor, order: list[int] | tuple[int, ...]) -> torch.Tensor:
    """An uninitialised tensor shaped like `like`, dense, with its dims laid out outermost-first as in `order`."""
    strides, step = [0] * like.dim(), 1
    for d in reversed(order):
        strides[d] = step
        step = step * torch.sym_max(like.shape[d], 1)
    return torch.empty_strided(like.shape, strides, dtype=like.dtype, device=like.device)


NCHW, NHWC = (0, 1, 2, 3), (0, 2, 3, 1)


def output_layout(x: torch.Tensor) -> tuple[int, ...]:
    """The one layout rule for out and grad x, shared by the real and the fake kernels: channels_last when x is
    laid out B, H, W, C in memory (channels_last, also sliced or padded), else contiguous NCHW."""
    return NHWC if memory_order(x) == list(NHWC) else NCHW


def _empty_outputs(x: torch.Tensor, weight: torch.Tensor, need_x: bool = True,
                   need_weight: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(out or grad x, grad weight): dense, grad x in `output_layout(x)`, grad weight in weight's memory order.
    An empty tensor stands for "not requested" (custom ops cannot return None)."""
    return (_empty_in_order(x, output_layout(x)) if need_x else x.new_empty(0),
            _empty_in_order(weight, memory_order(weight)) if need_weight else weight.new_empty(0))


@torch.library.custom_op("lsnet::ska", mutates_args=())
def _ska_op(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    _check_inputs(x, weight)
    out = _empty_outputs(x, weight)[0]
    if out.numel() == 0:
        return out
    backend = resolve_ska_backend(x.device)
    if backend == "reference":
        out.copy_(ska_reference(x, weight))
    else:
        _module(backend).ska_forward(x, weight, out)
    return out


@_ska_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    _check_inputs(x, weight)
    return _empty_outputs(x, weight)[0]


@torch.library.custom_op("lsnet::ska_backward", mutates_args=())
def _ska_backward_op(
    grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, need_x: bool, need_weight: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_inputs(x, weight)
    if grad_out.shape != x.shape:
        raise ValueError(f"ska: grad_out must have x's shape {tuple(x.shape)}; got {tuple(grad_out.shape)} "
                         "(pass the gradient of ska's output)")
    grad_x, grad_w = _empty_outputs(x, weight, need_x, need_weight)
    if x.numel() == 0:
        grad_w.zero_()
        return grad_x, grad_w
    backend = resolve_ska_backend(x.device)
    if backend == "reference":
        ref_x, ref_w = ska_reference_backward(grad_out, x, weight)
        if need_x:
            grad_x.copy_(ref_x)
        if need_weight:
            grad_w.copy_(ref_w)
    else:
        _module(backend).ska_backward(grad_out, x, weight, grad_x if need_x else None,
                                      grad_w if need_weight else None)
    return grad_x, grad_w


@_ska_backward_op.register_fake
def _(grad_out, x, weight, need_x, need_weight):
    _check_inputs(x, weight)
    return _empty_outputs(x, weight, need_x, need_weight)


def _setup_context(ctx, inputs, output) -> None:
    x, weight = inputs
    ctx.save_for_backward(x, weight)


def _backward(ctx, grad_out):
    x, weight = ctx.saved_tensors
    need_x, need_weight = ctx.needs_input_grad
    grad_x, grad_w = _ska_backward_op(grad_out, x, weight, need_x, need_weight)
    return (grad_x if need_x else None, grad_w if need_weight else None)


_ska_op.register_autograd(_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.lsnet.ska)
def _ska_flops(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """2 FLOPs (one multiply-add) per tap per output element, the convention FlopCounterMode uses for conv."""
    batch, channels, height, width = x_shape
    return 2 * weight_shape[2] * batch * channels * height * width


@register_flop_formula(torch.ops.lsnet.ska_backward)
def _ska_backward_flops(grad_shape, x_shape, weight_shape, need_x, need_weight, *args, out_shape=None,
                        **kwargs) -> int:
    batch, channels, height, width = x_shape
    return 2 * weight_shape[2] * batch * channels * height * width * (int(need_x) + int(need_weight))


def _exporting() -> bool:
    return torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def ska(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Small-kernel aggregation with interleaved weight sharing.

    x: (B, C, H, W); weight: (B, C // G, k*k, H, W), k odd -> (B, C, H, W).
    out[b, c, h, w] = sum_{i,j} x[b, c, h+i-k//2, w+j-k//2] * weight[b, c % (C // G), i*k+j, h, w], zero padding.
    Under TorchScript/ONNX export the standard-op reference runs, so exported graphs need no custom op.
    """
    if _exporting():
        _check_inputs(x, weight)
        return ska_reference(x, weight)
    return _ska_op(x, weight)  # checks its inputs (also when called as torch.ops.lsnet.ska)
