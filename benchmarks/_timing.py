"""Interleaved timing: every candidate runs once per round, so machine drift hits all of them alike."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_interleaved(candidates: dict[str, Callable[[], object]], rounds: int = 15, warmup: int = 2,
                     min_seconds: float = 0.0) -> dict[str, list[float]]:
    """Run each candidate `warmup` times, then `rounds` rounds of one call each; returns seconds per call.

    A candidate faster than `min_seconds` is called repeatedly within a round and its mean is recorded.
    """
    repeats = {}
    for name, fn in candidates.items():
        for _ in range(warmup):
            fn()
        start = time.perf_counter()
        fn()
        once = time.perf_counter() - start
        repeats[name] = max(1, int(min_seconds / max(once, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(repeats[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / repeats[name])
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)
