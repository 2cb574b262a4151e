"""Live sources: cameras and network streams read with OpenCV.

A live source (:class:`CaptureSource`) delivers frames as the device or the stream sends
them, detects a stream that stops sending without closing (a read timeout) and reconnects when
it is lost; the live run's capture thread hands its frames to a newest-frame slot
(:mod:`live_seg.pipeline.multiplex`). :func:`open_live_source` tells a camera, a stream URL and
a video file apart.

RTSP is read over TCP by default (``rtsp_transport="udp"`` for UDP): OpenCV's FFmpeg backend
takes its options from ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` when it opens a stream, so the variable
is set around each open (under a lock) unless the user set it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator

import cv2

from ..base.errors import SourceError
from ..base.frames import FramePacket
from ..base.registry import DEFAULT_READ_TIMEOUT_S, DEFAULT_RECONNECT, RTSP_TRANSPORTS
from .file_source import SourceInfo, VideoFileSource

log = logging.getLogger(__name__)

STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"})
"""URL schemes opened as network streams (anything else with ``://`` is refused)."""

CAPTURE_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ENV_LOCK = threading.Lock()

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Wait before reconnect attempt 1, 2, …; later attempts wait the last value."""


def backoff_s(attempt: int) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (1-based): 0.5, 1, 2, 4, 8, 8, …"""
    return BACKOFF_S[min(attempt, len(BACKOFF_S)) - 1]


def parse_source(spec: str | int) -> int | str:
    """Tell what ``--source`` names: a camera index, a stream URL or a file path.

    Args:
        spec: ``"0"``, ``"1"``, … (camera index), ``/dev/video0`` (camera device, V4L2),
            ``rtsp://…`` / ``http://…`` (stream URL), or a video file's path.

    Returns:
        The camera index as an ``int``, or the device / URL / path as given.

    Raises:
        SourceError: a URL whose scheme is not a stream scheme (e.g. ``ftp://``).
    """
    if isinstance(spec, int):
        return spec
    text = spec.strip()
    if text.isdigit() and len(text) <= 3:
        return int(text)
    if is_device(text):
        return text
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in STREAM_SCHEMES:
            known = ", ".join(sorted(STREAM_SCHEMES))
            raise SourceError(f"cannot open {redact_url(text)}: unsupported scheme {scheme!r}; use one of {known}")
    return text


def is_device(spec: str | int) -> bool:
    """A camera device path such as ``/dev/video0`` (opened with OpenCV's V4L2 backend)."""
    return isinstance(spec, str) and spec.startswith("/dev/")


def redact_url(url: str) -> str:
    """``rtsp://user:secret@host/x`` → ``rtsp://***@host/x`` (for logs and messages)."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    netloc, sep, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return f"{scheme}://{netloc}{sep}{tail}"


def _quiet_ffmpeg_logs() -> None:
    """Keep FFmpeg's own messages (connection refused, stream ended…) off stderr unless
    debugging: the source logs what happened in one line of its own. Read by OpenCV once,
    when its FFmpeg backend first loads; a value the user set is kept."""
    if not log.isEnabledFor(logging.DEBUG):
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


class CaptureSource:
    """A camera or a network stream read with OpenCV, reconnecting when it is lost.

    Frames come as fast as the device or the stream delivers them, stamped with the
    ``time.perf_counter()`` at which they were read (``pts`` is ``None``: live sources have
    no file timestamps). When a read fails, the source is reopened up to ``reconnect`` times
    with a growing wait (:data:`BACKOFF_S`), each attempt logged; then iteration raises
    :class:`SourceError`.

    Args:
        source: camera index or device path (``/dev/video0``), or a stream URL (RTSP,
            HTTP/MJPEG, …).
        reconnect: reopen attempts after the source is lost (0: give up at once).
        open_timeout_s: how long opening a stream may take.
        read_timeout_s: how long one read of a stream may wait for data.
        retry_open: a stream that cannot be opened at all is retried like a lost one (up to
            ``reconnect`` times, each attempt logged) before :meth:`open` gives up. Cameras
            are not retried: a missing index fails at once.
        rtsp_transport: ``"tcp"`` or ``"udp"``, for ``rtsp://`` URLs.

    Attributes:
        info: set by :meth:`open`; ``live`` is True.
        state: ``"connecting"`` until it delivered its first frame, then ``"live"``, and
            ``"reconnecting"`` while it is lost and tried again.
        reconnects: successful reconnections so far.
        failed_attempts: reconnect attempts that failed so far (also those to open it at first).
    """

    def __init__(
        self,
        source: int | str,
        reconnect: int = DEFAULT_RECONNECT,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        retry_open: bool = False,
        rtsp_transport: str = "tcp",
    ) -> None:
        if reconnect < 0:
            raise ValueError(f"reconnect: expected >= 0, got {reconnect}")
        if rtsp_transport not in RTSP_TRANSPORTS:
            raise ValueError(f"rtsp_transport: expected one of {', '.join(RTSP_TRANSPORTS)}, got {rtsp_transport!r}")
        self.rtsp_transport = rtsp_transport
        self.state = "connecting"
        self.source = source
        self.camera = isinstance(source, int) or is_device(source)
        self.name = f"camera {source}" if self.camera else redact_url(source)
        self.reconnect = reconnect
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.retry_open = retry_open
        self.info: SourceInfo | None = None
        self.reconnects = 0
        self.failed_attempts = 0
        self._cap: cv2.VideoCapture | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._iterating = False

    def _new_capture(self) -> cv2.VideoCapture | None:
        """A ``VideoCapture`` that delivered one frame, or ``None``."""
        _quiet_ffmpeg_logs()
        previous = cv2.utils.logging.getLogLevel()
        if not log.isEnabledFor(logging.DEBUG):
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # the error says it in one line
        try:
            if self.camera:
                cap = (
                    cv2.VideoCapture(self.source, cv2.CAP_V4L2)
                    if is_device(self.source)
                    else cv2.VideoCapture(self.source)
                )
                if cap.isOpened():
                    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of old ones
            else:
                params = [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    int(self.open_timeout_s * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    int(self.read_timeout_s * 1000),
                ]
                cap = self._open_stream(params)
        except cv2.error as exc:
            log.debug("opening %s failed: %s", self.name, exc)
            return None
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if not cap.isOpened() or not cap.grab():
            cap.release()
            return None
        return cap

    def _open_stream(self, params: list[int]) -> cv2.VideoCapture:
        """Open a stream URL with OpenCV's FFmpeg backend (RTSP: over the transport asked for)."""
        assert isinstance(self.source, str)
        if not self.source.lower().startswith(("rtsp://", "rtsps://")) or CAPTURE_OPTIONS_ENV in os.environ:
            return cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, params)
        with _ENV_LOCK:  # the variable is read while the stream opens; other opens wait
            os.environ[CAPTURE_OPTIONS_ENV] = f"rtsp_transport;{self.rtsp_transport}"
            try:
                return cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, params)
            finally:
                del os.environ[CAPTURE_OPTIONS_ENV]

    def open(self) -> CaptureSource:
        """Open the camera or stream and read one frame to learn its size.

        Raises:
            SourceError: it cannot be opened or delivers no frame.
        """
        cap = self._new_capture()
        tries = ""
        if cap is None and self.retry_open and not self.camera:
            for attempt in range(1, self.reconnect + 1):
                delay = backoff_s(attempt)
                log.warning("could not open %s: attempt %d/%d in %.1f s", self.name, attempt, self.reconnect, delay)
                if self._stop.wait(delay) or (cap := self._new_capture()) is not None:
                    break
                self.failed_attempts += 1
            tries = f" after {self.reconnect + 1} attempts"
        if cap is None:
            if self.camera:
                other = self.source + 1 if isinstance(self.source, int) else "0"
                raise SourceError(
                    f"could not open camera {self.source} (or it sent no frame); check that it is connected and "
                    f"not in use by another program, or try --source {other}, a stream URL or a video file"
                )
            raise SourceError(
                f"could not open {self.name}{tries} (or it sent no frame); check the address and that the stream "
                "is running, e.g. open it in a media player"
            )
        ok, image = cap.retrieve()
        if not ok or image is None:
            cap.release()
            raise SourceError(f"{self.name} opened but its first frame could not be decoded")
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = float(fps) if 1.0 <= fps <= 240.0 else 0.0
        h, w = image.shape[:2]
        self.info = SourceInfo(name=self.name, width=w, height=h, fps=fps, frames=None, time_base=None, live=True)
        self._cap = cap
        self.state = "live"
        log.info("opened %s: %dx%d, %s", self.name, w, h, f"{fps:.3g} fps (nominal)" if fps else "rate unknown")
        return self

    def stop(self) -> None:
        """Ask a running iteration to end after the current read (thread-safe)."""
        self._stop.set()

    def close(self) -> None:
        """Release the device. Safe to call twice; a running iteration releases it when it ends."""
        self._stop.set()
        with self._lock:
            if self._iterating:
                return
            cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def __enter__(self) -> CaptureSource:
        return self.open() if self._cap is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reopen(self) -> bool:
        """Reconnect after a failed read; False when stopped meanwhile.

        Raises:
            SourceError: every attempt failed.
        """
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self.state = "reconnecting"
        log.warning("lost %s (no frame)%s", self.name, "" if self.reconnect else "; reconnecting is off")
        for attempt in range(1, self.reconnect + 1):
            delay = backoff_s(attempt)
            log.warning("reconnect attempt %d/%d to %s in %.1f s", attempt, self.reconnect, self.name, delay)
            if self._stop.wait(delay):
                return False
            cap = self._new_capture()
            if cap is not None:
                self._cap = cap
                self.reconnects += 1
                self.state = "live"
                log.warning("reconnected to %s (attempt %d/%d)", self.name, attempt, self.reconnect)
                return True
            self.failed_attempts += 1
            log.warning("reconnect attempt %d/%d failed", attempt, self.reconnect)
            if self._stop.is_set():
                return False
        if self.reconnect == 0:
            raise SourceError(f"lost {self.name} (reconnecting is off: --reconnect 0)")
        raise SourceError(
            f"lost {self.name} and {self.reconnect} reconnect attempt(s) failed; check that it is running "
            "(or raise --reconnect)"
        )

    def __iter__(self) -> Iterator[FramePacket]:
        if self._cap is None:
            self.open()
        with self._lock:
            self._iterating = True
        index = 0
        try:
            while not self._stop.is_set():
                cap = self._cap
                assert cap is not None
                ok = cap.grab()
                t_capture = time.perf_counter()
                image = None
                if ok:
                    ok, image = cap.retrieve()
                if not ok or image is None:
                    if self._stop.is_set() or not self._reopen():
                        break
                    continue
                decode_s = time.perf_counter() - t_capture
                yield FramePacket(index=index, pts=None, t_capture=t_capture, image=image, decode_s=decode_s)
                index += 1
        finally:
            with self._lock:
                self._iterating = False
                cap, self._cap = (self._cap, None) if self._stop.is_set() else (None, self._cap)
            if cap is not None:
                cap.release()


def open_live_source(
    spec: str | int,
    *,
    realtime: bool = False,
    reconnect: int = DEFAULT_RECONNECT,
    rtsp_transport: str = "tcp",
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
) -> CaptureSource | VideoFileSource:
    """The source ``--source`` names, not opened yet (use it as a context manager).

    Args:
        spec: camera index, stream URL or video file (see :func:`parse_source`).
        realtime: for a file: deliver frames at their timestamps, like a camera.
        reconnect: for a camera or stream: reopen attempts after it is lost.
        rtsp_transport: ``"tcp"`` or ``"udp"`` for an RTSP URL.
        read_timeout_s: a stream that sends nothing for this long is lost (and reconnected).

    Raises:
        SourceError: a URL with an unsupported scheme.
    """
    what = parse_source(spec)
    if isinstance(what, str) and "://" not in what and not is_device(what):
        return VideoFileSource(what, realtime=realtime)
    return CaptureSource(
        what, reconnect=reconnect, read_timeout_s=read_timeout_s, retry_open=True, rtsp_transport=rtsp_transport
    )
