"""Data-loader construction shared by training, evaluation and distillation (models: `lsnet.checkpoints`)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Sampler

from ..data import collate_skip


class ShardSampler(Sampler[int]):
    """Rank r of w takes indices r, r + w, ... in order: every sample exactly once across ranks (exact evaluation)."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.indices = range(rank, length, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


def create_loader(dataset, *, batch_size: int, sampler: Sampler, workers: int, drop_last: bool = False,
                  pin_memory: bool = False, generator: torch.Generator | None = None,
                  collate_fn: Callable = collate_skip) -> DataLoader:
    """A DataLoader whose batches are what `collate_fn` makes (default: (images, targets, n_skipped), see
    `lsnet.data.collate_skip`)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
                      pin_memory=pin_memory, collate_fn=collate_fn, generator=generator,
                      persistent_workers=False, multiprocessing_context="fork" if workers > 0 else None)
