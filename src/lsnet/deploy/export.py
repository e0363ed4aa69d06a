"""Export a (fused) model to ONNX or TorchScript and check the file against the PyTorch model.

    from lsnet.deploy import export_onnx, fuse
    print(export_onnx(fuse(model), 'lsnet_t.onnx', (3, 224, 224)))   # checks onnxruntime against torch

ONNX graphs of LS convolutions take one of two forms (`ska_form`): "compact" (default; `ska_graph.py`: SKA as one
gather conv + mul + reduce-sum, the BN after it and GroupNorm's affine folded in) or "reference" (the
shift-and-add spec: k*k pads, slices, muls and adds per LS conv, then BN).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .ska_graph import with_compact_ska

__all__ = ["ExportCheck", "export_onnx", "export_torchscript", "SKA_FORMS"]

SKA_FORMS = ("compact", "reference")


@dataclass
class ExportCheck:
    """How an exported model compares with the PyTorch model it came from."""

    path: str
    format: str
    max_rel_error: dict[int, float]  # batch size -> max |exported - torch| / max |torch|
    passed: bool

    def __str__(self) -> str:
        errors = ", ".join(f"batch {b}: {e:.2e}" for b, e in self.max_rel_error.items())
        return f"{self.format} {self.path}: {'OK' if self.passed else 'MISMATCH'} (max rel error {errors})"


def _example(model: nn.Module, input_size: tuple[int, int, int], batch: int) -> torch.Tensor:
    param = next(model.parameters())
    return torch.randn(batch, *input_size, device=param.device, dtype=param.dtype)


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).abs().max() / want.double().abs().max().clamp_min(1e-12))


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: tuple[int, int, int],
    dynamic_batch: bool = True,
    check_batches: tuple[int, ...] = (1, 4),
    rtol: float = 1e-4,
    ska_form: str = "compact",
) -> ExportCheck:
    """Export `model` (eval) to ONNX with SKA as standard ops, then check onnxruntime against torch.

    With `dynamic_batch` the graph is exported from a batch-2 example with a symbolic batch axis and checked at
    every batch in `check_batches`; otherwise it is exported and checked at batch 1. `ska_form` is the graph of
    each LS conv ("compact" or "reference", see the module docstring); the check always compares with `model`
    itself, so the compact form's folding is verified on every export.
    """
    if ska_form not in SKA_FORMS:
        raise ValueError(f"export_onnx: ska_form must be one of {SKA_FORMS}, got {ska_form!r}")
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'lsnet[onnx]'") from err
    model = model.eval()
    path = os.fspath(path)
    example = _example(model, input_size, 2 if dynamic_batch else 1)
    dynamic_shapes = {"x": {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
    exported = with_compact_ska(model) if ska_form == "compact" else model
    with torch.no_grad():
        program = torch.onnx.export(exported, (example,), dynamo=True, dynamic_shapes=dynamic_shapes,
                                    input_names=["input"], output_names=["logits"], verbose=False)
    program.save(path)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    errors = {}
    for batch in check_batches if dynamic_batch else (1,):
        x = _example(model, input_size, batch)
        with torch.no_grad():
            want = model(x)
        got = session.run(None, {session.get_inputs()[0].name: x.cpu().float().numpy()})[0]
        errors[batch] = _relative_error(torch.from_numpy(got), want.cpu())
    return ExportCheck(path, "onnx", errors, all(e <= rtol for e in errors.values()))


def export_torchscript(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: tuple[int, int, int],
    check_batches: tuple[int, ...] = (1, 4),
    rtol: float = 1e-4,
) -> ExportCheck:
    """Trace `model` (eval) to TorchScript (SKA recorded as standard ops), save it, reload and check it."""
    model = model.eval()
    path = os.fspath(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the input-shape checks
        traced = torch.jit.trace(model, _example(model, input_size, 2))
    traced.save(path)
    loaded = torch.jit.load(path)
    errors = {}
    for batch in check_batches:
        x = _example(model, input_size, batch)
        with torch.no_grad():
            errors[batch] = _relative_error(loaded(x), model(x))
    return ExportCheck(path, "torchscript", errors, all(e <= rtol for e in errors.values()))
