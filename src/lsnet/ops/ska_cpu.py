"""Fast CPU SKA: the C kernels in `ska_cpu.c`, compiled lazily on first use and cached.

Importing this module compiles nothing. `load_library()` builds `ska_cpu.c` with the system C compiler
(`$CC`, else `cc`/`gcc`) into `$LSNET_CACHE_DIR` (default `~/.cache/lsnet`), keyed by a hash of the
source, the flags and the CPU, written atomically so concurrent processes never see a half-written file.

Memory format: a channels_last `x` runs the NHWC kernels (vectorised over channels), anything else the
NCHW kernels (vectorised over width). Outputs keep the input's memory format. float32/float64 compute
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

from .ska_reference import ska_reference, ska_reference_backward

MAX_KERNEL_SIZE = 7  # MAX_TAPS in ska_cpu.c is 49
_SOURCE = Path(__file__).with_name("ska_cpu.c")
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c11"]
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


def _is_channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in _SUFFIX else torch.float32


def _prepare(x: torch.Tensor, weight: torch.Tensor, nhwc: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Cast to a compute dtype and lay out x (and, for NCHW, weight rows) as the kernels need."""
    dtype = _compute_dtype(x.dtype)
    x = x.to(dtype)
    weight = weight.to(dtype)
    x = x.contiguous(memory_format=torch.channels_last) if nhwc else x.contiguous()
    if not nhwc and weight.stride(-1) != 1:  # the NCHW kernels read weight rows along W
        weight = weight.contiguous()
    return x, weight


def _call(kernel: str, nhwc: bool, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, weight_view: torch.Tensor,
          x_shape: torch.Size, k: int) -> None:
    lib = load_library()
    batch, channels, height, width = x_shape
    fn = getattr(lib, f"ska_{kernel}_{'nhwc' if nhwc else 'nchw'}_{_SUFFIX[a.dtype]}")
    fn(a.data_ptr(), b.data_ptr(), out.data_ptr(), batch, channels, height, width, weight_view.shape[1], k,
       *weight_view.stride(), torch.get_num_threads())


def _kernel_size(weight: torch.Tensor) -> int:
    return int(round(weight.shape[2] ** 0.5))


def ska_forward(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x: (B, C, H, W), weight: (B, CW, k*k, H, W) -> (B, C, H, W) in x's dtype and memory format."""
    if _kernel_size(weight) > MAX_KERNEL_SIZE:
        return ska_reference(x, weight)
    nhwc = _is_channels_last(x)
    xc, wc = _prepare(x, weight, nhwc)
    out = torch.empty_like(xc)
    _call("forward", nhwc, xc, wc, out, wc, x.shape, _kernel_size(weight))
    return out.to(x.dtype)


def ska_backward(
    grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, need_x: bool, need_weight: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients w.r.t. x (B, C, H, W) and weight (B, CW, k*k, H, W); None where not needed."""
    if _kernel_size(weight) > MAX_KERNEL_SIZE:
        grad_x, grad_w = ska_reference_backward(grad_out, x, weight)
        return (grad_x if need_x else None), (grad_w if need_weight else None)
    nhwc = _is_channels_last(x)
    xc, wc = _prepare(x, weight, nhwc)
    go = grad_out.to(xc.dtype)
    go = go.contiguous(memory_format=torch.channels_last) if nhwc else go.contiguous()
    k = _kernel_size(weight)
    grad_x = grad_w = None
    if need_x:
        grad_x = torch.empty_like(xc)
        _call("grad_x", nhwc, go, wc, grad_x, wc, x.shape, k)
        grad_x = grad_x.to(x.dtype)
    if need_weight:
        grad_w = torch.empty_like(wc)  # same strides as wc (dense, non-overlapping)
        _call("grad_w", nhwc, go, xc, grad_w, grad_w, x.shape, k)
        grad_w = grad_w.to(weight.dtype)
    return grad_x, grad_w
