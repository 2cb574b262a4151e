"""Multi-camera ``live`` against real cameras on loopback (issue 20, "streams").

Cameras: :class:`mjpeg.MJPEGServer` (HTTP MJPEG, frames stamped with their index, one that
stalls with its connection open, one that is offline at first) and :class:`rtsp.RTSPCamera`
(Debian's gst-rtsp-server, H.264 over RTSP, killed and started again at another size, or
offline at first). ``live`` runs as its own process in its own process group, with LRASPP and
untrained weights, ``--display none``.

The acceptance run (one ``live`` over four faulty and healthy cameras, ~35 s) runs once for the
module; each of its claims is a test of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from harness import start_cli, threads_since, wait_for
from media import CODE_BITS, read_index
from mjpeg import MJPEGServer
from rtsp import RTSPCamera, free_port, system_python_problem

FPS = 25
SIZE = (320, 180)
"""Picture size of every camera (width, height), small to spare the shared CPU."""
RESTART_SIZE = (256, 144)
"""The RTSP camera's size after it comes back."""
FAST_MODEL = ["--model", "lraspp_mobilenet_v3_large", "--weights", "random", "--device", "cpu", "--size", "128"]
FAST_MODEL += ["--no-legend"]  # the legend would cover the frame counter the cameras stamp in the top row
CODE_SPAN = 1 << CODE_BITS

# The acceptance run's timeline, in seconds from when the cameras and `live` start.
RUN_S = 30
STALL_AT = 10.0
KILL_AT = 15.0
BACK_AT = 20.0
LATE_UNTIL = 12.0
GOOD_END = ("live", "ended")
"""A source's state at the end of a run when it worked until then (not failed)."""
LAST_S = 10.0
"""The healthy camera's recording must hold frames sent in this many last seconds of the run."""


@pytest.fixture(scope="module")
def rtsp_ok() -> None:
    problem = system_python_problem()
    if problem:
        pytest.skip(problem)


# -- helpers ----------------------------------------------------------------------------------


