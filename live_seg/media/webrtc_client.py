"""One WebRTC client of ``serve``: what the job does for it (:class:`ClientHooks`), its counts and
newest result (:class:`WebClient`), the outgoing track that sends the newest result, rendered,
stamped with its input frame's timestamp, and what an offer may ask for (:func:`offer_problem`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..base.frames import Frame, FramePacket, SegResult
from ..base.metrics import samples, spread_ms, thirds_ms

VIDEO_CLOCK = 90_000
"""RTP video clock: outgoing frames carry their input's timestamp in these ticks."""
RECENT = 30
"""Frames the running latency (sent twice a second) is a median of."""
MAX_CANDIDATES = 32
"""ICE candidates an offer may list (a browser with ICE gathered lists a handful)."""
_SDP_LINE = re.compile(r"[a-z]=[^\x00-\x08\x0a-\x1f\x7f]*")
_M_LINE = re.compile(r"m=([a-z]+) (\d{1,5})(?:/\d{1,3})? [A-Za-z0-9/]+(?: [A-Za-z0-9-]+)+")


def offer_problem(sdp: str) -> str | None:
    """Why an offer asks for more than a client gets (``None``: it does not).

    A client gets one video track (the camera: the only one decoded), at most one data channel's
    section and :data:`MAX_CANDIDATES` ICE candidates; audio and any other section are refused
    before anything is set up for them, and so is an offer without its DTLS fingerprint or ICE
    credentials (aiortc would answer it and fail later, in a task of its own).
    """
    lines = sdp.splitlines()
    bad = next((n for n, line in enumerate(lines, 1) if line and not _SDP_LINE.fullmatch(line)), None)
    if bad is not None:
        return f"line {bad} is not an SDP line (x=value, printable)"
    sections = [_M_LINE.fullmatch(line) for line in lines if line.startswith("m=")]
    if not all(m is not None and int(m[2]) <= 65535 for m in sections):
        return "a malformed m= line"
    kinds = [m[1] for m in sections if m is not None]
    if kinds.count("video") != 1:
        return f"expected one video track, got {kinds.count('video')}"
    if kinds.count("application") > 1 or set(kinds) - {"video", "application"}:
        return f"only a video track and one data channel section are served, got {', '.join(kinds)}"
    for needed in ("a=fingerprint:", "a=ice-ufrag:", "a=ice-pwd:"):  # DTLS and ICE cannot start without them
        if f"\n{needed}" not in f"\n{sdp}":
            return f"no {needed[2:-1]} line"
    candidates = sum(1 for line in lines if line.startswith("a=candidate:"))
    if candidates > MAX_CANDIDATES:
        return f"{candidates} ICE candidates, at most {MAX_CANDIDATES}"
    return None


class ClientHooks(Protocol):
    """What a job does for one client (see :class:`~live_seg.media.webrtc.WebRTCServer`)."""

    def offer(self, packet: FramePacket) -> None:
        """A frame from the browser (on the event loop: must not block)."""

    def render(self, result: SegResult) -> Frame:
        """The picture to send for ``result`` (BGR uint8; called in a worker thread, one at a time)."""

    def control(self, message: dict[str, Any]) -> dict[str, Any]:
        """Apply the page's settings; returns the settings now (and ``error`` for a bad one)."""

    def close(self) -> None:
        """The client left: free what it held."""


