"""A loopback RTSP camera for tests: Debian's gst-rtsp-server driven through python3-gi.

The server runs as a child process under Debian's own Python (:data:`SYSTEM_PYTHON`), since
``gi`` and the GStreamer typelibs come from apt, not from the project's virtual environment.
It serves H.264 (x264enc, zerolatency, a key frame every second, SPS/PPS with every key frame)
over RTP at ``rtsp://127.0.0.1:PORT/MOUNT``, which OpenCV (``cv2.CAP_FFMPEG``) and ``ffprobe``
open like an IP camera. The media is shared: every client sees the same live stream.

Use it from Python (the project's interpreter)::

    from rtsp import RTSPCamera

    with RTSPCamera(size=(320, 180), duration=60) as camera:   # waits until it listens
        cap = cv2.VideoCapture(camera.url, cv2.CAP_FFMPEG)      # rtsp://127.0.0.1:<port>/cam
        ...
        camera.kill()                     # the camera dies: connections drop, port closed
        camera.start(size=(256, 144))     # back on the same port and mount, at another size

or ``RTSPCamera(delay=12).start(wait=False)`` for a camera that is offline at first: its URL
(on a port chosen up front) is known at once, and it listens only after 12 s.

As a process (``/usr/bin/python3 tests/rtsp.py --port 0 --size 320x180``) it prints its URL on
stdout once it listens, and serves until ``--duration`` ends, SIGINT or SIGTERM (exit 0); it
exits 1 with a one-line error when GStreamer or a plugin is missing or the port is taken.
Packages (Debian): ``gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good
gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav``.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
"""Debian's interpreter, which has ``gi`` (python3-gi) and the GStreamer typelibs."""

SCRIPT = Path(__file__).resolve()

DEFAULT_MOUNT = "/cam"


