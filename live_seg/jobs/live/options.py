"""The live job's settings: one value that owns its defaults (the CLI's defaults come from here)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...base.options import IMAGE_RENDER, AnalysisOptions, EventOptions
from ...base.registry import (
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_RECONNECT,
    DISPLAYS,
    PAIRINGS,
    RTSP_TRANSPORTS,
    VIEWS,
    VOC_CLASSES,
)
from ...media.camera import CaptureSource, open_live_source
from ...media.file_source import VideoFileSource
from ...render.effects import EffectOptions

DEFAULT_MAX_BATCH = 8
"""Most frames (one per source) in one forward pass of a many-source run."""


@dataclass(frozen=True)
class LiveOptions:
    """Settings of a live run (the CLI's flags): a frozen value, built once.

    Attributes:
        source: camera index (``"0"``), stream URL (RTSP, HTTP MJPEG…) or video file.
        sources: several of those, in one run (a grid of tiles; ``source`` is then ignored).
        realtime: for a file: play it at its own pace, like a camera (frames may be dropped).
        reconnect: for a camera or stream: reopen attempts after it is lost (each source's own).
        rtsp_transport: ``"tcp"`` (default) or ``"udp"`` for RTSP sources.
        read_timeout: seconds without data after which a stream counts as lost.
        max_frame_pixels: a camera or stream whose frames are bigger (width x height) is refused
            with a one-line error (with several sources: that one is dropped, the others go on).
        pairing: ``"newest"`` (newest frame + newest mask) or ``"matched"`` (each mask on
            the frame it was computed on).
        view: first view mode: ``"overlay"``, ``"mask"`` or ``"side"`` (key m cycles).
        legend: show the legend of the classes present (key l toggles).
        hud: draw the HUD.
        palette, alpha, effect: rendering (:class:`~live_seg.render.renderer.Renderer`, :class:`EffectOptions`).
        display: ``"auto"`` (a window if a display is available, else the browser view),
            ``"window"``, ``"browser"`` or ``"none"`` (record and/or stats only).
        host, port: where the browser view is served (``port`` 0: any free port).
        record: an ``.mp4`` to record the rendered view into, or a folder (``DIR/``: one file per
            source, named after it; required with several sources), or ``None``.
        overwrite: replace existing recordings and files.
        duration: stop by itself after this many seconds (``None``: run until stopped).
        snapshot_dir: where key s saves PNG snapshots.
        analysis: smoothing and per-frame mask outputs (see :mod:`live_seg.analysis.run`); with
            several sources each gets its own files (``masks/NAME/``, ``coverage-NAME.csv``…).
        max_batch: most frames in one forward pass with several sources.
        events: per-frame event records (``--events``, ``--mqtt``): one output for the run, one
            feed per source (see :mod:`live_seg.analysis.event_outputs`).
    """

    source: str = "0"
    sources: tuple[str, ...] = ()
    realtime: bool = False
    reconnect: int = DEFAULT_RECONNECT
    rtsp_transport: str = RTSP_TRANSPORTS[0]
    read_timeout: float = DEFAULT_READ_TIMEOUT_S
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    pairing: str = PAIRINGS[0]
    view: str = IMAGE_RENDER.view
    legend: bool = IMAGE_RENDER.legend
    hud: bool = True
    palette: str = IMAGE_RENDER.palette
    alpha: float = IMAGE_RENDER.alpha
    effect: EffectOptions = field(default_factory=EffectOptions)
    display: str = DISPLAYS[0]
    host: str = "127.0.0.1"
    port: int | None = None
    record: str | os.PathLike[str] | None = None
    overwrite: bool = False
    duration: float | None = None
    snapshot_dir: str | os.PathLike[str] = "."
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    max_batch: int = DEFAULT_MAX_BATCH
    events: EventOptions = field(default_factory=EventOptions)

    @property
    def source_list(self) -> list[str]:
        """The sources of the run, in order."""
        return [str(s) for s in self.sources] or [str(self.source)]

    def check(self, categories: Sequence[str] = VOC_CLASSES) -> None:
        """Raise ``ValueError`` for settings that cannot work together (``SourceError``: a bad background)."""
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing: expected one of {', '.join(PAIRINGS)}, got {self.pairing!r}")
        if self.display not in DISPLAYS:
            raise ValueError(f"display: expected one of {', '.join(DISPLAYS)}, got {self.display!r}")
        if self.view not in VIEWS:
            raise ValueError(f"view: expected one of {', '.join(VIEWS)}, got {self.view!r}")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration: expected > 0 seconds, got {self.duration}")
        if self.reconnect < 0:
            raise ValueError(f"reconnect: expected >= 0, got {self.reconnect}")
        if self.rtsp_transport not in RTSP_TRANSPORTS:
            known = ", ".join(RTSP_TRANSPORTS)
            raise ValueError(f"rtsp transport: expected one of {known}, got {self.rtsp_transport!r}")
        if self.read_timeout <= 0:
            raise ValueError(f"read timeout: expected > 0 seconds, got {self.read_timeout}")
        if self.max_frame_pixels < 1:
            raise ValueError(f"max frame pixels: expected >= 1, got {self.max_frame_pixels}")
        if self.max_batch < 1:
            raise ValueError(f"max batch: expected >= 1, got {self.max_batch}")
        if len(self.source_list) > 1 and self.record is not None and not record_is_folder(self.record):
            raise ValueError(f"--record with several sources takes a folder (DIR/), got {self.record}")
        self.analysis.check()
        self.effect.check(categories)

    def open_source(self, spec: str, interrupt: threading.Event | None = None) -> CaptureSource | VideoFileSource:
        """The reader of source ``spec`` with these settings, not opened yet (see
        :func:`~live_seg.media.camera.open_live_source`; ``interrupt``: the run's stop)."""
        return open_live_source(
            spec,
            realtime=self.realtime,
            reconnect=self.reconnect,
            rtsp_transport=self.rtsp_transport,
            read_timeout_s=self.read_timeout,
            max_frame_pixels=self.max_frame_pixels,
            interrupt=interrupt,
        )

    def recording(self, name: str) -> Path | None:
        """Where source ``name`` is recorded: ``record`` itself, or ``record/NAME.mp4`` for a folder."""
        if self.record is None:
            return None
        return Path(self.record) / f"{name}.mp4" if record_is_folder(self.record) else Path(self.record)


def record_is_folder(record: str | os.PathLike[str]) -> bool:
    """``--record DIR/`` (a trailing slash, or an existing folder) rather than a file."""
    text = os.fspath(record)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()
