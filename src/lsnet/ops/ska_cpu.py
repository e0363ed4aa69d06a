"""Fast CPU SKA: the C kernels in `ska_cpu.c`, compiled lazily on first use and cached.

Importing this module compiles nothing. `load_library()` builds `ska_cpu.c` with the system C compiler
(`$CC`, else `cc`/`gcc`) into `$LSNET_CACHE_DIR` (default `~/.cache/lsnet`), keyed by a hash of the
source, the flags and the CPU, written atomically so concurrent processes never see a half-written file.

Layout: the dispatcher allocates the outputs by `ska.output_layout(x)`: channels_last when x lies B, H, W, C in
memory (NHWC kernels, vectorised over channels), else NCHW (NCHW kernels, vectorised over width). x and grad_out
are made contiguous in that format (no copy when they already are); the NHWC kernels read the weight through all
five strides, the NCHW kernels need flat (H, W) weight planes (else one copy). Before every C call
`_check_layout` verifies every stride the kernel assumes, so an unexpected layout raises. float32/float64 compute
natively; float16/bfloat16 are computed in float32 and cast back. Kernels up to 7x7 (MAX_KERNEL_SIZE, the
register-blocked NHWC path's limit) run in C; larger ones use the reference.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from .ska import NHWC, memory_order, output_layout
from .ska_reference import ska_reference, ska_reference_backward

MAX_KERNEL_SIZE = 7  # MAX_TAPS in ska_cpu.c is 49
_SOURCE = Path(__file__).with_name("ska_cpu.c")
# fp-contract: fused multiply-adds; no loop-distribute-patterns: short lane loops stay inline, not memcpy calls
_FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-fno-tree-loop-distribute-patterns", "-fopenmp", "-fPIC",
          "-shared", "-std=c11"]
_KERNELS = ("forward", "grad_x", "grad_w")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_build_error: str | None = None


def _cache_dir() -> Path:
    return Path(os.environ.get("LSNET_CACHE_DIR", Path.home() / ".cache" / "lsnet"))


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_signature() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return platform.processor()


def _build(compiler: str) -> Path:
    key = hashlib.sha256(
        "\n".join([_SOURCE.read_text(), " ".join(_FLAGS), compiler, _cpu_signature()]).encode()
    ).hexdigest()[:16]
    target = _cache_dir() / f"ska_cpu_{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run([compiler, *_FLAGS, str(_SOURCE), "-o", tmp], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip()[-2000:])
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for kernel in _KERNELS:
        for layout in ("nchw", "nhwc"):
            for suffix in _SUFFIX.values():
                fn = getattr(lib, f"ska_{kernel}_{layout}_{suffix}")
                fn.argtypes = [ptr, ptr, ptr] + [i64] * 11 + [ctypes.c_int]
                fn.restype = None


def load_library() -> ctypes.CDLL:
    """Compile (once, cached) and load the C kernels. Raises RuntimeError with the reason if impossible."""
    global _library, _build_error
    with _lock:
        if _library is not None:
            return _library
        if _build_error is not None:
            raise RuntimeError(_build_error)
        compiler = _compiler()
        try:
            if compiler is None:
                raise RuntimeError("no C compiler found (set $CC or install gcc)")
            lib = ctypes.CDLL(str(_build(compiler)))
            _declare(lib)
        except (RuntimeError, OSError) as err:
            _build_error = f"ska cpu backend unavailable: {err}"
            raise RuntimeError(_build_error) from err
        _library = lib
        return lib


def is_available() -> bool:
    try:
        load_library()
        return True
    except RuntimeError:
        return False


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in _SUFFIX else torch.float32


def _flat_planes(t: torch.Tensor) -> bool:
    """True if each (H, W) plane of the 5-D weight view is one contiguous run (what the NCHW kernels index)."""
    height, width = t.shape[3:]
    return (height <= 1 or t.stride(3) == width) and (width <= 1 or t.stride(4) == 1)


def _activation(t: torch.Tensor, dtype: torch.dtype, nhwc: bool) -> torch.Tensor:
    """x or grad_out in the compute dtype, contiguous in the kernels' format (a no-op when it already is)."""
    # not t.to(dtype, memory_format=...): that aliases some non-contiguous tensors (e.g. all-zero strides)
    return t.to(dtype).contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)


def _weight(weight: torch.Tensor, dtype: torch.dtype, nhwc: bool) -> torch.Tensor:
    """The NHWC kernels read the weight through all five strides (any layout, zero strides included); the NCHW
    kernels need flat (H, W) planes."""
    weight = weight.to(dtype)
    return weight if nhwc or _flat_planes(weight) else weight.contiguous()


