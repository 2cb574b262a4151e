"""Frame sources: video files (PyAV) and, in later modules, cameras and streams.

A source is a context manager and an iterator of :class:`~live_seg.frames.FramePacket`.
File sources never drop a frame and give each its exact presentation time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from .errors import SourceError
from .frames import FramePacket

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a source knows about itself before the first frame.

    Attributes:
        name: the path or URL as given.
        width, height: frame size in pixels after rotation (what frames will have).
        fps: nominal frame rate (0.0 when unknown).
        frames: frame count from the container, or ``None`` when unknown.
        duration: seconds, or ``None`` when unknown.
        time_base: the video stream's time base (``None`` for live sources).
        live: True for cameras and streams (newest-frame capture).
        has_audio: the file has an audio stream.
        rotation: degrees counter-clockwise the frames were rotated to be upright.
    """

    name: str
    width: int
    height: int
    fps: float
    frames: int | None
    duration: float | None
    time_base: Fraction | None
    live: bool = False
    has_audio: bool = False
    rotation: int = 0


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate a decoded image by ``rotation`` degrees counter-clockwise (multiples of 90)."""
    turns = (rotation // 90) % 4
    if turns == 1:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    if turns == 2:
        return cv2.rotate(image, cv2.ROTATE_180)
    if turns == 3:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    return image


class VideoFileSource:
    """Decode a video file with PyAV, frame by frame, in order, with exact timestamps.

    Args:
        path: the video file.
        realtime: pace frames at their timestamps (as a camera would deliver them).

    Raises:
        SourceError: on ``open()`` when the file is missing, empty, not a video, or has no
            decodable video stream.
    """

    def __init__(self, path: str | os.PathLike[str], realtime: bool = False) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.info: SourceInfo | None = None
        self.skipped_packets = 0
        self.truncated = False
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._stop = threading.Event()
        self._frames: Iterator[av.VideoFrame] | None = None
        self._first: av.VideoFrame | None = None

    def open(self) -> VideoFileSource:
        """Open the file and read its stream info."""
        path = self.path
        if not path.exists():
            raise SourceError(f"input not found: {path}")
        if path.is_dir():
            raise SourceError(f"input is a folder, not a video file: {path}")
        if path.stat().st_size == 0:
            raise SourceError(f"input is empty (0 bytes): {path}")
        try:
            container = av.open(str(path), mode="r", metadata_errors="ignore")
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read {path} as a video: {_ffmpeg_reason(exc)}") from exc
        if not container.streams.video:
            container.close()
            raise SourceError(f"no video stream in {path} (audio or data only)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        if not ctx.width or not ctx.height:
            container.close()
            raise SourceError(f"cannot read {path}: the video stream has no frame size (broken or cut short)")
        self._container, self._stream = container, stream
        self._frames = self._decoded()
        try:
            self._first = next(self._frames, None)
        except av.error.FFmpegError as exc:
            self.close()
            raise SourceError(f"cannot decode {path}: {_ffmpeg_reason(exc)}") from exc
        if self._first is None:
            self.close()
            raise SourceError(f"no decodable video frame in {path} (damaged or cut short before its first frame)")
        rotation = int(round(self._first.rotation or 0)) % 360
        w, h = (ctx.height, ctx.width) if (rotation // 90) % 2 else (ctx.width, ctx.height)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        self.info = SourceInfo(
            name=str(path),
            width=w,
            height=h,
            fps=float(rate) if rate else 0.0,
            frames=stream.frames or None,
            duration=duration,
            time_base=stream.time_base,
            has_audio=bool(container.streams.audio),
            rotation=rotation,
        )
        log.info("opened %s: %dx%d, %.3g fps, %s frames", path, w, h, self.info.fps, self.info.frames or "?")
        return self

    def close(self) -> None:
        """Release the file. Safe to call twice."""
        self._stop.set()
        if self._container is not None:
            self._container.close()
            self._container = None

    def stop(self) -> None:
        """Ask a running iteration to end after the current frame (thread-safe)."""
        self._stop.set()

    def __enter__(self) -> VideoFileSource:
        return self.open() if self._container is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """Decoded frames; corrupt packets are skipped and counted, a cut-short file ends early."""
        assert self._container is not None and self._stream is not None
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (av.error.FFmpegError, OSError) as exc:
                self.truncated = True
                log.warning("%s: stopped reading at a damaged part of the file (%s)", self.path, _ffmpeg_reason(exc))
                yield from self._flush()
                return
            try:
                yield from packet.decode()
            except av.error.FFmpegError as exc:
                self.skipped_packets += 1
                log.debug("skipped a corrupt packet at %s: %s", packet.pts, _ffmpeg_reason(exc))

    def _flush(self) -> Iterator[av.VideoFrame]:
        assert self._stream is not None
        try:
            yield from self._stream.codec_context.decode(None)
        except av.error.FFmpegError:
            return

    def __iter__(self) -> Iterator[FramePacket]:
        if self._container is None:
            self.open()
        assert self.info is not None
        rotation = self.info.rotation
        t0 = time.perf_counter()
        start: float | None = None
        index = 0
        assert self._frames is not None
        while not self._stop.is_set():
            t = time.perf_counter()
            if self._first is not None:
                frame, self._first = self._first, None
            else:
                frame = next(self._frames, None)
            if frame is None:
                break
            image = frame.to_ndarray(format="bgr24")
            if rotation:
                image = _upright(image, rotation)
            pts = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
            if pts is None:
                pts = index / self.info.fps if self.info.fps else None
            if start is None:
                start = pts or 0.0
            rel = None if pts is None else pts - start
            now = time.perf_counter()
            if self.realtime and rel is not None:
                wait = t0 + rel - now
                if wait > 0 and self._stop.wait(wait):
                    break
                now = time.perf_counter()
            yield FramePacket(index=index, pts=rel, t_capture=now, image=image, decode_s=now - t)
            index += 1
        if self.skipped_packets:
            log.warning("%s: skipped %d corrupt packet(s)", self.path, self.skipped_packets)

    @property
    def start_time(self) -> float:
        """Seconds of the first video timestamp in the file (what output times are relative to)."""
        s = self._stream
        if s is not None and s.start_time is not None and s.time_base:
            return float(s.start_time * s.time_base)
        return 0.0


def _ffmpeg_reason(exc: BaseException) -> str:
    """A short, single-line reason from an FFmpeg/OS error."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())
