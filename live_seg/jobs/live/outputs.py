"""Where the live view goes, each behind :class:`ViewOutput`: the window and the browser page; the
recording; and the grid that puts several sources' views side by side.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ...base.frames import Frame
from ...base.metrics import samples
from ...base.options import EncodeOptions
from ...media.web_security import WebPolicy, resolve_token
from ...media.webview import PreviewServer
from ...media.window import PreviewWindow
from ...media.writer import VideoWriter, check_output_path
from ...pipeline.sinks import SinkThread
from .options import LiveOptions

log = logging.getLogger(__name__)

DEFAULT_SERVE_PORT = 8090
"""The live browser view's port when ``--serve`` names none (the next free one if it is taken)."""

GRID_MAX = (1920, 1080)
"""The grid of several sources fits in this (width, height)."""
CELL_MAX = (640, 360)
"""A tile is at most this big in the grid."""
SELECTED = (0, 230, 255)
"""BGR colour of the frame around the selected tile."""
LIVE_ENCODE = EncodeOptions(tune="zerolatency")
"""The live recording: no look-ahead or B-frames, so libx264 holds no queue of frames (at 59 megapixels a
frame its default look-ahead alone took ~3 GB)."""
RECORD_QUEUE = 4
"""Views a recording's sink thread holds at most (4 of the biggest view: ~100 MB)."""
VIEW_MAX_PIXELS = 3840 * 2160
"""A source's view (window, page, recording, snapshots) is painted at most this big: a bigger frame is
scaled down for it (its aspect kept), while the model and the mask files see it whole. This bounds what
painting, the page's JPEG and the recording's encoder hold per frame (a 7680x7680 camera: 8.3 instead
of 59 megapixels each)."""


class ViewOutput(Protocol):
    """Where the live view goes: a window, a browser page.

    ``show`` gets each repainted view (``(H, W, 3)`` uint8 BGR) with the capture time of the frame it
    shows; ``keys`` returns the keys pressed there since the last call; ``closed`` says the user
    closed it (a window); ``close`` releases it (whatever happened; a second call does nothing).
    """

    def show(self, view: Frame, t_capture: float) -> None: ...

    def keys(self) -> list[int]: ...

    @property
    def closed(self) -> bool: ...

    def close(self) -> object: ...


@dataclasses.dataclass(frozen=True)
class Screen:
    """A :class:`ViewOutput` made of a display's own calls (:func:`window_output`, :func:`browser_output`).

    Attributes:
        wait_s: how long the view may sleep between rounds (a window must be polled often for its keys).
    """

    show: Callable[[Frame, float], None]
    keys: Callable[[], list[int]]
    close: Callable[[], object]
    is_closed: Callable[[], bool] = lambda: False
    wait_s: float = 0.05

    @property
    def closed(self) -> bool:
        return self.is_closed()


def window_output(window: PreviewWindow) -> Screen:
    """The view in an OpenCV window (main thread only)."""

    def keys() -> list[int]:
        key = window.poll(1)
        return [] if key is None else [key]

    return Screen(lambda view, _t: window.show(view), keys, window.close, lambda: window.closed_by_user, 0.01)


def browser_output(server: PreviewServer) -> Screen:
    """The view on the browser page (:class:`~live_seg.media.webview.PreviewServer`)."""
    return Screen(lambda view, _t: server.publish(view), lambda: [ord(k) for k in server.keys()], server.close)


