"""Where the live view goes, each behind :class:`~live_seg.pipeline.live_run.ViewOutput`: the window,
the browser page and the recording; and the grid that puts several sources' views side by side.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

import cv2
import numpy as np

from ...base.frames import Frame
from ...base.options import EncodeOptions
from ...media.web_security import WebPolicy, resolve_token
from ...media.webview import PreviewServer
from ...media.window import PreviewWindow
from ...media.writer import VideoWriter, check_output_path
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
VIEW_MAX_PIXELS = 3840 * 2160
"""A source's view (window, page, recording, snapshots) is painted at most this big: a bigger frame is
scaled down for it (its aspect kept), while the model and the mask files see it whole. This bounds what
painting, the page's JPEG and the recording's encoder hold per frame (a 7680x7680 camera: 8.3 instead
of 59 megapixels each)."""


class WindowOutput:
    """The view in an OpenCV window (main thread only)."""

    def __init__(self, window: PreviewWindow) -> None:
        self.window = window

    def show(self, view: Frame, t_capture: float) -> None:
        self.window.show(view)

    def keys(self) -> list[int]:
        key = self.window.poll(1)
        return [] if key is None else [key]

    @property
    def closed(self) -> bool:
        return self.window.closed_by_user

    def close(self) -> None:
        self.window.close()


class BrowserOutput:
    """The view on the browser page (:class:`~live_seg.media.webview.PreviewServer`)."""

    def __init__(self, server: PreviewServer) -> None:
        self.server = server

    def show(self, view: Frame, t_capture: float) -> None:
        self.server.publish(view)

    def keys(self) -> list[int]:
        return [ord(k) for k in self.server.keys()]

    @property
    def closed(self) -> bool:
        return False

    def close(self) -> None:
        self.server.close()


class Recorder:
    """The rendered view into an MP4 (the ``video`` job's writer), timed by capture wall-clock.

    Opened on the first frame at that frame's size; a view of another size (key m to
    side-by-side, or a source that came back at another resolution) is scaled into that size
    with black bars.
    """

    def __init__(self, path: str | os.PathLike[str], overwrite: bool, fps: float) -> None:
        self.path = check_output_path(path, overwrite)
        self.overwrite = overwrite
        self.fps = fps
        self.writer: VideoWriter | None = None
        self.t0 = 0.0
        self.frames = 0
        self.output: Path | None = None

    def show(self, view: Frame, t_capture: float) -> None:
        self.write(view, t_capture)

    def write(self, view: Frame, t_capture: float) -> None:
        if self.writer is None:
            h, w = view.shape[:2]
            self.writer = VideoWriter(self.path, w, h, fps=self.fps, overwrite=self.overwrite, encode=LIVE_ENCODE)
            self.t0 = t_capture
        size = (self.writer.width, self.writer.height)
        if (view.shape[1], view.shape[0]) != size:
            view = letterbox(view, size)
        self.writer.write(view, t_capture - self.t0)
        self.frames += 1

    def keys(self) -> list[int]:
        return []

    @property
    def closed(self) -> bool:
        return False

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
