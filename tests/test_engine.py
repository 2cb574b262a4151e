"""The stream engine (pipeline/engine.py) with a fake model: pushed and pulled sources, sinks on their own
threads that drop and count instead of slowing inference, key frames carried in frame order, clean stops."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
from harness import live_threads, wait_for
from test_multiplex import FakeModel, packet

from live_seg.base.frames import SegResult
from live_seg.pipeline.engine import Engine
from live_seg.pipeline.infer import Steps
from live_seg.pipeline.sinks import SinkThread
from live_seg.pipeline.threads import Control


class Frames:
    """A pulled source: ``n`` frames as fast as they are taken (a file read without pacing)."""

    def __init__(self, n: int, value: int = 7) -> None:
        self.n, self.value, self.stopped = n, value, threading.Event()

    def __iter__(self):
        for i in range(self.n):
            if self.stopped.is_set():
                return
            yield packet(i, self.value)

    def stop(self) -> None:
        self.stopped.set()


def fill(result: SegResult) -> SegResult:
    """A refine step for key frames: a carried frame gets an empty mask."""
    return result if result.mask is not None else dataclasses.replace(result, mask=np.zeros((2, 2), np.uint8))


def test_a_slow_sink_drops_its_oldest_and_never_slows_inference_or_the_other_sinks():
    """A sink that takes 50 ms an item beside a fast one, on a source of 200 frames read as fast as the model
    goes (nothing dropped by the engine): the model and the fast sink see every frame; the slow one drops
    most, counted, and what it handled is in order."""
    slow_seen: list[int] = []

    def slow(result: SegResult) -> None:
        time.sleep(0.05)
        slow_seen.append(result.packet.index)

    fast_seen: list[int] = []
    engine = Engine(Control(), model=FakeModel())
    sinks = (SinkThread("slow", slow, size=4), SinkThread("fast", lambda r: fast_seen.append(r.packet.index)))
    feed = engine.add("file", Frames(200), wait=True, sinks=sinks)
    engine.start()
    wait_for(lambda: engine.finished, 60, "the engine to process every frame")
    engine.close()
    for sink in sinks:
        sink.close(0.5)
    assert feed.slot.frames_processed == 200 and feed.slot.dropped == 0
    assert fast_seen == list(range(200)) and sinks[1].stats() == {"handled": 200, "dropped": 0}
    handled, dropped = sinks[0].stats().values()
    assert handled + dropped == 200 and dropped > 100, sinks[0].stats()  # 200 x 50 ms would be 10 s
    assert slow_seen == sorted(slow_seen) and len(slow_seen) == handled
    assert not live_threads()


def test_a_pushed_source_with_key_frames_is_delivered_in_frame_order():
    """A browser-like pushed source at 100 fps, a model at 30 ms a frame, key frames every 4th: results leave
    in rising frame order, key frames with the network's mask, the others carried by ``refine``."""
    refined: list[tuple[int, bool]] = []

    def refine(result: SegResult) -> SegResult:
        refined.append((result.packet.index, result.mask is not None))
        return fill(result)

    got: list[int] = []
    sink = SinkThread("got", lambda r: got.append(r.packet.index), size=1000)
    control = Control()
    engine = Engine(control, model=FakeModel(delay=0.03))
    feed = engine.add("client-1", steps=Steps(refine=refine, skip=lambda p: p.index % 4 != 0), sinks=(sink,))
    engine.start()
    for i in range(120):
        feed.offer(packet(i, 3))
        time.sleep(0.01)
    wait_for(lambda: feed.idle and engine.mux.idle, 30, "the last frames")  # a pushed source never ends by itself
    engine.close()
    sink.close()
    assert got == sorted(set(got)) and len(got) >= 30, got
    keys = [i for i, key in refined if key]
    assert keys and all(i % 4 == 0 for i in keys)
    assert feed.carried > 0 and len(got) == len(refined) - feed.superseded
    assert feed.slot.frames_in + feed.carried + feed.carry_dropped >= 120 - 1  # every frame: model, carried or dropped
    assert not live_threads()


def test_key_frames_on_a_file_drop_nothing():
    """A file read as fast as the model goes with key frames: every frame delivered once, in order."""
    got: list[int] = []
    engine = Engine(Control(), model=FakeModel(delay=0.005))
    feed = engine.add(
        "file",
        Frames(60),
        wait=True,
        steps=Steps(refine=fill, skip=lambda p: p.index % 8 != 0),
        sinks=(SinkThread("got", lambda r: got.append(r.packet.index), size=100),),
    )
    engine.start()
    wait_for(lambda: engine.finished, 30, "every frame")
    engine.close()
    feed.sinks[0].close()
    assert got == list(range(60)) and feed.carried == 60 - 8 and feed.carry_dropped == 0 and feed.superseded == 0
    assert not live_threads()


def test_a_removed_pushed_source_stops_its_carry_thread_and_keeps_its_figures():
    engine = Engine(Control(), model=FakeModel(delay=0.01))
    feed = engine.add("client-1", steps=Steps(refine=fill, skip=lambda p: p.index % 2 == 1))
    engine.start()
    for i in range(10):
        feed.offer(packet(i, 1))
    wait_for(lambda: feed.carried > 0, 10, "a carried frame")
    engine.remove(feed)
    assert engine.feeds == [] and feed.ended and feed.board.frame is None and feed.skip is None
    feed.offer(packet(10, 1))  # the transport may still hand one in: ignored by the model, never carried
    engine.close()
    assert feed.slot.frames_processed >= 1 and not live_threads()
