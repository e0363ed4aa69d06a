"""Tasks: what differs between kinds of training runs, plugged into the one engine (`lsnet.train.engine.Trainer`).

    from lsnet.train.tasks import get_task
    task = get_task("classification")(cfg, dist_state)      # a Task; the Trainer builds and calls it

A task module is imported only when its task is asked for (detection pulls in torchvision's detection models).
"""
from __future__ import annotations

import importlib

from .base import Batch, Task

_TASKS = {"classification": "classification:ClassificationTask", "detection": "detection:DetectionTask",
          "semantic": "semantic:SemanticTask"}
TASKS = tuple(_TASKS)


def get_task(name: str) -> type[Task]:
    """The Task class registered under `name` (its module imported on first use)."""
    from ..errors import ConfigError

    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r}; pass --task with one of {', '.join(TASKS)}")
    module, cls = _TASKS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


__all__ = ["TASKS", "Batch", "Task", "get_task"]
