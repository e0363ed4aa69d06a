"""Deployment: fuse a model for inference (`fuse`), export it (`export`), run it on a runtime and precision
(`runtimes`), quantize it to int8 (`quantize`, imported on use: it needs onnxruntime)."""
from .export import ExportCheck, export_onnx, export_torchscript
from .fuse import fuse, fuse_activations, is_fused
from .runtimes import PRECISIONS, RUNTIMES, Runner, Unsupported, build_runner

__all__ = ["PRECISIONS", "RUNTIMES", "ExportCheck", "Runner", "Unsupported", "build_runner", "export_onnx",
           "export_torchscript", "fuse", "fuse_activations", "is_fused"]
