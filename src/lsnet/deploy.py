"""Deployment: fold every fusable layer of a model for inference, and export it.

    from lsnet.deploy import fuse, export_onnx
    fused = fuse(model)                                   # a fused copy in eval mode; model is untouched
    print(export_onnx(fused, 'lsnet_t.onnx', (3, 224, 224)))   # checks onnxruntime against torch

Folds Conv-BN pairs into biased convs, BN-Linear heads into Linear, and RepVGG-DW branches (3x3 + 1x1 +
identity) into one 3x3 depthwise conv, through the same `fuse()` hooks that `timm.utils.reparameterize_model`
walks, so either entry point gives the same outputs. `fuse` additionally turns declared conv -> ReLU pairs into
one oneDNN call (faster channels_last inference on CPU). Fusing an already-fused model changes nothing.
"""
from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass

import torch
from timm.utils import reparameterize_model
from torch import nn

from .layers.conv_bn import Conv2dReLU

__all__ = ["ExportCheck", "export_onnx", "export_torchscript", "fuse", "fuse_activations", "is_fused"]


def is_fused(model: nn.Module) -> bool:
    """True when no submodule has anything left to fold."""
    return not any(hasattr(m, "fuse") for m in model.modules())


def fuse(model: nn.Module, inplace: bool = False, activations: bool = True) -> nn.Module:
    """Return `model` with every Conv-BN / BN-Linear / RepVGG-DW folded, in eval mode (dtype and device kept).

    With `activations`, conv -> ReLU pairs that blocks declare in `conv_act_pairs` also become one
    `Conv2dReLU` (oneDNN post-op fusion on CPU inference; standard ops for autograd and export).
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    model = reparameterize_model(model, inplace=True)
    return fuse_activations(model) if activations else model


def fuse_activations(model: nn.Module) -> nn.Module:
    """In place: replace each declared (conv, ReLU) pair of plain modules by Conv2dReLU and Identity.

    Blocks declare pairs as dotted paths relative to themselves: `conv_act_pairs = (("pw1", "act"),)`.
    Pairs whose conv is not (yet) a plain nn.Conv2d, e.g. an unfused ConvBN, are left alone.
    """
    for module in list(model.modules()):
        for conv_path, act_path in getattr(module, "conv_act_pairs", ()):
            conv, act = module.get_submodule(conv_path), module.get_submodule(act_path)
            if type(conv) is not nn.Conv2d or not isinstance(act, nn.ReLU):
                continue
            module.set_submodule(conv_path, Conv2dReLU.from_conv(conv))
            module.set_submodule(act_path, nn.Identity())
    return model


# ------------------------------------------------------------------------------------------------ export
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
) -> ExportCheck:
    """Export `model` (eval) to ONNX with SKA as standard ops, then check onnxruntime against torch.

    With `dynamic_batch` the graph is exported from a batch-2 example with a symbolic batch axis and checked at
    every batch in `check_batches`; otherwise it is exported and checked at batch 1.
    """
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'lsnet[onnx]'") from err
    model = model.eval()
    path = os.fspath(path)
    example = _example(model, input_size, 2 if dynamic_batch else 1)
    dynamic_shapes = {"x": {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
    with torch.no_grad():
        program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=dynamic_shapes,
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
