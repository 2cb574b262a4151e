"""A loopback MJPEG-over-HTTP server for tests: a live source without a camera.

It serves ``multipart/x-mixed-replace`` JPEG frames at a fixed rate, the way IP cameras and
``mjpg-streamer`` do, so OpenCV opens it like any network camera
(``cv2.VideoCapture("http://127.0.0.1:PORT/stream.mjpg")``). Frames are made on a fixed
schedule (frame ``k`` at ``start + k / fps``, no drift) whether or not anyone is reading, and
every client gets the newest frame each tick (a slow client skips frames, as with a camera).

Use it from Python::

    from mjpeg import MJPEGServer

    with MJPEGServer(fps=25, size=(640, 360), duration=30) as server:
        cap = cv2.VideoCapture(server.url)      # http://127.0.0.1:<port>/stream.mjpg
        ...
        server.kill()                            # drop every connection now, refuse new ones

or as a process (``python tests/mjpeg.py --port 8765 --fps 25 --duration 60``), which prints
its URL on stdout and serves until the duration ends, Ctrl-C or SIGTERM (kill the process to
simulate a camera that dies).

Two faulty cameras, both off by default:

* ``stall_after=S`` (``--stall-after S``): S seconds after it starts serving, every stream
  connection open at that moment stops receiving parts but stays open (no FIN, no RST), like a
  camera whose sender hung; a new connection is served normally, so a client that notices the
  silence and reconnects gets frames again.
* ``start_after=S`` (``--start-after S``): the camera is offline at first: nothing listens on its
  port (connections are refused) until S seconds after :meth:`MJPEGServer.start`. The port is
  chosen up front, so :attr:`MJPEGServer.url` is known at once; frame 0 is made and the
  ``duration`` counts from when it starts listening. :func:`read_parts` reads JPEG parts from any MJPEG stream (this
one, or the live view's ``/stream.mjpg``).
:class:`SilentServer` is a camera that accepts and never sends a frame (optionally after the
headers of an MJPEG stream).

Default frames are :func:`media.frame_pattern` (index code in the top strip, a moving red
square), so a reader can tell which frame it got with :func:`media.read_index`.
:meth:`MJPEGServer.produced_at` says when frame ``k`` was made (``time.perf_counter()``).

Nothing here is bound to anything but the host given (``127.0.0.1`` by default), every thread
is a daemon named ``mjpeg-test-*``, and the server stops by itself after ``duration`` seconds.
"""

from __future__ import annotations

import argparse
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

if __package__:
    from .media import frame_pattern
else:
    from media import frame_pattern

BOUNDARY = "mjpegtestframe"
"""The multipart boundary written between JPEG parts."""

FrameMaker = Callable[[int], np.ndarray]
"""``index -> (H, W, 3) uint8 BGR`` image."""


