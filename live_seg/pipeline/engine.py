"""The stream engine behind ``live``, :func:`live_seg.stream` and ``serve``: sources → newest-frame
slots → one batched inference thread → one result per source and frame → each source's board and sinks.

* A source is **pulled** (a camera, stream or file: :meth:`Engine.add` with a ``source``, read by its
  own ``live_seg-capture`` thread as fast as it delivers) or **pushed** (a browser's camera: the
  transport calls :meth:`Feed.offer` with each frame). Either way :meth:`Feed.offer` takes the frame:
  it is counted and timed, shown to ``look`` (scene cuts), put into the source's newest-frame slot
  (:class:`~live_seg.pipeline.multiplex.Slot`: a frame the model has not taken when the next one
  arrives is replaced and counted as dropped; a file read as fast as the model goes waits instead)
  and posted to the source's :class:`Board` as "the newest frame".
* ``live_seg-infer`` (:class:`~live_seg.pipeline.multiplex.Multiplexer`) takes the newest unseen frame
  of every source that has one (waiting a few ms at most for the others, never for a stalled one),
  runs them as one batch and hands each result back to its :class:`Feed`.
* With key frames (``skip``), a frame the network leaves out goes to the source's
  ``live_seg-carry`` thread instead, which waits until the key frames before it have left the model
  (so results stay in frame order) and gives the frame a result without a mask, for ``refine`` to carry the key mask to.
* :meth:`Feed.deliver` makes the final result (``refine``: smoothing, key frames; in frame order),
  posts it to the board ("the newest mask"), hands it to ``on_result`` and puts it into each of the
  source's **sinks**; the steps (:class:`~live_seg.pipeline.infer.Steps`) are the file run's. A sink
  never blocks (:class:`~live_seg.pipeline.sinks.SinkThread`: its own thread behind a bounded queue
  that drops its oldest item when full, counted), so a slow disk, encoder, pipe or broker never slows
  inference or the other sinks.
* Whoever runs the engine reads the boards (a window, a browser page) and decides when to stop.

The engine counts and times what passes (per source: frames in, processed, dropped, carried; decode,
preprocess and inference times; the capture span): the jobs read those figures, nothing calls them.

A source that is lost and does not come back either ends the run (``keep_going=False``: the
single-source behaviour, its :class:`~live_seg.base.errors.SourceError` raised by :meth:`Engine.close`)
or is marked ``failed`` and the others go on (``keep_going=True``). :meth:`Engine.close` stops and
joins every thread on every exit path. Written against small Protocols: the job wires the real
cameras, files, model and sinks.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from typing import Protocol

from ..base.errors import LiveSegError, SourceError, one_line
from ..base.frames import FramePacket, SegResult
from ..base.metrics import Stats, samples
from ..base.redact import redact_text
from .board import Board
from .infer import Steps
from .multiplex import Multiplexer, Slot
from .threads import POLL_S, Control, MaskModel, Stage, join_all

log = logging.getLogger(__name__)

STATES = ("connecting", "live", "reconnecting", "failed", "ended")
"""A source's states: opening, delivering, lost and trying again, given up, finished (a file's end
or the run's stop)."""


class LiveSource(Protocol):
    """What the engine needs of a pulled source (see :class:`live_seg.media.camera.CaptureSource`).

    Iterating opens it if needed, yields frames until it ends, and raises
    :class:`~live_seg.base.errors.SourceError` when it is lost for good. ``state`` (optional) is one
    of ``connecting``, ``live``, ``reconnecting``; ``reconnects`` (optional) counts reconnections,
    ``failed_attempts`` (optional) the attempts to (re)open it that failed.
    """

    def __iter__(self) -> Iterator[FramePacket]: ...

    def stop(self) -> None: ...


class Sink(Protocol):
    """Where a source's results go besides its board (:class:`~live_seg.pipeline.sinks.SinkThread`, a
    job's composite of several). ``put`` is called on the delivering thread, in frame order, and must
    not wait: a sink that falls behind drops (and counts) items, it never holds up the engine."""

    def put(self, item: SegResult) -> object: ...