@dataclass
class WebClient:
    """One browser client: its counts and its newest result.

    Attributes:
        name: ``client-N``, unique within a server.
        frames_received: frames decoded from the browser.
        frames_processed: results delivered by the model.
        frames_sent: rendered frames handed to the encoder.
        latency_s: per frame sent, seconds from its input frame's arrival to its output frame
            (``latency_thirds_ms`` in the summary: medians of the first, middle and last third,
            where a growing queue would show).
        latency_recent_s: the last :data:`RECENT` of them (the running figure: O(1) per report).
        skipped: frames decoded from the browser but replaced by a newer one before conversion.
        connected_s: seconds the client stayed.
    """

    name: str
    frames_received: int = 0
    frames_processed: int = 0
    frames_sent: int = 0
    scaled_down: int = 0
    skipped: int = 0
    latency_s: Any = field(default_factory=samples)
    latency_recent_s: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    connected_s: float = 0.0
    t_start: float = field(default_factory=time.perf_counter)
    _loop: asyncio.AbstractEventLoop | None = None
    _newest: SegResult | None = None
    _fresh: asyncio.Event | None = None

    def deliver(self, result: SegResult) -> None:
        """A result for this client (thread-safe; only the newest is kept)."""
        self._newest = result
        self.frames_processed += 1
        if self._loop is not None and self._fresh is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the client is gone
                self._loop.call_soon_threadsafe(self._fresh.set)

    put = deliver
    """The engine's sink protocol: the client's results go to its outgoing track (only the newest is kept)."""

    def report(self) -> dict[str, Any]:
        """The running counts sent to the page twice a second: bounded work, however long it runs."""
        return {
            "name": self.name,
            "frames_received": self.frames_received,
            "frames_processed": self.frames_processed,
            "frames_sent": self.frames_sent,
            "latency_recent_ms": spread_ms(self.latency_recent_s, 1)["p50"],
        }

    def summary(self) -> dict[str, Any]:
        """The client's entry in ``--stats`` (``latency_ms``: server-side, input to output)."""
        spread = spread_ms(self.latency_s, 1)
        return {
            "name": self.name,
            "frames_received": self.frames_received,
            "frames_processed": self.frames_processed,
            "frames_sent": self.frames_sent,
            "scaled_down": self.scaled_down,
            "skipped": self.skipped,
            "latency_ms": {"p50": spread["p50"], "p95": spread["p95"]},
            "latency_thirds_ms": thirds_ms(self.latency_s),
            "connected_s": round(self.connected_s or time.perf_counter() - self.t_start, 3),
        }


def newest_frame(track: Any, frame: Any) -> tuple[Any, int]:
    """The newest decoded frame of ``track`` (``frame`` or one that arrived since) and how many were skipped.

    aiortc queues every decoded frame for its track without a bound: frames that wait while one is
    converted are skipped here instead of piling up (the end-of-track marker stays queued).
    """
    waiting = getattr(track, "_queue", None)
    skipped = 0
    while isinstance(waiting, asyncio.Queue) and not waiting.empty():
        newer = waiting.get_nowait()
        if newer is None:
            waiting.put_nowait(None)
            break
        frame, skipped = newer, skipped + 1
    return frame, skipped


def to_image(frame: Any, max_side: int) -> tuple[np.ndarray, int]:
    """A decoded frame as BGR uint8, its longer side scaled down to ``max_side``; and 1 if it was
    scaled (0 if not). Called in a worker thread: converting a large frame takes milliseconds."""
    longest = max(frame.width, frame.height)
    scaled = 0
    if longest > max_side:
        scale = max_side / longest
        w, h = (max(2, round(frame.width * scale) // 2 * 2), max(2, round(frame.height * scale) // 2 * 2))
        frame = frame.reformat(width=w, height=h)
        scaled = 1
    return frame.to_ndarray(format="bgr24"), scaled


Connect = Callable[[WebClient], ClientHooks]


def track_class() -> type:
    """The outgoing track's class, ``SegmentedTrack(client, hooks)`` (aiortc is imported only here)."""
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    class SegmentedTrack(MediaStreamTrack):
        """The outgoing video: the newest result, rendered, stamped with its input's time."""

        kind = "video"

        def __init__(self, client: WebClient, hooks: ClientHooks) -> None:
            super().__init__()
            self.client, self.hooks = client, hooks
            self._last_pts = -1

        async def recv(self) -> Any:
            import av

            client = self.client
            assert client._fresh is not None
            while True:
                if self.readyState != "live":
                    raise MediaStreamError
                await client._fresh.wait()
                client._fresh.clear()
                result = client._newest
                if result is not None and result.packet.pts is not None:
                    pts = round(result.packet.pts * VIDEO_CLOCK)
                    if pts > self._last_pts:
                        break
            image = await asyncio.to_thread(self.hooks.render, result)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = pts, fractions.Fraction(1, VIDEO_CLOCK)
            self._last_pts = pts
            client.frames_sent += 1
            latency = time.perf_counter() - result.packet.t_capture
            client.latency_s.append(latency)
            client.latency_recent_s.append(latency)
            return frame

    return SegmentedTrack
