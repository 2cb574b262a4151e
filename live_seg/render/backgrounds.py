"""What the ``replace`` effect puts behind the chosen pixels: a colour, a picture or a looped video.

Every background hands out BGR ``uint8`` frames of the size asked for. A picture is scaled to
cover the frame (aspect kept, centre cropped) once per frame size; a video is decoded with PyAV
one frame per call, scaled and converted to BGR in one swscale pass, and starts again at its end.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import ImageColor

from ..base.errors import SourceError, one_line
from ..base.frames import Frame

log = logging.getLogger(__name__)

DEFAULT_BACKGROUND = "#00ff00"
"""Chroma green: what ``replace`` uses when no background is given."""


def parse_color(text: str) -> tuple[int, int, int] | None:
    """A colour as BGR, or ``None`` when ``text`` is not one.

    Args:
        text: ``#rrggbb``, ``#rgb``, a CSS colour name (``green``, ``black``) or a CSS
            function such as ``rgb(0, 255, 0)`` (Pillow's colour parser).

    Returns:
        ``(b, g, r)`` ints in 0..255, or ``None``.
    """
    try:
        rgb = ImageColor.getrgb(text.strip())
    except ValueError:
        return None
    return int(rgb[2]), int(rgb[1]), int(rgb[0])


def cover(image: Frame, height: int, width: int) -> Frame:
    """Scale ``image`` to cover ``height`` x ``width`` (aspect kept) and crop the centre.

    Args:
        image: ``(h, w, 3)`` uint8 BGR.

    Returns:
        ``(height, width, 3)`` uint8 BGR, contiguous.
    """
    h, w = image.shape[:2]
    (sw, sh), crop = _cover_geometry(h, w, height, width)
    interp = cv2.INTER_AREA if sw < w or sh < h else cv2.INTER_LINEAR  # shrinking, or growing
    scaled = cv2.resize(image, (sw, sh), interpolation=interp) if (sw, sh) != (w, h) else image
    return np.ascontiguousarray(scaled[crop])


def _cover_geometry(h: int, w: int, height: int, width: int) -> tuple[tuple[int, int], tuple[slice, slice]]:
    """How an ``h`` x ``w`` picture covers ``height`` x ``width``: its scaled ``(width, height)``
    (aspect kept, at least the target's) and the centre crop of the scaled picture."""
    scale = max(height / h, width / w)
    sw, sh = max(width, round(w * scale)), max(height, round(h * scale))
    y0, x0 = (sh - height) // 2, (sw - width) // 2
    return (sw, sh), (slice(y0, y0 + height), slice(x0, x0 + width))


class ColorBackground:
    """A solid colour.

    Args:
        bgr: the colour, BGR order.
    """

    def __init__(self, bgr: tuple[int, int, int]) -> None:
        self.bgr = bgr
        self._frame: Frame | None = None

    def frame(self, height: int, width: int) -> Frame:
        """``(height, width, 3)`` uint8 BGR filled with the colour (kept between calls)."""
        if self._frame is None or self._frame.shape[:2] != (height, width):
            self._frame = np.empty((height, width, 3), np.uint8)
            self._frame[:] = self.bgr
        return self._frame

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> str:
        b, g, r = self.bgr
        return f"#{r:02x}{g:02x}{b:02x}"


class PictureBackground:
    """A still picture scaled to cover the frame (cached per frame size).

    Args:
        image: ``(h, w, 3)`` uint8 BGR.
        name: shown in logs.
    """

    def __init__(self, image: Frame, name: str = "picture") -> None:
        self.image = image
        self.name = name
        self._frame: Frame | None = None

    def frame(self, height: int, width: int) -> Frame:
        """``(height, width, 3)`` uint8 BGR: the picture covering the frame."""
        if self._frame is None or self._frame.shape[:2] != (height, width):
            self._frame = cover(self.image, height, width)
        return self._frame

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> str:
        return self.name


class VideoBackground:
    """A video file, one decoded frame per call, looped at its end.

    Args:
        path: a file PyAV can decode (its first video stream is used).

    Raises:
        SourceError: the file cannot be opened or holds no decodable frame.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._open()
        try:
            first = next(self._frames)
        except (StopIteration, av.error.FFmpegError) as exc:
            self.close()
            raise SourceError(f"background video {self.path} holds no decodable frame; give another file") from exc
        self._pending: av.VideoFrame | None = first
        self.loops = 0

    def _open(self) -> None:
        self.close()
        try:
            self._container = av.open(str(self.path), metadata_errors="ignore")
            stream = self._container.streams.video[0]
        except (av.error.FFmpegError, OSError, IndexError) as exc:
            self.close()
            raise SourceError(f"cannot read background video {self.path}: {one_line(exc)}") from exc
        self._frames = self._container.decode(stream)

    def _next(self) -> av.VideoFrame:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        for attempt in range(2):
            try:
                return next(self._frames)
            except (StopIteration, av.error.FFmpegError):
                if attempt:
                    break
                self.loops += 1
                self._open()  # reopening is simpler and more robust than seeking every container to 0
        raise SourceError(f"background video {self.path} stopped decoding; give another file")

    def frame(self, height: int, width: int) -> Frame:
        """The next frame of the video, ``(height, width, 3)`` uint8 BGR, covering the frame."""
        frame = self._next()
        (sw, sh), crop = _cover_geometry(frame.height, frame.width, height, width)
        return frame.to_ndarray(format="bgr24", width=sw, height=sh)[crop]

    def close(self) -> None:
        """Close the file (safe to call twice)."""
        if self._container is not None:
            self._container.close()
            self._container = None
            self._frames = None

    def describe(self) -> str:
        return str(self.path)


@lru_cache(maxsize=4)
def checkerboard(height: int, width: int, square: int = 16) -> Frame:
    """``(height, width, 3)`` uint8 light/dark grey squares: what shows through transparency.

    Made once per size (15 ms at 720p, against 8 ms for the blend that uses it) and read-only.
    """
    yy, xx = np.indices((height, width))
    light = ((yy // square + xx // square) % 2).astype(bool)
    board = cv2.cvtColor(np.where(light, 204, 153).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    board.flags.writeable = False
    return board


def flatten(bgra: np.ndarray) -> Frame:
    """A BGRA image over a checkerboard, for a preview that cannot show transparency.

    Args:
        bgra: ``(H, W, 4)`` uint8, straight (not premultiplied) alpha.

    Returns:
        ``(H, W, 3)`` uint8 BGR.
    """
    h, w = bgra.shape[:2]
    a = bgra[..., 3].astype(np.float32) / 255.0
    return cv2.blendLinear(np.ascontiguousarray(bgra[..., :3]), checkerboard(h, w), a, 1.0 - a)


Background = ColorBackground | PictureBackground | VideoBackground


def load_background(spec: str | None) -> Background:
    """The background named by ``spec``: a colour, a picture or a video (checked now, before any work).

    An existing file wins over a colour name. A file OpenCV reads as an image is a picture;
    anything else is tried as a video.

    Args:
        spec: ``#00ff00``, a colour name, or a path; ``None`` for :data:`DEFAULT_BACKGROUND`.

    Raises:
        SourceError: neither a colour nor a readable picture or video (one line naming the fix).
    """
    spec = DEFAULT_BACKGROUND if spec is None else spec
    path = Path(spec).expanduser()
    if not path.is_file():
        bgr = parse_color(spec)
        if bgr is not None:
            return ColorBackground(bgr)
        raise SourceError(
            f"background {spec!r} is neither a colour (#00ff00, green) nor a file; give a colour, a picture or a video"
        )
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is not None:
        return PictureBackground(image, str(path))
    try:
        return VideoBackground(path)
    except SourceError as exc:
        raise SourceError(f"cannot read background {path} as a picture or a video; give a PNG/JPEG or a video") from exc