class Feed:
    """One source of the engine: its slot, board, sinks, state and figures (made by :meth:`Engine.add`).

    Attributes:
        name: the source's name (unique in the run).
        source: what its capture thread reads; ``None`` for a pushed source.
        board: its newest frame and mask.
        slot: its newest-frame slot (``frames_in``, ``frames_processed``, ``dropped``, ``skipped_loading``).
        sinks: where each final result goes, in order.
        wait: offer a frame only once the model took the previous one (nothing dropped).
        error: why it failed, once it did.
        ended: its capture has finished (end of input, stop, failure, or a pushed source removed).
        exhausted: its input ended by itself (a file's end, a stream that closed for good).
        frames_in: frames taken (read from a pulled source, pushed by the transport).
        delivered: final results delivered (the network's and the carried ones).
        stats: ``decode`` (capture), ``preprocess`` and ``infer`` (its share of each batch) seconds.
        infer_s: preprocess + forward seconds per processed frame, in order.
        first_capture, last_capture: ``t_capture`` of its first and newest frame (``None`` before one).
        carried: frames given a result without the network (key frames).
        carry_dropped: such frames replaced by a newer one before they were carried.
        superseded: results not delivered because a newer frame's result was delivered first.
    """

    def __init__(
        self,
        engine: Engine,
        name: str,
        source: LiveSource | None,
        *,
        wait: bool = False,
        steps: Steps | None = None,
        sinks: tuple[Sink, ...] = (),
    ) -> None:
        steps = steps or Steps()
        if steps.skip is not None and steps.refine is None:
            raise ValueError("key frames (skip) need a refine step to carry the key mask")
        self.engine, self.name, self.source = engine, name, source
        self.number = next(engine.numbers)  # names its threads
        self.board = Board(engine.cond)
        self.slot: Slot = engine.mux.add(name, self.deliver)
        self.sinks = list(sinks)
        self.wait, self.refine, self.look, self.skip = wait, steps.refine, steps.look, steps.skip
        self.on_result = steps.on_result
        self.error: LiveSegError | None = None
        self.ended = False
        self.exhausted = False
        self.frames_in = 0
        self.delivered = 0
        self.stats = Stats()
        self.infer_s = samples()
        self.first_capture: float | None = None
        self.last_capture: float | None = None
        self.carried = 0
        self.carry_dropped = 0
        self.superseded = 0
        self.stage: Stage | None = None
        self._lock = threading.Lock()  # one delivery at a time (inference and carry threads)
        self._last_index = -1
        self._carry_cond = threading.Condition()
        self._to_carry: FramePacket | None = None
        self._carrying = False  # the carry thread is delivering a frame
        self._carrier: Stage | None = None

    # -- state ----------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``connecting``, ``live``, ``reconnecting``, ``failed`` or ``ended`` (its input ended by
        itself); a source stopped with the run keeps the state it had."""
        if self.error is not None:
            return "failed"
        if self.exhausted:
            return "ended"
        return getattr(self.source, "state", "live")

    @property
    def reconnects(self) -> int:
        """Successful reconnections."""
        return int(getattr(self.source, "reconnects", 0))

    @property
    def reconnect_attempts(self) -> int:
        """Attempts to (re)open it after the first: successful or not."""
        return self.reconnects + int(getattr(self.source, "failed_attempts", 0))

    @property
    def dropped(self) -> int:
        """Frames taken that got no result: replaced in the model's slot or the carry thread's before they
        were taken, discarded at the end, or superseded (``frames_in == delivered + dropped +
        slot.skipped_loading`` once the run ended)."""
        return self.slot.dropped + self.carry_dropped + self.superseded

    @property
    def idle(self) -> bool:
        """No frame of it waits to be carried (the model's side: the multiplexer's ``idle``)."""
        with self._carry_cond:
            return self._to_carry is None and not self._carrying

    # -- frames in ------------------------------------------------------------------------------

    def offer(self, packet: FramePacket) -> bool:
        """Take a frame of this source (its capture thread, or the transport of a pushed source;
        never blocks unless ``wait``). False when the run stops meanwhile, or the source was removed."""
        if self.ended:
            return False
        self.frames_in += 1
        self.stats.add("decode", packet.decode_s)
        if self.first_capture is None:
            self.first_capture = packet.t_capture
        self.last_capture = packet.t_capture
        if self.look is not None:
            self.look(packet)
        if self.wait and not self._wait_carried():  # a file: each frame after the one before it, none dropped
            return False
        if self.skip is not None and self.skip(packet):
            self._carry(packet)
        else:
            if self.wait and not self._wait_taken():
                return False
            self.slot.offer(packet)
        self.board.post_frame(packet)
        return True

    def _wait_taken(self) -> bool:
        """Wait until the model took the slot's frame; False when the run stops meanwhile."""
        while not self.slot.wait_taken(POLL_S):
            if self.engine.control.stopping.is_set():
                return False
        return True

    def _wait_carried(self) -> bool:
        """Wait until the frame waiting to be carried was delivered; False when the run stops meanwhile."""
        with self._carry_cond:
            while self._to_carry is not None or self._carrying:
                if self.engine.control.stopping.is_set():
                    return False
                self._carry_cond.wait(POLL_S)
        return True

    def _carry(self, packet: FramePacket) -> None:
        with self._carry_cond:
            if self._to_carry is not None:
                self.carry_dropped += 1
            self._to_carry = packet
            self._carry_cond.notify_all()
        if self._carrier is None:
            self._carrier = Stage(f"carry-{self.number}", self._carry_loop, self.engine.control, None)
            self._carrier.start()

    def _carry_loop(self) -> None:
        """The carry thread: each waiting frame, once the key frame before it is delivered, gets a result
        without a mask (``refine`` carries the key mask to it)."""
        control = self.engine.control
        while not control.aborted.is_set():
            with self._carry_cond:
                if self._to_carry is None:
                    if self.ended or control.stopping.is_set():
                        return
                    self._carry_cond.wait(POLL_S)
                    continue
                packet = self._to_carry
            if not self.slot.wait_done_before(packet.index, POLL_S):
                continue  # the key frame before it is still waiting or in the model
            with self._carry_cond:
                if self._to_carry is not packet:
                    continue  # replaced meanwhile (counted): take the newer one
                self._to_carry, self._carrying = None, True
            delivered = False
            try:
                delivered = self.deliver(SegResult(packet, None))  # type: ignore[arg-type]  # refine fills it
            finally:
                with self._carry_cond:
                    self._carrying = False
                    self.carried += delivered
                    self._carry_cond.notify_all()  # wakes _wait_carried

    # -- results out ----------------------------------------------------------------------------

    def deliver(self, result: SegResult) -> bool:
        """The final result of one frame, in frame order: refined, posted, into every sink (called by
        the inference thread, and the carry thread with key frames). False when a newer frame's result
        was delivered first (it is then left out, counted in ``superseded``)."""
        with self._lock:
            if result.packet.index <= self._last_index:
                self.superseded += 1  # a newer frame went first (a carried frame that came late)
                return False
            if result.mask is not None:
                self.stats.add("preprocess", result.preprocess_s)
                self.stats.add("infer", result.infer_s)
                self.infer_s.append(result.preprocess_s + result.infer_s)
            if self.refine is not None:
                result = self.refine(result)
            self._last_index = result.packet.index
            self.delivered += 1
            self.board.post_result(result)
            if self.on_result is not None:
                self.on_result(result)
            for sink in self.sinks:
                sink.put(result)
        return True

    def _stop_carrier(self) -> Stage | None:
        with self._carry_cond:
            if self._to_carry is not None:
                self._to_carry = None
                self.carry_dropped += 1
            self._carry_cond.notify_all()
        return self._carrier


