"""Run statistics shared by file, live and bench runs: per-stage timings, percentiles,
spreads, thirds of a run and a sliding rate.

Samples are kept in compact float arrays (8 bytes a sample, not a 32-byte Python float in a
list): a run of hours keeps every sample for exact medians in tens of MB, not hundreds.
"""

from __future__ import annotations

import collections
import statistics
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

STAGES = ("decode", "preprocess", "infer", "render", "encode")
"""The stages of a file run, in data-flow order."""

RATE_WINDOW_S = 2.0
"""The window of :class:`RateMeter`, in seconds."""


def samples() -> array:
    """An empty compact array of float samples (seconds)."""
    return array("d")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0..100) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median_ms(seconds: Sequence[float], digits: int = 3) -> float | None:
    """The median of durations in seconds, in ms (``None`` when there are none)."""
    return round(statistics.median(seconds) * 1000, digits) if len(seconds) else None


def spread_ms(seconds: Sequence[float], digits: int = 2) -> dict[str, float | None]:
    """p50 / p95 / max of durations in seconds, in ms (``None`` each when there are none)."""
    s = sorted(seconds)
    if not s:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": round(percentile(s, 50) * 1000, digits),
        "p95": round(percentile(s, 95) * 1000, digits),
        "max": round(s[-1] * 1000, digits),
    }


def thirds_ms(values: Sequence[float]) -> dict[str, float | None]:
    """Medians, in ms, of the first, middle and last third of a run's values (in order):
    whether a figure drifts over a long run."""
    n = len(values)
    parts = (values[: n // 3], values[n // 3 : 2 * n // 3], values[2 * n // 3 :])
    return {key: median_ms(part, 2) for key, part in zip(("first", "middle", "last"), parts, strict=True)}


class RateMeter:
    """Events per second over the last :data:`RATE_WINDOW_S` seconds, from a running count."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self.points: collections.deque[tuple[float, int]] = collections.deque()

    def update(self, now: float, count: int) -> float:
        """Record ``count`` events so far at time ``now`` (s); return the recent rate (0 until 0.25 s)."""
        self.points.append((now, count))
        while len(self.points) > 2 and now - self.points[1][0] >= self.window_s:
            self.points.popleft()
        t0, c0 = self.points[0]
        return (count - c0) / (now - t0) if now - t0 >= 0.25 else 0.0


@dataclass
class Stats:
    """Counts and per-stage timings of one run (seconds internally, ms in :meth:`summary`)."""

    frames_in: int = 0
    frames_out: int = 0
    wall_s: float = 0.0
    interrupted: bool = False
    stop_reason: str | None = None
    stages: dict[str, array] = field(default_factory=lambda: {k: samples() for k in STAGES})
    latency: array = field(default_factory=samples)

    def add(self, stage: str, seconds: float) -> None:
        self.stages.setdefault(stage, samples()).append(seconds)

    @property
    def fps(self) -> float:
        return self.frames_out / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: counts, wall seconds, end-to-end fps, median ms per stage,
        and latency percentiles (capture → written) in ms."""
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "wall_s": round(self.wall_s, 4),
            "fps": round(self.fps, 3),
            "interrupted": self.interrupted,
            "stop_reason": self.stop_reason,
            "stage_ms": {k: median_ms(v) for k, v in self.stages.items()},
            "latency_ms": spread_ms(self.latency),
        }


def job_summary(stats: Stats, **fields: Any) -> dict[str, Any]:
    """One job's summary: :meth:`Stats.summary` followed by the job's own fields (input,
    output, model, ...), the same shape for ``video`` and ``live``."""
    summary = stats.summary()
    summary.update(fields)
    return summary
