"""JSON lines into a file (through a temporary name) or onto standard output, one flushed line at a time.

:class:`JsonLines` takes whole lines (``bytes`` ending in ``\\n``). A file is written under a
hidden temporary name beside its final name and renamed when closed, so a crash never leaves
half a file under the final name; standard output (``"-"``) is streamed as the lines come.
A write into a pipe waits only while the reader makes room and gives up when the ``stop``
event is set, so the thread writing can always be stopped, even when the reader stalls; a
reader that closes its end (``| head -3``) ends the stream: the lines after it are refused.
"""

from __future__ import annotations

import logging
import os
import select
import stat
import sys
import threading
from pathlib import Path
from typing import BinaryIO

from ..base.errors import OutputError, one_line
from .writer import check_output_path, pending_beside

log = logging.getLogger(__name__)

STDOUT = "-"
"""The target that means standard output."""

POLL_S = 0.05
"""How often a write into a full pipe re-checks the stop event."""

PIPE_CHUNK = 4096
"""Bytes written at once into a pipe that has room (``PIPE_BUF`` on Linux: such a write never waits)."""


class JsonLines:
    """A JSON-lines output: a file written through a temporary name, or standard output.

    Args:
        target: a file name, or ``"-"`` for standard output.
        overwrite: replace an existing file.
        stop: once set, a write waiting for a pipe's reader gives up (the line is refused).
        option: the flag that named the output, for messages.

    Attributes:
        lines: lines written.
        path: the final file, or ``None`` for standard output.

    Raises:
        OutputError: the file cannot be written (checked here, before any line).
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        overwrite: bool = False,
        stop: threading.Event | None = None,
        option: str = "--events",
    ) -> None:
        self.option = option
        self.stop = stop or threading.Event()
        self.lines = 0
        self.reader_gone = False
        self.path: Path | None = None
        self._file: BinaryIO | None = None
        if str(target) == STDOUT:
            self._fd = sys.stdout.fileno()
            mode = os.fstat(self._fd).st_mode
            self._waits = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
            return
        try:
            self.path = check_output_path(target, overwrite)
            self._pending = pending_beside(self.path, ".partial.jsonl")
        except OutputError as exc:
            raise OutputError(f"{option}: {exc}") from exc
        try:
            self._file = open(self._pending.path, "wb")
        except OSError as exc:
            self._pending.discard()
            raise OutputError(f"{option}: cannot write {self.path}: {one_line(exc)}") from exc

    def write(self, line: bytes) -> bool:
        """Write one line and flush it.

        Returns:
            False when the line was refused: standard output's reader is gone, or ``stop`` was
            set while the pipe was full.

        Raises:
            OutputError: the file could not be written (a full disk).
        """
        if self._file is not None:
            try:
                self._file.write(line)
                self._file.flush()
            except OSError as exc:
                raise OutputError(f"{self.option}: cannot write {self.path}: {one_line(exc)}") from exc
            self.lines += 1
            return True
        if self.reader_gone or not self._send(memoryview(line)):
            return False
        self.lines += 1
        return True

    def _send(self, data: memoryview) -> bool:
        """All of ``data`` onto standard output; False when the reader left or ``stop`` was set."""
        while data:
            if self._waits:
                while not select.select([], [self._fd], [], POLL_S)[1]:
                    if self.stop.is_set():
                        return False
                chunk = data[:PIPE_CHUNK]
            else:
                chunk = data
            try:
                data = data[os.write(self._fd, chunk) :]
            except BrokenPipeError:
                self.reader_gone = True
                log.warning("%s -: the reader closed its end; no more lines are written", self.option)
                return False
            except OSError as exc:
                raise OutputError(f"{self.option} -: cannot write to standard output: {one_line(exc)}") from exc
        return True

    def close(self, complete: bool = True) -> Path | None:
        """Finish: a file with lines is renamed to its final name (also when ``complete`` is
        False, after an interrupt: its lines are whole); one without lines is removed.

        Returns:
            The file written, or ``None`` (standard output, or no line).

        Raises:
            OutputError: the file could not be finished (it is removed then).
        """
        if self._file is None:
            return None
        file, self._file = self._file, None
        try:
            file.close()
            if not self.lines:
                self._pending.discard()
                return None
            return self._pending.commit()
        except OSError as exc:
            self._pending.discard()
            raise OutputError(f"{self.option}: cannot finish {self.path}: {one_line(exc)}") from exc

    def abort(self) -> None:
        """Drop the file written so far (the final name is left as it was)."""
        if self._file is not None:
            file, self._file = self._file, None
            file.close()
            self._pending.discard()