class Engine:
    """The threads of one run over one or many sources (see the module's docstring).

    Use: :meth:`add` every source (a pushed one also while running; :meth:`remove` it when it
    leaves), :meth:`start_capture` as early as possible (a camera read from the moment it opens
    builds no backlog while the model loads), :meth:`start` with the model once it is ready, then
    read the boards until :attr:`finished` or a stop, then :meth:`close`.

    Args:
        control: the run's stop requests.
        keep_going: a source lost for good is marked failed and the others go on (else it ends
            the run).
        max_batch: most frames in one forward pass.
        window_s: how long an inference step waits for the other sources' frames after the first.
        model: the model every source shares, when it is ready before the engine (else :meth:`start`'s).
    """

    def __init__(
        self,
        control: Control,
        *,
        keep_going: bool = False,
        max_batch: int = 8,
        window_s: float = 0.005,
        model: MaskModel | None = None,
    ) -> None:
        self.control = control
        self.keep_going = keep_going
        self.mux = Multiplexer(model, control, max_batch=max_batch, window_s=window_s)
        self.feeds: list[Feed] = []
        self.numbers = itertools.count()  # each source's number, for its threads' names
        self.cond = threading.Condition()
        self._feeds_lock = threading.Lock()

    def add(
        self,
        name: str,
        source: LiveSource | None = None,
        *,
        wait: bool = False,
        steps: Steps | None = None,
        sinks: tuple[Sink, ...] = (),
    ) -> Feed:
        """Add a source (thread-safe; a pushed one also while running).

        Args:
            name: its name (unique).
            source: what its capture thread reads; ``None``: frames are pushed with :meth:`Feed.offer`.
            wait: never drop a frame (a file read as fast as the model goes).
            steps: its steps around the model (:class:`~live_seg.pipeline.infer.Steps`, the file run's):
                ``look`` sees every frame in order (scene cuts); ``skip`` is True for a frame the network
                leaves out; ``refine`` makes each final result, in frame order (smoothing; a skipped
                frame's mask, carried from its key frame); ``on_result`` takes each final result in order
                (an analysis that hands its files to sink threads).
            sinks: where each final result goes, after ``on_result``.

        Raises:
            ValueError: a source of that name exists, or ``skip`` without ``refine``.
        """
        with self._feeds_lock:
            feed = Feed(self, name, source, wait=wait, steps=steps, sinks=sinks)
            self.feeds.append(feed)
        return feed

    def remove(self, feed: Feed) -> None:
        """A pushed source left: its waiting frames are dropped, a result still being computed for it
        is not delivered, its carry thread is joined, and the engine lets go of it (its figures stay
        readable on ``feed``; its frames and steps are released)."""
        self.mux.remove(feed.name)
        feed.ended = True
        carrier = feed._stop_carrier()
        with self._feeds_lock:
            if feed in self.feeds:
                self.feeds.remove(feed)
        if carrier is not None:
            join_all([carrier])
        with feed._lock:  # nothing is delivered any more: what it held can go
            feed.board.frame = feed.board.result = None
            feed.refine = feed.look = feed.skip = feed.on_result = None
            feed.sinks.clear()

    def start_capture(self, feeds: list[Feed] | None = None) -> None:
        """Start the capture threads of ``feeds`` (default: every pulled source not started yet)."""
        for feed in self.feeds if feeds is None else feeds:
            if feed.stage is None and feed.source is not None:
                name = "capture" if len(self.feeds) == 1 else f"capture-{self.feeds.index(feed)}"
                feed.stage = Stage(name, lambda f=feed: self._capture(f), self.control, None)
                feed.stage.start()

    def start(self, model: MaskModel | None = None) -> None:
        """Start the capture threads not started yet and the inference thread (with ``model``, when
        it was not given to the engine)."""
        self.start_capture()
        self.mux.start(model)

    @property
    def finished(self) -> bool:
        """Every source has ended or failed and every frame read was processed."""
        return all(feed.ended and feed.idle for feed in self.feeds) and self.mux.idle

    def close(self) -> None:
        """Stop every source and thread, join them; a waiting frame is dropped (and counted).

        Raises:
            LiveSegError: the first error of a thread (a source lost for good without
                ``keep_going``, the model's); anything unexpected as a one-line PipelineError.
        """
        self.control.stop("stopped")
        for feed in self.feeds:
            if feed.source is not None:
                feed.source.stop()
        first: BaseException | None = None
        try:
            self.mux.close()
        except BaseException as exc:  # noqa: BLE001 - join the captures first, raise below
            first = exc
        carriers = [c for feed in self.feeds if (c := feed._stop_carrier()) is not None]
        try:
            join_all([feed.stage for feed in self.feeds if feed.stage is not None] + carriers)
        except BaseException as exc:  # noqa: BLE001
            first = first or exc
        with self.cond:
            self.cond.notify_all()
        if first is not None:
            raise first

    def _capture(self, feed: Feed) -> None:
        """Capture thread: every frame of a pulled source into :meth:`Feed.offer`."""
        control = self.control
        assert feed.source is not None
        try:
            for packet in feed.source:
                if control.stopping.is_set() or not feed.offer(packet):
                    break
            else:
                feed.exhausted = not control.stopping.is_set()
        except SourceError as exc:
            if control.stopping.is_set():
                return  # stopped while it was still trying to (re)connect: not a failure
            feed.error = exc
            if not self.keep_going or all(f.error is not None for f in self.feeds):
                control.abort("source lost")
                raise
            log.error("%s: %s; the other sources go on", redact_text(feed.name), redact_text(one_line(exc)))
        finally:
            feed.ended = True
            feed.board.wake()
