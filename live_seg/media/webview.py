"""The rendered view in a browser: a small page and an MJPEG stream served over HTTP(S).

Every request passes :class:`~live_seg.media.web_security.WebPolicy`'s checks (Host, Origin,
the run's token, HTTPS beyond loopback, body and client caps); the stream and the frame are
same-origin reads. What it may cost is bounded: at most ``max_connections`` connections are
served at once, each in its own thread (more are closed at once, without a thread); a request
must arrive whole within ``head_timeout_s`` (slowloris, half-open connections) and every socket
operation within :data:`IO_TIMEOUT_S`; the page's keys are rate limited and queued up to
:data:`MAX_KEYS_QUEUED`, snapshots at most one a second and :data:`MAX_PAGE_SNAPSHOTS` a run.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from ..base.errors import OutputError, one_line
from ..base.frames import Frame
from .view_page import PAGE_KEYS, view_page
from .web_security import RateLimit, WebPolicy

log = logging.getLogger(__name__)

MJPEG_BOUNDARY = "live_seg_frame"
PAGE_ROUTES = ("/", "/index.html")
MEDIA_ROUTES = ("/stream.mjpg", "/frame.jpg")
"""What the camera sees: same-origin reads only."""
IO_TIMEOUT_S = 10.0
"""A client that stops reading or writing for this long frees its thread."""
HEAD_TIMEOUT_S = 10.0
"""A request (line, headers, body; the TLS handshake included) must arrive whole within this."""
BACKLOG = 128
"""The listen backlog (a burst of connections waits here instead of being refused)."""
EXTRA_CONNECTIONS = 12
"""Connections served at once beyond the viewers' streams (pages, frames, keys)."""
KEY_RATE = (10.0, 20)
"""Keys from the page: per second on average, burst."""
SNAPSHOT_RATE = (1.0, 2)
MAX_KEYS_QUEUED = 32
MAX_PAGE_SNAPSHOTS = 200
"""Snapshots the page may ask for in one run (the window's own key is not counted)."""


class _PreviewHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = BACKLOG
    owner: PreviewServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that goes away mid-response is not worth a traceback on stderr."""
        log.debug("serve: request from %s failed", client_address, exc_info=True)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        owner = self.owner
        if not owner._slots.acquire(blocking=False):  # every thread busy: no new one, the socket closed
            owner.turned_away += 1
            log.debug("serve: %d connections served already: closed one from %s", owner.max_connections, client_address)
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._serve_one, args=(request, client_address), name="live_seg-serve-client", daemon=True
        )
        owner._track(thread)
        thread.start()

    def _serve_one(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.owner._heads.pop(request, None)
            self.owner._slots.release()

    def service_actions(self) -> None:
        """Between accepts (every poll interval): close connections whose request is overdue."""
        self.owner._reap()


class _PreviewHandler(BaseHTTPRequestHandler):
    server: _PreviewHTTPServer
    timeout = IO_TIMEOUT_S  # a client that stops reading frees its thread
    server_version = "live_seg"
    sys_version = ""  # no Python version in the Server header

    def setup(self) -> None:
        owner = self.server.owner
        owner._heads[self.request] = time.monotonic() + owner.head_timeout_s
        super().setup()

    def _arrived(self) -> None:
        """The request arrived whole: its deadline no longer applies (the I/O timeout does)."""
        self.server.owner._heads.pop(self.request, None)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("serve: %s - %s", self.address_string(), format % args)

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, no-store")
        self.end_headers()
        self.wfile.write(body)

    def _admitted(self, same_origin: bool = False) -> bool:
        """Apply the server's policy; answer a refused request here (False)."""
        policy = self.server.owner.policy
        refusal = policy.check(self.command, self.path, self.headers, same_origin=same_origin)
        if refusal is not None:
            self.close_connection = True
            self._send(refusal.status, refusal.reason.encode() + b"\n", "text/plain")
            return False
        # the token came in the URL: the page's own requests carry it as a cookie from now on
        self._set_cookie = policy.token is not None and policy.supplied_token(self.path, self.headers)[1]
        return True

    def end_headers(self) -> None:
        if getattr(self, "_set_cookie", False):
            self.send_header("Set-Cookie", self.server.owner.policy.cookie_header())
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "same-origin")
        super().end_headers()

    def do_GET(self) -> None:
        owner = self.server.owner
        self._arrived()
        route = self.path.split("?", 1)[0]
        if not self._admitted(same_origin=route in MEDIA_ROUTES):
            return
        clean = owner.policy.clean_target(self.command, self.path, self.headers) if route in PAGE_ROUTES else None
        if clean is not None:  # the token out of the address bar: the cookie carries it from now on
            self.send_response(303)
            self.send_header("Location", clean)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route in PAGE_ROUTES:
            self._send(200, owner.page.encode(), "text/html; charset=utf-8")
        elif route == "/stream.mjpg":
            owner._stream_to(self)
        elif route == "/frame.jpg":
            jpeg = owner.latest_jpeg()
            if jpeg is None:
                self._send(503, b"no frame yet\n", "text/plain")
            else:
                self._send(200, jpeg, "image/jpeg")
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        owner = self.server.owner
        if not self._admitted():
            self._arrived()
            return
        if self.path.split("?", 1)[0] != "/key":
            self._send(404, b"not found\n", "text/plain")
            return
        length = min(int(self.headers.get("Content-Length") or 0), 16)
        key = self.rfile.read(length).decode("utf-8", "replace")
        self._arrived()
        if key not in PAGE_KEYS:
            self._send(400, b"unknown key\n", "text/plain")
            return
        refused = owner._take_key(key)
        if refused:
            self._send(429, refused.encode() + b"\n", "text/plain")
        else:
            self._send(204, b"", "text/plain")


