"""A browser's camera in, the segmented picture out: WebRTC (aiortc) behind an aiohttp server.

The page (``/``) asks for the camera and posts its SDP offer to ``POST /offer``; each accepted
offer becomes a :class:`WebClient` with one peer connection. Every frame that arrives is decoded,
capped in size and handed to the job's :meth:`ClientHooks.offer` at once (nothing queues here:
the job keeps the newest frame only). Results come back through :meth:`WebClient.deliver` from any
thread; the outgoing track sends the newest one, rendered by :meth:`ClientHooks.render` in a worker
thread, stamped with its input frame's timestamp. A data channel carries the page's settings in
and the client's counts out (twice a second).

Everything runs on one asyncio loop in a thread named ``live_seg-web``; :meth:`WebRTCServer.close`
closes every peer connection (each client's :meth:`ClientHooks.close` runs) and joins it. Every
request passes :class:`~live_seg.media.web_security.WebPolicy`'s checks first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..base.errors import OutputError, one_line
from ..base.frames import FramePacket
from ..base.metrics import spread_ms
from .web_security import WebPolicy
from .webrtc_client import ClientHooks, Connect, WebClient, track_class

log = logging.getLogger(__name__)
for _chatty in ("aioice", "aiortc"):  # ICE checks and RTCP at INFO: one line per candidate pair
    logging.getLogger(_chatty).setLevel(logging.WARNING)

THREAD_NAME = "live_seg-web"
STATS_EVERY_S = 0.5
IDLE_S = 10.0
"""A client that sends no frame for this long is closed (a browser that died without a goodbye
is otherwise noticed only when ICE consent fails, ~30 s later)."""
MAX_SIDE = 1920
"""Default cap on a received frame's longer side (larger frames are scaled down)."""


def require() -> None:
    """Raise a one-line error when the web extra (aiortc, aiohttp) is missing."""
    try:
        import aiohttp  # noqa: F401
        import aiortc  # noqa: F401
    except ImportError as exc:
        raise OutputError(f"serve needs aiortc and aiohttp ({one_line(exc)}): pip install 'live-seg[web]'") from exc