class MJPEGServer:
    """Serve JPEG frames over HTTP (MJPEG) on ``host:port`` at ``fps``.

    Args:
        frames: what to serve: a callable ``index -> BGR uint8 image``, a sequence of
            images served in a loop, or ``None`` for :func:`media.frame_pattern` at ``size``.
        fps: frames made per second (a fixed schedule).
        size: ``(width, height)`` of the default frames.
        host: address to bind; keep the default loopback address.
        port: TCP port, 0 for a free one (read it back from :attr:`port` / :attr:`url`).
        duration: seconds after :meth:`start` when the server stops by itself (``None``:
            never; tests should always bound it).
        quality: JPEG quality 1..100.
        path: the stream's URL path; ``/`` and ``/frame.jpg`` (one JPEG) are served too.
        stall_after: seconds after serving starts when the connections open then go silent
            (kept open); ``None``: never.
        start_after: seconds after :meth:`start` before the server listens; ``None``: at once.

    Attributes:
        frames_made: frames produced so far (the next index).
        parts_sent: JPEG parts written to all clients together.
        connections: stream connections accepted so far.
        stalled: stream connections that went silent at ``stall_after``.
    """

    def __init__(
        self,
        frames: FrameMaker | Sequence[np.ndarray] | None = None,
        *,
        fps: float = 25.0,
        size: tuple[int, int] = (640, 360),
        host: str = "127.0.0.1",
        port: int = 0,
        duration: float | None = 60.0,
        quality: int = 85,
        path: str = "/stream.mjpg",
        stall_after: float | None = None,
        start_after: float | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps: expected > 0, got {fps}")
        for name, value in (("stall_after", stall_after), ("start_after", start_after)):
            if value is not None and value < 0:
                raise ValueError(f"{name}: expected >= 0, got {value}")
        if frames is None:
            width, height = size
            self._make: FrameMaker = lambda i: frame_pattern(i, width, height)
        elif callable(frames):
            self._make = frames
        else:
            images = list(frames)
            if not images:
                raise ValueError("frames: expected at least one image")
            self._make = lambda i: images[i % len(images)]
        self.fps = float(fps)
        self.host = host
        self.duration = duration
        self.quality = int(quality)
        self.path = path
        self.frames_made = 0
        self.parts_sent = 0
        self.connections = 0
        self.stalled = 0
        self.stall_after = stall_after
        self.start_after = start_after
        if start_after is not None and port == 0:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((host, 0))
                port = int(probe.getsockname()[1])
        self._requested_port = port
        self._hung: set[socket.socket] = set()
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = -1
        self._made_at: dict[int, float] = {}
        self._done = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> MJPEGServer:
        """Bind, make the first frame and start serving (after ``start_after`` seconds, from a
        thread, when that is set); returns ``self``."""
        if self._httpd is not None or self._threads:
            return self
        if self.start_after is None:
            self._serve()
        else:
            starter = threading.Thread(target=self._start_later, name="mjpeg-test-starter", daemon=True)
            self._threads = [starter]
            starter.start()
        return self

    def _start_later(self) -> None:
        if not self._done.wait(self.start_after):
            self._serve()

    def _serve(self) -> None:
        with self._cond:
            if self._done.is_set():
                return
            self._httpd = _Server((self.host, self._requested_port), _Handler)
            self._httpd.owner = self
        self._produce(0)  # a frame is ready before the first client connects
        self._t0 = time.perf_counter()
        threads = [
            threading.Thread(target=self._tick, name="mjpeg-test-producer", daemon=True),
            threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="mjpeg-test-http", daemon=True
            ),
        ]
        self._threads += threads
        for thread in threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the stream (clients see it end), stop listening, join every thread. Idempotent."""
        with self._cond:
            self._done.set()
            self._cond.notify_all()
        for thread in self._threads:
            if thread.name == "mjpeg-test-starter" and thread is not threading.current_thread():
                thread.join(timeout)  # returns at once: it waits on _done
        self._drop_connections()
        if self._httpd is not None:
            if any(t.name == "mjpeg-test-http" and t.is_alive() for t in self._threads):
                self._httpd.shutdown()
            self._httpd.server_close()
        deadline = time.monotonic() + timeout
        for thread in [*self._threads, *self._client_threads()]:
            thread.join(max(0.0, deadline - time.monotonic()))

    def kill(self) -> None:
        """Simulate a crashed camera: reset every open connection now, then stop listening
        (new connections are refused from then on)."""
        self._done.set()
        self._drop_connections(reset=True)
        self.stop()

    def __enter__(self) -> MJPEGServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests read -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`; at once with ``start_after``)."""
        if self._httpd is None:
            if self.start_after is not None:
                return self._requested_port
            raise RuntimeError("MJPEGServer: start() it first")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT/stream.mjpg``."""
        return f"http://{self.host}:{self.port}{self.path}"

    @property
    def running(self) -> bool:
        """True until the duration ends or :meth:`stop` / :meth:`kill` is called (also while
        waiting for ``start_after``)."""
        return (self._httpd is not None or bool(self._threads)) and not self._done.is_set()

    @property
    def listening(self) -> bool:
        """True while the server accepts connections."""
        return self._httpd is not None and not self._done.is_set()

    @property
    def clients(self) -> int:
        """Stream connections open now."""
        with self._cond:
            return len(self._sockets)

    def produced_at(self, index: int) -> float | None:
        """``time.perf_counter()`` when frame ``index`` was made (the last 10,000 are kept)."""
        return self._made_at.get(index)

    def wait_for_client(self, timeout: float = 10.0) -> bool:
        """Wait until a stream connection is open; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.clients:
                return True
            time.sleep(0.02)
        return False

    # -- internals -----------------------------------------------------------------------------

    def _produce(self, index: int) -> None:
        image = self._make(index)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError(f"cannot encode frame {index} as JPEG")
        with self._cond:
            self._jpeg = buf.tobytes()
            self._seq = index
            self._made_at[index] = time.perf_counter()
            self._made_at.pop(index - 10_000, None)
            self.frames_made = index + 1
            self._cond.notify_all()

    def _tick(self) -> None:
        index = 1
        stall_at = None if self.stall_after is None else self._t0 + self.stall_after
        while not self._done.is_set():
            due = self._t0 + index / self.fps
            if stall_at is not None and due >= stall_at:
                self._hang_connections()
                stall_at = None
            if self.duration is not None and due - self._t0 >= self.duration:
                break
            if self._done.wait(max(0.0, due - time.perf_counter())):
                return
            self._produce(index)
            index += 1
        if not self._done.is_set():
            # The duration is over: end the stream and stop listening (from another thread,
            # since shutdown() waits for serve_forever()).
            threading.Thread(target=self.stop, name="mjpeg-test-stopper", daemon=True).start()

    def _next(self, after: int, sock: socket.socket) -> tuple[int, bytes] | None:
        """The newest frame after ``after`` for the connection ``sock``; ``None`` once the
        server ends. A hung connection waits here until then."""
        with self._cond:
            while not self._done.is_set():
                if self._seq > after and self._jpeg is not None and sock not in self._hung:
                    return self._seq, self._jpeg
                self._cond.wait(0.1)
        return None

    def _hang_connections(self) -> None:
        with self._cond:
            self._hung |= self._sockets
            self.stalled += len(self._sockets)

    def _latest(self) -> bytes | None:
        with self._cond:
            return self._jpeg

    def _register(self, sock: socket.socket) -> bool:
        with self._cond:
            if self._done.is_set():
                return False
            self._sockets.add(sock)
            self.connections += 1
            return True

    def _unregister(self, sock: socket.socket) -> None:
        with self._cond:
            self._sockets.discard(sock)
            self._hung.discard(sock)

    def _drop_connections(self, reset: bool = False) -> None:
        with self._cond:
            socks = list(self._sockets)
        for sock in socks:
            try:
                if reset:  # close with RST instead of FIN, like a process that died
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked on this socket
                if reset:
                    sock.close()
            except OSError:
                pass

    def _client_threads(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "mjpeg-test-client"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: MJPEGServer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that went away mid-response

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), name="mjpeg-test-client", daemon=True
        )
        thread.start()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that stops reading cannot hold a thread forever

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        route = self.path.split("?", 1)[0]
        if route == owner.path:
            self._stream(owner)
        elif route == "/frame.jpg":
            jpeg = owner._latest()
            if jpeg is None:
                self.send_error(503)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(jpeg)))
            self.end_headers()
            self.wfile.write(jpeg)
        elif route == "/":
            body = f'<!doctype html><title>mjpeg test source</title><img src="{owner.path}">\n'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def _stream(self, owner: MJPEGServer) -> None:
        if not owner._register(self.connection):
            self.send_error(503)
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache, no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            seq = -1
            while True:
                item = owner._next(seq, self.connection)
                if item is None:
                    return
                seq, jpeg = item
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                self.wfile.write(head + jpeg + b"\r\n")
                with owner._cond:
                    owner.parts_sent += 1
        except OSError:
            return  # the client went away, or kill() reset the connection
        finally:
            owner._unregister(self.connection)


