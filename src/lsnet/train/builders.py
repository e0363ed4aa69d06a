"""Model and data-loader construction shared by training, evaluation and distillation."""
from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader, Sampler

from ..data import collate_skip
from .errors import ConfigError

_logger = logging.getLogger(__name__)


def create_model(name: str, *, num_classes: int, in_chans: int, img_size: int | None = None, drop_path: float = 0.0,
                 drop: float = 0.0, pretrained: bool = False, model_kwargs: dict | None = None) -> torch.nn.Module:
    """timm.create_model after `import lsnet`; `img_size` is passed to models that take it (LSNet sizes its
    attention-bias table from it) and dropped for those that do not."""
    import timm

    import lsnet  # noqa: F401  (registers the LSNet family)

    if name not in timm.list_models(pretrained=False) and not timm.is_model(name):
        raise ConfigError(f"unknown model {name!r}; see `timm.list_models('lsnet*')` for the LSNet family")
    kwargs = dict(num_classes=num_classes, in_chans=in_chans, **(model_kwargs or {}))
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    if drop:
        kwargs["drop_rate"] = drop
    if img_size is not None and "img_size" not in kwargs:
        try:
            return timm.create_model(name, pretrained=pretrained, img_size=img_size, **kwargs)
        except TypeError as err:
            if "img_size" not in str(err):
                raise
            _logger.info(f"{name} takes no img_size argument; building it without")
    return timm.create_model(name, pretrained=pretrained, **kwargs)


class ShardSampler(Sampler[int]):
    """Rank r of w takes indices r, r + w, ... in order: every sample exactly once across ranks (exact evaluation)."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.indices = range(rank, length, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


def create_loader(dataset, *, batch_size: int, sampler: Sampler, workers: int, drop_last: bool = False,
                  pin_memory: bool = False, generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader yielding (images, targets, n_skipped); see `lsnet.data.collate_skip`."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
                      pin_memory=pin_memory, collate_fn=collate_skip, generator=generator,
                      persistent_workers=False, multiprocessing_context="fork" if workers > 0 else None)
