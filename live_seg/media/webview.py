"""The rendered view in a browser: a small page and an MJPEG stream served over HTTP."""

from __future__ import annotations

import errno
import html
import ipaddress
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

log = logging.getLogger(__name__)

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{margin:0;background:#111;color:#ddd;font:14px sans-serif}}
img{{display:block;margin:auto;max-width:100vw;max-height:calc(100vh - 44px)}}
nav{{text-align:center;padding:8px}}
</style></head>
<body>
<img id="view" src="/stream.mjpg" alt="live view">
<nav>
<button data-k=" ">pause (space)</button>
<button data-k="m">view (m)</button>
<button data-k="l">legend (l)</button>
<button data-k="e">effect (e)</button>
<button data-k="s">snapshot (s)</button>
<button data-k="t">next tile (t)</button>
<button data-k="0">all tiles (0)</button>
</nav>
<script>
const send = k => fetch("/key", {{method: "POST", body: k}});
for (const b of document.querySelectorAll("button")) b.onclick = () => send(b.dataset.k);
document.onkeydown = e => {{ if (" mels0123456789t".includes(e.key)) {{ send(e.key); e.preventDefault(); }} }};
</script>
</body></html>
"""

PAGE_KEYS = frozenset(" mels0123456789t")
"""Keys the browser page may send (never quit: stop the tool where it runs); with several sources,
1-9 select a tile, 0 all tiles, t the next one (keys then act on the selected tile)."""

MJPEG_BOUNDARY = "live_seg_frame"


class _PreviewHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: PreviewServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that goes away mid-response is not worth a traceback on stderr."""
        log.debug("serve: request from %s failed", client_address, exc_info=True)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="live_seg-serve-client",
            daemon=True,
        )
        self.owner._track(thread)
        thread.start()


class _PreviewHandler(BaseHTTPRequestHandler):
    server: _PreviewHTTPServer
    timeout = 10  # a client that stops reading frees its thread
    server_version = "live_seg"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("serve: %s - %s", self.address_string(), format % args)

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        owner = self.server.owner
        route = self.path.split("?", 1)[0]
        if route in ("/", "/index.html"):
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
        if self.path.split("?", 1)[0] != "/key":
            self._send(404, b"not found\n", "text/plain")
            return
        length = min(int(self.headers.get("Content-Length") or 0), 16)
        key = self.rfile.read(length).decode("utf-8", "replace")
        try:
            local = ipaddress.ip_address(self.client_address[0]).is_loopback
        except ValueError:
            local = False
        if not local:
            self._send(403, b"keys are accepted from this machine only\n", "text/plain")
        elif key not in PAGE_KEYS:
            self._send(400, b"unknown key\n", "text/plain")
        else:
            owner._keys.put(key)
            self._send(204, b"", "text/plain")


class PreviewServer:
    """The rendered view in a browser: MJPEG over HTTP with a small page, on loopback by default.

    Routes: ``/`` (the page, with pause / view / legend / snapshot buttons), ``/stream.mjpg``
    (``multipart/x-mixed-replace`` JPEGs, each client gets the newest frame), ``/frame.jpg``
    (the newest frame once) and ``POST /key`` (one of ``" mels"``, from loopback clients only).
    The HTTP server runs in a thread named ``live_seg-serve``, each client in
    ``live_seg-serve-client``; :meth:`close` ends them all.

    Args:
        host: address to bind (``127.0.0.1``: this machine only).
        port: TCP port; 0 picks a free one.
        title: page title.
        quality: JPEG quality.
        any_port_if_busy: bind a free port (with a warning) when ``port`` is taken, instead
            of failing.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8090,
        title: str = "live_seg",
        quality: int = 80,
        any_port_if_busy: bool = False,
    ) -> None:
        self.host, self.port, self.quality = host, port, quality
        self.any_port_if_busy = any_port_if_busy
        self.page = _PAGE.format(title=html.escape(title))
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._jpeg: bytes | None = None
        self._jpeg_seq = -1
        self._seq = -1
        self._streams = 0
        self._closing = threading.Event()
        self._keys: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._httpd: _PreviewHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> PreviewServer:
        """Bind and serve in the background.

        Raises:
            OutputError: the address cannot be bound.
        """
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
        httpd.owner = self
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="live_seg-serve", daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        """The page's address (loopback when bound to all interfaces)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else "[::1]" if self.host == "::" else self.host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{self.port}/"

    @property
    def clients(self) -> int:
        """Browsers (stream connections) watching now."""
        with self._cond:
            return self._streams

    def publish(self, image: Frame) -> None:
        """Offer the newest rendered view (BGR uint8); encoded only while someone watches."""
        copy = image.copy()
        jpeg = self._encode(copy) if self.clients else None
        with self._cond:
            self._seq += 1
            self._image = copy
            if jpeg is not None:
                self._jpeg, self._jpeg_seq = jpeg, self._seq
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

    def _track(self, thread: threading.Thread) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)

    def _stream_to(self, handler: _PreviewHandler) -> None:
        """Send the newest frame each time there is a new one, until the client or the server goes."""
        sock = handler.connection
        with self._cond:
            self._streams += 1
            self._sockets.add(sock)
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
