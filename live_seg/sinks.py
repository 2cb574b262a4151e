"""Where rendered frames go: an MP4 file encoded with PyAV.

The writer encodes H.264 (libx264, yuv420p) into an MP4 with ``+faststart``, places each
frame at the timestamp it is given (variable frame rate is kept), and copies or transcodes
the source's audio in the same pass. It writes to a temporary name in the output's folder
and renames on :meth:`VideoWriter.close`, so the final name never holds a half-written file.
"""

from __future__ import annotations

import errno
import html
import ipaddress
import logging
import os
import queue
import socket
import sys
import tempfile
import threading
import time
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import numpy as np

from .errors import OutputError
from .frames import Frame

log = logging.getLogger(__name__)

AUDIO_COPY_CODECS = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})
"""Audio codecs copied into MP4 as they are; anything else is transcoded to AAC."""

AAC_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000})
"""Sample rates the AAC encoder takes; audio at any other rate is resampled to 48 kHz."""


def check_output_path(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written.

    Raises:
        OutputError: the folder is missing or not writable, the path is a folder, or the
            file exists and ``overwrite`` is False.
    """
    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise OutputError(f"output is a folder: {out}; give a file name such as {out / 'out.mp4'}")
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {folder}")
    if out.exists() and not overwrite:
        raise OutputError(f"output exists: {out}; pass --overwrite to replace it")
    try:  # permissions alone do not tell (root, read-only mounts, special file systems)
        with tempfile.TemporaryFile(dir=folder, prefix=".live_seg-probe."):
            pass
    except OSError as exc:
        raise OutputError(f"output folder is not writable: {folder} ({exc.strerror or exc})") from exc
    return out


class _AudioPass:
    """Audio from the source file, muxed alongside the video as the video advances."""

    def __init__(
        self, src: Path, output: av.container.OutputContainer, offset: float, stop: threading.Event | None = None
    ) -> None:
        """Open the source's audio and add its stream to ``output``.

        ``stop``, once set, cuts the audio at the video's end (:attr:`video_end`): an
        interrupted run does not wait for a long (or still growing) audio track.

        Raises:
            av.error.FFmpegError, OSError, ValueError: the audio cannot be read or encoded;
                ``output`` is left untouched then.
        """
        self.input = av.open(str(src), metadata_errors="ignore")
        try:
            self.in_stream = self.input.streams.audio[0]
            self.offset = offset
            self.copy = self.in_stream.codec_context.name in AUDIO_COPY_CODECS
            if self.copy:
                self.out_stream = output.add_stream_from_template(self.in_stream)
                self.out_stream.time_base = self.in_stream.time_base
            else:
                ctx = self.in_stream.codec_context
                rate = ctx.sample_rate if ctx.sample_rate in AAC_RATES else 48000
                # By channel count: a layout without channel order ("1 channels") is refused by AAC.
                layout = "mono" if ctx.channels == 1 else "stereo"
                probe = av.CodecContext.create("aac", "w")  # fails here, before output is touched
                probe.sample_rate, probe.layout, probe.format = rate, layout, "fltp"
                probe.open()
                self.out_stream = output.add_stream("aac", rate=rate)
                self.out_stream.layout = layout
                self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        except BaseException:
            self.input.close()
            raise
        self.output = output
        self.stop = stop
        self.video_end = float("inf")
        self.packets = self.input.demux(self.in_stream)
        self.done = False
        self.muxed_until = float("-inf")
        self.errors = 0

    def _mux_packet(self, packet: av.Packet) -> None:
        if self.copy:
            if packet.pts is not None:
                shift = round(self.offset / packet.time_base)
                packet.pts -= shift
                packet.dts = packet.dts - shift if packet.dts is not None else None
            packet.stream = self.out_stream
            self.output.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None
            for resampled in self.resampler.resample(frame):
                self.output.mux(self.out_stream.encode(resampled))

    def advance(self, until: float) -> None:
        """Mux source audio up to ``until`` seconds (output time); after a stop request, up to
        the video's end at most."""
        while not self.done and self.muxed_until <= until:
            if self.stop is not None and self.stop.is_set() and self.muxed_until > self.video_end:
                break
            try:
                packet = next(self.packets)
            except StopIteration:
                self.done = True
                break
            except av.error.FFmpegError:
                self.done = True
                break
            if packet.pts is None and packet.size == 0:
                continue
            if packet.pts is not None:
                self.muxed_until = float(packet.pts * packet.time_base) - self.offset
                if self.muxed_until < 0 and not self.copy:
                    continue
            try:
                self._mux_packet(packet)
            except (av.error.FFmpegError, ValueError) as exc:  # ValueError: format changed mid-stream
                self.errors += 1
                log.debug("audio packet skipped: %s", exc)

    def finish(self, until: float | None) -> None:
        """Mux the rest of the audio (up to ``until`` seconds when given), flush, close the input."""
        self.advance(float("inf") if until is None else until)
        if not self.copy:
            try:
                for resampled in self.resampler.resample(None):
                    self.output.mux(self.out_stream.encode(resampled))
                self.output.mux(self.out_stream.encode(None))
            except (av.error.FFmpegError, ValueError) as exc:
                self.errors += 1
                log.debug("audio flush failed: %s", exc)
        self.input.close()
        if self.errors:
            log.warning("audio: %d packet(s) could not be muxed and were skipped", self.errors)


class VideoWriter:
    """Encode BGR frames into an H.264 MP4 at the timestamps given.

    Args:
        path: the final output file (``.mp4``).
        width, height: frame size; odd sizes are padded by one pixel (right/bottom edge
            repeated) because yuv420p needs even sizes.
        fps: nominal rate, used for frames written without a timestamp.
        time_base: timestamp unit; the source's is best (exact pts).
        audio_from: a media file whose first audio stream is copied (AAC/MP3/…) or
            transcoded to AAC; ``None`` for no audio.
        audio_offset: seconds of the source's first video timestamp (output time 0).
        overwrite: replace an existing file.
        preset, crf: libx264 settings.
        threads: encoder threads (0 = libx264 decides).
        stop: once set (an interrupt), the audio is cut at the last video frame on close.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: float = 25.0,
        time_base: Fraction | None = None,
        audio_from: str | os.PathLike[str] | None = None,
        audio_offset: float = 0.0,
        overwrite: bool = False,
        preset: str = "veryfast",
        crf: int = 20,
        threads: int = 0,
        stop: threading.Event | None = None,
    ) -> None:
        self.path = check_output_path(path, overwrite)
        self.width, self.height = width, height
        self.enc_w, self.enc_h = width + width % 2, height + height % 2
        if (self.enc_w, self.enc_h) != (width, height):
            log.warning("%dx%d is odd: padding to %dx%d for yuv420p", width, height, self.enc_w, self.enc_h)
        self.fps = fps if fps and fps > 0 else 25.0
        self.time_base = time_base or Fraction(1, 90000)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".partial.mp4", dir=self.path.parent or ".")
        except OSError as exc:
            raise OutputError(f"cannot create a file beside {self.path}: {exc.strerror or exc}") from exc
        os.close(fd)
        self.tmp = Path(tmp)
        try:
            self.container = av.open(str(self.tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
            rate = Fraction(self.fps).limit_denominator(1001)
            self.stream = self.container.add_stream("libx264", rate=rate)
            self.stream.width, self.stream.height = self.enc_w, self.enc_h
            self.stream.pix_fmt = "yuv420p"
            self.stream.time_base = self.time_base
            self.stream.codec_context.time_base = self.time_base
            self.stream.options = {"preset": preset, "crf": str(crf)}
            self.stream.codec_context.thread_count = threads
            self.audio = None
            if audio_from:
                try:
                    self.audio = _AudioPass(Path(audio_from), self.container, audio_offset, stop)
                except (av.error.FFmpegError, OSError, ValueError) as exc:
                    log.warning("the audio of %s cannot be kept (%s): writing the video only", audio_from, exc)
        except Exception as exc:
            self._discard()
            raise OutputError(f"cannot set up the encoder for {self.path}: {exc}") from exc
        except BaseException:  # an interrupt: leave no temporary file behind
            self._discard()
            raise
        self.frames = 0
        self.last_pts: int | None = None
        self.last_time = 0.0
        self.closed = False

    def write(self, image: Frame, pts: float | None = None) -> None:
        """Encode one BGR frame shown at ``pts`` seconds (``None``: one frame after the last).

        Timestamps must increase; a repeated or earlier one is moved one tick after the last.
        """
        if image.shape[0] != self.height or image.shape[1] != self.width:
            raise OutputError(
                f"frame size changed mid-stream: {image.shape[1]}x{image.shape[0]}, "
                f"the output was opened at {self.width}x{self.height}"
            )
        if (self.enc_w, self.enc_h) != (self.width, self.height):
            image = np.pad(image, ((0, self.enc_h - self.height), (0, self.enc_w - self.width), (0, 0)), mode="edge")
        ticks = round(pts / self.time_base) if pts is not None else None
        if ticks is None:
            ticks = 0 if self.last_pts is None else self.last_pts + max(1, round(1 / self.fps / self.time_base))
        if self.last_pts is not None and ticks <= self.last_pts:
            ticks = self.last_pts + 1
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = ticks
        frame.time_base = self.time_base
        self.last_pts = ticks
        self.last_time = float(ticks * self.time_base)
        if self.audio is not None:
            self.audio.advance(self.last_time)
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self, complete: bool = True) -> Path | None:
        """Flush the encoder, finish the audio, close and move the file to its final name.

        Args:
            complete: the whole source was processed; when False (interrupted) the audio is
                cut at the last video frame.

        Returns:
            The final path, or ``None`` when no frame was written (nothing is left behind).
        """
        if self.closed:
            return self.path if self.frames else None
        self.closed = True
        try:
            self.container.mux(self.stream.encode(None))
            if self.audio is not None:
                self.audio.video_end = self.last_time + 1.0 / self.fps
                self.audio.finish(None if complete else self.audio.video_end)
            self.container.close()
        except Exception as exc:
            self._discard()
            raise OutputError(f"cannot finish writing {self.path}: {exc}") from exc
        if not self.frames:
            self._discard()
            return None
        os.replace(self.tmp, self.path)
        log.info("wrote %s (%d frames)", self.path, self.frames)
        return self.path

    def abort(self) -> None:
        """Drop the output: close and delete the temporary file."""
        self.closed = True
        self._discard()

    def _discard(self) -> None:
        container = getattr(self, "container", None)
        audio = getattr(self, "audio", None)
        for closable in (container, audio.input if audio else None):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # noqa: BLE001 - best effort while discarding
                    pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        elif not self.closed:
            self.close(complete=False)


def show_image(title: str, path: str | os.PathLike[str]) -> None:
    """Show an image file in a resizable window until a key is pressed or the window closes."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OutputError(f"cannot read back {path} to show it")
    try:
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_GUI_NORMAL)
        cv2.imshow(title, image)
        while cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) >= 1:
            if cv2.waitKey(100) != -1:
                break
    except cv2.error as exc:
        raise OutputError(f"cannot open a window (no display?): {' '.join(str(exc).split())[:200]}") from exc
    finally:
        cv2.destroyAllWindows()


