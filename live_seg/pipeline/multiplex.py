"""Many sources, one model: newest-frame slots and one inference thread that batches them.

Each source (a camera of a ``live`` run, a browser client of ``serve``) gets a :class:`Slot` from
the :class:`Multiplexer` and :meth:`Slot.offer` s every frame it reads. A slot keeps only the
newest frame the model has not taken; a frame replaced before the model took it is counted as
dropped. The inference thread takes, in each step, the newest unseen frame of every slot that has
one, waiting at most ``window_s`` after the first for the others (a stalled, dead or slow source is
left out of that batch, never waited for), runs them as one batch (``model.preprocess(list)`` then
``model.infer``) and hands each result back through its slot's ``deliver`` callback, on the
inference thread. This is roboflow inference's ``multiplex_videos`` collection and DeepStream's
batching of the newest frame of every source, in one small class.

With more slots holding a frame than ``max_batch``, slots take turns (round robin), so none is
starved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..base.frames import FramePacket, SegResult
from .infer import segment
from .threads import POLL_S, Control, MaskModel, Stage, join_all

log = logging.getLogger(__name__)

Deliver = Callable[[SegResult], None]
"""Where a slot's results go (called on the inference thread; keep it short)."""


class Slot:
    """One source's newest-frame slot inside a :class:`Multiplexer` (made by :meth:`Multiplexer.add`).

    Attributes:
        name: the source's name (unique within its multiplexer).
        deliver: called with each result computed on one of this slot's frames, on the inference thread.
        frames_in: frames offered.
        frames_processed: frames the model ran on and delivered.
        dropped: frames replaced before the model took them, or discarded at removal or close,
            once the inference thread runs.
        skipped_loading: frames replaced by a newer one before the inference thread started (a
            camera read while the model loads): not the model's drops.

    Once the multiplexer is closed (or the slot removed), ``frames_in == frames_processed + dropped
    + skipped_loading`` (+ at most one batch in flight when it was removed).
    """

    def __init__(
        self, name: str, deliver: Deliver, cond: threading.Condition, running: threading.Event | None = None
    ) -> None:
        self.name = name
        self.deliver = deliver
        self.frames_in = 0
        self.frames_processed = 0
        self.dropped = 0
        self.skipped_loading = 0
        self._cond = cond
        self._running = running
        self._item: FramePacket | None = None
        self._in_model: FramePacket | None = None  # its frame in the batch being run
        self._removed = False

    def offer(self, packet: FramePacket) -> None:
        """Hand the newest frame to the model (thread-safe, never blocks).

        A frame still waiting is replaced (and counted in :attr:`dropped`). After the slot was
        removed, or its multiplexer closed, frames are ignored (not counted).
        """
        with self._cond:
            if self._removed:
                return
            self.frames_in += 1
            if self._item is not None:
                if self._running is None or self._running.is_set():
                    self.dropped += 1
                else:
                    self.skipped_loading += 1
            self._item = packet
            self._cond.notify_all()

    def wait_taken(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until the model took the waiting frame (if any).

        For a source that must not lose frames (a video file read as fast as the model goes):
        wait, then :meth:`offer`.

        Returns:
            True when no frame is waiting (or the slot was removed).
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._item is None or self._removed, timeout)

    def wait_done_before(self, index: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until none of its frames older than frame ``index`` waits for the
        model or is in it (their results were delivered, or they were dropped). True then (or when removed)."""

        def done() -> bool:
            older = [p for p in (self._item, self._in_model) if p is not None and p.index < index]
            return not older or self._removed

        with self._cond:
            return self._cond.wait_for(done, timeout)

    @property
    def waiting(self) -> bool:
        """A frame is waiting for the model."""
        with self._cond:
            return self._item is not None

    def _discard(self) -> None:
        """Drop the waiting frame (counted) and refuse further ones; the caller holds the lock."""
        self._removed = True
        if self._item is not None:
            self._item = None
            self.dropped += 1


class Multiplexer:
    """One inference thread over many newest-frame slots (see the module's docstring).

    Args:
        model: runs a batch (``preprocess(list of frames)`` then ``infer``); frames of one batch may
            differ in size. ``None``: given to :meth:`start` (sources may offer frames while it loads).
        control: the run's stop requests; an abort ends the thread at once, and an error in it
            (the model's or a ``deliver`` callback's) aborts the run.
        max_batch: most frames in one step.
        window_s: after the first frame of a step is there, how long to wait at most for the other
            slots' frames.

    Attributes:
        batches: steps run so far.
        batched_frames: frames run so far (``batched_frames / batches``: the mean batch).
    """

    def __init__(
        self, model: MaskModel | None, control: Control, *, max_batch: int = 8, window_s: float = 0.005
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        if window_s < 0:
            raise ValueError(f"window_s: expected >= 0 seconds, got {window_s}")
        self.model = model
        self.control = control
        self.max_batch = max_batch
        self.window_s = window_s
        self.batches = 0
        self.batched_frames = 0
        self._cond = threading.Condition()
        self._slots: dict[str, Slot] = {}
        self._turn = 0
        self._busy = False
        self._closing = threading.Event()
        self._running = threading.Event()  # set by start(): a frame replaced before it is no drop
        self._stage: Stage | None = None
        self._closed = False

    # -- sources --------------------------------------------------------------------------------

    def add(self, name: str, deliver: Deliver) -> Slot:
        """A new slot for source ``name`` (thread-safe; also while running).

        Raises:
            ValueError: a slot of that name exists.
        """
        with self._cond:
            if name in self._slots:
                raise ValueError(f"a source named {name!r} is already added")
            slot = Slot(name, deliver, self._cond, self._running)
            if self._closing.is_set():
                slot._discard()
            self._slots[name] = slot
            return slot

    def remove(self, name: str) -> None:
        """Remove source ``name`` (thread-safe; unknown names are ignored): its waiting frame is
        dropped and a result still being computed for it is discarded, not delivered."""
        with self._cond:
            slot = self._slots.pop(name, None)
            if slot is not None:
                slot._discard()
                self._cond.notify_all()

    def slots(self) -> list[Slot]:
        """The slots, in the order they were added."""
        with self._cond:
            return list(self._slots.values())

    @property
    def idle(self) -> bool:
        """No frame is waiting and no batch is running."""
        with self._cond:
            return not self._busy and not any(s._item is not None for s in self._slots.values())

    # -- the thread -----------------------------------------------------------------------------

    def start(self, model: MaskModel | None = None) -> Multiplexer:
        """Start the inference thread (``live_seg-infer``), with ``model`` when it was not given before.

        Raises:
            RuntimeError: started twice, after :meth:`close`, or without a model.
        """
        if self._stage is not None or self._closing.is_set():
            raise RuntimeError("a Multiplexer starts once")
        self.model = model if model is not None else self.model
        if self.model is None:
            raise RuntimeError("a Multiplexer starts with a model")
        self._running.set()
        self._stage = Stage("infer", self._loop, self.control, None)
        self._stage.start()
        return self

    def close(self) -> None:
        """Stop and join the inference thread; frames still waiting are dropped (counted).

        The batch being computed is finished and delivered first. Idempotent.

        Raises:
            PipelineError: the thread failed (a model or ``deliver`` error, chained), or did not
                stop in time; user-facing errors (:class:`~live_seg.base.errors.LiveSegError`) are
                raised as they are. Raised by the first call only.
        """
        if self._closed:
            return
        self._closed = True
        with self._cond:
            self._closing.set()
            for slot in self._slots.values():
                slot._discard()
            self._cond.notify_all()
        if self._stage is not None:
            join_all([self._stage])

    def __enter__(self) -> Multiplexer:
        return self.start() if self._stage is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ending(self) -> bool:
        return self._closing.is_set() or self.control.aborted.is_set()

    def _loop(self) -> None:
        while not self._ending():
            picked = self._collect()
            if picked:
                self._run(picked)

    def _collect(self) -> list[tuple[Slot, FramePacket]]:
        """Wait for a first frame, then up to ``window_s`` for the other slots; take the frames."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ending() or self._ready(), POLL_S) or self._ending():
                return []
            deadline = time.monotonic() + self.window_s
            while not self._ending():
                ready = self._ready()
                if len(ready) >= min(self.max_batch, len(self._slots)):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not ready:
                    break
                self._cond.wait(remaining)
            ready = self._ready()
            if not ready or self._ending():
                return []
            # Round robin: start after the slot that went first last time.
            order = list(self._slots.values())
            start = self._turn % len(order)
            rotated = [s for s in order[start:] + order[:start] if s in ready][: self.max_batch]
            self._turn = (order.index(rotated[0]) + 1) % len(order)
            picked = []
            for slot in rotated:
                packet, slot._item = slot._item, None
                assert packet is not None
                slot._in_model = packet
                picked.append((slot, packet))
            self._busy = True
            self._cond.notify_all()  # wakes wait_taken
            return picked

    def _ready(self) -> list[Slot]:
        return [s for s in self._slots.values() if s._item is not None]

    def _run(self, picked: list[tuple[Slot, FramePacket]]) -> None:
        """One batch through the model; each result to its slot (unless it was removed meanwhile)."""
        assert self.model is not None
        try:
            results = segment(self.model, [packet for _, packet in picked])
            self.batches += 1
            self.batched_frames += len(picked)
            for (slot, _), result in zip(picked, results, strict=True):
                with self._cond:
                    if self._slots.get(slot.name) is not slot:
                        continue  # removed while its frame was in the model
                    slot.frames_processed += 1
                try:
                    slot.deliver(result)
                finally:
                    with self._cond:
                        slot._in_model = None
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._busy = False
                for slot, _ in picked:
                    slot._in_model = None
                self._cond.notify_all()