class WebRTCServer:
    """The page, ``POST /offer`` and the peer connections, on a thread of their own.

    Args:
        policy: the access rules (its ``max_clients`` caps the peer connections: 503 beyond).
        page: the page's HTML (served at ``/``).
        connect: called on the event loop for each new client; returns its hooks.
        port: TCP port (0: any free one).
        cert, key: the HTTPS certificate and key (default: self-signed when the policy wants HTTPS).
        max_side: received frames with a longer side are scaled down to it.
        idle_s: a client that sends no frame for this long is closed.

    Attributes:
        clients: every client served so far, in order (they stay listed after leaving).
    """

    def __init__(
        self,
        policy: WebPolicy,
        page: str,
        connect: Connect,
        *,
        port: int = 8443,
        cert: str | None = None,
        key: str | None = None,
        max_side: int = MAX_SIDE,
        idle_s: float = IDLE_S,
    ) -> None:
        self.policy, self.page, self.connect = policy, page, connect
        self.port, self.max_side, self.idle_s = port, max_side, idle_s
        self._cert, self._key = cert, key
        self.clients: list[WebClient] = []
        self._numbers = itertools.count(1)
        self._peers: dict[str, Callable[[], Awaitable[None]] | None] = {}  # leave() of each client (None: joining)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address for a browser on this machine (with the token when there is one)."""
        return self.policy.url("/")

    @property
    def alive(self) -> bool:
        """The server's thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def active(self) -> int:
        """Clients connected now (and those whose offer is being answered)."""
        return len(self._peers)

    def start(self, timeout: float = 30.0) -> WebRTCServer:
        """Bind and serve in the background.

        Raises:
            OutputError: the address cannot be bound.
            UsageError: the certificate cannot be loaded.
        """
        context = self.policy.ssl_context(self._cert, self._key)
        self._thread = threading.Thread(target=self._main, args=(context,), name=THREAD_NAME, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.close()
            raise OutputError(f"the web server did not start within {timeout:g} s")
        if self._error is not None:
            self.close()
            raise self._error
        return self

    def close(self, timeout: float = 15.0) -> None:
        """Close every peer connection, stop serving and join the thread. Safe to call twice."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the web server's thread did not stop within %g s", timeout)

    def __enter__(self) -> WebRTCServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the event loop -------------------------------------------------------------------------

    def _main(self, context: Any) -> None:
        try:
            asyncio.run(self._serve(context))
        except BaseException as exc:
            log.debug("web server failed", exc_info=True)
            self._error = self._error or exc
        finally:
            self._ready.set()

    async def _serve(self, context: Any) -> None:
        from aiohttp import web

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        app = web.Application(middlewares=[self._guard], client_max_size=self.policy.max_body)
        app.router.add_get("/", self._index)
        app.router.add_post("/offer", self._offer)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.policy.host or None, self.port, ssl_context=context)
            try:
                await site.start()
            except OSError as exc:
                self._error = OutputError(
                    f"cannot serve on {self.policy.host}:{self.port} ({one_line(exc)}); pick another --port (0: any)"
                )
                return
            self.port = self.policy.port = int(runner.addresses[0][1])
            self._ready.set()
            await self._stop.wait()
        finally:
            # every client leaves as it would on its own: its hooks closed, its peer connection too
            leaves = [leave() for leave in list(self._peers.values()) if leave is not None]
            await asyncio.gather(*leaves, return_exceptions=True)
            await runner.cleanup()

    async def _guard(self, request: Any, handler: Any) -> Any:
        from aiohttp import web

        refusal = self.policy.check(request.method, request.path_qs, request.headers)
        if refusal is not None:
            return web.Response(status=refusal.status, text=refusal.reason + "\n")
        response = await handler(request)
        if self.policy.token is not None and self.policy.supplied_token(request.path_qs, request.headers)[1]:
            response.headers["Set-Cookie"] = self.policy.cookie_header()
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    _guard.__middleware_version__ = 1  # type: ignore[attr-defined]  # aiohttp's new-style middleware

    async def _index(self, _request: Any) -> Any:
        from aiohttp import web

        return web.Response(text=self.page, content_type="text/html")

    async def _offer(self, request: Any) -> Any:
        from aiohttp import web

        try:
            body = await request.json()
            sdp, kind = body["sdp"], body["type"]
            if not isinstance(sdp, str) or kind != "offer" or "m=video" not in sdp:
                raise ValueError("expected {type: 'offer', sdp: ...} with a video track")
        except (ValueError, KeyError, TypeError) as exc:
            return web.Response(status=400, text=f"bad offer: {one_line(exc)}\n")
        if len(self._peers) >= self.policy.max_clients:
            return web.Response(status=503, text=f"too many clients (at most {self.policy.max_clients})\n")
        try:
            answer = await self._answer(sdp)  # holds its place before its first await
        except Exception as exc:  # noqa: BLE001 (a malformed SDP raises many types in aiortc: all a 400)
            log.info("refused an offer: %s", one_line(exc, with_type=True))
            return web.Response(status=400, text=f"bad offer: {one_line(exc)}\n")
        return web.json_response(answer)

    async def _answer(self, sdp: str) -> dict[str, str]:
        """A peer connection for an offer; its answer (ICE gathered, no trickle)."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: nothing outside is asked
        # numbered now, before the first await: offers arriving together get different names
        client = WebClient(f"client-{next(self._numbers)}", _loop=asyncio.get_running_loop(), _fresh=asyncio.Event())
        self._peers[client.name] = None  # its place, held while the offer is answered
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            receivers = [t for t in pc.getTransceivers() if t.kind == "video"]
            if not receivers:
                raise ValueError("the offer has no video track")
            hooks = self.connect(client)
        except BaseException:
            self._peers.pop(client.name, None)
            await pc.close()
            raise
        self.clients.append(client)
        tasks: list[asyncio.Task] = []
        done = asyncio.Event()

        async def leave() -> None:
            if done.is_set():
                return
            done.set()
            self._peers.pop(client.name, None)
            client.connected_s = time.perf_counter() - client.t_start
            hooks.close()
            log.info("%s left after %.1f s", client.name, client.connected_s)
            for task in tasks:
                if task is not asyncio.current_task():  # leave() may run in one of them
                    task.cancel()
            await pc.close()

        self._peers[client.name] = leave

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await leave()

        @pc.on("datachannel")
        def _channel(channel: Any) -> None:
            tasks.append(asyncio.ensure_future(self._report(client, channel)))

            @channel.on("message")
            def _message(message: Any) -> None:
                self._control(hooks, channel, message)

        # the browser's camera (its "track" event fired during setRemoteDescription, before any handler)
        tasks.append(asyncio.ensure_future(self._consume(client, hooks, receivers[0].receiver.track, leave)))
        pc.addTrack(track_class()(client, hooks))  # on the offer's video transceiver: sendrecv
        try:
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except BaseException:
            await leave()
            raise
        log.info("%s connected", client.name)
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    async def _consume(self, client: WebClient, hooks: ClientHooks, track: Any, leave: Any) -> None:
        """Every frame the browser sends, to the job at once (the job keeps the newest)."""
        from aiortc.mediastreams import MediaStreamError

        try:
            while True:
                try:
                    frame = await asyncio.wait_for(track.recv(), self.idle_s)
                except MediaStreamError:
                    break
                except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                    log.info("%s sent no frame for %g s: closing it", client.name, self.idle_s)
                    break
                t_capture = time.perf_counter()
                client.frames_received += 1
                longest = max(frame.width, frame.height)
                if longest > self.max_side:
                    scale = self.max_side / longest
                    w, h = (max(2, round(frame.width * scale) // 2 * 2), max(2, round(frame.height * scale) // 2 * 2))
                    frame = frame.reformat(width=w, height=h)
                    client.scaled_down += 1
                pts = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
                image = frame.to_ndarray(format="bgr24")
                hooks.offer(FramePacket(client.frames_received - 1, pts, t_capture, image))
        finally:
            await leave()

    @staticmethod
    def _control(hooks: ClientHooks, channel: Any, message: Any) -> None:
        try:
            settings = json.loads(message)
            if not isinstance(settings, dict):
                raise ValueError("expected a JSON object")
        except (TypeError, ValueError) as exc:
            channel.send(json.dumps({"error": f"bad settings: {one_line(exc)}"}))
            return
        channel.send(json.dumps({"settings": hooks.control(settings)}))

    @staticmethod
    async def _report(client: WebClient, channel: Any) -> None:
        """The client's counts to its page, twice a second."""
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            if channel.readyState != "open":
                if channel.readyState == "closed":
                    return
                continue
            recent = client.latency_s[-30:]
            channel.send(json.dumps({"stats": {**client.summary(), "latency_recent_ms": spread_ms(recent, 1)["p50"]}}))
