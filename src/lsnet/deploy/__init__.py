"""Deployment: fuse a model for inference (`fuse`), export it (`export`)."""
from .export import ExportCheck, export_onnx, export_torchscript
from .fuse import fuse, fuse_activations, is_fused

__all__ = ["ExportCheck", "export_onnx", "export_torchscript", "fuse", "fuse_activations", "is_fused"]
