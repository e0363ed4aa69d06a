"""Interleaved timing against a fake clock: the call order, the per-sample maths and the thread count are known."""
from __future__ import annotations

import time

import pytest
import torch

from lsnet.analysis.timing import time_interleaved

WARMUP = 2  # torch.utils.benchmark.Timer.timeit calls the statement twice before each small sample


class FakeClock:
    """A clock that only moves when a candidate runs: candidate `name`'s i-th call lasts durations[name][i]."""

    def __init__(self, durations: dict[str, list[float]]):
        self.now, self.calls, self.durations = 0.0, [], {k: list(v) for k, v in durations.items()}

    def __call__(self) -> float:
        return self.now

    def candidate(self, name: str):
        def call():
            self.calls.append(name)
            self.now += self.durations[name].pop(0)
        return call


def test_rounds_interleave_candidates_and_report_median_min_max():
    # per round: 2 warm-up calls, then the timed call; only the timed call's duration is a sample
    timed = {"a": [3.0, 1.0, 2.0, 10.0], "b": [0.5, 0.25, 4.0, 0.75]}
    durations = {k: [x for t in v for x in (100.0, 100.0, t)] for k, v in timed.items()}
    clock = FakeClock(durations)
    rounds = len(timed["a"])
    times = time_interleaved({"a": clock.candidate("a"), "b": clock.candidate("b")}, rounds=rounds, timer=clock)

    assert clock.calls == (["a"] * (WARMUP + 1) + ["b"] * (WARMUP + 1)) * rounds
    assert times["a"].samples == (3.0, 1.0, 2.0, 10.0) and times["b"].samples == (0.5, 0.25, 4.0, 0.75)
    assert (times["a"].median, times["a"].min, times["a"].max) == (2.5, 1.0, 10.0)  # (2 + 3) / 2
    assert (times["b"].median, times["b"].min, times["b"].max) == (0.625, 0.25, 4.0)  # (0.5 + 0.75) / 2
    assert str(times["b"]) == "625.00 ms (250.00-4000.00)"


def test_min_seconds_repeats_a_fast_candidate_and_records_the_mean():
    # calibration: timeit(1) = 2 warm-up calls + 1 timed call of 1 ms -> number = ceil(5 ms / 1 ms) = 5;
    # each round then makes 2 warm-up calls and 5 timed calls whose mean is the sample
    per_round = [1e-3] * WARMUP + [1e-3, 2e-3, 3e-3, 4e-3, 5e-3]
    clock = FakeClock({"fast": [1e-3] * (WARMUP + 1) + per_round * 3})
    timing = time_interleaved({"fast": clock.candidate("fast")}, rounds=3, min_seconds=5e-3, timer=clock)["fast"]
    assert timing.number == 5 and len(clock.calls) == WARMUP + 1 + 3 * (WARMUP + 5)
    assert timing.samples == pytest.approx((3e-3,) * 3)  # (1 + 2 + 3 + 4 + 5) / 5 ms


def test_threads_are_set_while_timing_and_restored_after():
    before = torch.get_num_threads()
    seen = []
    progress = []
    time_interleaved({"x": lambda: seen.append(torch.get_num_threads())}, rounds=2, threads=1,
                     progress=progress.append)
    assert set(seen) == {1} and torch.get_num_threads() == before and progress == [1, 2]


def test_real_clock_measures_sleeps():
    times = time_interleaved({"short": lambda: time.sleep(0.002), "long": lambda: time.sleep(0.02)}, rounds=3)
    assert times["short"].min >= 0.002 and times["long"].min >= 0.02  # sleep never returns early
    assert times["long"].median > times["short"].median


def test_bad_rounds():
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        time_interleaved({"x": lambda: None}, rounds=0)
