"""Several sources in one live run: per-source threads, states, counters, recordings and stats; the
grid view; the ``live_seg.stream`` generator. Real loopback MJPEG cameras, LRASPP with random weights.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from harness import live_threads, run_cli, wait_for
from media import make_video, probe
from mjpeg import MJPEGServer
from test_live import at, http_get, post_key

import live_seg
from live_seg.base.errors import SourceError
from live_seg.jobs.live.options import LiveOptions
from live_seg.jobs.live.outputs import compose_grid, grid_shape, source_slug, unique_names
from live_seg.jobs.live.session import LiveSession
from live_seg.jobs.live.stats import source_line

FAST_MODEL = ["--model", "lraspp_mobilenet_v3_large", "--weights", "random", "--device", "cpu", "--size", "128"]


@pytest.fixture(scope="module")
def lraspp():
    from live_seg.model.segmenter import Segmenter

    return Segmenter("lraspp_mobilenet_v3_large", weights="random", device="cpu", size=128)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/stream.mjpg"  # nothing listens there


# -- small parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "slug"),
    [
        ("0", "camera0"),
        ("rtsp://admin:secret@10.0.0.2:554/h264", "10.0.0.2-554-h264"),
        ("http://127.0.0.1:8080/stream.mjpg?x=1", "127.0.0.1-8080-stream.mjpg"),
        ("clips/street cam.mp4", "street-cam"),
        ("/dev/video2", "video2"),
    ],
)
def test_source_names_are_file_safe_and_never_hold_a_password(spec, slug):
    assert source_slug(spec) == slug


def test_names_are_unique():
    assert unique_names(["a.mp4", "x/a.mp4", "0", "b/a.mp4"]) == ["a", "a-2", "camera0", "a-3"]


@pytest.mark.parametrize(("n", "cols", "rows"), [(1, 1, 1), (2, 2, 1), (3, 2, 2), (4, 2, 2), (5, 3, 2), (9, 3, 3)])
def test_grid_holds_every_tile_in_16_9_cells(n, cols, rows):
    c, r, (w, h) = grid_shape(n)
    assert (c, r) == (cols, rows) and w % 2 == 0 and h % 2 == 0 and abs(w / h - 16 / 9) < 0.05
    cells = [np.full((90 + 10 * i, 160, 3), 25 * i + 20, np.uint8) for i in range(n)]
    grid = compose_grid(cells, selected=0)
    assert grid.shape == (rows * h, cols * w, 3)
    for i in range(n):  # each cell shows its own tile (its centre has the tile's grey)
        y, x = (i // cols) * h + h // 2, (i % cols) * w + w // 2
        assert abs(int(grid[y, x, 0]) - (25 * i + 20)) <= 2


def test_record_with_several_sources_takes_a_folder(tmp_path):
    with pytest.raises(ValueError, match="takes a folder"):
        LiveOptions(sources=("a.mp4", "b.mp4"), record=tmp_path / "x.mp4").check()
    opts = LiveOptions(sources=("a.mp4", "b.mp4"), record=f"{tmp_path}/rec/")
    opts.check()
    assert opts.recording("a") == tmp_path / "rec" / "a.mp4"


# -- runs -----------------------------------------------------------------------------------------


def test_two_cameras_and_one_that_never_comes(lraspp, tmp_path):
    """One model for both cameras; the dead one is reported and the others go on; one recording each."""
    rec = tmp_path / "rec"
    with MJPEGServer(fps=25, size=(320, 180), duration=60) as a, MJPEGServer(fps=25, size=(256, 144), duration=60) as b:
        dead = dead_url()
        options = LiveOptions(
            sources=(a.url, b.url, dead), display="none", duration=6.0, reconnect=1, record=f"{rec}/", legend=False
        )
        session = LiveSession(options, lraspp)
        summary = session.run()
    assert live_threads() == []
    assert summary["stop_reason"] == "duration" and not summary["interrupted"]
    entries = summary["sources"]
    assert [e["source"] for e in entries] == [a.url, b.url, dead]
    assert [e["state"] for e in entries] == ["live", "live", "failed"]
    assert "could not open" in entries[2]["error"]
    for entry, size in zip(entries[:2], [(320, 180), (256, 144)], strict=True):
        assert entry["frames_in"] > 50 and entry["frames_processed"] > 10
        assert entry["frames_in"] == entry["frames_processed"] + entry["dropped"] + entry["skipped_loading"]
        assert entry["latency_ms"]["p50"] is not None
        info = probe(entry["output"])["video"]
        assert (info["width"], info["height"]) == size and info["frames"] == entry["frames_recorded"] > 10
        assert Path(entry["output"]).parent == rec
    assert entries[2]["output"] is None and entries[2]["frames_in"] == 0
    assert (entries[2]["reconnects"], entries[2]["reconnect_attempts"]) == (0, 1)  # it was tried again, in vain
    assert "never delivered a frame, 0 reconnects (1 attempts)" in source_line(entries[2])
    assert summary["frames_captured"] == sum(e["frames_in"] for e in entries)
    assert summary["frames_inferred"] == sum(e["frames_processed"] for e in entries)
    # The two live cameras share forward passes: some batches hold both (a mean over 1). How many
    # depends on when their frames arrive (1.15-1.5 seen, lower on a loaded machine), so the
    # bound is only that sharing happens; test_multiplex checks the batching itself.
    assert summary["batch"] > 1.0
    assert sorted(p.name for p in rec.iterdir()) == sorted(Path(e["output"]).name for e in entries[:2])


def test_a_camera_restarted_at_another_size_comes_back_and_the_recording_keeps_its_size(lraspp, tmp_path):
    port = free_port()
    first = MJPEGServer(fps=25, size=(320, 180), port=port, duration=60).start()
    second: MJPEGServer | None = None

    def restart() -> None:
        nonlocal second
        second = MJPEGServer(fps=25, size=(192, 144), port=port, duration=60).start()

    other = MJPEGServer(fps=25, size=(256, 144), duration=60).start()
    timers = [threading.Timer(2.5, first.kill), threading.Timer(3.5, restart)]
    try:
        options = LiveOptions(
            sources=(first.url, other.url), display="none", duration=9.0, record=f"{tmp_path}/", legend=False
        )
        for timer in timers:
            timer.start()
        summary = LiveSession(options, lraspp).run()
    finally:
        for timer in timers:
            timer.cancel()
            timer.join()
        other.stop()
        first.stop()
        if second is not None:
            second.stop()
    assert live_threads() == []
    restarted, steady = summary["sources"]
    assert restarted["reconnects"] >= 1 and restarted["state"] == "live"
    assert steady["reconnects"] == 0
    info = probe(restarted["output"])["video"]
    assert (info["width"], info["height"]) == (320, 180)  # frames of the new size are scaled into it
    assert info["frames"] == restarted["frames_recorded"]
    assert second is not None and second.connections >= 1


def test_every_source_lost_is_a_source_error_and_no_thread_is_left(lraspp):
    options = LiveOptions(sources=(dead_url(), dead_url()), display="none", duration=20.0, reconnect=1)
    session = LiveSession(options, lraspp)
    with pytest.raises(SourceError, match="could not open"):
        session.run()
    assert live_threads() == []
    assert [e["state"] for e in session.summary["sources"]] == ["failed", "failed"]


def test_a_file_and_a_camera_together_the_file_loses_nothing(lraspp, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=30, width=160, height=96)
    with MJPEGServer(fps=25, size=(320, 180), duration=60) as cam:
        options = LiveOptions(sources=(str(clip), cam.url), display="none", duration=30.0, pairing="matched")
        session = LiveSession(options, lraspp)
        threading.Timer(4.0, session.control.stop, args=("quit",)).start()
        summary = session.run()
    file_entry, cam_entry = summary["sources"]
    assert file_entry["frames_in"] == file_entry["frames_processed"] == 30 and file_entry["dropped"] == 0
    assert file_entry["state"] == "ended"
    assert cam_entry["frames_processed"] > 10


def test_stream_yields_results_of_every_source_and_stops_its_threads_when_closed(lraspp):
    with MJPEGServer(fps=25, size=(320, 180), duration=60) as a, MJPEGServer(fps=25, size=(256, 144), duration=60) as b:
        got: dict[str, int] = {a.url: 0, b.url: 0}
        gen = live_seg.stream([a.url, b.url], lraspp)
        for result in gen:
            got[result.source] += 1
            assert result.mask.shape == (128, 128) and result.frame.ndim == 3
            assert 0 <= result.latency_s < 5
            if min(got.values()) >= 10:
                break
        gen.close()
        assert live_threads() == []
        assert min(got.values()) >= 10


def test_stream_over_a_file_ends_with_the_file_and_keeps_every_frame(lraspp, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=25, width=160, height=96)
    indexes = [r.index for r in live_seg.stream(str(clip), lraspp)]
    assert indexes == list(range(25))
    assert live_threads() == []


def test_stream_raises_a_lost_single_source_after_stopping(lraspp):
    from live_seg.jobs.live.options import LiveOptions as Opts

    with pytest.raises(SourceError):
        list(live_seg.stream(dead_url(), lraspp, options=Opts(reconnect=0)))
    assert live_threads() == []


def test_cli_two_cameras_stats_list_sources_in_order(tmp_path):
    with MJPEGServer(fps=25, size=(320, 180), duration=60) as a, MJPEGServer(fps=25, size=(256, 144), duration=60) as b:
        stats = tmp_path / "stats.json"
        args = ["--source", b.url, "--source", a.url, "--display", "none", "--duration", "5"]
        args += ["--stats", str(stats), "--record", f"{tmp_path}/rec/", *FAST_MODEL]
        proc = run_cli("live", *args, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(stats.read_text())
    assert [e["source"] for e in summary["sources"]] == [b.url, a.url]
    for entry in summary["sources"]:
        assert set(entry) >= {"source", "state", "frames_in", "frames_processed", "dropped", "reconnects"}
        assert set(entry["latency_ms"]) == {"p50", "p95"}
        assert entry["frames_processed"] > 5 and Path(entry["output"]).exists()
    for entry in summary["sources"]:  # one log line per source
        assert f"{entry['name']}: {entry['state']}, {entry['frames_in']} in" in proc.stderr


def test_grid_in_the_browser_and_keys_on_the_selected_tile(lraspp, tmp_path):
    urls: list[str] = []
    with MJPEGServer(fps=25, size=(320, 180), duration=60) as a, MJPEGServer(fps=25, size=(256, 144), duration=60) as b:
        options = LiveOptions(
            sources=(a.url, b.url), display="browser", port=0, duration=30.0, snapshot_dir=tmp_path, legend=False
        )
        session = LiveSession(options, lraspp, on_serve=urls.append)
        runner = threading.Thread(target=session.run)
        runner.start()
        try:
            wait_for(lambda: urls and session.processed >= 6, 60, "the view and six masks")
            with http_get(at(urls[0], "frame.jpg")) as resp:  # the view's URL carries its token
                jpeg = resp.read()
            grid = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            for key in ("2", "s", "0", "s"):  # the second tile's snapshot, then one of each tile
                shots = len(session.snapshots)
                session.handle_key(key)
                if key == "s":
                    wait_for(lambda n=shots: len(session.snapshots) > n, 30, "the snapshot")
            assert post_key(urls[0], "t") == 204  # tile keys from the page too
        finally:
            session.control.stop("quit")
            runner.join(30)
    assert live_threads() == []
    _, _, (cell_w, cell_h) = grid_shape(2)
    assert grid.shape == (cell_h, 2 * cell_w, 3)
    names = unique_names([a.url, b.url])
    shots = sorted(Path(p).name for p in session.snapshots)
    assert len(shots) == 3
    assert sum(s.startswith(f"live_seg-{names[1]}-") for s in shots) == 2
    assert sum(s.startswith(f"live_seg-{names[0]}-") for s in shots) == 1


def own_udp_sockets() -> int:
    """UDP sockets this process holds (its socket inodes found in /proc/net/udp)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    rows = [line.split() for line in Path("/proc/net/udp").read_text().splitlines()[1:]]
    return sum(row[9] in inodes for row in rows)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_over_the_transport_asked_for(transport):
    from rtsp import RTSPCamera, system_python_problem

    if problem := system_python_problem():
        pytest.skip(problem)
    from live_seg.media.camera import CaptureSource

    camera = RTSPCamera((320, 180)).start()
    try:
        before = own_udp_sockets()
        with CaptureSource(camera.url, rtsp_transport=transport) as source:
            for packet in source:
                if packet.index == 10:
                    during = own_udp_sockets()
                    break
    finally:
        camera.stop()
    assert packet.image.shape == (180, 320, 3)
    assert (during > before) == (transport == "udp")  # RTP and RTCP over UDP only when asked for