class Live:
    """``python run_live.py live ARGS`` in a process group of its own, stderr collected."""

    def __init__(self, *args: str) -> None:
        self.proc = start_cli(
            "live", *args, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, name="test-live-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait(self, timeout: float) -> int:
        """Wait for the exit; returns the exit status (the process is killed on timeout)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"live did not exit within {timeout} s:\n{self.text()[-3000:]}")
        finally:
            self._reader.join(10)

    def kill(self) -> None:
        """Kill the whole process group (the test's own clean-up after a failure)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def text(self) -> str:
        return "\n".join(self.lines)

    def group_alive(self) -> bool:
        """True while any process of live's process group (live or a child of it) exists."""
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_until(t0: float, at: float) -> None:
    time.sleep(max(0.0, t0 + at - time.perf_counter()))


def wait_for_frames(server: MJPEGServer, parts: int, timeout: float, run: Live) -> None:
    """Wait until a client of ``server`` received ``parts`` more JPEG parts (while ``run`` runs)."""
    start = server.parts_sent
    wait_for(lambda: server.parts_sent - start >= parts, timeout, f"a client to read {parts} frames from {server.url}",
             alive=run.proc)  # fmt: skip


def by_source(stats: dict, urls: list[str]) -> list[dict]:
    """The stats' ``sources``, checked to be one per ``--source`` in that order."""
    sources = stats["sources"]
    assert [s["source"] for s in sources] == urls
    for s in sources:
        for key in ("state", "frames_in", "frames_processed", "dropped", "reconnects", "latency_ms"):
            assert key in s, (key, s)
    return sources


def recordings(folder: Path, urls: list[str]) -> list[Path]:
    """One recording per source in ``folder`` (files are named after their source, which holds
    its port), in ``urls`` order; nothing else (no half-written file) is left there."""
    files = sorted(p for p in folder.iterdir())
    assert len(files) == len(urls), [p.name for p in files]
    out = []
    for url in urls:
        port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
        match = [p for p in files if port in p.name]
        assert len(match) == 1, (url, [p.name for p in files])
        out.append(match[0])
    return out


def decode(path: Path) -> list[tuple[float, np.ndarray]]:
    """Every frame of a recording as ``(seconds, BGR image)``: PyAV must play it to the end."""
    with av.open(str(path)) as container:
        return [(float(f.pts * f.time_base), f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]


def stamps(frames: list[tuple[float, np.ndarray]], size: tuple[int, int]) -> list[int]:
    """The frame indices :func:`media.frame_pattern` stamped, unwrapped (mod 1024 → absolute)."""
    out: list[int] = []
    for _, image in frames:
        if image.shape[1::-1] != size:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        stamp = read_index(image)
        out.append(stamp if not out else out[-1] + 1 + (stamp - out[-1] - 1) % CODE_SPAN)
    return out


# -- the cameras themselves ---------------------------------------------------------------------


def test_rtsp_camera_is_read_by_opencv_and_ffprobe_and_comes_back_at_another_size(rtsp_ok):
    with RTSPCamera(size=SIZE, fps=FPS, duration=60) as camera:
        cap = cv2.VideoCapture(camera.url, cv2.CAP_FFMPEG)
        try:
            ok, frame = cap.read()
        finally:
            cap.release()
        assert ok and frame.shape == (SIZE[1], SIZE[0], 3)
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_streams", "-of", "json", camera.url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode == 0, probe.stderr
        (stream,) = json.loads(probe.stdout)["streams"]
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", *SIZE)
        assert stream["avg_frame_rate"] == f"{FPS}/1"
        url, pid = camera.url, camera.pid
        camera.kill()
        assert not cv2.VideoCapture(url, cv2.CAP_FFMPEG).isOpened()  # the camera is gone
        camera.start(size=RESTART_SIZE)
        assert camera.url == url and camera.pid != pid
        cap = cv2.VideoCapture(camera.url, cv2.CAP_FFMPEG)
        try:
            ok, frame = cap.read()
        finally:
            cap.release()
        assert ok and frame.shape == (RESTART_SIZE[1], RESTART_SIZE[0], 3)
    assert not camera.running


def test_rtsp_camera_offline_until_its_delay(rtsp_ok):
    camera = RTSPCamera(size=SIZE, delay=1.5, duration=30).start(wait=False)
    try:
        t0 = time.monotonic()
        assert not cv2.VideoCapture(camera.url, cv2.CAP_FFMPEG).isOpened()
        assert camera.wait_ready() == camera.url
        assert time.monotonic() - t0 > 1.0
        cap = cv2.VideoCapture(camera.url, cv2.CAP_FFMPEG)
        assert cap.isOpened() and cap.read()[0]
        cap.release()
    finally:
        camera.stop()


def test_rtsp_camera_reports_a_port_in_use(rtsp_ok):
    with RTSPCamera(size=SIZE, duration=30) as first:
        with pytest.raises(RuntimeError, match="exited with 1: error: cannot listen"):
            RTSPCamera(size=SIZE, port=first.port, duration=30).start(timeout=20)


def test_mjpeg_camera_stalls_with_its_connection_open():
    import http.client

    with MJPEGServer(fps=FPS, size=SIZE, duration=30, stall_after=0.5) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=1.5)
        try:
            conn.request("GET", "/stream.mjpg")
            resp = conn.getresponse()
            with pytest.raises(TimeoutError):
                while True:  # parts until the stall, then silence
                    resp.read(4096)
            assert server.clients == 1 and server.stalled == 1  # still connected
            made = server.frames_made
            wait_for(lambda: server.frames_made > made, 30, "the camera to make frames while one client stalls")
            from mjpeg import read_parts

            assert len(read_parts(server.url, 3, timeout=5)) == 3
        finally:
            conn.close()


def test_mjpeg_camera_offline_until_start_after():
    from mjpeg import read_parts

    server = MJPEGServer(fps=FPS, size=SIZE, duration=30, start_after=1.0).start()
    try:
        assert server.running and not server.listening
        with pytest.raises(ConnectionRefusedError):
            read_parts(server.url, 1, timeout=1)
        wait_for(lambda: server.listening, 30, "the camera to come online")
        assert len(read_parts(server.url, 2, timeout=5)) == 2
    finally:
        server.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("mjpeg-test")]


# -- live over several cameras: a camera that never comes, an error, Ctrl-C ---------------------


def test_camera_that_never_comes_is_reported_and_the_others_go_on(tmp_path):
    never = f"http://127.0.0.1:{free_port()}/stream.mjpg"  # nothing listens there
    stats_path, rec = tmp_path / "stats.json", tmp_path / "rec"
    rec.mkdir()
    with MJPEGServer(fps=FPS, size=SIZE, duration=120) as healthy:
        urls = [healthy.url, never]
        run = Live(
            *[a for u in urls for a in ("--source", u)],
            "--display", "none", "--duration", "8", "--reconnect", "2",
            "--record", f"{rec}/", "--stats", str(stats_path), *FAST_MODEL,
        )  # fmt: skip
        try:
            code = run.wait(90)
        finally:
            run.kill()
    assert code == 0, run.text()[-3000:]
    assert "Traceback" not in run.text()
    assert never in run.text()  # the source that gave up is reported
    ok, gone = by_source(json.loads(stats_path.read_text()), urls)
    assert ok["frames_processed"] > 0 and ok["state"] in GOOD_END
    assert gone["state"] == "failed" and gone["frames_in"] == gone["frames_processed"] == 0
    files = sorted(rec.iterdir())
    assert [p for p in files if str(healthy.port) in p.name], [p.name for p in files]
    for path in files:  # the source that never came has no recording, or a playable one
        assert decode(path)
    assert not run.group_alive()


def test_no_camera_at_all_is_a_one_line_error():
    urls = [f"http://127.0.0.1:{free_port()}/stream.mjpg", f"rtsp://127.0.0.1:{free_port()}/cam"]
    run = Live(*[a for u in urls for a in ("--source", u)], "--display", "none", "--reconnect", "1", *FAST_MODEL)
    try:
        code = run.wait(90)
    finally:
        run.kill()
    text = run.text()
    assert code == 1, text[-3000:]
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].startswith("error: "), text[-3000:]
    assert not run.group_alive()