class PreviewServer:
    """The rendered view in a browser: MJPEG over HTTP with a small page, on loopback by default.

    Routes: ``/`` (the page, with pause / view / legend / snapshot buttons), ``/stream.mjpg``
    (``multipart/x-mixed-replace`` JPEGs, each client gets the newest frame), ``/frame.jpg``
    (the newest frame once) and ``POST /key`` (one of ``" mels"``, same-origin only). Every request
    wants the run's token (:attr:`url` carries it; the page then keeps it in a cookie); bound beyond
    loopback it serves HTTPS (see :class:`WebPolicy`); at most ``policy.max_clients`` streams at
    once (503 beyond).
    The HTTP server runs in a thread named ``live_seg-serve``, each client in
    ``live_seg-serve-client``; :meth:`close` ends them all.

    Args:
        host: address to bind (``127.0.0.1``: this machine only).
        port: TCP port; 0 picks a free one.
        title: page title.
        quality: JPEG quality.
        any_port_if_busy: bind a free port (with a warning) when ``port`` is taken, instead
            of failing.
        policy: the access rules (default: :meth:`WebPolicy.for_bind` of ``host``: a generated
            token and a cached self-signed certificate beyond loopback).
        cert, key: the HTTPS certificate and key files (default: self-signed, when HTTPS is on).
        max_connections: connections served at once (default: the viewers plus
            :data:`EXTRA_CONNECTIONS`); more are closed as they come.
        head_timeout_s: the time a request has to arrive whole.

    Attributes:
        turned_away: connections closed because ``max_connections`` were served already.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8090,
        title: str = "live_seg",
        quality: int = 80,
        any_port_if_busy: bool = False,
        policy: WebPolicy | None = None,
        cert: str | None = None,
        key: str | None = None,
        max_connections: int | None = None,
        head_timeout_s: float = HEAD_TIMEOUT_S,
    ) -> None:
        self.host, self.port, self.quality = host, port, quality
        self.policy = policy or WebPolicy.for_bind(host)
        self.max_connections = max_connections or self.policy.max_clients + EXTRA_CONNECTIONS
        self.head_timeout_s = head_timeout_s
        self.turned_away = 0
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._heads: dict[socket.socket, float] = {}  # connection -> when its request must have arrived
        self._key_rate, self._snapshot_rate = RateLimit(*KEY_RATE), RateLimit(*SNAPSHOT_RATE)
        self._page_snapshots = 0
        self._key_lock = threading.Lock()
        self._cert, self._key = cert, key
        self.any_port_if_busy = any_port_if_busy
        self.page = view_page(title)
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._jpeg: bytes | None = None
        self._jpeg_seq = -1
        self._seq = -1
        self._streams = 0
        self._closing = threading.Event()
        self._keys: queue.Queue[str] = queue.Queue(MAX_KEYS_QUEUED)
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._httpd: _PreviewHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> PreviewServer:
        """Bind and serve in the background.

        Raises:
            OutputError: the address cannot be bound.
            UsageError: the certificate cannot be loaded.
        """
        context = self.policy.ssl_context(self._cert, self._key)
        try:
            httpd = _PreviewHTTPServer((self.host, self.port), _PreviewHandler)
        except OSError as exc:
            if not (self.any_port_if_busy and exc.errno == errno.EADDRINUSE):
                raise OutputError(
                    f"cannot serve the preview on {self.host}:{self.port} ({one_line(exc)}); "
                    "pick another port with --serve PORT (0 = any free port)"
                ) from exc
            log.warning("port %d is taken; serving the preview on a free port instead", self.port)
            httpd = _PreviewHTTPServer((self.host, 0), _PreviewHandler)
        if context is not None:  # the handshake happens in each client's thread, not the accept loop
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        httpd.owner = self
        self._httpd = httpd
        self.port = self.policy.port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="live_seg-serve", daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        """The page's address (loopback when bound to all interfaces), with the token: for the
        terminal only (see :attr:`public_url`)."""
        return self.policy.url("/")

    @property
    def public_url(self) -> str:
        """The page's address without the token: what logs and ``--stats`` show."""
        return self.policy.url("/", with_token=False)

    @property
    def clients(self) -> int:
        """Browsers (stream connections) watching now."""
        with self._cond:
            return self._streams

    def publish(self, image: Frame) -> None:
        """Offer the newest rendered view (BGR uint8): kept as it is; encoded as JPEG by the viewers'
        threads when they send it (never on the caller's thread, the live view's)."""
        copy = image.copy()
        with self._cond:
            self._seq += 1
            self._image = copy
            self._cond.notify_all()

    def keys(self) -> list[str]:
        """Keys sent from the page since the last call."""
        out = []
        while True:
            try:
                out.append(self._keys.get_nowait())
            except queue.Empty:
                return out

    def latest_jpeg(self) -> bytes | None:
        """The newest view as JPEG, or ``None`` before the first frame."""
        with self._cond:
            if self._jpeg_seq == self._seq:
                return self._jpeg
            image, seq = self._image, self._seq
        if image is None:
            return None
        jpeg = self._encode(image)
        with self._cond:
            if seq >= self._jpeg_seq:
                self._jpeg, self._jpeg_seq = jpeg, seq
        return jpeg

    def _encode(self, image: np.ndarray) -> bytes:
        import cv2

        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise OutputError("cannot encode the preview frame as JPEG")
        return buf.tobytes()

    def _take_key(self, key: str) -> str | None:
        """Queue a key from the page; why it is refused (the reply is 429), or ``None``."""
        with self._key_lock:
            return self._queue_key(key)

    def _queue_key(self, key: str) -> str | None:
        if not self._key_rate.allow():
            return "too many keys: slow down"
        if key == "s":
            if self._page_snapshots >= MAX_PAGE_SNAPSHOTS:
                return f"at most {MAX_PAGE_SNAPSHOTS} snapshots from the page in a run"
            if not self._snapshot_rate.allow():
                return "at most one snapshot a second"
        try:
            self._keys.put_nowait(key)
        except queue.Full:
            return "too many keys waiting"
        if key == "s":
            self._page_snapshots += 1
        return None

    def _reap(self) -> None:
        """Close the connections whose request did not arrive in time (their threads then end)."""
        now = time.monotonic()
        for sock, deadline in list(self._heads.items()):
            if now >= deadline and self._heads.pop(sock, None) is not None:
                log.debug("serve: a request took over %g s to arrive: closing its connection", self.head_timeout_s)
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: also under TLS

    def _track(self, thread: threading.Thread) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)

    def _stream_to(self, handler: _PreviewHandler) -> None:
        """Send the newest frame each time there is a new one, until the client or the server goes."""
        sock = handler.connection
        with self._cond:
            full = self._streams >= self.policy.max_clients
            if not full:
                self._streams += 1
                self._sockets.add(sock)
        if full:
            handler._send(503, b"too many viewers\n", "text/plain")
            return
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}")
            handler.send_header("Cache-Control", "no-cache, no-store")
            handler.send_header("Connection", "close")
            handler.end_headers()
            sent = -1
            while not self._closing.is_set():
                with self._cond:
                    if self._seq <= sent:
                        self._cond.wait(0.25)
                    if self._closing.is_set() or self._seq <= sent:
                        continue
                    seq = self._seq
                jpeg = self.latest_jpeg()
                if jpeg is None:
                    continue
                head = f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                handler.wfile.write(head.encode() + jpeg + b"\r\n")
                handler.wfile.flush()
                sent = seq
        except OSError:
            pass  # the browser went away
        finally:
            with self._cond:
                self._streams -= 1
                self._sockets.discard(sock)

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving and end every thread it started. Safe to call twice."""
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
            socks = list(self._sockets)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        deadline = time.monotonic() + timeout
        for thread in [self._thread, *self._threads]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> PreviewServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
