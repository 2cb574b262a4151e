"""The batch manifest: one JSON line per input and run in ``OUTDIR/live_seg_manifest.jsonl``,
appended, flushed and synced to disk as each file finishes, so that it survives a crash; and the
batch's outcome counted from those records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...base.errors import OutputError, one_line

MANIFEST_NAME = "live_seg_manifest.jsonl"
"""The manifest's file name inside the output folder."""

STATUSES = ("done", "skipped", "failed", "interrupted")
"""A manifest record's status: written now, already there, failed (the batch went on), or cut
short by a signal (nothing kept under the final name; the next run redoes it)."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Record:
    """One manifest line: what happened to one input.

    Attributes:
        input, output: the job's paths.
        status: one of :data:`STATUSES`.
        frames: frames written (for ``skipped``: as recorded when the output was made, if known).
        fps: frames per second of the file's run, model setup excluded.
        seconds: wall seconds for the file, from opening it to the closed output.
        error: the one-line reason for ``failed`` / ``interrupted``.
    """

    input: str
    output: str
    status: str
    frames: int | None = None
    fps: float | None = None
    seconds: float | None = None
    error: str | None = None
    time: str = field(default_factory=lambda: _now())

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


class Manifest(contextlib.AbstractContextManager["Manifest"]):
    """``OUTDIR/live_seg_manifest.jsonl``: one JSON line per input and run, appended, flushed
    and synced to disk as each file finishes, so that it survives a crash.

    Args:
        path: the manifest file (created with its folder, if missing, at the first record).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: Any = None

    def _open(self) -> Any:
        """Open for appending on the first record (a batch that cannot start leaves no folder)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
            if self._file.tell() and _last_byte(self.path) != b"\n":
                self._file.write("\n")  # a line cut by a crash stays on a line of its own
        except OSError as exc:
            raise OutputError(f"cannot write the manifest {self.path}: {one_line(exc)}") from exc
        return self._file

    @classmethod
    def in_folder(cls, outdir: str | os.PathLike[str]) -> Manifest:
        return cls(Path(outdir) / MANIFEST_NAME)

    def append(self, record: Record) -> None:
        """Write one record and make it durable before returning.

        Raises:
            OutputError: the manifest cannot be created or written.
        """
        file = self._file or self._open()
        try:
            file.write(record.to_json() + "\n")
            file.flush()
            os.fsync(file.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write the manifest {self.path}: {one_line(exc)}") from exc

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __exit__(self, *_exc: object) -> None:
        self.close()


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a manifest file, oldest first (a line cut short by a crash is ignored)."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


@dataclass
class BatchResult:
    """The outcome of a batch run (this run's records, skipped included; the manifest's path)."""

    records: list[Record]
    total: int
    manifest: Path | None = None

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def failed(self) -> list[Record]:
        return [r for r in self.records if r.status == "failed"]

    @property
    def interrupted(self) -> bool:
        return any(r.status == "interrupted" for r in self.records) or len(self.records) < self.total

    def summary_line(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in STATUSES if self.count(s))
        left = self.total - len(self.records)
        return f"{self.total} input(s): {counts or 'nothing to do'}" + (f", {left} not started" if left else "")
