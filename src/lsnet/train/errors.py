"""Errors the training engine raises for conditions a user can act on; the CLI prints them as one line."""
from __future__ import annotations

from ..checkpoints import CheckpointError, UnknownModelError
from ..data.errors import DatasetError


class TrainingError(RuntimeError):
    """Base class: the message names the cause and the fix."""


class ConfigError(TrainingError, ValueError):
    """A setting (flag, preset value) that cannot work."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; training stopped before saving anything from the bad step."""


USER_ERRORS = (TrainingError, CheckpointError, UnknownModelError, DatasetError)

__all__ = ["USER_ERRORS", "CheckpointError", "ConfigError", "DatasetError", "NonFiniteLossError", "TrainingError",
           "UnknownModelError"]