def test_ctrl_c_exits_130_with_playable_recordings_and_nothing_left(tmp_path, rtsp_ok):
    stats_path, rec = tmp_path / "stats.json", tmp_path / "rec"
    rec.mkdir()
    with MJPEGServer(fps=FPS, size=SIZE, duration=120) as mjpeg, RTSPCamera(size=SIZE, duration=120) as camera:
        urls = [mjpeg.url, camera.url]
        run = Live(
            *[a for u in urls for a in ("--source", u)],
            "--display", "none", "--record", f"{rec}/", "--stats", str(stats_path), *FAST_MODEL,
        )  # fmt: skip
        try:
            wait_for_frames(mjpeg, 3 * FPS, timeout=60, run=run)
            run.proc.send_signal(signal.SIGINT)
            code = run.wait(30)
        finally:
            run.kill()
    assert code == 130, run.text()[-3000:]
    assert "Traceback" not in run.text()
    sources = by_source(json.loads(stats_path.read_text()), urls)
    assert sources[0]["frames_processed"] > 0
    for path in recordings(rec, urls):
        assert decode(path), path.name
    assert not run.group_alive()


def test_stream_api_yields_every_source_and_leaves_no_thread(rtsp_ok):
    import live_seg

    with MJPEGServer(fps=FPS, size=SIZE, duration=120) as mjpeg, RTSPCamera(size=SIZE, duration=120) as camera:
        urls = [mjpeg.url, camera.url]
        # Libraries' process-wide threads (OpenVINO's telemetry pool, made when the model is
        # first built) are not the run's: build a model once before counting.
        live_seg.build_segmenter("lraspp_mobilenet_v3_large", "random", "cpu", size=128, mode="latency")
        before = set(threading.enumerate())
        seen: dict[str, list] = {url: [] for url in urls}
        model = live_seg.ModelOptions("lraspp_mobilenet_v3_large", "random", "cpu", size=128)
        results = live_seg.stream(urls, model=model)
        deadline = time.monotonic() + 60
        try:
            for r in results:
                seen[r.source].append(r)
                if all(len(v) >= 5 for v in seen.values()):
                    break
                assert time.monotonic() < deadline, {u: len(v) for u, v in seen.items()}
        finally:
            results.close()
        left = threads_since(before, ignore="mjpeg-test")
        assert not left, left
    for url in urls:
        rs = seen[url]
        assert [r.index for r in rs] == sorted({r.index for r in rs})  # each source in its frame order
        for r in rs:
            assert r.frame.shape == (SIZE[1], SIZE[0], 3) and r.frame.dtype == np.uint8
            assert r.mask.shape == (128, 128) and r.t_done >= r.t_capture
    served = [mjpeg.produced_at(i) for i in stamps([(0.0, r.frame) for r in seen[mjpeg.url]], SIZE)]
    assert all(t is not None for t in served)  # real frames of that camera, in order


