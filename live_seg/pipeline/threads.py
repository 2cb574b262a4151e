"""Threads, queues and shutdown: capture → inference → render/encode.

The capture thread reads frames into a bounded queue, the inference worker turns batches
of frames into masks, and the calling (main) thread renders and writes. Every loop waits
with a timeout and re-checks the :class:`Control`, so every exit path (end of input, an
error in any stage, a stop request, an abort) ends all threads. A worker's exception is
handed to the main thread and raised there.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, Protocol

import numpy as np

from ..base.errors import LiveSegError, PipelineError, one_line
from ..base.frames import Frame, FramePacket, SegResult

log = logging.getLogger(__name__)

THREAD_PREFIX = "live_seg-"
"""Every pipeline thread's name starts with this (tests look for leftovers by it)."""

POLL_S = 0.05
JOIN_S = 10.0


class FrameSource(Protocol):
    """What the pipeline needs of a source."""

    def __iter__(self) -> Iterator[FramePacket]: ...

    def stop(self) -> None: ...


class MaskModel(Protocol):
    """What the pipeline needs of a model (see :class:`live_seg.model.segmenter.Segmenter`)."""

    def preprocess(self, frames: Sequence[Frame]) -> Any: ...

    def infer(self, batch: Any) -> np.ndarray: ...


Take = Callable[[], FramePacket | None]
"""Where a worker gets its next frame: blocks until one is there; ``None`` at the end."""
Give = Callable[[SegResult], bool]
"""Where a worker hands a result: False when nobody takes it any more (stop the worker)."""


class Control:
    """Stop requests shared by all stages.

    ``stop()`` is graceful: capture ends, frames already read are still inferred, rendered
    and written. ``abort()`` ends every stage at once.
    """

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.aborted = threading.Event()
        self.reason: str | None = None

    def stop(self, reason: str = "stopped") -> None:
        """Ask for a graceful stop (first call's reason is kept)."""
        if self.reason is None:
            self.reason = reason
        self.stopping.set()

    def abort(self, reason: str = "aborted") -> None:
        """Ask every stage to end now."""
        self.stop(reason)
        self.aborted.set()


class _End:
    """Sentinel sent downstream when a stage ends."""


END = _End()


def put(q: queue.Queue, item: object, control: Control, give_up: threading.Event | None = None) -> bool:
    """Put ``item``, waiting for room until ``give_up`` is set (default: the run is aborted).

    Returns:
        False when it gave up without putting.
    """
    give_up = give_up or control.aborted
    while not give_up.is_set():
        try:
            q.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


def get(q: queue.Queue, control: Control) -> object:
    """Get the next item, or ``END`` when the run is aborted."""
    while not control.aborted.is_set():
        try:
            return q.get(timeout=POLL_S)
        except queue.Empty:
            continue
    return END


class Stage(threading.Thread):
    """A pipeline thread: runs ``body``, stores its exception, aborts the run on error,
    and always sends ``ends`` x ``END`` downstream (one per consumer)."""

    def __init__(
        self,
        name: str,
        body: Callable[[], None],
        control: Control,
        downstream: queue.Queue | None,
        ends: int = 1,
    ):
        super().__init__(name=THREAD_PREFIX + name, daemon=True)
        self.body = body
        self.control = control
        self.downstream = downstream
        self.ends = ends
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.body()
        except BaseException as exc:
            self.error = exc
            log.debug("stage %s failed", self.name, exc_info=True)
            self.control.abort(f"{self.name.removeprefix(THREAD_PREFIX)} failed")
        finally:
            if self.downstream is not None:
                # Waits for room while the consumers run; gives up once the run is aborted.
                for _ in range(self.ends):
                    put(self.downstream, END, self.control)


def join_all(stages: Sequence[Stage], timeout: float = JOIN_S) -> None:
    """Join stages; raise the first stage error as a user-facing error."""
    deadline = time.monotonic() + timeout
    for stage in stages:
        stage.join(max(0.0, deadline - time.monotonic()))
    if alive := [s.name for s in stages if s.is_alive()]:
        raise PipelineError(f"pipeline threads did not stop within {timeout:.0f} s: {', '.join(alive)}")
    for stage in stages:
        if stage.error is not None:
            raise_user_error(stage.error, stage.name.removeprefix(THREAD_PREFIX))


def raise_user_error(exc: BaseException, stage: str) -> NoReturn:
    """Raise a stage's error as the user sees it.

    User-facing errors (:class:`LiveSegError`) and Ctrl-C go up as they are; anything else is
    a bug or an unexpected failure, wrapped in a one-line :class:`PipelineError` that names
    the stage and chains the original.

    Args:
        exc: what the stage raised.
        stage: the stage's name (``"capture"``, ``"infer"``, ``"display"``…).
    """
    if isinstance(exc, LiveSegError | KeyboardInterrupt):
        raise exc
    raise PipelineError(f"{stage} failed: {one_line(exc, with_type=True)}") from exc