def _check_layout(nhwc: bool, activations: tuple[torch.Tensor, ...], weight_view: torch.Tensor,
                  x_shape: torch.Size, k: int) -> None:
    """The last line of defence before C: every stride the kernels assume, or an error (never a wrong answer)."""
    memory_format = torch.channels_last if nhwc else torch.contiguous_format
    dtype = activations[0].dtype
    for t in (*activations, weight_view):
        if t.device.type != "cpu" or t.dtype != dtype or t.dtype not in _SUFFIX:
            raise RuntimeError(f"ska cpu: kernel got a {t.dtype} tensor on {t.device}; expected {dtype} on cpu")
    for t in activations:
        if t.shape != x_shape or not t.is_contiguous(memory_format=memory_format):
            raise RuntimeError(f"ska cpu: kernel got shape {tuple(t.shape)} strides {t.stride()}; expected "
                               f"{tuple(x_shape)} contiguous in {memory_format}")
    batch, channels, height, width = x_shape
    if weight_view.dim() != 5 or (weight_view.shape[0], weight_view.shape[2], *weight_view.shape[3:]) != (
            batch, k * k, height, width) or channels % weight_view.shape[1] or (
            not nhwc and not _flat_planes(weight_view)):
        raise RuntimeError(f"ska cpu: kernel got weight shape {tuple(weight_view.shape)} strides "
                           f"{weight_view.stride()} for x {tuple(x_shape)} ({'NHWC' if nhwc else 'NCHW'} kernels)")


def _call(kernel: str, nhwc: bool, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, weight_view: torch.Tensor,
          k: int) -> None:
    """Run one kernel. a, b, out: the operands in the order `ska_cpu.c` takes them; weight_view is whichever of
    them is the (B, CW, k*k, H, W) weight (or grad weight), the others are (B, C, H, W)."""
    activations = tuple(t for t in (a, b, out) if t is not weight_view)
    _check_layout(nhwc, activations, weight_view, activations[0].shape, k)
    if out is weight_view and not out.permute(memory_order(out)).is_contiguous():
        raise RuntimeError(f"ska cpu: grad weight strides {out.stride()} overlap or have gaps; expected a dense tensor")
    batch, channels, height, width = activations[0].shape
    fn = getattr(load_library(), f"ska_{kernel}_{'nhwc' if nhwc else 'nchw'}_{_SUFFIX[a.dtype]}")
    fn(a.data_ptr(), b.data_ptr(), out.data_ptr(), batch, channels, height, width, weight_view.shape[1], k,
       *weight_view.stride(), torch.get_num_threads())


def _kernel_size(weight: torch.Tensor) -> int:
    return int(round(weight.shape[2] ** 0.5))


def _target(out: torch.Tensor, dtype: torch.dtype, layout_ok: bool = True) -> torch.Tensor:
    """`out` itself if the kernel can write it (compute dtype, kernel layout), else a scratch tensor that can."""
    if out.dtype == dtype and layout_ok:
        return out
    return torch.empty_like(out, dtype=dtype) if layout_ok else torch.empty(out.shape, dtype=dtype)


def _finish(result: torch.Tensor, out: torch.Tensor) -> None:
    if result is not out:
        out.copy_(result)


def ska_forward(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> None:
    """Fill out (B, C, H, W), allocated by the dispatcher in `output_layout(x)`, with ska(x, weight).

    x: (B, C, H, W) and weight: (B, CW, k*k, H, W) in any layout; copies are made only where the kernels need one.
    """
    k = _kernel_size(weight)
    if k > MAX_KERNEL_SIZE:
        out.copy_(ska_reference(x, weight))
        return
    nhwc, dtype = output_layout(x) == NHWC, _compute_dtype(x.dtype)
    result, wc = _target(out, dtype), _weight(weight, dtype, nhwc)
    _call("forward", nhwc, _activation(x, dtype, nhwc), wc, result, wc, k)
    _finish(result, out)


def ska_backward(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, grad_x: torch.Tensor | None,
                 grad_w: torch.Tensor | None) -> None:
    """Fill grad_x (B, C, H, W) and grad_w (B, CW, k*k, H, W), allocated by the dispatcher, where not None."""
    k = _kernel_size(weight)
    if k > MAX_KERNEL_SIZE:
        ref_x, ref_w = ska_reference_backward(grad_out, x, weight)
        for target, value in ((grad_x, ref_x), (grad_w, ref_w)):
            if target is not None:
                target.copy_(value)
        return
    nhwc, dtype = output_layout(x) == NHWC, _compute_dtype(x.dtype)
    go = _activation(grad_out, dtype, nhwc)
    if grad_x is not None:
        result, wc = _target(grad_x, dtype), _weight(weight, dtype, nhwc)
        _call("grad_x", nhwc, go, wc, result, wc, k)
        _finish(result, grad_x)
    if grad_w is not None:  # the NHWC kernel writes any dense layout, the NCHW one flat planes
        result = _target(grad_w, dtype, nhwc or _flat_planes(grad_w))
        _call("grad_w", nhwc, go, _activation(x, dtype, nhwc), result, result, k)
        _finish(result, grad_w)
