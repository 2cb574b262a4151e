"""The newest frame and the newest mask of one source, posted by the engine's threads and read by a view."""

from __future__ import annotations

import threading

from ..base.frames import FramePacket, SegResult


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
