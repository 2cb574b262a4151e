"""The multi-source inference thread, with a fake model (no torch)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from harness import live_threads, wait_for

from live_seg.base.errors import PipelineError, SourceError
from live_seg.base.frames import FramePacket
from live_seg.pipeline.multiplex import Multiplexer
from live_seg.pipeline.threads import THREAD_PREFIX, Control


class FakeModel:
    """Records each batch (the first pixel of every frame); ``delay`` seconds a batch."""

    def __init__(self, delay=0.0, fail_at=None, error=None):
        self.delay, self.fail_at = delay, fail_at
        self.error = error or ValueError("bad tensor")
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()

    def preprocess(self, frames):
        return [int(f[0, 0, 0]) for f in frames]

    def infer(self, batch):
        with self.lock:
            self.batches.append(list(batch))
            if self.fail_at is not None and len(self.batches) > self.fail_at:
                raise self.error
        time.sleep(self.delay)
        return np.stack([np.full((2, 2), v, np.uint8) for v in batch])


def packet(index, value, t=None):
    return FramePacket(index, None, time.perf_counter() if t is None else t, np.full((4, 4, 3), value, np.uint8))


class Collector:
    def __init__(self):
        self.results = []
        self.threads = set()
        self.lock = threading.Lock()

    def __call__(self, result):
        with self.lock:
            self.results.append(result)
            self.threads.add(threading.current_thread().name)


def feed(slot, value, fps, stop, start_index=0):
    i = start_index
    while not stop.is_set():
        slot.offer(packet(i, value))
        i += 1
        time.sleep(1 / fps)


def test_a_batch_holds_one_frame_per_slot_and_results_go_back_to_their_slot():
    model = FakeModel(delay=0.03)
    control = Control()
    mux = Multiplexer(model, control, window_s=0.02)
    out = {name: Collector() for name in "abc"}
    slots = {name: mux.add(name, out[name]) for name in "abc"}
    values = {"a": 10, "b": 20, "c": 30}
    stop = threading.Event()
    feeders = [threading.Thread(target=feed, args=(slots[n], values[n], 100, stop)) for n in "abc"]
    with mux:
        for t in feeders:
            t.start()
        wait_for(lambda: all(len(c.results) >= 10 for c in out.values()), 30, "ten results from each source")
        stop.set()
        for t in feeders:
            t.join()
    for batch in model.batches:
        assert len(batch) == len(set(batch))  # never two frames of one source in a batch
    assert max(len(b) for b in model.batches) == 3  # the window gathers every source
    for name, collector in out.items():
        assert {int(r.mask[0, 0]) for r in collector.results} == {values[name]}
        assert collector.threads == {THREAD_PREFIX + "infer"}  # delivered on the inference thread
        indexes = [r.packet.index for r in collector.results]
        assert indexes == sorted(indexes)
        slot = slots[name]
        assert slot.frames_processed == len(collector.results)
        assert slot.frames_in == slot.frames_processed + slot.dropped
        assert slot.dropped > 0  # 100 fps against a model at ~30 steps a second
    assert live_threads() == []


def test_a_stalled_source_never_delays_the_others():
    model = FakeModel(delay=0.005)
    mux = Multiplexer(model, Control(), window_s=0.005)
    fast, stalled = Collector(), Collector()
    fast_slot = mux.add("fast", fast)
    stalled_slot = mux.add("stalled", stalled)
    stop = threading.Event()
    with mux:
        stalled_slot.offer(packet(0, 7))  # one frame, then nothing
        feeder = threading.Thread(target=feed, args=(fast_slot, 1, 50, stop))
        feeder.start()
        wait_for(lambda: fast_slot.frames_in >= 40, 30, "40 frames of the healthy source")
        stop.set()
        feeder.join()
    latencies = [r.packet.t_capture for r in fast.results]
    assert len(stalled.results) == 1
    # Nearly every frame of the healthy source was processed: a batch that waited for the stalled
    # source would leave it with one. (Not "all but 3": a loaded machine can hold the inference
    # thread back for a few of the feeder's 20 ms steps, and the newest frame replaces the others.)
    assert fast_slot.frames_processed >= 0.8 * fast_slot.frames_in
    assert len(latencies) == fast_slot.frames_processed
    assert max(len(b) for b in model.batches) <= 2


def test_slots_beyond_max_batch_take_turns():
    model = FakeModel(delay=0.01)
    mux = Multiplexer(model, Control(), max_batch=2, window_s=0.0)
    out = [Collector() for _ in range(5)]
    slots = [mux.add(f"s{i}", out[i]) for i in range(5)]
    stop = threading.Event()
    feeders = [threading.Thread(target=feed, args=(slots[i], i, 200, stop)) for i in range(5)]
    with mux:
        for t in feeders:
            t.start()
        wait_for(lambda: len(model.batches) >= 40, 30, "40 batches")
        stop.set()
        for t in feeders:
            t.join()
    assert max(len(b) for b in model.batches) == 2
    counts = [s.frames_processed for s in slots]
    assert min(counts) >= 0.6 * max(counts), counts


def test_removal_while_running_discards_its_frames_in_flight():
    model = FakeModel(delay=0.2)
    mux = Multiplexer(model, Control(), window_s=0.05)
    kept, gone = Collector(), Collector()
    kept_slot = mux.add("kept", kept)
    gone_slot = mux.add("gone", gone)
    with mux:
        kept_slot.offer(packet(0, 1))
        gone_slot.offer(packet(0, 2))
        wait_for(lambda: len(model.batches) == 1, 30, "the first batch")  # both frames are in the model now
        mux.remove("gone")
        gone_slot.offer(packet(1, 2))  # ignored once removed
        mux.remove("gone")  # removing twice is harmless
        wait_for(lambda: len(kept.results) == 1, 30, "the kept source's result")
        again = mux.add("gone", gone)  # the name can be used again
        again.offer(packet(2, 3))
        wait_for(lambda: len(gone.results) == 1, 30, "the added source's result")
    assert model.batches[0] == [1, 2]
    assert [int(r.mask[0, 0]) for r in gone.results] == [3]
    assert gone_slot.frames_in == 1 and gone_slot.frames_processed == 0
    assert [s.name for s in mux.slots()] == ["kept", "gone"]
    assert live_threads() == []


def test_added_while_running_and_counts_balance_after_close():
    model = FakeModel(delay=0.05)
    mux = Multiplexer(model, Control()).start()
    first = mux.add("first", Collector())
    first.offer(packet(0, 1))
    late = mux.add("late", Collector())
    for i in range(5):
        late.offer(packet(i, 2))
    mux.close()
    mux.close()  # idempotent
    for slot in (first, late):
        assert slot.frames_in == slot.frames_processed + slot.dropped
    late.offer(packet(9, 2))  # ignored after close
    assert late.frames_in == 5
    assert live_threads() == []


@pytest.mark.parametrize(
    ("where", "error", "raised", "message"),
    [
        ("model", ValueError("bad tensor"), PipelineError, "infer failed: ValueError: bad tensor"),
        ("model", SourceError("camera gone"), SourceError, "camera gone"),
        ("deliver", RuntimeError("client gone"), PipelineError, "infer failed: RuntimeError: client gone"),
    ],
)
def test_errors_are_raised_by_close_and_abort_the_run(where, error, raised, message):
    model = FakeModel(fail_at=0 if where == "model" else None, error=error)
    control = Control()
    mux = Multiplexer(model, control)

    def deliver(result):
        raise error

    slot = mux.add("a", deliver if where == "deliver" else Collector())
    mux.start()
    slot.offer(packet(0, 1))
    assert control.aborted.wait(30)
    with pytest.raises(raised, match=message):
        mux.close()
    mux.close()  # raised once
    assert live_threads() == []


def test_an_abort_ends_the_thread_without_close_and_close_still_joins():
    model = FakeModel(delay=0.01)
    control = Control()
    mux = Multiplexer(model, control).start()
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(mux.add("a", Collector()), 1, 100, stop))
    feeder.start()
    wait_for(lambda: model.batches, 30, "the first batch")  # running
    control.abort()
    wait_for(lambda: live_threads() == [], 30, "the inference thread to end")
    stop.set()
    feeder.join()
    mux.close()


def test_wait_taken_lets_a_file_source_lose_nothing():
    model = FakeModel(delay=0.01)
    out = Collector()
    mux = Multiplexer(model, Control())
    slot = mux.add("file", out)
    with mux:
        for i in range(20):
            assert slot.wait_taken(5)
            slot.offer(packet(i, i))
        wait_for(lambda: len(out.results) == 20 and mux.idle, 30)
    assert [r.packet.index for r in out.results] == list(range(20))
    assert slot.dropped == 0


@pytest.mark.parametrize(("kwargs", "message"), [({"max_batch": 0}, "max_batch"), ({"window_s": -1}, "window_s")])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Multiplexer(FakeModel(), Control(), **kwargs)


def test_names_are_unique_and_start_is_once():
    mux = Multiplexer(FakeModel(), Control())
    mux.add("a", Collector())
    with pytest.raises(ValueError, match="already"):
        mux.add("a", Collector())
    mux.start()
    with pytest.raises(RuntimeError):
        mux.start()
    mux.close()
    assert live_threads() == []


def test_a_slot_keeps_the_newest_frame_and_counts_the_ones_it_replaced():
    model = FakeModel()
    out = Collector()
    mux = Multiplexer(model, Control())
    slot = mux.add("a", out)
    for i in range(5):
        slot.offer(packet(i, i))
    assert slot.waiting and not slot.wait_taken(0.01)
    with mux:
        wait_for(lambda: len(out.results) == 1, 30)
        assert slot.wait_taken(0) and not slot.waiting
        slot.offer(packet(5, 5))
        wait_for(lambda: len(out.results) == 2, 30)
    assert [r.packet.index for r in out.results] == [4, 5]
    assert (slot.frames_in, slot.frames_processed, slot.dropped) == (6, 2, 0)
    assert slot.skipped_loading == 4  # replaced before the model ran: not drops


def test_frames_replaced_before_the_model_runs_are_not_drops():
    """A camera is read while the model loads: the frames replaced then are counted apart."""
    mux = Multiplexer(FakeModel(), Control())
    out = Collector()
    slot = mux.add("cam", out)
    for i in range(5):
        slot.offer(packet(i, 1))
    assert (slot.frames_in, slot.dropped, slot.skipped_loading) == (5, 0, 4)
    mux.start()
    wait_for(lambda: len(out.results) == 1, 30)
    assert out.results[0].packet.index == 4  # the newest frame waited for the model
    mux.close()
    assert slot.frames_in == slot.frames_processed + slot.dropped + slot.skipped_loading
