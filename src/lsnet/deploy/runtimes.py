"""One inference runner per (runtime, precision): the same fused model in torch eager, torch.compile or onnxruntime,
in fp32, bf16 or int8.

    from lsnet.deploy import fuse
    from lsnet.deploy.runtimes import Unsupported, build_runner
    runner = build_runner(fuse(model), "onnxruntime", "int8", (3, 224, 224), threads=1, workdir="/tmp/m",
                          calibration=train_images)          # (N, 3, 224, 224), training images only
    logits = runner(x)                                       # x: float32 (B, 3, 224, 224) -> float32 (B, classes)
    print(runner.note)                                       # what really runs

A combination this machine's software cannot run raises `Unsupported` with the reason in one line.
"""
from __future__ import annotations

import copy
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .export import export_onnx

__all__ = ["PRECISIONS", "RUNTIMES", "Runner", "Unsupported", "build_runner", "onnxruntime_bf16_support"]

RUNTIMES = ("eager", "compile", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "int8")


class Unsupported(RuntimeError):
    """A (runtime, precision) that cannot run here; the message is the one-line reason."""


@dataclass
class Runner:
    """`runner(x)`: float32 images (B, C, H, W) -> float32 logits (B, classes).

    `prepare(x)` returns x in the layout and dtype the runtime reads (a no-op when it already is), so a timing loop
    can prepare its input once and time only the model."""

    runtime: str
    precision: str
    note: str
    run: Callable[[torch.Tensor], torch.Tensor]
    dtype: torch.dtype = torch.float32
    memory_format: torch.memory_format = torch.contiguous_format

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype).contiguous(memory_format=self.memory_format)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(self.prepare(x)).float()


def build_runner(
    model: nn.Module,
    runtime: str,
    precision: str,
    input_size: tuple[int, int, int],
    *,
    threads: int,
    workdir: str | os.PathLike,
    channels_last: bool = True,
    calibration: torch.Tensor | None = None,
    batches: Sequence[int] = (1,),
) -> Runner:
    """A runner of the (already fused) `model` at `input_size` (C, H, W); the model given is not changed.

    eager: torch.inference_mode; bf16 casts the model and the input to bfloat16 (all ops in bf16, logits returned
        in fp32). compile: torch.compile (inductor, `freezing`: weights folded as constants) of the same model,
        compiled for every batch size in `batches` here, so timing excludes compilation (another batch size
        recompiles on first use). Both use torch's intra-op thread count while called (a timer sets it); `threads`
        is used for the warm-up.
    onnxruntime: `export_onnx` to `workdir`, one CPU session with `threads` intra-op threads, sequential execution
        and every graph optimisation. int8: static QDQ quantization calibrated on `calibration` (N, C, H, W)
        (`lsnet.deploy.quantize`). bf16: raises Unsupported unless onnxruntime's CPU provider has bf16 kernels.
    channels_last: model and input in channels_last for the torch runtimes; the ONNX graph has no memory format
        (its input is plain NCHW; onnxruntime picks its own blocked layouts for convs on x86).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if runtime == "onnxruntime":
        return _onnxruntime_runner(model, precision, input_size, threads, Path(workdir), calibration)
    if precision == "int8":
        raise Unsupported(f"{runtime} int8: no int8 path for torch here; int8 runs on onnxruntime (static QDQ)")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = copy.deepcopy(model).eval().to(dtype=dtype, memory_format=fmt)
    layout = "channels_last" if channels_last else "NCHW"
    cast = ", model and input cast to bfloat16" if precision == "bf16" else ""
    if runtime == "eager":
        return Runner(runtime, precision, f"torch {torch.__version__} eager, {layout}{cast}",
                      torch.inference_mode()(net), dtype, fmt)
    compiled = torch.compile(net, backend="inductor", dynamic=False)
    run = torch.inference_mode()(compiled)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch._inductor.config.patch(freezing=True):
            for batch in batches:
                run(torch.zeros(batch, *input_size, dtype=dtype).contiguous(memory_format=fmt))
    finally:
        torch.set_num_threads(previous)
    return Runner(runtime, precision, f"torch.compile inductor (frozen), {layout}{cast}", run, dtype, fmt)


_MADE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(path, key): what made the file}


def _made_once(model: nn.Module, path: Path, key: tuple, make: Callable[[], object]) -> object:
    """`make()` (which writes `path`) unless this process already made `path` from this model object and `key`;
    returns what `make` returned then."""
    made = _MADE.setdefault(model, {})
    if (path, key) not in made or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        made[(path, key)] = make()
    return made[(path, key)]


def _export(model: nn.Module, path: Path, input_size: tuple[int, int, int]) -> object:
    check = export_onnx(model, path, input_size, dynamic_batch=True)
    if not check.passed:
        raise RuntimeError(f"the ONNX export does not match torch: {check}")
    return check


def onnxruntime_bf16_support() -> str | None:
    """None when onnxruntime's CPU provider can run a bf16 Conv, else its one-line reason (checked by building a
    one-node bf16 model, so a future onnxruntime with bf16 kernels is picked up)."""
    import numpy as np
    import onnxruntime
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.BFLOAT16, [1, 1, 1, 1], np.zeros(1, np.uint16).tobytes(), raw=True)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "bf16_probe",
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [1, 1, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, None)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])  # opset 22: Conv allows bf16
    try:
        onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types, one per status code
        return str(err).strip().splitlines()[0]
    return None


def _onnxruntime_runner(model: nn.Module, precision: str, input_size: tuple[int, int, int], threads: int,
                        workdir: Path, calibration: torch.Tensor | None) -> Runner:
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError("the onnxruntime runtime needs onnx, onnxscript and onnxruntime: "
                          "pip install 'lsnet[onnx]'") from err
    if precision == "bf16":
        reason = onnxruntime_bf16_support()
        if reason is not None:
            raise Unsupported(f"onnxruntime {onnxruntime.__version__} bf16: the CPU provider has no bf16 kernels "
                              f"({reason})")
    if precision == "int8" and calibration is None:
        raise ValueError("onnxruntime int8 needs calibration images: pass calibration=(N, C, H, W) training images "
                         "(lsnet bench / export: --calibration DATA)")
    path = workdir / "model_fp32.onnx"
    _made_once(model, path, (input_size,), lambda: _export(model, path, input_size))
    note = f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider, NCHW input"
    if precision == "int8":
        from .quantize import quantize_model

        fp32, path = path, workdir / "model_int8.onnx"
        images = calibration.double()  # the file is made again for other calibration images
        key = (input_size, tuple(calibration.shape), float(images.sum()), float(images.square().sum()))
        report = _made_once(model, path, key, lambda: quantize_model(fp32, path, calibration))
        note += f", {report.summary()}"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: x.numpy()})[0])

    return Runner("onnxruntime", precision, f"{note}, intra-op threads {threads}", run)