def test_stream_api_leaves_no_thread_after_an_error(rtsp_ok):
    """Both ways a ``stream()`` ends in an error: the caller's code raises while iterating, and
    every source is lost (``SourceError`` from the generator)."""
    import live_seg
    from live_seg.base.errors import SourceError

    model = live_seg.ModelOptions("lraspp_mobilenet_v3_large", "random", "cpu", size=128)
    live_seg.segmenter_for(model, mode="throughput")  # libraries' process-wide threads first
    before = set(threading.enumerate())
    with MJPEGServer(fps=FPS, size=SIZE, duration=60) as mjpeg, RTSPCamera(size=SIZE, duration=60) as camera:
        with pytest.raises(RuntimeError, match="the caller's own error"):
            with contextlib.closing(live_seg.stream([mjpeg.url, camera.url], model=model)) as results:
                for n, _ in enumerate(results):
                    if n == 3:
                        raise RuntimeError("the caller's own error")
        left = threads_since(before, ignore="mjpeg-test")
        assert not [name for name in left if not name.startswith("live_seg-read-")], left
        # A camera still opening when the caller stopped is not waited for: its open ends by itself
        # (within the 10 s open timeout; this RTSP camera answers in about a second) and releases it.
        wait_for(lambda: not set(left) & set(threads_since(before)), 30, f"the opening camera's threads {left} to end")
    never = [f"http://127.0.0.1:{free_port()}/stream.mjpg", f"rtsp://127.0.0.1:{free_port()}/cam"]
    options = live_seg.LiveOptions(reconnect=1)
    with pytest.raises(SourceError):
        with contextlib.closing(live_seg.stream(never, options=options, model=model)) as results:
            for _ in results:
                pytest.fail("a result from a source that does not exist")
    left = threads_since(before)
    assert not left, left


# -- the acceptance run: four cameras, three of them faulty ------------------------------------


@dataclass
class FourCameras:
    """What the acceptance run left: exit status, stderr, stats, recordings, camera records."""

    code: int
    text: str
    urls: list[str]
    stats: dict
    files: list[Path]
    healthy: MJPEGServer
    stalled: MJPEGServer
    t0: float
    t_end: float
    group_alive: bool
    restart_pids: list[int | None] = field(default_factory=list)


