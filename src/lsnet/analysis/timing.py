"""Interleaved timing: every round times each candidate once, in the same order, so drift on a shared machine (other
jobs, thermal and frequency changes) hits all candidates alike and their ratios stay meaningful.

    from lsnet.analysis.timing import time_interleaved
    times = time_interleaved({"eager": lambda: model(x), "fused": lambda: fused(x)}, rounds=10)
    print(times["fused"])                     # "3.21 ms (3.05-3.90)": median (min-max) over rounds

The measuring is `torch.utils.benchmark.Timer.timeit`: an explicit torch thread count while a candidate runs, >= 2
warm-up calls before every sample (so no separate warm-up phase is needed) and, with an accelerator present, a
device synchronisation around each sample.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch.utils.benchmark import Timer
from torch.utils.benchmark.utils.timer import timer as synchronizing_timer

__all__ = ["Timing", "time_interleaved"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one candidate: one sample per round, each the mean over `number` calls."""

    samples: tuple[float, ...]
    number: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def __str__(self) -> str:
        return f"{self.median * 1e3:.2f} ms ({self.min * 1e3:.2f}-{self.max * 1e3:.2f})"


def time_interleaved(
    candidates: Mapping[K, Callable[[], object]],
    rounds: int = 10,
    min_seconds: float = 0.0,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    timer: Callable[[], float] = synchronizing_timer,
) -> dict[K, Timing]:
    """Time zero-argument callables interleaved: `rounds` rounds, each measuring every candidate once, in order.

    A candidate faster than `min_seconds` is called `number` times per sample (calibrated once, before round 1) and
    the mean is recorded. `threads` is the torch intra-op thread count while timing (default: the current one);
    `progress(r)` is called after round r (1-based); `timer` is the clock (seconds; default torch's, which
    synchronises an accelerator when one is present).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}; pass rounds=1 or more")
    threads = threads or torch.get_num_threads()
    timers = {key: Timer("fn()", globals={"fn": fn}, num_threads=threads, timer=timer)
              for key, fn in candidates.items()}
    number = {key: 1 for key in timers}
    if min_seconds > 0:
        for key, t in timers.items():
            number[key] = max(1, math.ceil(min_seconds / t.timeit(1).median))
    samples: dict[K, list[float]] = {key: [] for key in timers}
    for r in range(rounds):
        for key, t in timers.items():
            samples[key].append(t.timeit(number[key]).median)
        if progress:
            progress(r + 1)
    return {key: Timing(tuple(values), number[key]) for key, values in samples.items()}
