"""File sources: video files decoded with PyAV, and what every source tells about itself.

A source is a context manager and an iterator of :class:`~live_seg.base.frames.FramePacket`.
File sources never drop a frame and give each its exact presentation time; cameras and
network streams are in :mod:`live_seg.media.camera`.
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

from ..base.errors import SourceError, one_line
from ..base.frames import FramePacket

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a source knows about itself before the first frame.

    Attributes:
        name: the path or URL as given.
        width, height: frame size in pixels after rotation (what frames will have).
        fps: nominal frame rate (0.0 when unknown).
        frames: frame count from the container, or ``None`` when unknown.
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
        max_frames: stop after this many frames (``None``: the whole file).
        max_frame_pixels: refuse a file whose frames are bigger (width x height), as a live source
            (``None``: any size).

    Raises:
        SourceError: on ``open()`` when the file is missing, empty, not a video, or has no
            decodable video stream.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        realtime: bool = False,
        max_frames: int | None = None,
        max_frame_pixels: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.max_frames = max_frames
        self.max_frame_pixels = max_frame_pixels
        self.info: SourceInfo | None = None
        self.skipped_packets = 0
        self.truncated = False
        self.listed_frames: int | None = None
        self.resized_frames = 0
        self._packets = 0
        self._media_end = 0.0
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
            raise SourceError(f"cannot read {path} as a video: {one_line(exc)}") from exc
        # A cover picture (an MP3's or M4A's artwork) is a one-frame "video" stream: not a video.
        videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not videos:
            cover = ", besides a cover picture" if container.streams.video else ""
            container.close()
            raise SourceError(f"no video stream in {path} (audio or data only{cover})")
        stream = videos[0]
        self.listed_frames = stream.frames or None
        # Cut short after its index (an MP4 with "moov" first): decode on one thread, because
        # frame threading loses the last decodable frames when the data ends mid-packet.
        self.truncated = _index_past_end(stream, path.stat().st_size)
        stream.thread_type = "SLICE" if self.truncated else "AUTO"
        ctx = stream.codec_context
        if not ctx.width or not ctx.height:
            container.close()
            raise SourceError(f"cannot read {path}: the video stream has no frame size (broken or cut short)")
        if self.max_frame_pixels is not None and ctx.width * ctx.height > self.max_frame_pixels:
            container.close()
            raise SourceError(
                f"{path} has {ctx.width}x{ctx.height} frames ({ctx.width * ctx.height / 1e6:.1f} megapixels), over the "
                f"limit of {self.max_frame_pixels / 1e6:.1f} megapixels; raise --max-frame-pixels"
            )
        self._container, self._stream = container, stream
        self._frames = self._decoded()
        try:
            self._first = next(self._frames, None)
        except av.error.FFmpegError as exc:
            self.close()
            raise SourceError(f"cannot decode {path}: {one_line(exc)}") from exc
        if self._first is None:
            self.close()
            raise SourceError(f"no decodable video frame in {path} (damaged or cut short before its first frame)")
        rotation = round(self._first.rotation or 0) % 360
        fw, fh = self._first.width, self._first.height
        w, h = (fh, fw) if (rotation // 90) % 2 else (fw, fh)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.info = SourceInfo(
            name=str(path),
            width=w,
            height=h,
            fps=float(rate) if rate else 0.0,
            frames=stream.frames or None,
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
                self.truncated = self.truncated or self._ended_early()
                return
            except (av.error.FFmpegError, OSError) as exc:
                self.truncated = True
                log.warning("%s: stopped reading at a damaged part of the file (%s)", self.path, one_line(exc))
                yield from self._flush()
                return
            if packet.size:
                self._packets += 1
                if packet.pts is not None and packet.time_base:
                    end = (packet.pts + (packet.duration or 0)) * packet.time_base
                    self._media_end = max(self._media_end, float(end))
            try:
                yield from packet.decode()
            except av.error.FFmpegError as exc:
                self.skipped_packets += 1
                log.debug("skipped a corrupt packet at %s: %s", packet.pts, one_line(exc))

    def _ended_early(self) -> bool:
        """The data ended cleanly, but before the frames the container announced.

        Checked where the announcement is trustworthy: the frame count of a non-MP4 header
        (AVI), or the duration of a file holding nothing but this video stream (MKV, WebM).
        MP4/MOV are checked up front from their index (edit lists make their counts differ).
        """
        container, stream = self._container, self._stream
        assert container is not None and stream is not None
        if "mp4" in container.format.name:
            return False
        if stream.frames and self._packets < stream.frames:
            return True
        if container.duration and len(container.streams) == 1 and self._packets:
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            missing = container.duration / av.time_base - (self._media_end - start)
            return missing > max(0.5, 3 / rate)
        return False

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
        size = (self.info.width, self.info.height)
        assert self._frames is not None
        while not self._stop.is_set() and (self.max_frames is None or index < self.max_frames):
            t = time.perf_counter()
            if self._first is not None:
                frame, self._first = self._first, None
            else:
                frame = next(self._frames, None)
            if frame is None:
                if self.truncated:
                    of = f" of the {self.listed_frames} its header lists" if self.listed_frames else ""
                    log.warning("%s is cut short: %d frame(s)%s could be decoded", self.path, index, of)
                break
            image = frame.to_ndarray(format="bgr24")
            if rotation:
                image = _upright(image, rotation)
            if (image.shape[1], image.shape[0]) != size:  # the stream changed size mid-way
                if not self.resized_frames:
                    was, now = f"{size[0]}x{size[1]}", f"{image.shape[1]}x{image.shape[0]}"
                    log.warning(
                        "%s: the frame size changes from %s to %s at frame %d; scaling to %s",
                        self.path,
                        was,
                        now,
                        index,
                        was,
                    )
                self.resized_frames += 1
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
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


def _index_past_end(stream: av.video.stream.VideoStream, file_size: int) -> bool:
    """Whether the container's index (MP4/MOV sample table) lists data beyond the file's end."""
    entries = getattr(stream, "index_entries", None) or ()
    return any(entry.pos + entry.size > file_size for entry in entries if entry.pos >= 0)