# --- Live preview: a window on this screen, or the same view in a browser -----------------------

KEY_QUIT = frozenset({ord("q"), ord("Q"), 27})
"""Keys that end a live run: q or Esc."""


def _opencv_gui() -> str:
    """The GUI backend OpenCV was built with (``"QT5"``, ``"GTK3"``, ``"NONE"``, …)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "GUI":
            return value.strip() or "NONE"
    return "UNKNOWN"


def _x_display_reachable(display: str, timeout: float = 1.0) -> bool:
    """Whether the X server named by ``DISPLAY`` accepts a connection (without Xlib).

    Qt aborts the whole process when it cannot reach the display, so this is checked first.
    Unparseable values count as reachable (the GUI library gets to decide).
    """
    host, sep, rest = display.rpartition(":")
    number = rest.split(".", 1)[0]
    if not sep or not number.isdigit():
        return True
    if host in ("", "unix"):
        paths = [f"/tmp/.X11-unix/X{number}"]
        if sys.platform.startswith("linux"):
            paths.insert(0, f"\0/tmp/.X11-unix/X{number}")  # the abstract socket Xorg/Xvfb also open
        for path in paths:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                try:
                    sock.connect(path)
                    return True
                except OSError:
                    continue
        return False
    try:
        with socket.create_connection((host, 6000 + int(number)), timeout=timeout):
            return True
    except OSError:
        return False


def display_problem() -> str | None:
    """Why no preview window can be opened here, or ``None`` when one can.

    Checks, without opening anything: an OpenCV build with a GUI, and on Linux/BSD an X
    display that answers (``DISPLAY``; OpenCV's Qt build does not speak Wayland itself, so
    ``WAYLAND_DISPLAY`` alone only counts for a GTK build).
    """
    gui = _opencv_gui().upper()
    if gui.startswith("NONE"):
        return "this OpenCV build has no GUI (opencv-python-headless?)"
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        display = os.environ.get("DISPLAY", "")
        if not display:
            if not os.environ.get("WAYLAND_DISPLAY"):
                return "no DISPLAY set"
            if "GTK" in gui:
                return None
            return "no DISPLAY set (WAYLAND_DISPLAY only, and this OpenCV GUI needs X11 or XWayland)"
        if not _x_display_reachable(display):
            return f"the X display {display} does not answer"
    return None


class PreviewWindow:
    """A resizable OpenCV window without toolbar, owned by the thread that opened it.

    Args:
        title: window title (also its OpenCV name).
        max_size: initial size limit ``(width, height)``; the window keeps the image's aspect.
    """

    def __init__(self, title: str, max_size: tuple[int, int] = (1280, 800)) -> None:
        self.title = title
        self.max_size = max_size
        self._open = False
        self._size: tuple[int, int] | None = None

    def show(self, image: Frame) -> None:
        """Show a BGR uint8 image (the window opens on the first call).

        Raises:
            OutputError: the window cannot be opened.
        """
        import cv2

        try:
            if not self._open:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
                self._open = True
            size = (image.shape[1], image.shape[0])
            if size != self._size:
                scale = min(1.0, self.max_size[0] / size[0], self.max_size[1] / size[1])
                cv2.resizeWindow(self.title, max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
                self._size = size
            cv2.imshow(self.title, image)
        except cv2.error as exc:
            raise OutputError(
                f"cannot open a preview window ({' '.join(str(exc).split())[:160]}); "
                "use --serve PORT to watch in a browser instead"
            ) from exc

    def poll(self, wait_ms: int = 1) -> int | None:
        """Let the window process events for ``wait_ms`` ms; the key pressed (low byte), if any."""
        import cv2

        if not self._open:
            return None
        key = cv2.waitKey(max(1, wait_ms))
        return None if key == -1 else key & 0xFF

    @property
    def closed_by_user(self) -> bool:
        """The user closed the window with its close button."""
        import cv2

        if not self._open:
            return False
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def close(self) -> None:
        """Destroy the window. Safe to call twice."""
        import cv2

        if self._open:
            self._open = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass


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
<button data-k="s">snapshot (s)</button>
</nav>
<script>
const send = k => fetch("/key", {{method: "POST", body: k}});
for (const b of document.querySelectorAll("button")) b.onclick = () => send(b.dataset.k);
document.onkeydown = e => {{ if (" mls".includes(e.key)) {{ send(e.key); e.preventDefault(); }} }};
</script>
</body></html>
"""

PAGE_KEYS = frozenset(" mls")
"""Keys the browser page may send (never quit: stop the tool where it runs)."""

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
    (the newest frame once) and ``POST /key`` (one of ``" mls"``, from loopback clients only).
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
        self.frames_sent = 0
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
                    f"cannot serve the preview on {self.host}:{self.port} ({exc.strerror or exc}); "
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
                with self._cond:
                    self.frames_sent += 1
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
