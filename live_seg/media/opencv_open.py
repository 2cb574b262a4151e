"""Opening a camera or a network stream with OpenCV (for :class:`~live_seg.media.camera.CaptureSource`).

Streams open with OpenCV's FFmpeg backend and its open and read timeouts. RTSP is read over TCP
by default (``rtsp_transport="udp"`` for UDP): the FFmpeg backend takes its options from
``OPENCV_FFMPEG_CAPTURE_OPTIONS`` when it opens a stream, so the variable is set around each open
(under a lock) unless the user set it. FFmpeg's and OpenCV's own messages stay off stderr unless
debugging: the source says what happened in one line of its own.
"""

from __future__ import annotations

import logging
import os
import threading

import cv2

log = logging.getLogger("live_seg.media.camera")

CAPTURE_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ENV_LOCK = threading.Lock()


def _quiet_ffmpeg_logs() -> None:
    """Keep FFmpeg's own messages (connection refused, stream ended…) off stderr unless
    debugging. Read by OpenCV once, when its FFmpeg backend first loads; a value the user set is kept."""
    if not log.isEnabledFor(logging.DEBUG):
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def open_capture(
    source: int | str, camera: bool, open_timeout_s: float, read_timeout_s: float, rtsp_transport: str
) -> cv2.VideoCapture | None:
    """A ``VideoCapture`` of a camera (index or ``/dev/`` path, V4L2) or a stream URL (FFmpeg).

    Args:
        source: camera index, device path or URL.
        camera: ``source`` is a camera (no timeouts apply).
        open_timeout_s, read_timeout_s: FFmpeg's timeouts for a stream.
        rtsp_transport: ``"tcp"`` or ``"udp"`` for ``rtsp://`` URLs.

    Returns:
        The capture (check ``isOpened()``), or ``None`` when OpenCV raised.
    """
    _quiet_ffmpeg_logs()
    previous = cv2.utils.logging.getLogLevel()
    if not log.isEnabledFor(logging.DEBUG):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # the error says it in one line
    try:
        if camera:
            device = isinstance(source, str)
            cap = cv2.VideoCapture(source, cv2.CAP_V4L2) if device else cv2.VideoCapture(source)
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of old ones
            return cap
        assert isinstance(source, str)
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(read_timeout_s * 1000),
        ]
        if not source.lower().startswith(("rtsp://", "rtsps://")) or CAPTURE_OPTIONS_ENV in os.environ:
            return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
        with _ENV_LOCK:  # the variable is read while the stream opens; other opens wait
            os.environ[CAPTURE_OPTIONS_ENV] = f"rtsp_transport;{rtsp_transport}"
            try:
                return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
            finally:
                del os.environ[CAPTURE_OPTIONS_ENV]
    except cv2.error as exc:
        log.debug("opening %s failed: %s", "a camera" if camera else "a stream", exc)
        return None
    finally:
        cv2.utils.logging.setLogLevel(previous)