def launch_line(width: int, height: int, fps: int = 25, clip: str | None = None) -> str:
    """The media factory's launch line: a live test pattern (or ``clip``) as H.264 RTP.

    Args:
        width: Picture width in pixels (even).
        height: Picture height in pixels (even).
        fps: Frames per second.
        clip: A video file to play once instead of the test pattern (make it as long as the
            test: ``multifilesrc loop=true`` does not loop an MP4).

    Returns:
        A ``gst-launch`` description in parentheses, as ``RTSPMediaFactory.set_launch`` wants.
    """
    if clip is None:
        src = "videotestsrc is-live=true pattern=ball"
    else:
        src = f"filesrc location={shlex.quote(clip)} ! decodebin"
    return (
        f"( {src} ! videoconvert ! videoscale ! videorate"
        f" ! video/x-raw,width={width},height={height},framerate={fps}/1"
        " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25"
        " ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (for a server that binds it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def system_python_problem() -> str | None:
    """Why the RTSP camera cannot run here (``None`` when it can): for ``pytest.skip``."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (the RTSP camera needs Debian's python3-gi)"
    check = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "missing = [n for n in ('videotestsrc', 'x264enc', 'rtph264pay', 'videorate', 'decodebin')"
        " if Gst.ElementFactory.find(n) is None]; print(' '.join(missing))"
    )
    done = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return "gst-rtsp-server for python3-gi is missing (apt-get install gir1.2-gst-rtsp-server-1.0 python3-gi)"
    if done.stdout.strip():
        return f"GStreamer elements missing: {done.stdout.strip()} (apt-get install gstreamer1.0-plugins-ugly …)"
    return None


class RTSPCamera:
    """A gst-rtsp-server child process serving a live H.264 stream on loopback.

    Args:
        size: ``(width, height)`` of the pictures (even numbers).
        fps: Frames per second.
        port: TCP port; 0 picks a free one. Kept across :meth:`kill` / :meth:`start`, so the
            camera comes back at the same URL.
        mount: The stream's path.
        clip: Play this video file once instead of the live test pattern.
        duration: Seconds the server serves before it stops by itself (tests always bound it).
        delay: Seconds the server waits before it listens (a camera offline at start). With a
            delay and ``port=0`` the port is chosen here, so :attr:`url` is known at once.
        host: Address to bind; keep the loopback default.

    Attributes:
        starts: Times the server process was started.
    """

    def __init__(
        self,
        size: tuple[int, int] = (320, 180),
        *,
        fps: int = 25,
        port: int = 0,
        mount: str = DEFAULT_MOUNT,
        clip: str | os.PathLike[str] | None = None,
        duration: float = 120.0,
        delay: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        if not mount.startswith("/"):
            raise ValueError(f"mount: expected a path starting with '/', got {mount!r}")
        self.size = size
        self.fps = int(fps)
        self.host = host
        self.mount = mount
        self.clip = None if clip is None else str(clip)
        self.duration = float(duration)
        self.delay = float(delay)
        self.port = free_port(host) if port == 0 and delay > 0 else int(port)
        self.starts = 0
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: tempfile._TemporaryFileWrapper[str] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The server's command line as it would be started now."""
        width, height = self.size
        cmd = [SYSTEM_PYTHON, str(SCRIPT), "--host", self.host, "--port", str(self.port), "--mount", self.mount]
        cmd += ["--size", f"{width}x{height}", "--fps", str(self.fps), "--duration", str(self.duration)]
        cmd += ["--delay", str(self.delay)]
        if self.clip is not None:
            cmd += ["--clip", self.clip]
        return cmd

    def start(self, *, size: tuple[int, int] | None = None, wait: bool = True, timeout: float = 30.0) -> RTSPCamera:
        """Start the server process (again, after :meth:`kill`, at ``size`` if given).

        Args:
            size: A new picture size for this start.
            wait: Wait until the server listens (it prints its URL). Without it, call
                :meth:`wait_ready` later; useful with ``delay``.
            timeout: Seconds to wait for it to listen (beyond ``delay``).

        Returns:
            ``self``.

        Raises:
            RuntimeError: it is already running, or it exited or did not listen in time (with
                its stderr).
        """
        if self.running:
            raise RuntimeError(f"RTSP camera on port {self.port} is already running")
        if size is not None:
            self.size = size
        self._close_stderr()
        self._stderr = tempfile.TemporaryFile("w+", prefix="rtsp-camera.", suffix=".log")
        self._proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL, text=True
        )
        self.starts += 1
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait until the server listens; returns its URL.

        Raises:
            RuntimeError: the process exited first, or ``delay + timeout`` seconds passed.
        """
        proc = self._require_proc()
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(self.delay + timeout):
                self.kill()
                raise RuntimeError(f"RTSP camera did not listen within {self.delay + timeout:.0f} s: {self.stderr()}")
        line = proc.stdout.readline().strip()
        if not line.startswith("rtsp://"):
            proc.wait(10)
            raise RuntimeError(f"RTSP camera exited with {proc.returncode}: {self.stderr()}")
        self.port = int(line.rsplit(":", 1)[1].split("/", 1)[0])
        return line

    def kill(self) -> None:
        """The camera dies: SIGKILL, so clients see the connection drop without a TEARDOWN."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server cleanly (SIGTERM, then SIGKILL after ``timeout``). Idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        self._close_stderr()

    def __enter__(self) -> RTSPCamera:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests read -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``rtsp://HOST:PORT/MOUNT`` (known once a port is: after :meth:`start`, or at once with a delay)."""
        if self.port == 0:
            raise RuntimeError("RTSPCamera: start() it first (or give it a port)")
        return f"rtsp://{self.host}:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        """True while the server process runs."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server process id, while it runs."""
        return self._proc.pid if self.running else None

    def stderr(self) -> str:
        """What the server wrote to stderr so far (one line, last 2000 characters)."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return " | ".join(self._stderr.read().strip().splitlines())[-2000:]

    def _require_proc(self) -> subprocess.Popen[str]:
        if self._proc is None:
            raise RuntimeError("RTSPCamera: start() it first")
        return self._proc

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


# -- the server process (runs under SYSTEM_PYTHON) ---------------------------------------------


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(f"expected even WIDTHxHEIGHT of at least 2x2, got {text!r}")
    return width, height


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Loopback RTSP test camera (gst-rtsp-server, H.264).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed)")
    parser.add_argument("--mount", default=DEFAULT_MOUNT)
    parser.add_argument("--size", type=_parse_size, default=(320, 180), help="WIDTHxHEIGHT (default 320x180)")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--clip", help="play this video file once instead of a live test pattern")
    parser.add_argument("--duration", type=float, default=600.0, help="stop after S seconds (default 600)")
    parser.add_argument("--delay", type=float, default=0.0, help="listen only after S seconds (offline at start)")
    return parser


def serve(args: argparse.Namespace) -> int:
    """Listen, print the URL, and serve until the duration ends or SIGINT/SIGTERM arrives."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    width, height = args.size
    line = launch_line(width, height, args.fps, args.clip)
    try:  # a missing element fails here, before anyone connects
        Gst.parse_launch(line.strip("() ")).set_state(Gst.State.NULL)
    except GLib.Error as exc:
        print(f"error: cannot build the stream: {exc.message}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    GLib.timeout_add(int((args.delay + args.duration) * 1000), loop.quit)
    if args.delay > 0 and not _wait(loop, args.delay):
        return 0  # stopped while still offline
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(line)
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.mount, factory)
    try:
        source_id = server.attach(None)
    except GLib.Error as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.message}", file=sys.stderr)
        return 1
    if source_id == 0:
        print(f"error: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    print(f"rtsp://{args.host}:{server.get_bound_port()}{args.mount}", flush=True)
    loop.run()
    return 0


def _wait(loop: object, seconds: float) -> bool:
    """Run ``loop`` for ``seconds``; False when it was quit (a signal) before that."""
    from gi.repository import GLib

    expired = []

    def done() -> bool:
        expired.append(True)
        loop.quit()
        return False

    GLib.timeout_add(int(seconds * 1000), done)
    loop.run()
    return bool(expired)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the server process."""
    return serve(_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
