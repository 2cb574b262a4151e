"""A browser's camera in, the segmented picture out: WebRTC (aiortc) behind an aiohttp server.

The page (``/``) asks for the camera and posts its SDP offer to ``POST /offer``; each accepted
offer becomes a :class:`WebClient` with one peer connection. Every frame that arrives is decoded
(aiortc's decoder thread), converted and capped in size in a small pool of threads of its own
(``live_seg-web-decode``: never on the event loop) and handed to the job's
:meth:`ClientHooks.offer` (nothing queues here: a frame replaced by a newer one before its turn is
skipped, and the job keeps the newest frame only). Results come back through :meth:`WebClient.deliver` from any
thread; the outgoing track sends the newest one, rendered by :meth:`ClientHooks.render` in a worker
thread, stamped with its input frame's timestamp. A data channel carries the page's settings in
and the client's counts out (twice a second).

Everything runs on one asyncio loop in a thread named ``live_seg-web``; :meth:`WebRTCServer.close`
closes every peer connection (each client's :meth:`ClientHooks.close` runs) and joins it. Every
request passes :class:`~live_seg.media.web_security.WebPolicy`'s checks first.

What a client may ask for is bounded: one video track (:func:`~live_seg.media.webrtc_client.offer_problem`:
other tracks are refused, never decoded), one data channel (more are closed) whose messages are
small, the request body (``policy.max_body``); ``policy.max_clients`` connected clients, and at most
``max_pending`` offers answered but not connected yet, each for ``pending_s`` at most (when they are
all taken, the oldest is dropped for the newest: a burst of offers that never connect keeps no one
out). A malformed request is a 4xx with a one-line reason, logged without a traceback.
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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..base.errors import OutputError, one_line
from ..base.frames import FramePacket
from .web_security import WebPolicy
from .webrtc_client import ClientHooks, Connect, WebClient, newest_frame, offer_problem, to_image, track_class

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
PENDING_S = 8.0
"""An answered offer whose peer connection is not connected within this is dropped."""
MAX_PENDING = 4
"""Offers answered but not connected yet, at most (the oldest is dropped for a new one)."""
DECODE_THREADS = 2
MAX_CONTROL_BYTES = 4096
"""The largest settings message the data channel takes."""


class _QuietBadRequests(logging.Filter):
    """aiohttp logs a malformed request (bad ``Content-Length``, garbage) with its traceback at
    ERROR: here it is one line at DEBUG (its client got its 400 already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg, record.args, record.exc_info = "bad request: %s", (one_line(exc),), None
        return log.isEnabledFor(logging.DEBUG)


_http_log = logging.getLogger(__name__ + ".http")
_http_log.addFilter(_QuietBadRequests())


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
        pending_s: an answered offer not connected within this is dropped.
        max_pending: offers answered but not connected yet, at most.

    Attributes:
        clients: the clients connected now (and those being answered), in order; a client that
            leaves is removed.
        served: clients accepted so far.
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
        pending_s: float = PENDING_S,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.policy, self.page, self.connect = policy, page, connect
        self.port, self.max_side, self.idle_s = port, max_side, idle_s
        self.pending_s, self.max_pending = pending_s, max_pending
        self._cert, self._key = cert, key
        self.clients: list[WebClient] = []
        self.served = 0
        self._pending: dict[str, float] = {}  # answered, not connected yet: name -> when
        self._decoder: ThreadPoolExecutor | None = None
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
        """Clients connected now (and those whose offer is being answered or waits to connect)."""
        return len(self._peers)

    @property
    def connected(self) -> int:
        """Clients whose peer connection is connected now (:attr:`active` less :attr:`pending`)."""
        return len(self._peers) - len(self._pending)

    @property
    def pending(self) -> int:
        """Offers answered (or being answered) whose peer connection is not connected yet."""
        return len(self._pending)

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
        self._decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="live_seg-web-decode")
        app = web.Application(middlewares=[self._guard], client_max_size=self.policy.max_body)
        app.router.add_get("/", self._index)
        app.router.add_post("/offer", self._offer)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=_http_log)
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
            self._decoder.shutdown(wait=True)

    async def _guard(self, request: Any, handler: Any) -> Any:
        from aiohttp import web

        refusal = self.policy.check(request.method, request.path_qs, request.headers)
        if refusal is not None:
            return web.Response(status=refusal.status, text=refusal.reason + "\n")
        clean = self.policy.clean_target(request.method, request.path_qs, request.headers)
        if clean is not None and request.path == "/":  # the token out of the address bar: the cookie has it
            response = web.Response(status=303, headers={"Location": clean})
        else:
            response = await handler(request)
        if self.policy.token is not None and self.policy.supplied_token(request.path_qs, request.headers)[1]:
            response.headers["Set-Cookie"] = self.policy.cookie_header()
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    _guard.__middleware_version__ = 1  # type: ignore[attr-defined]  # aiohttp's new-style middleware

    async def _index(self, _request: Any) -> Any:
        from aiohttp import web

        return web.Response(text=self.page, content_type="text/html")

    async def _offer(self, request: Any) -> Any:
        from aiohttp import web

        try:
            body = json.loads(await request.read())
            sdp, kind = body["sdp"], body["type"]
            if not isinstance(sdp, str) or kind != "offer":
                raise ValueError("expected {type: 'offer', sdp: ...}")
            problem = offer_problem(sdp)
            if problem is not None:
                raise ValueError(problem)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:  # RecursionError: nested too deep
            return web.Response(status=400, text=f"bad offer: {one_line(exc)}\n")
        if self.connected >= self.policy.max_clients:
            return web.Response(status=503, text=f"too many clients (at most {self.policy.max_clients})\n")
        if len(self._pending) >= self.max_pending:  # the oldest answered offer not connected makes room
            answered = [name for name in self._pending if self._peers.get(name) is not None]
            if not answered:
                return web.Response(status=503, text=f"too many offers at once (at most {self.max_pending})\n")
            oldest = min(answered, key=self._pending.__getitem__)
            log.info("%s did not connect before newer offers came: dropped", oldest)
            leave = self._peers[oldest]
            assert leave is not None
            await leave()
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
        self._pending[client.name] = time.monotonic()
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            receivers = [t for t in pc.getTransceivers() if t.kind == "video"]
            if len(receivers) != 1 or len(pc.getTransceivers()) != 1:
                raise ValueError("expected one video track")
            hooks = self.connect(client)
        except BaseException:
            self._peers.pop(client.name, None)
            self._pending.pop(client.name, None)
            await pc.close()
            raise
        self.clients.append(client)
        self.served += 1
        leave = self._wire(pc, client, hooks, receivers[0].receiver.track)
        pc.addTrack(track_class()(client, hooks))  # on the offer's video transceiver: sendrecv
        try:
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except BaseException:
            await leave()
            raise
        log.info("%s answered", client.name)
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    def _wire(self, pc: Any, client: WebClient, hooks: ClientHooks, track: Any) -> Callable[[], Awaitable[None]]:
        """The client's tasks and event handlers; returns its ``leave()`` (idempotent)."""
        tasks: list[asyncio.Task] = []
        done = asyncio.Event()
        channels: list[Any] = []

        async def leave() -> None:
            if done.is_set():
                return
            done.set()
            self._peers.pop(client.name, None)
            self._pending.pop(client.name, None)
            with contextlib.suppress(ValueError):
                self.clients.remove(client)
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
            if pc.connectionState == "connected" and self._pending.pop(client.name, None) is not None:
                if self.connected > self.policy.max_clients:
                    log.info("%s connected with every place taken: closing it", client.name)
                    await leave()
                    return
                log.info("%s connected", client.name)
            if pc.connectionState in ("failed", "closed"):
                await leave()

        @pc.on("datachannel")
        def _channel(channel: Any) -> None:
            if channels:  # one settings channel a client; more are closed unheard
                log.info("%s opened another data channel: closed", client.name)
                channel.close()
                return
            channels.append(channel)
            tasks.append(asyncio.ensure_future(self._report(client, channel)))

            @channel.on("message")
            def _message(message: Any) -> None:
                self._control(hooks, channel, message)

        async def expire() -> None:
            await asyncio.sleep(self.pending_s)
            if client.name in self._pending:
                log.info("%s did not connect within %g s: dropped", client.name, self.pending_s)
                await leave()

        tasks.append(asyncio.ensure_future(expire()))
        # the browser's camera (its "track" event fired during setRemoteDescription, before any handler)
        tasks.append(asyncio.ensure_future(self._consume(client, hooks, track, leave)))
        return leave

    async def _consume(self, client: WebClient, hooks: ClientHooks, track: Any, leave: Any) -> None:
        """Every frame the browser sends, to the job as it comes (the newest one when several wait)."""
        from aiortc.mediastreams import MediaStreamError

        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(track.recv(), self.idle_s)
                except MediaStreamError:
                    break
                except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                    log.info("%s sent no frame for %g s: closing it", client.name, self.idle_s)
                    break
                frame, skipped = newest_frame(track, frame)
                t_capture = time.perf_counter()
                client.frames_received += 1 + skipped
                client.skipped += skipped
                pts = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
                image, scaled = await loop.run_in_executor(self._decoder, to_image, frame, self.max_side)
                client.scaled_down += scaled
                hooks.offer(FramePacket(client.frames_received - 1, pts, t_capture, image))
        finally:
            await leave()

    @staticmethod
    def _control(hooks: ClientHooks, channel: Any, message: Any) -> None:
        try:
            if len(message) > MAX_CONTROL_BYTES:
                raise ValueError(f"over {MAX_CONTROL_BYTES} bytes")
            settings = json.loads(message)
            if not isinstance(settings, dict):
                raise ValueError("expected a JSON object")
        except (TypeError, ValueError, RecursionError) as exc:
            channel.send(json.dumps({"error": f"bad settings: {one_line(exc)}"}))
            return
        channel.send(json.dumps({"settings": hooks.control(settings)}))

    @staticmethod
    async def _report(client: WebClient, channel: Any) -> None:
        """The client's running counts to its page, twice a second (bounded work each time)."""
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            if channel.readyState != "open":
                if channel.readyState == "closed":
                    return
                continue
            channel.send(json.dumps({"stats": client.report()}))
