"""Timing core of the benchmark: one timed run (:class:`Sample`), warm-up and repeats
(:func:`measure`), their summary (:func:`summarize`), and running a measurement off the main
thread (:func:`off_main`).

Nothing here knows what is measured: a measurement is a ``run(n) -> Sample`` callable.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from ...base.metrics import STAGES, median_ms, spread_ms
from ...pipeline.threads import POLL_S, Control, Stage

T = TypeVar("T")


@dataclass
class Sample:
    """One timed run of a measurement.

    Attributes:
        seconds: wall time of the whole run.
        frames: frames the run completed.
        stages: per-frame seconds by stage name.
        latency: per-frame seconds from capture to written (pipeline only).
    """

    seconds: float
    frames: int
    stages: dict[str, list[float]] = field(default_factory=dict)
    latency: list[float] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Timing(NamedTuple):
    """How a measurement is timed: the arguments of :func:`measure` after ``run``."""

    frames: int
    warmup: int
    repeat: int


def summarize(samples: Sequence[Sample], warmup: int = 0) -> dict[str, Any]:
    """The JSON-ready summary of the timed runs of one measurement.

    Args:
        samples: the timed runs (warm-up excluded), at least one.
        warmup: frames processed before them, reported as is.

    Returns:
        ``fps`` (median over runs), ``fps_min``, ``fps_max``, ``fps_runs``, ``runs``, ``frames``
        (per run), ``warmup``, ``ms_per_frame`` (``1000 / fps``), ``stage_ms`` (median per
        frame, pooled over runs; ``None`` for a stage the measurement does not have) and
        ``latency_ms`` (``p50``, ``p95``, ``max``; ``None`` without latencies).
    """
    if not samples:
        raise ValueError("summarize: expected at least one timed run, got 0")
    runs = [s.fps for s in samples]
    fps = statistics.median(runs)
    pooled: dict[str, list[float]] = {k: [] for k in STAGES}
    for s in samples:
        for k, values in s.stages.items():
            pooled.setdefault(k, []).extend(values)
    lat = [x for s in samples for x in s.latency]
    return {
        "fps": round(fps, 4),
        "fps_min": round(min(runs), 4),
        "fps_max": round(max(runs), 4),
        "fps_runs": [round(x, 4) for x in runs],
        "runs": len(samples),
        "frames": [s.frames for s in samples],
        "warmup": warmup,
        "ms_per_frame": round(1000 / fps, 3) if fps > 0 else None,
        "stage_ms": {k: median_ms(v) for k, v in pooled.items()},
        "latency_ms": spread_ms(lat, digits=3) if lat else None,
    }


def measure(run: Callable[[int], Sample], frames: int, warmup: int, repeat: int) -> dict[str, Any]:
    """Warm up, then time ``repeat`` runs of ``frames`` frames and summarise them.

    Args:
        run: ``run(n)`` processes ``n`` frames and returns its :class:`Sample`.
        frames: frames per timed run, >= 1.
        warmup: frames processed once before the timed runs and not counted (0: none).
        repeat: timed runs, >= 1.
    """
    if frames < 1 or repeat < 1 or warmup < 0:
        raise ValueError(f"measure: need frames >= 1, repeat >= 1, warmup >= 0; got {frames}, {repeat}, {warmup}")
    if warmup:
        run(warmup)
    return summarize([run(frames) for _ in range(repeat)], warmup)


def check_stop(control: Control | None) -> None:
    """Raise :class:`KeyboardInterrupt` when ``control`` asks to stop (measurement loops call it)."""
    if control is not None and control.stopping.is_set():
        raise KeyboardInterrupt(control.reason or "stopped")


def off_main(fn: Callable[[], T], control: Control) -> T:
    """Run ``fn`` on a ``live_seg-bench`` thread and return its result (its exception is re-raised).

    The naive and model-only measurements run this way so that their torch calls run on a
    worker thread, as the pipeline's inference does: on a busy machine, torch's OpenMP team
    on the main thread was seen to run small models many times slower than on a worker.
    Ctrl-C on the main thread asks ``fn`` to stop (through ``control``) and waits for it.
    """
    out: list[T] = []

    def body() -> None:
        out.append(fn())

    stage = Stage("bench", body, control, None)
    stage.start()
    try:
        while stage.is_alive():
            stage.join(POLL_S * 4)
    except KeyboardInterrupt:
        control.abort("interrupted")
        stage.join()
        raise
    if stage.error is not None:
        raise stage.error
    return out[0]
