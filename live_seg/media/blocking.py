"""Blocking calls that a stop can walk away from.

OpenCV gives Python no way to interrupt its FFmpeg backend: opening or reading a stream that
went silent blocks until FFmpeg's own open or read timeout fires (``--read-timeout`` can be a
minute), and a Ctrl-C reaches the Python signal handler only once that call returns.
:class:`CallThread` runs such calls, one at a time, on a daemon thread of its own while the
caller waits in short steps and checks whether it should stop. Once it should, the caller goes
on at once (:class:`Abandoned`): the call is left to end by itself when FFmpeg's timeout fires,
what it returns is handed to a clean-up (a capture it opened is released), and the thread ends.
Nothing waits for an abandoned call, and a daemon thread does not hold the process open.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

STEP_S = 0.05
"""How often a waiting caller checks whether it should stop."""
IDLE_S = 0.5
"""A thread without a call for this long ends (the next call starts another): nothing is left
behind by a source that is dropped without being closed."""


class Abandoned(Exception):
    """The caller stopped waiting: the call goes on (or never started) without it."""


class _Call(Generic[T]):
    def __init__(self, fn: Callable[[], T], discard: Callable[[T], None] | None) -> None:
        self.fn, self.discard = fn, discard
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.abandoned = False


class CallThread:
    """One daemon thread that runs blocking calls in order (see the module's docstring).

    Args:
        name: the thread's name.
        stopped: the caller's stop test, checked every :data:`STEP_S` while a call runs.

    Attributes:
        abandoned: calls walked away from so far.
    """

    def __init__(self, name: str, stopped: Callable[[], bool]) -> None:
        self.name = name
        self.stopped = stopped
        self.abandoned = 0
        self._calls: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def call(self, fn: Callable[[], T], discard: Callable[[T], None] | None = None) -> T:
        """Run ``fn`` on the thread and return what it returns (or raise what it raises).

        Args:
            fn: the blocking call.
            discard: given ``fn``'s result when the caller walked away from it (e.g. release a
                capture it opened); runs on the thread.

        Raises:
            Abandoned: the caller should stop (before or while ``fn`` runs), or the thread is closed.
        """
        with self._lock:
            if self._closed or self.stopped():
                raise Abandoned(self.name)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            job: _Call[T] = _Call(fn, discard)
            self._calls.put(job)
        while not job.done.wait(STEP_S):
            if self.stopped():
                with self._lock:
                    if not job.done.is_set():
                        job.abandoned = True
                        self.abandoned += 1
                        raise Abandoned(self.name)
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[return-value]

    def close(self, last: Callable[[], None] | None = None, wait_s: float = 0.0) -> bool:
        """Run ``last`` after the call in progress (if any), then end the thread (again: just wait).

        Args:
            last: the final call (e.g. release the capture); run here when no thread runs.
            wait_s: how long to wait for the thread to end.

        Returns:
            True when the thread has ended (or none runs); False when a call it runs is
            still blocked (it ends by itself once that call returns).
        """
        with self._lock:
            first, self._closed = not self._closed, True
            thread = self._thread
            if first and thread is not None:
                if last is not None:
                    self._calls.put(_Call(last, None))
                self._calls.put(None)
        if thread is None:
            if first and last is not None:
                last()
            return True
        thread.join(wait_s)
        return not thread.is_alive()

    def _next(self) -> _Call[Any] | None:
        """The next call; ``None`` to end (closed, or idle for :data:`IDLE_S`)."""
        while True:
            try:
                return self._calls.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:  # callers queue under the lock: nothing can arrive unseen
                    if self._calls.empty():
                        self._thread = None
                        return None

    def _run(self) -> None:
        while (job := self._next()) is not None:
            value, error = None, None
            try:
                value = job.fn()
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                error = exc
            with self._lock:
                if not job.abandoned:
                    job.value, job.error = value, error
                    job.done.set()
                    continue
            log.debug("%s: an abandoned call returned", self.name)
            if job.discard is not None and error is None:
                try:
                    job.discard(value)
                except Exception:
                    log.debug("%s: discarding an abandoned result failed", self.name, exc_info=True)
