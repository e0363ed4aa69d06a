"""Deployment: fuse a model for inference (`fuse`), rewrite LS convs for export (`ska_graph`), export it (`export`),
run it on a runtime and precision (`runtimes`), quantize it to int8 (`quantize`, imported on use: it needs
onnxruntime)."""
from .export import SKA_FORMS, ExportCheck, export_onnx, export_torchscript
from .fuse import fuse, fuse_activations, is_fused
from .runtimes import PRECISIONS, RUNTIMES, Runner, Unsupported, build_runner
from .ska_graph import CompactLSConv, with_compact_ska

__all__ = ["PRECISIONS", "RUNTIMES", "SKA_FORMS", "CompactLSConv", "ExportCheck", "Runner", "Unsupported",
           "build_runner", "export_onnx", "export_torchscript", "fuse", "fuse_activations", "is_fused",
           "with_compact_ska"]
