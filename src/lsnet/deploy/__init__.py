"""Deployment: fuse a model for inference (`fuse`), rewrite LS convs for export (`ska_graph`), export it (`export`)."""
from .export import SKA_FORMS, ExportCheck, export_onnx, export_torchscript
from .fuse import fuse, fuse_activations, is_fused
from .ska_graph import CompactLSConv, with_compact_ska

__all__ = ["SKA_FORMS", "CompactLSConv", "ExportCheck", "export_onnx", "export_torchscript", "fuse", "fuse_activations",
           "is_fused", "with_compact_ska"]
