"""One source of a live run and what belongs to it alone: its reader, engine feed, analysis files,
recording and display figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...analysis.run import RunAnalysis
from ...media.camera import CaptureSource
from ...media.file_source import VideoFileSource
from ...pipeline.engine import Feed
from ...pipeline.sinks import SinkThread
from .metrics import LiveMetrics
from .outputs import Recorder


@dataclass(eq=False)
class Source:
    """One source of the run.

    Attributes:
        spec: as the user gave it (a camera index, URL or path; may hold credentials: redact it).
        name: its short, file-name-safe name, unique in the run.
        reader: what reads it.
        analysis: its smoothing, key frames and mask files (a sink of its feed).
        recorder: its recording, or ``None``; ``recording``: the recorder's sink thread.
        metrics: its display figures (the run's own with one source).
        feed: its engine feed, once the engine has it.
    """

    spec: str
    name: str
    reader: CaptureSource | VideoFileSource
    analysis: RunAnalysis
    recorder: Recorder | None
    metrics: LiveMetrics
    recording: SinkThread[Any] | None = None
    feed: Feed | None = None

    def sink_stats(self) -> dict[str, dict[str, int]]:
        """Each of its sinks that runs on its own thread: items ``handled`` and ``dropped`` (it fell behind)."""
        stats = self.analysis.sink_stats()
        if self.recording is not None:
            stats["record"] = self.recording.stats()
        return stats
