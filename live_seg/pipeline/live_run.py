"""The live run's threads: one capture thread per source → its newest-frame slot → one inference
thread for all sources (:class:`~live_seg.pipeline.multiplex.Multiplexer`) → each source's board.

* ``live_seg-capture`` (one per source; ``live_seg-capture-N`` with several) reads its source as
  fast as it delivers. Each frame goes into the source's slot, which keeps only the newest: a
  frame the model has not taken when the next one arrives is replaced and counted as dropped
  (a file read as fast as the model goes waits instead, and nothing is dropped). The frame is
  also posted to the source's :class:`Board` as "the newest frame".
* ``live_seg-infer`` takes the newest unseen frame of every source that has one (waiting a few ms
  at most for the others, never for a stalled source), runs them as one batch and posts each
  result to its source's board as "the newest mask" (after the source's own ``refine`` step:
  smoothing and mask files, in that source's frame order).
* The calling thread shows what the boards hold (the job's view) and decides when to stop.

A source that is lost and does not come back either ends the run (``keep_going=False``: the
single-source behaviour, its :class:`~live_seg.base.errors.SourceError` raised by :meth:`LiveRun.close`)
or is marked ``failed`` and the others go on (``keep_going=True``). :meth:`LiveRun.close` stops
and joins every thread on every exit path.

Written against small Protocols: the job wires the real cameras, files and model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..base.errors import LiveSegError, SourceError, one_line
from ..base.frames import Frame, FramePacket, SegResult
from ..base.redact import redact_text
from .multiplex import Multiplexer, Slot
from .threads import POLL_S, Control, MaskModel, Stage, join_all

log = logging.getLogger(__name__)

STATES = ("connecting", "live", "reconnecting", "failed", "ended")
"""A source's states: opening, delivering, lost and trying again, given up, finished (a file's end
or the run's stop)."""


class LiveSource(Protocol):
    """What the live run needs of a source (see :class:`live_seg.media.camera.CaptureSource`).

    Iterating opens it if needed, yields frames until it ends, and raises
    :class:`~live_seg.base.errors.SourceError` when it is lost for good. ``state`` (optional) is one
    of ``connecting``, ``live``, ``reconnecting``; ``reconnects`` (optional) counts reconnections,
    ``failed_attempts`` (optional) the attempts to (re)open it that failed.
    """

    def __iter__(self) -> Iterator[FramePacket]: ...

    def stop(self) -> None: ...


class ViewOutput(Protocol):
    """Where the live view goes: a window, a browser page, a recording.

    ``show`` gets each repainted view (``(H, W, 3)`` uint8 BGR) with the capture time of the frame it
    shows; ``keys`` returns the keys pressed there since the last call; ``closed`` says the user
    closed it (a window); ``close`` releases it (whatever happened; a second call does nothing).
    """

    def show(self, view: Frame, t_capture: float) -> None: ...

    def keys(self) -> list[int]: ...

    @property
    def closed(self) -> bool: ...

    def close(self) -> object: ...


class Board:
    """The newest frame and the newest mask of one source, posted by the threads, read by the view.

    Boards of one run share one condition (``cond``), so the view waits for news from any source.
    """

    def __init__(self, cond: threading.Condition | None = None) -> None:
        self.cond = cond or threading.Condition()
        self.frame: FramePacket | None = None
        self.frame_seq = 0
        self.result: SegResult | None = None
        self.result_seq = 0

    def post_frame(self, packet: FramePacket) -> None:
        with self.cond:
            self.frame, self.frame_seq = packet, self.frame_seq + 1
            self.cond.notify_all()

    def post_result(self, result: SegResult) -> None:
        with self.cond:
            self.result, self.result_seq = result, self.result_seq + 1
            self.cond.notify_all()

    def wait(
        self, frame_seq: int, result_seq: int, timeout: float
    ) -> tuple[int, FramePacket | None, int, SegResult | None]:
        """Wait up to ``timeout`` for anything newer than the sequence numbers given."""
        with self.cond:
            if self.frame_seq == frame_seq and self.result_seq == result_seq:
                self.cond.wait(timeout)
            return self.frame_seq, self.frame, self.result_seq, self.result

    def read(self) -> tuple[int, FramePacket | None, int, SegResult | None]:
        """What is posted now, with its sequence numbers."""
        with self.cond:
            return self.frame_seq, self.frame, self.result_seq, self.result

    def settled(self, frame_seq: int, result_seq: int) -> bool:
        """Nothing was posted after the sequence numbers given."""
        with self.cond:
            return frame_seq == self.frame_seq and result_seq == self.result_seq

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()