class SilentServer:
    """A camera that accepts connections and then says nothing, on loopback.

    ``headers=False``: it never answers at all (a hung device, a firewall that drops replies), so
    a client blocks for its whole open timeout. ``headers=True``: it answers an HTTP request with
    the ``multipart/x-mixed-replace`` headers of an MJPEG stream and then stalls before the first
    part. Connections stay open (no FIN, no RST) until :meth:`stop`.

    Attributes:
        connections: connections accepted so far.
    """

    def __init__(self, headers: bool = False, host: str = "127.0.0.1") -> None:
        self.headers = headers
        self.host = host
        self.connections = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self._open: list[socket.socket] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="mjpeg-test-silent", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._listener.getsockname()[1]}/stream.mjpg"

    def start(self) -> SilentServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5.0)
        for sock in [*self._open, self._listener]:
            sock.close()

    def __enter__(self) -> SilentServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._open.append(conn)
            self.connections += 1
            if self.headers:
                conn.settimeout(2.0)
                try:
                    conn.recv(65536)  # the request
                    conn.sendall(
                        f"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n"
                        "Cache-Control: no-cache\r\n\r\n".encode()
                    )
                except OSError:
                    pass


def read_parts(url: str, count: int, timeout: float = 10.0) -> list[bytes]:
    """Read ``count`` JPEG parts from an MJPEG stream (this server's or any other).

    A small client for tests of MJPEG endpoints: checks the ``multipart/x-mixed-replace``
    content type, reads each part by its ``Content-Length`` (which this server and the live
    view's both send) and returns the JPEG bytes in order.

    Raises:
        AssertionError: the response is not an MJPEG stream.
        OSError, http.client.HTTPException: the connection failed or ended early.
    """
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        resp = conn.getresponse()
        ctype = resp.getheader("Content-Type", "")
        assert resp.status == 200, f"{url}: HTTP {resp.status}"
        assert ctype.startswith("multipart/x-mixed-replace"), f"{url}: Content-Type {ctype!r}"
        boundary = ctype.split("boundary=", 1)[1].strip().strip('"').removeprefix("--").encode()
        out: list[bytes] = []
        while len(out) < count:
            line = resp.readline()
            if not line:
                raise http.client.IncompleteRead(b"", count - len(out))
            if line.strip() != b"--" + boundary:
                continue
            headers = {}
            while (line := resp.readline().strip()) != b"":
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            assert "content-length" in headers, f"{url}: a part without Content-Length"
            data = resp.read(int(headers["content-length"]))
            out.append(data)
        return out
    finally:
        conn.close()


def parse_size(text: str) -> tuple[int, int]:
    """An argparse ``type=`` for ``WIDTHxHEIGHT`` (also the benchmark scripts')."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the test pattern until the duration ends or a signal arrives."""
    parser = argparse.ArgumentParser(description="Loopback MJPEG test server (test pattern frames).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed)")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--size", type=parse_size, default=(640, 360), help="WIDTHxHEIGHT (default 640x360)")
    parser.add_argument("--duration", type=float, default=600.0, help="stop after S seconds (default 600)")
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--stall-after", type=float, metavar="S", help="open connections go silent after S seconds")
    parser.add_argument("--start-after", type=float, metavar="S", help="listen only after S seconds (offline at first)")
    args = parser.parse_args(argv)
    server = MJPEGServer(
        fps=args.fps,
        size=args.size,
        host=args.host,
        port=args.port,
        duration=args.duration,
        quality=args.quality,
        stall_after=args.stall_after,
        start_after=args.start_after,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        print(server.url, flush=True)
        while server.running and not stop.wait(0.1):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
