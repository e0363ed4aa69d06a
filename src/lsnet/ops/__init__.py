"""Custom operators: SKA (small-kernel aggregation) and DCNv3 (deformable convolution v3 core)."""
from .dcnv3 import dcnv3
from .ska import BACKENDS, get_ska_backend, resolve_ska_backend, set_ska_backend, ska, ska_backend, ska_reference

__all__ = ["BACKENDS", "dcnv3", "get_ska_backend", "resolve_ska_backend", "set_ska_backend", "ska", "ska_backend",
           "ska_reference"]
