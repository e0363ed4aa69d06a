"""Custom operators: SKA (small-kernel aggregation)."""
from .ska import BACKENDS, get_ska_backend, resolve_ska_backend, set_ska_backend, ska, ska_backend, ska_reference

__all__ = ["BACKENDS", "get_ska_backend", "resolve_ska_backend", "set_ska_backend", "ska", "ska_backend",
           "ska_reference"]
