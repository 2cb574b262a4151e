"""Live sources: cameras and network streams read with OpenCV.

A live source (:class:`CaptureSource`, opened by :mod:`live_seg.media.opencv_open`) delivers
frames as the device or the stream sends them, detects a stream that stops sending without
closing (a read timeout) and reconnects when it is lost; the live run's capture thread hands its
frames to a newest-frame slot (:mod:`live_seg.pipeline.multiplex`). :func:`open_live_source`
tells a camera, a stream URL and a video file apart.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np

from ..base.errors import SourceError
from ..base.frames import FramePacket
from ..base.redact import redact_url
from ..base.registry import DEFAULT_MAX_FRAME_PIXELS, DEFAULT_READ_TIMEOUT_S, DEFAULT_RECONNECT, RTSP_TRANSPORTS
from .blocking import STEP_S, Abandoned, CallThread
from .file_source import SourceInfo, VideoFileSource
from .opencv_open import open_capture

log = logging.getLogger(__name__)

STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"})
"""URL schemes opened as network streams (anything else with ``://`` is refused)."""

CLOSE_WAIT_S = 1.0
"""How long :meth:`CaptureSource.close` waits for its release (after a read of at most a frame
interval); a read blocked longer than that is left to end by itself."""
_READERS = itertools.count()

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



class CaptureSource:
    """A camera or a network stream read with OpenCV, reconnecting when it is lost.

    Frames come as fast as the device or the stream delivers them, stamped with the
    ``time.perf_counter()`` at which they were read (``pts`` is ``None``: live sources have
    no file timestamps). When a read fails, the source is reopened up to ``reconnect`` times
    with a growing wait (:data:`BACKOFF_S`), each attempt logged; then iteration raises
    :class:`SourceError`.

    Every OpenCV call (open, read, release) runs on the source's own daemon thread
    (:class:`~live_seg.media.blocking.CallThread`, ``live_seg-read-N``): a stop (:meth:`stop`,
    :meth:`close` or ``interrupt``) ends opening, waiting and reading within
    :data:`~live_seg.media.blocking.STEP_S`, even while FFmpeg blocks on a silent stream for its
    whole open or read timeout; that call is abandoned and releases its capture when it returns.

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
        max_frame_pixels: a frame bigger than this (width x height), announced when the stream
            opens or delivered, is refused with :class:`SourceError` (the source is dropped).
        interrupt: a second stop (the run's): once set, the source stops as with :meth:`stop`.

    Attributes:
        info: set by :meth:`open`; ``live`` is True. ``None`` while it is not open (also after
            a stop that came while it was opening: :meth:`open` then returns without it).
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
        max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
        interrupt: threading.Event | None = None,
    ) -> None:
        if reconnect < 0:
            raise ValueError(f"reconnect: expected >= 0, got {reconnect}")
        if rtsp_transport not in RTSP_TRANSPORTS:
            raise ValueError(f"rtsp_transport: expected one of {', '.join(RTSP_TRANSPORTS)}, got {rtsp_transport!r}")
        if max_frame_pixels < 1:
            raise ValueError(f"max_frame_pixels: expected >= 1, got {max_frame_pixels}")
        self.rtsp_transport = rtsp_transport
        self.state = "connecting"
        self.source = source
        self.camera = isinstance(source, int) or is_device(source)
        self.name = f"camera {source}" if self.camera else redact_url(source)
        self.reconnect = reconnect
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.retry_open = retry_open
        self.max_frame_pixels = max_frame_pixels
        self.info: SourceInfo | None = None
        self.reconnects = 0
        self.failed_attempts = 0
        self._cap: cv2.VideoCapture | None = None
        self._stop = threading.Event()
        self._interrupt = interrupt
        self._io = CallThread(f"live_seg-read-{next(_READERS)}", self.stopped)
        self._size = (0, 0)

    def stopped(self) -> bool:
        """A stop was asked for (:meth:`stop`, :meth:`close` or the ``interrupt`` event)."""
        return self._stop.is_set() or (self._interrupt is not None and self._interrupt.is_set())

    def _wait(self, delay: float) -> bool:
        """Wait ``delay`` seconds; True (at once) when a stop comes meanwhile."""
        deadline = time.monotonic() + delay
        while not self.stopped():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._stop.wait(min(STEP_S, left))
        return True

    def check_size(self, width: int, height: int, what: str = "sends") -> None:
        """Refuse a frame size over :attr:`max_frame_pixels`.

        Raises:
            SourceError: one line that names the source, the size and the limit.
        """
        if width * height > self.max_frame_pixels:
            raise SourceError(
                f"{self.name} {what} {width}x{height} frames ({width * height / 1e6:.1f} megapixels), over the "
                f"limit of {self.max_frame_pixels / 1e6:.1f} megapixels; lower the camera's resolution or raise "
                "--max-frame-pixels"
            )

    def _new_capture(self) -> tuple[cv2.VideoCapture, np.ndarray] | None:
        """A capture that delivered one frame, and that frame; ``None`` when it cannot be opened.

        Raises:
            Abandoned: a stop came while it was opening.
            SourceError: the stream announces or sends frames over the size limit.
        """
        return self._io.call(self._open_capture, discard=lambda opened: opened and opened[0].release())

    def _open_capture(self) -> tuple[cv2.VideoCapture, np.ndarray] | None:
        """:meth:`_new_capture`'s work, on the source's thread."""
        cap = open_capture(self.source, self.camera, self.open_timeout_s, self.read_timeout_s, self.rtsp_transport)
        if cap is None:
            return None
        try:
            return self._first_frame(cap)
        except BaseException:
            cap.release()
            raise

    def _first_frame(self, cap: cv2.VideoCapture) -> tuple[cv2.VideoCapture, np.ndarray] | None:
        """``cap`` and its first frame, its size checked (the size the stream announces before a
        frame of it is decoded, then the frame's); ``None`` (released) when it sends none."""
        if cap.isOpened():
            width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            self.check_size(width, height, "announces")
        if not cap.isOpened() or not cap.grab():
            cap.release()
            return None
        ok, image = cap.retrieve()
        if not ok or image is None:
            raise SourceError(f"{self.name} opened but its first frame could not be decoded")
        self.check_size(image.shape[1], image.shape[0])
        return cap, image

    def open(self) -> CaptureSource:
        """Open the camera or stream and read one frame to learn its size.

        A stop while it opens (or waits to try again) ends this at once; it then returns with
        :attr:`info` ``None`` and iterating yields nothing.

        Raises:
            SourceError: it cannot be opened, delivers no frame, or its frames are over the size limit.
        """
        try:
            opened = self._new_capture()
            tries = ""
            if opened is None and self.retry_open and not self.camera:
                for attempt in range(1, self.reconnect + 1):
                    delay = backoff_s(attempt)
                    log.warning("could not open %s: attempt %d/%d in %.1f s", self.name, attempt, self.reconnect, delay)
                    if self._wait(delay) or (opened := self._new_capture()) is not None:
                        break
                    self.failed_attempts += 1
                tries = f" after {self.reconnect + 1} attempts"
        except Abandoned:
            opened = None
        if opened is None and self.stopped():
            log.info("stopped while opening %s", self.name)
            return self
        if opened is None:
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
        cap, image = opened
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = float(fps) if 1.0 <= fps <= 240.0 else 0.0
        h, w = image.shape[:2]
        self._size = (w, h)
        self.info = SourceInfo(name=self.name, width=w, height=h, fps=fps, frames=None, time_base=None, live=True)
        self._cap = cap
        self.state = "live"
        log.info("opened %s: %dx%d, %s", self.name, w, h, f"{fps:.3g} fps (nominal)" if fps else "rate unknown")
        return self

    def stop(self) -> None:
        """Ask a running iteration to end now (thread-safe); a read in progress is abandoned."""
        self._stop.set()

    def close(self) -> None:
        """Stop and release the device. Safe to call twice and while another thread iterates.

        The release runs on the source's thread after the read in progress; a read that FFmpeg
        still blocks on is left to end by itself (within the read timeout), not waited for.
        """
        self._stop.set()
        if not self._io.close(self._release, wait_s=CLOSE_WAIT_S):
            log.info(
                "%s: a read blocked in OpenCV is left to end by itself%s",
                self.name,
                "" if self.camera else f" (within --read-timeout, {self.read_timeout_s:g} s)",
            )

    def _release(self) -> None:
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
            SourceError: every attempt failed, or it came back with frames over the size limit.
        """
        self.state = "reconnecting"
        log.warning("lost %s (no frame)%s", self.name, "" if self.reconnect else "; reconnecting is off")
        try:
            self._io.call(self._release)
            for attempt in range(1, self.reconnect + 1):
                delay = backoff_s(attempt)
                log.warning("reconnect attempt %d/%d to %s in %.1f s", attempt, self.reconnect, self.name, delay)
                if self._wait(delay):
                    return False
                opened = self._new_capture()
                if opened is not None:
                    self._cap = opened[0]
                    self.reconnects += 1
                    self.state = "live"
                    log.warning("reconnected to %s (attempt %d/%d)", self.name, attempt, self.reconnect)
                    return True
                self.failed_attempts += 1
                log.warning("reconnect attempt %d/%d failed", attempt, self.reconnect)
        except Abandoned:
            return False
        if self.stopped():
            return False
        if self.reconnect == 0:
            raise SourceError(f"lost {self.name} (reconnecting is off: --reconnect 0)")
        raise SourceError(
            f"lost {self.name} and {self.reconnect} reconnect attempt(s) failed; check that it is running "
            "(or raise --reconnect)"
        )

    def _read(self) -> tuple[float, np.ndarray | None, float]:
        """One frame (on the source's thread): its capture time, the image (``None``: lost), decode seconds."""
        cap = self._cap
        ok = cap is not None and cap.grab()
        t_capture = time.perf_counter()
        image = None
        if ok:
            assert cap is not None
            ok, image = cap.retrieve()
        return t_capture, image if ok else None, time.perf_counter() - t_capture

    def __iter__(self) -> Iterator[FramePacket]:
        if self._cap is None and not self.stopped():
            self.open()
        index = 0
        try:
            while self._cap is not None and not self.stopped():
                try:
                    t_capture, image, decode_s = self._io.call(self._read)
                except Abandoned:
                    break
                if image is None:
                    if self.stopped() or not self._reopen():
                        break
                    continue
                if (image.shape[1], image.shape[0]) != self._size:
                    self.check_size(image.shape[1], image.shape[0])
                    self._size = (image.shape[1], image.shape[0])
                yield FramePacket(index=index, pts=None, t_capture=t_capture, image=image, decode_s=decode_s)
                index += 1
        finally:
            if self.stopped():
                self._io.close(self._release)  # after the read in progress, if one is blocked


def open_live_source(
    spec: str | int,
    *,
    realtime: bool = False,
    reconnect: int = DEFAULT_RECONNECT,
    rtsp_transport: str = "tcp",
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
    interrupt: threading.Event | None = None,
) -> CaptureSource | VideoFileSource:
    """The source ``--source`` names, not opened yet (use it as a context manager).

    Args:
        spec: camera index, stream URL or video file (see :func:`parse_source`).
        realtime: for a file: deliver frames at their timestamps, like a camera.
        reconnect: for a camera or stream: reopen attempts after it is lost.
        rtsp_transport: ``"tcp"`` or ``"udp"`` for an RTSP URL.
        read_timeout_s: a stream that sends nothing for this long is lost (and reconnected).
        max_frame_pixels: bigger frames are refused (a camera's or stream's: see :class:`CaptureSource`; a file's
            before its first frame is decoded).
        interrupt: for a camera or stream: the run's stop, which also ends opening and reading.

    Raises:
        SourceError: a URL with an unsupported scheme.
    """
    what = parse_source(spec)
    if isinstance(what, str) and "://" not in what and not is_device(what):
        return VideoFileSource(what, realtime=realtime, max_frame_pixels=max_frame_pixels)
    return CaptureSource(
        what,
        reconnect=reconnect,
        read_timeout_s=read_timeout_s,
        retry_open=True,
        rtsp_transport=rtsp_transport,
        max_frame_pixels=max_frame_pixels,
        interrupt=interrupt,
    )
