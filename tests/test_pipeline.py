"""Threads, queues and shutdown, with a fake source and model (no torch)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from live_seg.base.errors import PipelineError, SourceError
from live_seg.base.frames import FramePacket
from live_seg.base.metrics import percentile
from live_seg.pipeline.file_run import WRITE_QUEUE, run_file
from live_seg.pipeline.threads import Control


class FakeSource:
    def __init__(self, n=20, fail_at=None, delay=0.0, error=None):
        self.n, self.fail_at, self.delay = n, fail_at, delay
        self.error = error or RuntimeError("disk gone")
        self.stopped = threading.Event()

    def __iter__(self):
        for i in range(self.n):
            if self.stopped.is_set():
                return
            if i == self.fail_at:
                raise self.error
            time.sleep(self.delay)
            yield FramePacket(i, i / 25, time.perf_counter(), np.full((4, 6, 3), i % 256, np.uint8))

    def stop(self):
        self.stopped.set()


class FakeModel:
    def __init__(self, fail_at=None, delay=0.0):
        self.fail_at, self.delay, self.seen = fail_at, delay, 0

    def preprocess(self, frames):
        return list(frames)

    def infer(self, batch):
        time.sleep(self.delay)
        for _ in batch:
            if self.seen == self.fail_at:
                raise ValueError("bad tensor")
            self.seen += 1
        return np.stack([np.full((2, 2), f[0, 0, 0] % 21, np.uint8) for f in batch])


class JitteryModel(FakeModel):
    """Random per-batch delays: with several workers, results overtake each other."""

    def __init__(self):
        super().__init__()
        self.rng = np.random.default_rng(0)
        self.lock = threading.Lock()

    def infer(self, batch):
        with self.lock:
            delay = float(self.rng.uniform(0, 0.01))
        time.sleep(delay)
        return np.stack([np.full((2, 2), f[0, 0, 0] % 21, np.uint8) for f in batch])


def render(frame, mask):
    return frame


class Recorder:
    def __init__(self, fail_at=None):
        self.items, self.fail_at = [], fail_at

    def __call__(self, image, pts):
        if len(self.items) == self.fail_at:
            raise OSError("no space left on device")
        self.items.append((int(image[0, 0, 0]), pts))


@pytest.mark.parametrize(("batch", "workers"), [(1, 1), (3, 1), (8, 1), (1, 2), (2, 3)])
def test_every_frame_in_order(batch, workers):
    rec = Recorder()
    model = FakeModel(delay=0.002) if workers == 1 else JitteryModel()
    stats = run_file(FakeSource(20), model, render, rec, batch=batch, workers=workers)
    assert [i for i, _ in rec.items] == list(range(20))
    assert [p for _, p in rec.items] == [i / 25 for i in range(20)]
    assert stats.frames_in == stats.frames_out == 20 and not stats.interrupted
    summary = stats.summary()
    assert set(summary["stage_ms"]) == {"decode", "preprocess", "infer", "render", "encode"}
    assert summary["latency_ms"]["p50"] is not None


def test_queues_bound_memory():
    """A slow consumer never lets more than the queues' capacity pile up."""
    seen_max = 0
    produced = []

    class Counting(FakeSource):
        def __iter__(self):
            for p in super().__iter__():
                produced.append(p.index)
                yield p

    def slow_write(image, pts):
        nonlocal seen_max
        seen_max = max(seen_max, len(produced) - len(done))
        done.append(1)
        time.sleep(0.01)

    done: list[int] = []
    run_file(Counting(40), FakeModel(), render, slow_write, batch=1, queue_size=2)
    assert len(done) == 40
    assert seen_max <= 2 + 2 + WRITE_QUEUE + 4  # three queues + one frame in each of the four stages


@pytest.mark.parametrize(
    ("where", "error", "message"),
    [
        ("capture", RuntimeError("disk gone"), "capture failed: RuntimeError: disk gone"),
        ("capture-user", SourceError("lost the camera"), "lost the camera"),
        ("infer", None, r"infer(-\d)? failed: ValueError: bad tensor"),
        ("write", None, "write failed: OSError: no space left"),
    ],
)
@pytest.mark.parametrize("workers", [1, 2])
def test_errors_reach_the_main_thread_and_stop_all_threads(where, error, message, workers):
    source = FakeSource(50, fail_at=10 if where.startswith("capture") else None, error=error)
    model = FakeModel(fail_at=5 if where == "infer" else None)
    rec = Recorder(fail_at=3 if where == "write" else None)
    with pytest.raises((PipelineError, SourceError), match=message):
        run_file(source, model, render, rec, workers=workers)
    # the conftest fixture checks that no live_seg-* thread is left


def test_graceful_stop_finishes_frames_in_flight():
    control = Control()
    rec = Recorder()
    threading.Timer(0.15, control.stop, args=("interrupted by SIGINT",)).start()
    stats = run_file(FakeSource(1000, delay=0.01), FakeModel(delay=0.02), render, rec, control=control)
    assert stats.interrupted and stats.stop_reason == "interrupted by SIGINT"
    assert 0 < stats.frames_out < 1000
    assert stats.frames_out == stats.frames_in  # everything captured was written
    assert [i for i, _ in rec.items] == list(range(stats.frames_out))


def test_abort_ends_at_once():
    control = Control()
    rec = Recorder()
    threading.Timer(0.2, control.abort).start()
    t0 = time.perf_counter()
    stats = run_file(FakeSource(1000, delay=0.001), FakeModel(delay=0.5), render, rec, control=control)
    assert time.perf_counter() - t0 < 2.0
    assert stats.interrupted and stats.frames_out < 5


def test_percentile():
    assert percentile([1.0], 95) == 1.0
    assert percentile([0.0, 10.0], 50) == 5.0
    assert percentile(list(map(float, range(101))), 95) == 95.0
    with pytest.raises(ValueError):
        percentile([], 50)