@dataclass(eq=False)
class Feed:
    """One source of a live run: its capture thread, slot, board, state and counters.

    Attributes:
        name: the source's name (unique in the run).
        source: what is read.
        board: its newest frame and mask.
        slot: its newest-frame slot in the multiplexer (``frames_in``, ``frames_processed``, ``dropped``).
        wait: offer a frame only once the model took the previous one (a file read as fast as the
            model goes: nothing dropped).
        on_frame: called with every frame read, on the capture thread (counters).
        error: why it failed, once it did.
        ended: its capture thread has finished (end of input, stop, or failure).
        exhausted: its input ended by itself (a file's end, a stream that closed for good).
    """

    name: str
    source: LiveSource
    board: Board
    slot: Slot
    wait: bool = False
    on_frame: Callable[[FramePacket], None] | None = None
    error: LiveSegError | None = None
    ended: bool = False
    exhausted: bool = False
    stage: Stage | None = field(default=None, repr=False)

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


Refine = Callable[[SegResult], SegResult]


class LiveRun:
    """The threads of one live run over one or many sources.

    Use: :meth:`add` every source, :meth:`start_capture` (as early as possible: a camera read from
    the moment it opens builds no backlog while the model loads), :meth:`start_inference` once the
    model is ready, then show the boards until :attr:`finished` or a stop, then :meth:`close`.

    Args:
        model: the model every source shares.
        control: the run's stop requests.
        keep_going: a source lost for good is marked failed and the others go on (else it ends
            the run).
        max_batch: most frames in one forward pass.
        window_s: how long an inference step waits for the other sources' frames after the first.
    """

    def __init__(
        self,
        model: MaskModel,
        control: Control,
        *,
        keep_going: bool = False,
        max_batch: int = 8,
        window_s: float = 0.005,
    ) -> None:
        self.control = control
        self.keep_going = keep_going
        self.mux = Multiplexer(model, control, max_batch=max_batch, window_s=window_s)
        self.feeds: list[Feed] = []
        self.cond = threading.Condition()

    def add(
        self,
        name: str,
        source: LiveSource,
        *,
        wait: bool = False,
        refine: Refine | None = None,
        on_result: Callable[[SegResult], None] | None = None,
        on_frame: Callable[[FramePacket], None] | None = None,
    ) -> Feed:
        """Add a source.

        Args:
            name: its name (unique).
            source: what to read.
            wait: never drop a frame (a file read as fast as the model goes).
            refine: turns a raw result into the final one (smoothing), on the inference thread.
            on_result: called with each final result on the inference thread, before it is posted.
            on_frame: called with each frame read, on the capture thread.
        """
        board = Board(self.cond)

        def deliver(result: SegResult) -> None:
            if refine is not None:
                result = refine(result)
            if on_result is not None:
                on_result(result)
            board.post_result(result)

        feed = Feed(name, source, board, self.mux.add(name, deliver), wait=wait, on_frame=on_frame)
        self.feeds.append(feed)
        return feed

    def start_capture(self, feeds: list[Feed] | None = None) -> None:
        """Start the capture threads of ``feeds`` (default: every feed not started yet)."""
        for feed in self.feeds if feeds is None else feeds:
            if feed.stage is None:
                name = "capture" if len(self.feeds) == 1 else f"capture-{self.feeds.index(feed)}"
                feed.stage = Stage(name, lambda f=feed: self._capture(f), self.control, None)
                feed.stage.start()

    def start_inference(self) -> None:
        """Start the capture threads not started yet and the inference thread."""
        self.start_capture()
        self.mux.start()

    @property
    def finished(self) -> bool:
        """Every source has ended or failed and every frame read was processed."""
        return all(feed.ended for feed in self.feeds) and self.mux.idle

    def alive(self) -> bool:
        """A capture thread still runs."""
        return any(feed.stage is not None and feed.stage.is_alive() for feed in self.feeds)

    def close(self) -> None:
        """Stop every source and thread, join them; a waiting frame is dropped (and counted).

        Raises:
            LiveSegError: the first error of a thread (a source lost for good without
                ``keep_going``, the model's); anything unexpected as a one-line PipelineError.
        """
        self.control.stop("stopped")
        for feed in self.feeds:
            feed.source.stop()
        first: BaseException | None = None
        try:
            self.mux.close()
        except BaseException as exc:  # noqa: BLE001 - join the captures first, raise below
            first = exc
        try:
            join_all([feed.stage for feed in self.feeds if feed.stage is not None])
        except BaseException as exc:  # noqa: BLE001
            first = first or exc
        with self.cond:
            self.cond.notify_all()
        if first is not None:
            raise first

    def failed(self) -> list[Feed]:
        """The sources that were lost for good."""
        return [feed for feed in self.feeds if feed.error is not None]

    def _capture(self, feed: Feed) -> None:
        """Capture thread: every frame into the slot (newest only, unless ``wait``) and to the board."""
        control, slot = self.control, feed.slot
        try:
            for packet in feed.source:
                if control.stopping.is_set():
                    break
                if feed.on_frame is not None:
                    feed.on_frame(packet)
                if feed.wait and not self._wait_taken(slot):
                    break
                slot.offer(packet)
                feed.board.post_frame(packet)
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

    def _wait_taken(self, slot: Slot) -> bool:
        """Wait until the model took the slot's frame; False when the run stops meanwhile."""
        while not slot.wait_taken(POLL_S):
            if self.control.stopping.is_set():
                return False
        return True