def test_smoothing_and_coverage_per_source(lraspp, tmp_path):
    from live_seg.analysis.run import AnalysisOptions

    analysis = AnalysisOptions(smooth="ema", coverage=tmp_path / "cov.csv", masks=tmp_path / "masks")
    with MJPEGServer(fps=25, size=(320, 180), duration=60) as a, MJPEGServer(fps=25, size=(256, 144), duration=60) as b:
        options = LiveOptions(sources=(a.url, b.url), display="none", duration=4.0, analysis=analysis)
        summary = LiveSession(options, lraspp).run()
    assert live_threads() == []
    for entry in summary["sources"]:
        name, fields = entry["name"], entry["analysis"]
        assert fields["smooth"] == "ema" and fields["coverage"] == str(tmp_path / f"cov-{name}.csv")
        rows = (tmp_path / f"cov-{name}.csv").read_text().splitlines()
        assert len(rows) - 1 == entry["frames_processed"] > 5  # one row per inferred frame of that source
        assert len(list((tmp_path / "masks" / name).glob("*.png"))) == entry["frames_processed"]


def test_a_repainted_buffer_is_scaled_again_and_an_unchanged_one_is_not():
    """A renderer paints into the same buffer each time: the grid keys its cache on the tile's
    version, not the buffer's identity (which froze every tile, its HUD at 0.0 fps, in a mosaic)."""
    view, other = np.zeros((90, 160, 3), np.uint8), np.full((90, 160, 3), 50, np.uint8)
    cache: dict = {}
    first = compose_grid([view, other], None, cache, [1, 1])
    view[:] = 200  # repainted in place
    again = compose_grid([view, other], None, cache, [1, 1])
    assert np.array_equal(first, again)  # same version: the scaled cell is reused
    repainted = compose_grid([view, other], None, cache, [2, 1])
    _, _, (w, h) = grid_shape(2)
    assert repainted[h // 2, w // 2, 0] == 200 and repainted[h // 2, w + w // 2, 0] == 50


def test_every_tile_of_a_mosaic_is_live_with_its_rates(lraspp, monkeypatch):
    """Four cameras in a browser grid: each tile's HUD gets its capture and inference rates, and
    each cell of the grid moves on."""
    huds: dict[str, list] = {}
    from live_seg.jobs.live import tile as tile_module

    def draw(image, info):
        huds.setdefault(info.status.split(":")[0], []).append(info)
        return image

    monkeypatch.setattr(tile_module, "draw_hud", draw)
    urls: list[str] = []
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(MJPEGServer(fps=25, size=(160 + 32 * i, 96), duration=60)) for i in range(4)]
        options = LiveOptions(sources=tuple(s.url for s in servers), display="browser", port=0, duration=30.0)
        session = LiveSession(options, lraspp, on_serve=urls.append)
        runner = threading.Thread(target=session.run)
        runner.start()
        try:
            wait_for(lambda: urls and session.processed >= 40, 60, "the view and 40 masks")

            def grab() -> np.ndarray:
                with http_get(at(urls[0], "frame.jpg")) as resp:
                    jpeg = resp.read()
                return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)

            def every_cell_moved() -> bool:
                diff = np.abs(first - grab())
                return all(diff[y : y + h, x : x + w].mean() > 1.0 for y, x in cells)

            _, _, (w, h) = grid_shape(4)
            cells = [((i // 2) * h, (i % 2) * w) for i in range(4)]
            first = grab()
            wait_for(every_cell_moved, 30, "every cell of the grid to move on", every=0.5)
        finally:
            session.control.stop("quit")
            runner.join(30)
    assert live_threads() == []
    names = unique_names([s.url for s in servers])
    for name in names:
        late = [info for info in huds[name] if info.latency_ms is not None][-5:]
        assert late and all(info.capture_fps > 5 and info.infer_fps > 1 for info in late), (name, late)


def test_cli_stats_name_the_files_as_they_were_given(tmp_path):
    (tmp_path / "clips").mkdir()
    for name in ("a", "b"):
        make_video(tmp_path / "clips" / f"{name}.mp4", frames=6, width=160, height=96)
    args = ["--source", "clips/a.mp4", "--source", "clips/b.mp4", "--display", "none", "--record", "rec/"]
    args += ["--masks", "m", "--coverage", "cov.csv", "--events", "e.jsonl", "--stats", "s.json", *FAST_MODEL]
    proc = run_cli("live", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["input"] == "clips/a.mp4 + clips/b.mp4" and summary["output"] == ["rec/a.mp4", "rec/b.mp4"]
    assert [(e["source"], e["analysis"]["masks"], e["analysis"]["coverage"]) for e in summary["sources"]] == [
        ("clips/a.mp4", "m/a", "cov-a.csv"),
        ("clips/b.mp4", "m/b", "cov-b.csv"),
    ]
    assert summary["events"]["jsonl"]["path"] == "e.jsonl"
