"""Progress of a batch on the terminal: the batch's bar (files and frames, with an ETA) above the
current file's bar, and the hooks a file's run calls to move them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .manifest import Record
    from .plan import Job


@dataclass
class FileHooks:
    """Progress callbacks a process callable may call while it works on one file.

    Attributes:
        on_open: called once with the file's frame count (``None`` when unknown).
        on_frame: called after each frame written.
    """

    on_open: Callable[[int | None], None] = lambda _frames: None
    on_frame: Callable[[], None] = lambda: None


def count_frames(path: Path) -> int | None:
    """A video's frame count from its header (or duration x rate), ``None`` when unknown."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            if stream.duration and stream.time_base and stream.average_rate:
                return round(float(stream.duration * stream.time_base * stream.average_rate))
    except (av.error.FFmpegError, OSError, ValueError, IndexError):  # it fails when processed, not here
        return None
    return None


class BatchProgress:
    """Two tqdm bars on stderr: the batch (files and frames, with an ETA) above the current file.

    Args:
        todo: the jobs to run (their frame counts are read from the headers for the ETA).
        enabled: show the bars (a terminal and not ``-q``); when False every call is a no-op.
    """

    def __init__(self, todo: Sequence[Job], enabled: bool = True) -> None:
        self.enabled = enabled and bool(todo)
        self.files = len(todo)
        self.finished = 0
        self.failed = 0
        self._bar: Any = None
        self._file_bar: Any = None
        self._done_in_file: int | None = None
        self._expected: dict[Path, int | None] = {}
        if not self.enabled:
            return
        from tqdm import tqdm

        self._tqdm = tqdm
        self._expected = {j.input: count_frames(j.input) for j in todo}
        known = [n for n in self._expected.values() if n]
        total = sum(known) if len(known) == len(todo) else None
        self._bar = tqdm(total=total, unit="frame", position=0, dynamic_ncols=True, desc=self._desc())

    def _desc(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"batch {self.finished}/{self.files} files{failed}"

    def start_file(self, job: Job) -> FileHooks:
        """Hooks for one file's run; they move both bars."""
        if not self.enabled:
            return FileHooks()
        self._done_in_file = 0

        def on_open(frames: int | None) -> None:
            self._file_bar = self._tqdm(
                total=frames, unit="frame", position=1, leave=False, dynamic_ncols=True, desc=job.name
            )

        def on_frame() -> None:
            self._done_in_file += 1
            self._bar.update(1)
            if self._file_bar is not None:
                self._file_bar.update(1)

        return FileHooks(on_open, on_frame)

    def end_file(self, record: Record) -> None:
        """Close the file's bar; a file that stopped early takes its unread frames off the total.

        Without :meth:`start_file` (files run elsewhere, e.g. on Ray) the batch bar moves by the
        record's frames at once.
        """
        if not self.enabled:
            return
        if self._file_bar is not None:
            self._file_bar.close()
            self._file_bar = None
        done = self._done_in_file
        if done is None:
            done = record.frames or 0
            self._bar.update(done)
        self._done_in_file = None
        self.finished += 1
        self.failed += record.status == "failed"
        expected = self._expected.get(Path(record.input))
        if self._bar.total is not None and expected and done < expected:
            self._bar.total -= expected - done
        self._bar.set_description(self._desc(), refresh=True)

    def close(self) -> None:
        if self._file_bar is not None:
            self._file_bar.close()
        if self._bar is not None:
            self._bar.close()
