"""A sink on its own thread behind a small bounded queue: a slow sink never slows its caller.

:class:`SinkThread` takes items from any thread (:meth:`SinkThread.put` never waits) and hands
them, in order, to one ``handle(item)`` on its own thread. When the queue is full the **oldest**
item is dropped and counted: a sink that falls behind (a pipe read one line a second, a broker
that is slow or gone, a slow disk) skips items instead of holding up inference or the other
sinks. The threading follows :mod:`live_seg.pipeline.threads`: one stop event, waits with a
timeout that re-check it, joins with a timeout, the handler's exception kept and raised to the
caller (as a one-line user error) when the sink is closed.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..base.errors import PipelineError
from .threads import JOIN_S, POLL_S, THREAD_PREFIX, raise_user_error

log = logging.getLogger(__name__)

Item = TypeVar("Item")

QUEUE_SIZE = 32
"""Items a sink holds by default; the oldest goes when one more comes."""

DRAIN_S = 2.0
"""How long :meth:`SinkThread.close` waits by default for the queued items to be handled."""

_END = object()


class SinkThread(Generic[Item]):
    """One sink's thread and its bounded queue, which drops its oldest item when full.

    Args:
        name: the thread is ``live_seg-sink-<name>``; also names the sink in errors.
        handle: called on the sink's thread with each item, in the order put. It returns
            ``False`` when it dropped the item itself (a broker that is not connected):
            counted as dropped, not handled. An exception ends the sink: the items after it are
            dropped, and :meth:`close` raises it.
        size: items queued at most.
        stop: the sink's stop event (a new one when ``None``); a handler that can block (a
            write into a pipe) should give up when it is set. :meth:`close` sets it when the
            queue is not drained in time.

    Attributes:
        handled: items handled.
        dropped: items dropped: the oldest of a full queue, those put after :meth:`close` or
            after the handler failed, those still queued when the sink stopped, and those the
            handler refused.
        error: the handler's exception, if it raised.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[Item], bool | None],
        size: int = QUEUE_SIZE,
        stop: threading.Event | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"sink queue size: expected >= 1, got {size}")
        self.name = name
        self.handle = handle
        self.size = size
        self.stop = stop or threading.Event()
        self.handled = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self._items: collections.deque[Any] = collections.deque()
        self._ready = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}sink-{name}", daemon=True)
        self._thread.start()

    def put(self, item: Item) -> bool:
        """Queue ``item`` without waiting; a full queue drops its oldest item first.

        Returns:
            False when the sink no longer takes items (closed, or its handler failed): ``item``
            is counted as dropped.
        """
        with self._ready:
            if self._closing or self.error is not None or self.stop.is_set():
                self.dropped += 1
                return False
            if len(self._items) >= self.size:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._ready.notify()
        return True

    def _next(self) -> Any:
        """The next item, or ``_END`` once stopped, or closed with nothing left."""
        with self._ready:
            while not self._items and not self._closing and not self.stop.is_set():
                self._ready.wait(POLL_S)
            if self.stop.is_set() or not self._items:
                return _END
            return self._items.popleft()

    def _run(self) -> None:
        try:
            while (item := self._next()) is not _END:
                if self.handle(item) is False:
                    with self._ready:  # put() counts too
                        self.dropped += 1
                else:
                    self.handled += 1
        except BaseException as exc:
            self.error = exc
            log.debug("sink %s failed", self.name, exc_info=True)
            with self._ready:
                self.dropped += 1  # the item in hand
        finally:
            with self._ready:
                self.dropped += len(self._items)
                self._items.clear()

    @property
    def queued(self) -> int:
        """Items waiting."""
        with self._ready:
            return len(self._items)

    def close(self, timeout: float = DRAIN_S) -> None:
        """Take no more items, let the thread handle the queued ones for up to ``timeout``
        seconds, then drop what is left and end the thread. Safe to call again.

        Raises:
            LiveSegError: the handler's error (others wrapped in a one-line ``PipelineError``).
            PipelineError: the thread did not end (a handler blocked despite the stop event).
        """
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.debug("sink %s: %d items not handled within %.1f s, dropped", self.name, self.queued, timeout)
            self.stop.set()
            self._thread.join(JOIN_S)
        if self._thread.is_alive():
            raise PipelineError(f"sink {self.name}: its thread did not stop within {JOIN_S:.0f} s")
        if self.error is not None:
            error, self.error = self.error, None  # raised once
            raise_user_error(error, f"sink {self.name}")

    def stats(self) -> dict[str, int]:
        """``handled`` and ``dropped`` so far."""
        return {"handled": self.handled, "dropped": self.dropped}