@pytest.fixture(scope="module")
def four(tmp_path_factory, rtsp_ok) -> FourCameras:
    """One ``live`` over: a healthy MJPEG camera; an MJPEG camera whose connection goes silent
    at 10 s (kept open); an RTSP camera killed at 15 s and back at 20 s at another size; an RTSP
    camera offline until 12 s. ``--duration 30``."""
    tmp = tmp_path_factory.mktemp("four")
    stats_path, rec = tmp / "stats.json", tmp / "rec"
    rec.mkdir()
    t0 = time.perf_counter()
    healthy = MJPEGServer(fps=FPS, size=SIZE, duration=120).start()
    stalled = MJPEGServer(fps=FPS, size=SIZE, duration=120, stall_after=STALL_AT).start()
    restarted = RTSPCamera(size=SIZE, fps=FPS, mount="/restarted", duration=120)
    late = RTSPCamera(size=SIZE, fps=FPS, mount="/late", duration=120, delay=LATE_UNTIL)
    run = None
    try:
        restarted.start()
        late.start(wait=False)
        urls = [healthy.url, stalled.url, restarted.url, late.url]
        run = Live(
            *[a for u in urls for a in ("--source", u)],
            "--display", "none", "--duration", str(RUN_S), "--reconnect", "8",
            "--record", f"{rec}/", "--stats", str(stats_path), *FAST_MODEL,
        )  # fmt: skip
        pids = [restarted.pid]
        wait_until(t0, KILL_AT)
        restarted.kill()
        wait_until(t0, BACK_AT)
        restarted.start(size=RESTART_SIZE)
        pids.append(restarted.pid)
        late.wait_ready(timeout=10)
        code = run.wait(RUN_S + 60)
        t_end = time.perf_counter()
        result = FourCameras(
            code=code,
            text=run.text(),
            urls=urls,
            stats=json.loads(stats_path.read_text()) if stats_path.exists() else {},
            files=sorted(rec.iterdir()),
            healthy=healthy,
            stalled=stalled,
            t0=t0,
            t_end=t_end,
            group_alive=run.group_alive(),
            restart_pids=pids,
        )
    finally:
        if run is not None:
            run.kill()
        for camera in (restarted, late):
            camera.stop()
        for server in (healthy, stalled):
            server.stop()
    return result


def test_four_cameras_exit_0_without_traceback(four):
    assert four.code == 0, four.text[-3000:]
    assert "Traceback" not in four.text
    assert not four.group_alive  # no child process left behind


def test_four_cameras_stats_list_each_source_with_frames_processed(four):
    sources = by_source(four.stats, four.urls)
    for s in sources:
        assert s["frames_in"] >= s["frames_processed"] > 0, s
        assert s["dropped"] >= 0
        assert 0 < s["latency_ms"]["p50"] <= s["latency_ms"]["p95"], s


def test_stalled_camera_is_reconnected_and_delivers_again(four):
    stalled = by_source(four.stats, four.urls)[1]
    assert four.stalled.stalled >= 1  # its first connection really went silent
    assert stalled["reconnects"] >= 1, stalled
    assert stalled["state"] in GOOD_END, stalled
    frames = decode(recordings(rec_dir(four), four.urls)[1])
    made = [four.stalled.produced_at(i) for i in stamps(frames, SIZE)]
    assert all(t is not None for t in made), "a recorded frame the camera never sent"
    assert max(made) > four.t0 + STALL_AT + 1.0, "nothing recorded after the stall"


def test_restarted_camera_reconnects_at_its_new_size(four):
    _, _, restarted, _ = by_source(four.stats, four.urls)
    assert four.restart_pids[0] != four.restart_pids[1]
    assert restarted["reconnects"] >= 1, restarted
    assert restarted["state"] in GOOD_END, restarted


def test_late_camera_joins_the_run(four):
    _, _, _, late = by_source(four.stats, four.urls)
    assert late["frames_processed"] > 0 and late["state"] in GOOD_END, late


def test_healthy_recording_holds_the_last_10_s(four):
    frames = decode(recordings(rec_dir(four), four.urls)[0])
    made = [four.healthy.produced_at(i) for i in stamps(frames, SIZE)]
    assert all(t is not None for t in made), "a recorded frame the camera never sent"
    recent = [t for t in made if t >= four.t_end - LAST_S]
    assert len(recent) >= LAST_S, (len(recent), round(four.t_end - max(made), 2))


def test_one_playable_recording_per_source(four):
    for url, path in zip(four.urls, recordings(rec_dir(four), four.urls), strict=True):
        assert decode(path), (url, path.name)


def rec_dir(four: FourCameras) -> Path:
    """The acceptance run's recording folder (all its files share it)."""
    assert four.files, "no recording"
    return four.files[0].parent