class Recorder:
    """The rendered view into an MP4 (the ``video`` job's writer), timed by capture wall-clock.

    Opened on the first frame at that frame's size and at the source's rate (``source_fps()``, read
    then) or ``fps``; a view of another size (key m to side-by-side, or a source that came back at
    another resolution) is scaled into that size with black bars. Written on its own sink thread
    (:meth:`sink`), so encoding never holds up the view.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        overwrite: bool,
        fps: float,
        source_fps: Callable[[], float | None] | None = None,
    ) -> None:
        self.path = check_output_path(path, overwrite)
        self.overwrite = overwrite
        self.fps = fps
        self.source_fps = source_fps
        self.writer: VideoWriter | None = None
        self.t0 = 0.0
        self.frames = 0
        self.output: Path | None = None
        self.encode_s = samples()

    def sink(self, name: str) -> SinkThread[tuple[Frame, float]]:
        """Its sink thread (``live_seg-sink-record-NAME``): ``put((view, t_capture))`` never waits; a
        recording that falls behind drops its oldest frames (counted)."""
        return SinkThread(f"record-{name}", lambda item: self.write(*item), size=RECORD_QUEUE)

    def write(self, view: Frame, t_capture: float) -> None:
        t0 = time.perf_counter()
        if self.writer is None:
            h, w = view.shape[:2]
            fps = (self.source_fps() if self.source_fps is not None else None) or self.fps
            self.writer = VideoWriter(self.path, w, h, fps=fps, overwrite=self.overwrite, encode=LIVE_ENCODE)
            self.t0 = t_capture
        size = (self.writer.width, self.writer.height)
        if (view.shape[1], view.shape[0]) != size:
            view = letterbox(view, size)
        self.writer.write(view, t_capture - self.t0)
        self.frames += 1
        self.encode_s.append(time.perf_counter() - t0)

    def close(self) -> Path | None:
        """Finish the file (under its final name); its path, or ``None`` when nothing was recorded."""
        writer, self.writer = self.writer, None
        if writer is not None:
            self.output = writer.close()
        return self.output


def fit_view(image: Frame, max_pixels: int = VIEW_MAX_PIXELS) -> Frame:
    """``image`` itself, or scaled down (area averaging, even sides) to at most ``max_pixels``."""
    h, w = image.shape[:2]
    if w * h <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (w * h))
    size = (max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def letterbox(image: Frame, size: tuple[int, int]) -> Frame:
    """Scale ``image`` to fit ``size`` (width, height), centred on black."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    nw, nh = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def grid_shape(n: int) -> tuple[int, int, tuple[int, int]]:
    """``(columns, rows, (cell width, cell height))`` of a grid of ``n`` tiles (16:9 cells)."""
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cell_w = min(CELL_MAX[0], GRID_MAX[0] // cols, GRID_MAX[1] * 16 // (9 * rows))
    cell_w -= cell_w % 2
    return cols, rows, (cell_w, cell_w * 9 // 16 // 2 * 2)


def compose_grid(
    cells: list[Frame | None],
    selected: int | None,
    cache: dict[int, tuple[int, Frame]] | None = None,
    versions: list[int] | None = None,
) -> Frame:
    """The tiles' views in a grid, left to right then top to bottom, each letterboxed into its cell.

    Args:
        cells: one view per tile (``None``: black).
        selected: the tile framed in colour (``None``: all tiles are selected; nothing framed).
        cache: kept between calls with ``versions``: a tile whose version is the one of last time
            is not scaled again. (Not the view's identity: a renderer paints into the same buffer.)
        versions: one number per tile that changes whenever its view is repainted.

    Returns:
        ``(rows * cell_h, cols * cell_w, 3)`` uint8 BGR.
    """
    cols, rows, (cw, ch) = grid_shape(len(cells))
    grid = np.zeros((rows * ch, cols * cw, 3), np.uint8)
    cache = {} if cache is None or versions is None else cache
    for i, cell in enumerate(cells):
        y, x = (i // cols) * ch, (i % cols) * cw
        if cell is not None:
            version = versions[i] if versions is not None else 0
            if i not in cache or cache[i][0] != version:
                cache[i] = (version, letterbox(cell, (cw, ch)))
            grid[y : y + ch, x : x + cw] = cache[i][1]
        if i == selected:
            cv2.rectangle(grid, (x + 1, y + 1), (x + cw - 2, y + ch - 2), SELECTED, 3)
    return grid


def source_slug(spec: str) -> str:
    """A file-name-safe name for a source: ``camera0``, ``127.0.0.1-8554-cam1``, ``street`` (a file's stem)."""
    text = spec.strip()
    if text.isdigit():
        return f"camera{text}"
    if "://" in text:
        rest = text.split("://", 1)[1]
        rest = rest.rsplit("@", 1)[-1]  # never a password in a file name
        text = rest.split("?", 1)[0]
    elif text.startswith("/dev/"):
        text = text[len("/dev/") :]
    else:
        text = Path(text).stem
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return slug or "source"


def unique_names(specs: list[str]) -> list[str]:
    """:func:`source_slug` of each source, with ``-2``, ``-3``… appended where two would be the same."""
    names: list[str] = []
    for spec in specs:
        name, n = source_slug(spec), 1
        while (name if n == 1 else f"{name}-{n}") in names:
            n += 1
        names.append(name if n == 1 else f"{name}-{n}")
    return names


def serve_view(opts: LiveOptions, title: str, reason: str | None) -> PreviewServer:
    """Start the browser view of a live run (its per-run token from ``$LIVE_SEG_TOKEN`` or made now) and
    log its address without the token."""
    port = DEFAULT_SERVE_PORT if opts.port is None else opts.port
    policy = WebPolicy.for_bind(opts.host, resolve_token())
    server = PreviewServer(opts.host, port, f"live_seg: {title}", any_port_if_busy=opts.port is None, policy=policy)
    server.start()
    if reason:
        log.warning("no preview window (%s): serving the live view in the browser instead", reason)
    log.info("live view at %s", server.public_url)
    return server
