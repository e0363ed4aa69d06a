"""Custom operators: SKA (small-kernel aggregation) here; DCNv3 in `lsnet.ops.dcnv3` (`from lsnet.ops.dcnv3 import
dcnv3`)."""
from .ska import BACKENDS, get_ska_backend, resolve_ska_backend, set_ska_backend, ska, ska_backend, ska_reference

__all__ = ["BACKENDS", "get_ska_backend", "resolve_ska_backend", "set_ska_backend", "ska", "ska_backend",
           "ska_reference"]
