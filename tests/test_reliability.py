"""Reliability of the ``video`` job, and of the input checks the ``live`` job shares.

Damaged and odd inputs, output folders and files, interrupts, weights files and threads, all
through the command line. Most cases run :func:`live_seg.cli.main.main` in this process (the real
command line minus the interpreter start, so ``threading.enumerate()`` can be checked after
each path); what needs a process of its own (signals from outside, SIGKILL, peak memory, the
stderr of a fresh interpreter) runs ``python run_live.py`` as a subprocess.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from harness import CliResult, TerminalCli, live_threads, run_cli, start_cli, wait_for
from media import (
    corrupt_packets,
    make_audio_only,
    make_video,
    probe,
    read_frames,
    read_index,
    truncate,
    video_packets,
)

import live_seg.jobs.video
import live_seg.media.writer
from live_seg.cli.main import SignalGate
from live_seg.media.writer import VideoWriter
from live_seg.model.segmenter import Segmenter

LIGHT = ("--model", "lraspp_mobilenet_v3_large", "--weights", "random", "--size", "128", "--device", "cpu")
MEMORY_4K_MB = 1500
"""Peak RSS a 4K clip may add over a tiny clip's run (measured: about 1000 MB, most of it the
libx264 encoder's look-ahead at 3840x2160; it does not grow with the clip's length)."""


# --- helpers -----------------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    """Temporary files a run may leave in ``folder`` (the writer's and the folder probe's)."""
    return sorted(
        p.name for p in folder.iterdir() if p.name.startswith(".") and ("partial" in p.name or "probe" in p.name)
    )


@pytest.fixture
def cli(capfd) -> Callable[..., CliResult]:
    """``cli(*argv)``: :func:`harness.run_cli` in this process, its output read at the
    file-descriptor level (so FFmpeg or OpenCV printing on their own would show too)."""
    return lambda *args: run_cli(*args, capture=capfd)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


def clip(folder: Path, name: str, **kwargs: object) -> Path:
    """A :func:`media.make_video` clip, made once per module."""
    path = folder / name
    if not path.exists():
        make_video(path, **kwargs)
    return path


def indices(path: Path) -> list[int]:
    return [read_index(f) for f in read_frames(path)]


def stats_of(path: Path) -> dict:
    return json.loads(path.read_text())


# --- inputs that must end in a one-line error ----------------------------------------------------


def _cut_before_index(folder: Path) -> Path:
    src = clip(folder, "index_at_end.mp4", frames=30)  # no faststart: the index is written last
    return truncate(src, folder / "cut_before_index.mp4", 0.5)


def _cut_before_first_frame(folder: Path) -> Path:
    src = clip(folder, "index_first.mp4", frames=30, faststart=True)
    pos, size, _ = video_packets(src)[0]
    dst = folder / "cut_before_first_frame.mp4"
    dst.write_bytes(src.read_bytes()[: pos + size // 2])  # the index survives, frame 0 does not
    return dst


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _audio_with_cover(folder: Path) -> Path:
    """An M4A with its artwork: a one-frame MJPEG stream marked as an attached picture."""
    path = folder / "song.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        sound = out.add_stream("aac", rate=48000, layout="stereo")
        cover = out.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 64, 64, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="bgr24")
        picture.pts = 0
        for packet in [*cover.encode(picture), *cover.encode(None)]:
            out.mux(packet)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 2048), np.int16), format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 48000, i * 1024
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return path


BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing file": (lambda d: d / "nope.mp4", "input not found"),
    "empty file": (lambda d: _file(d / "empty.mp4", b""), "is empty"),
    "text named .mp4": (lambda d: _file(d / "notes.mp4", b"not a video\n"), "cannot read"),
    "random bytes": (lambda d: _file(d / "noise.mp4", np.random.default_rng(0).bytes(65536)), "cannot read"),
    "mp4 cut before its index": (_cut_before_index, "cannot read"),
    "mp4 cut before its first frame": (_cut_before_first_frame, "no decodable video frame"),
    "audio only": (lambda d: make_audio_only(d / "voice.m4a", 0.5), "no video stream"),
    "audio only named .mp4": (lambda d: make_audio_only(d / "voice.mp4", 0.5), "no video stream"),
    "audio with a cover picture": (_audio_with_cover, "besides a cover picture"),
    "a folder": (lambda d: _folder(d / "clips.mp4"), "is a folder"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_error_and_writes_nothing(cli, tmp_path, case):
    make, message = BAD_INPUTS[case]
    src = make(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, stats = out_dir / "o.mp4", out_dir / "s.json"
    r = cli("video", src, "-o", out, "--stats", stats, *LIGHT)
    r.one_line_error(message, src.name)
    assert list(out_dir.iterdir()) == []  # no output, no temporary file, no stats
    assert live_threads() == []


def test_bad_input_in_a_fresh_process_has_no_traceback(tmp_path):
    """The same in a real process: FFmpeg and torch print nothing of their own."""
    src = make_audio_only(tmp_path / "voice.mp4", 0.5)
    r = run_cli("video", src, "-o", tmp_path / "o.mp4", *LIGHT, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"error: no video stream in {src} (audio or data only)"]
    assert not (tmp_path / "o.mp4").exists()


# --- inputs that must just work ------------------------------------------------------------------


def test_mp4_cut_after_its_index_processes_every_decodable_frame(cli, media, tmp_path):
    src = clip(media, "sixty_faststart.mp4", frames=60, faststart=True)
    cut = truncate(src, tmp_path / "cut.mp4", 0.6)
    decodable = indices(cut)  # a plain single-threaded decode of what survived
    assert 0 < len(decodable) < 60
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    r = cli("video", cut, "-o", out, "--stats", stats, *LIGHT)
    assert r.returncode == 0, r.stderr
    s = stats_of(stats)
    assert s["frames_out"] == len(decodable) and s["truncated_input"] is True
    warning = next(ln for ln in r.lines if "cut short" in ln)
    assert f"{len(decodable)} frame(s) of the 60 its header lists could be decoded" in warning
    assert indices(out) == decodable
    assert probe(out)["video"]["pix_fmt"] == "yuv420p"
    assert live_threads() == []


def test_corrupt_packets_mid_stream_are_skipped_counted_and_warned(cli, media, tmp_path):
    src = clip(media, "sixty_gop10.mp4", frames=60, gop=10)
    bad = corrupt_packets(src, tmp_path / "bad.mp4", count=3)
    decodable = len(read_frames(bad))  # the decoder also drops frames that lost their reference
    assert decodable <= 57
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    r = cli("video", bad, "-o", out, "--stats", stats, *LIGHT)
    assert r.returncode == 0, r.stderr
    s = stats_of(stats)
    assert s["skipped_packets"] == 3 and s["frames_out"] == decodable and s["truncated_input"] is False
    assert any("skipped 3 corrupt packet(s)" in ln for ln in r.lines)
    got = indices(out)
    assert len(got) == decodable
    assert got[:20] == list(range(20)) and got[-10:] == list(range(50, 60))  # clean GOPs intact
    assert live_threads() == []


@pytest.mark.parametrize(
    ("name", "options"),
    [("odd444.mp4", {"pix_fmt": "yuv444p"}), ("odd_mp4v.mp4", {"codec": "mpeg4"}), ("odd.mkv", {"codec": "ffv1"})],
    ids=["h264-444", "mpeg4", "ffv1-mkv"],
)
def test_odd_size_is_padded_by_one_pixel(cli, media, tmp_path, name, options):
    src = clip(media, name, width=321, height=241, **options)
    out = tmp_path / "o.mp4"
    r = cli("video", src, "-o", out, *LIGHT)
    assert r.returncode == 0, r.stderr
    assert any("321x241 is odd: padding to 322x242" in ln for ln in r.lines)
    v = probe(out)["video"]
    assert (v["codec"], v["pix_fmt"], v["width"], v["height"], v["frames"]) == ("h264", "yuv420p", 322, 242, 12)
    frames = read_frames(out)
    assert [read_index(f) for f in frames] == list(range(12))
    f = frames[6].astype(np.int16)  # the added column and row repeat the edge
    assert np.abs(f[:, 321] - f[:, 320]).mean() < 8 and np.abs(f[241] - f[240]).mean() < 8


@pytest.mark.parametrize("rotation", [270, 90])
def test_phone_rotation_gives_upright_output(cli, media, tmp_path, rotation):
    src = clip(media, f"rot{rotation}.mp4", rotation=rotation)
    out = tmp_path / "o.mp4"
    r = cli("video", src, "-o", out, *LIGHT)
    assert r.returncode == 0, r.stderr
    p = probe(out)["video"]
    assert (p["width"], p["height"], p["rotation"]) == (96, 160, 0)
    frames = read_frames(out)
    # Undo the display rotation (degrees counter-clockwise): the stamped index reads back.
    assert [read_index(np.rot90(f, k=-rotation // 90)) for f in frames] == list(range(12))
    # And the picture is the one OpenCV shows (it applies the display matrix itself).
    ok, upright = cv2.VideoCapture(str(src)).read()
    assert ok and upright.shape == frames[0].shape
    here = np.abs(frames[0].astype(np.int16) - upright).mean()
    flipped = np.abs(frames[0].astype(np.int16) - upright[::-1, ::-1]).mean()
    assert here < flipped / 2


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("gray_h264.mp4", {"pix_fmt": "gray"}),
        ("gray_hevc.mp4", {"codec": "libx265", "pix_fmt": "gray"}),
        ("gray_ffv1.mkv", {"codec": "ffv1", "pix_fmt": "gray"}),
        ("ten_bit_h264.mp4", {"pix_fmt": "yuv420p10le"}),
        ("ten_bit_hevc.mp4", {"codec": "libx265", "pix_fmt": "yuv420p10le"}),
    ],
    ids=["gray-h264", "gray-hevc", "gray-ffv1-mkv", "10bit-h264", "10bit-hevc"],
)
def test_grayscale_and_10_bit_sources(cli, media, tmp_path, name, options):
    src = clip(media, name, **options)
    out = tmp_path / "o.mp4"
    r = cli("video", src, "-o", out, *LIGHT)
    assert r.returncode == 0, r.stderr
    v = probe(out)["video"]
    assert (v["codec"], v["pix_fmt"], v["frames"]) == ("h264", "yuv420p", 12)
    assert indices(out) == list(range(12))


def test_variable_frame_rate_keeps_timestamps(cli, media, tmp_path):
    pts = [0, 40, 80, 200, 240, 400, 440, 480]  # ms
    src = clip(media, "vfr.mp4", frames=len(pts), pts=pts, audio="aac")
    out = tmp_path / "o.mp4"
    r = cli("video", src, "-o", out, *LIGHT)
    assert r.returncode == 0, r.stderr
    p = probe(out)
    assert p["video"]["pts"] == pytest.approx([t / 1000 for t in pts], abs=0.002)
    assert p["audio"]["codec"] == "aac"


def test_audio_mp4_cannot_hold_is_transcoded_to_aac(cli, media, tmp_path):
    src = clip(media, "phone.mov", frames=8, audio="pcm_mulaw")
    out = tmp_path / "o.mp4"
    r = cli("video", src, "-o", out, *LIGHT)
    assert r.returncode == 0, r.stderr
    a, b = probe(src)["audio"], probe(out)["audio"]
    assert a["codec"] == "pcm_mulaw" and b["codec"] == "aac"
    assert abs(a["duration"] - b["duration"]) < 0.05


@pytest.mark.parametrize(
    ("name", "options", "rate"),
    [
        ("adpcm.avi", {"codec": "mpeg4", "audio": "adpcm_ima_wav", "audio_rate": 22050, "audio_channels": 1}, 22050),
        ("odd_rate.mov", {"audio": "pcm_s16le", "audio_rate": 44056}, 48000),
    ],
    ids=["layout without channel order", "rate AAC does not take"],
)
def test_odd_audio_is_transcoded_to_aac(cli, media, tmp_path, name, options, rate):
    src = clip(media, name, **options)
    out = tmp_path / "o.mp4"
    r = cli("video", src, "-o", out, *LIGHT)
    assert r.returncode == 0, r.stderr
    a, b = probe(src)["audio"], probe(out)["audio"]
    assert (b["codec"], b["sample_rate"], b["channels"]) == ("aac", rate, a["channels"])
    assert abs(a["duration"] - b["duration"]) < 0.1


def test_audio_that_cannot_be_kept_leaves_the_video(cli, media, tmp_path, monkeypatch):
    def unreadable(*_args):
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(live_seg.media.writer, "_AudioPass", unreadable)
    src = clip(media, "phone.mov", frames=8, audio="pcm_mulaw")
    out = tmp_path / "o.mp4"
    r = cli("video", src, "-o", out, *LIGHT)
    assert r.returncode == 0, r.stderr
    assert any("cannot be kept" in ln and "writing the video only" in ln for ln in r.lines)
    p = probe(out)
    assert p["audio"] is None and p["video"]["frames"] == 8


def test_frame_size_change_mid_stream_is_scaled_to_the_first(cli, tmp_path):
    first, second = make_video(tmp_path / "a.ts"), make_video(tmp_path / "b.ts", width=320, height=240)
    src = _file(tmp_path / "joined.ts", first.read_bytes() + second.read_bytes())  # as `cat a.ts b.ts`
    out = tmp_path / "o.mp4"
    r = cli("video", src, "-o", out, *LIGHT)
    assert r.returncode == 0, r.stderr
    assert any("frame size changes from 160x96 to 320x240 at frame 12" in ln for ln in r.lines)
    v = probe(out)["video"]
    assert (v["width"], v["height"], v["frames"]) == (160, 96, 24)
    assert indices(out) == [*range(12), *range(12)]


def _run_measured(args: list[str], timeout: float = 300) -> tuple[int, str, float]:
    """Run the CLI; its exit code, stderr and peak RSS in MB (of that process alone)."""
    with (
        open(os.devnull, "wb") as null,
        start_cli(*args, stdout=null, stderr=subprocess.PIPE, text=False) as proc,
    ):
        err = proc.stderr.read().decode()  # until the child closes it, i.e. ends
        done = wait_for(lambda: (w := os.wait4(proc.pid, os.WNOHANG))[0] and w, timeout, "the run to end", every=0.05)
        proc.returncode = os.waitstatus_to_exitcode(done[1])
        return proc.returncode, err, done[2].ru_maxrss / 1024


def test_4k_memory_is_bounded(media, tmp_path):
    small = clip(media, "small.mp4", frames=6)
    big = clip(media, "uhd.mp4", frames=24, width=3840, height=2160, options={"preset": "ultrafast"})
    code, err, base_mb = _run_measured(["video", str(small), "-o", str(tmp_path / "s.mp4"), *LIGHT])
    assert code == 0, err
    code, err, peak_mb = _run_measured(["video", str(big), "-o", str(tmp_path / "b.mp4"), *LIGHT])
    assert code == 0, err
    print(f"peak RSS: tiny clip {base_mb:.0f} MB, 4K clip {peak_mb:.0f} MB (+{peak_mb - base_mb:.0f} MB)")
    assert peak_mb - base_mb < MEMORY_4K_MB
    v = probe(tmp_path / "b.mp4")["video"]
    assert (v["width"], v["height"], v["frames"]) == (3840, 2160, 24)


# --- outputs --------------------------------------------------------------------------------------


def _can_create_in(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _read_only_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if not _can_create_in(folder):
        return folder
    folder.chmod(0o755)  # root writes where permissions say no: take a folder no one can write
    if Path("/sys").is_dir() and not _can_create_in(Path("/sys")):
        return Path("/sys")
    pytest.skip("no read-only folder available here")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing folder", "output folder does not exist"),
        ("read-only folder", "output folder is not writable"),
        ("output is a folder", "output is a folder"),
    ],
    ids=["missing folder", "read-only folder", "output is a folder"],
)
def test_bad_output_fails_before_any_processing(cli, media, tmp_path, case, message):
    src = clip(media, "small.mp4", frames=6)
    out = {
        "missing folder": lambda: tmp_path / "no" / "such" / "o.mp4",
        "read-only folder": lambda: _read_only_folder(tmp_path) / "o.mp4",
        "output is a folder": lambda: _folder(tmp_path / "o.mp4"),
    }[case]()
    r = cli("video", src, "-o", out, *LIGHT)
    r.one_line_error(message)  # the only line: nothing was opened, no model was built
    assert not out.is_file()


def test_existing_output_is_refused_unless_overwrite(cli, media, tmp_path):
    src = clip(media, "small.mp4", frames=6)
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep me")
    cli("video", src, "-o", out, *LIGHT).one_line_error("output exists", "--overwrite")
    assert out.read_bytes() == b"keep me"
    r = cli("video", src, "-o", out, "--overwrite", *LIGHT)
    assert r.returncode == 0, r.stderr
    assert probe(out)["video"]["frames"] == 6
    assert leftovers(tmp_path) == []


def test_output_over_its_own_input_is_refused(cli, media, tmp_path):
    src = tmp_path / "in.mp4"
    src.write_bytes(clip(media, "small.mp4", frames=6).read_bytes())
    before = src.read_bytes()
    cli("video", src, "-o", src, "--overwrite", *LIGHT).one_line_error("output is the input file")
    assert src.read_bytes() == before


def test_written_under_a_temporary_name_then_renamed(cli, media, tmp_path, monkeypatch):
    src = clip(media, "small.mp4", frames=6)
    out = tmp_path / "o.mp4"
    seen: list[tuple[bool, list[str]]] = []
    write = VideoWriter.write

    def spy(self, image, pts=None):
        write(self, image, pts)
        if self.frames == 3:
            seen.append((out.exists(), leftovers(tmp_path)))

    monkeypatch.setattr(VideoWriter, "write", spy)
    r = cli("video", src, "-o", out, *LIGHT)
    assert r.returncode == 0, r.stderr
    [(final_exists, temps)] = seen
    assert not final_exists and len(temps) == 1 and re.fullmatch(r"\.o\.\w+\.partial\.mp4", temps[0])
    assert out.exists() and leftovers(tmp_path) == []


# --- interrupts -------------------------------------------------------------------------------------


def _signal_at_frame(monkeypatch, frame: int, signals: tuple[int, ...], at: list[float]) -> None:
    """Send ``signals`` to this process once the writer has written ``frame`` frames.

    The writer runs on the pipeline's write thread, and Python runs signal handlers on the main
    thread: a second identical signal sent before the first was handled would merge with it, as
    no person's second Ctrl-C does. So each signal is handled before the next is sent.
    """
    write, handle = VideoWriter.write, SignalGate._handle
    handled: list[int] = []

    def handle_and_count(self, signum, frame_):
        try:
            return handle(self, signum, frame_)
        finally:
            handled.append(signum)

    def write_then_signal(self, image, pts=None):
        write(self, image, pts)
        if self.frames == frame:
            at.append(time.monotonic())
            for sent, signum in enumerate(signals, 1):
                os.kill(os.getpid(), signum)
                if threading.current_thread() is not threading.main_thread():
                    wait_for(lambda n=sent: len(handled) >= n, 30, f"signal {sent} to be handled")

    monkeypatch.setattr(SignalGate, "_handle", handle_and_count)
    monkeypatch.setattr(VideoWriter, "write", write_then_signal)


@pytest.mark.parametrize(
    ("signals", "code"),
    [((signal.SIGINT,), 130), ((signal.SIGTERM,), 143), ((signal.SIGINT, signal.SIGINT), 130)],
    ids=["SIGINT", "SIGTERM", "SIGINT-twice"],
)
def test_interrupt_keeps_a_playable_output_of_the_frames_done(cli, media, tmp_path, monkeypatch, signals, code):
    src = clip(media, "sixty_gop10.mp4", frames=60, gop=10)
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    at: list[float] = []
    _signal_at_frame(monkeypatch, 5, signals, at)
    r = cli("video", src, "-o", out, "--stats", stats, *LIGHT)
    took = time.monotonic() - at[0]
    assert r.returncode == code, r.stderr
    assert took < 15
    s = stats_of(stats)
    name = signal.Signals(signals[0]).name
    assert s["interrupted"] is True and s["stop_reason"] == f"interrupted by {name}"
    assert s["output"] == str(out)
    got = indices(out)
    assert len(got) == s["frames_out"] >= 5 and len(got) < 60
    assert got == list(range(len(got)))  # the first N frames, in order
    assert probe(out)["faststart"] is True
    if len(signals) == 2:
        assert any("again: aborting" in ln for ln in r.lines)
    assert leftovers(tmp_path) == []
    assert live_threads() == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupt_during_setup_stops_at_once(cli, media, tmp_path, monkeypatch, signum, code):
    """A signal while the model is still being fetched or built: nothing to finish, exit now."""

    def slow_download(_options, mode):
        os.kill(os.getpid(), signum)
        time.sleep(60)  # a download that would go on for a minute
        raise AssertionError("not interrupted")

    monkeypatch.setattr(live_seg.jobs.video, "segmenter_for", slow_download)
    src = clip(media, "small.mp4", frames=6)
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    t0 = time.monotonic()
    r = cli("video", src, "-o", out, "--stats", stats, *LIGHT)
    assert r.returncode == code
    assert time.monotonic() - t0 < 30  # not waiting for the 60 s download (30: a loaded machine)
    assert "Traceback" not in r.stderr
    assert not out.exists() and leftovers(tmp_path) == []
    s = stats_of(stats)
    assert s["interrupted"] is True and s["frames_out"] == 0 and s["output"] is None


class _SlowSegmenter(Segmenter):
    def infer(self, batch):
        time.sleep(0.5)
        return super().infer(batch)


def test_frames_in_flight_get_a_bounded_grace(cli, media, tmp_path, monkeypatch):
    """A model too slow to drain its queue in time: the run is aborted after the grace period."""

    def slow(options, mode):
        takes = inspect.signature(Segmenter).parameters  # the model options a torch Segmenter takes
        kept = {k: v for k, v in dataclasses.asdict(options).items() if k in takes}
        return _SlowSegmenter(**kept)

    monkeypatch.setattr(live_seg.jobs.video, "segmenter_for", slow)
    monkeypatch.setattr(SignalGate, "grace_s", 0.6)
    src = clip(media, "sixty_gop10.mp4", frames=60, gop=10)
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    at: list[float] = []
    _signal_at_frame(monkeypatch, 2, (signal.SIGINT,), at)
    r = cli("video", src, "-o", out, "--stats", stats, "--batch", "2", *LIGHT)
    assert r.returncode == 130, r.stderr
    took = time.monotonic() - at[0]
    assert any("took over 0.6 s; aborting" in ln for ln in r.lines)
    assert took < 0.6 + 2 * 0.5 + 5.0  # grace + the forward pass under way + closing (5 s: a loaded machine)
    got = indices(out)
    assert got == list(range(stats_of(stats)["frames_out"])) and len(got) >= 2
    assert live_threads() == []


@pytest.fixture(scope="module")
def long_clip(media) -> Path:
    return clip(media, "long.mp4", frames=600, audio="aac", gop=25)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_real_signal_stops_within_15_s_with_a_playable_output(long_clip, tmp_path, signum, code):
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    run = TerminalCli("video", long_clip, "-o", out, "--stats", stats, *LIGHT)
    run.wait_frames(5)
    t0 = time.monotonic()
    run.proc.send_signal(signum)
    assert run.finish(15) == code, run.text
    assert time.monotonic() - t0 < 15
    s = stats_of(stats)
    assert s["interrupted"] is True and s["stop_reason"] == f"interrupted by {signal.Signals(signum).name}"
    got = indices(out)
    assert len(got) == s["frames_out"] >= 5 and got == list(range(len(got)))
    p = probe(out)
    assert p["audio"]["codec"] == "aac" and abs(p["audio"]["duration"] - p["video"]["duration"]) < 0.1
    assert "Traceback" not in run.text and leftovers(tmp_path) == []


def test_second_ctrl_c_exits_at_once_and_the_output_still_plays(long_clip, tmp_path):
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    # At --size 512 the frames in flight take a few hundred ms to finish, so the second Ctrl-C
    # lands while the first one's drain is still running (at 128 they can all be done in 50 ms).
    run = TerminalCli("video", long_clip, "-o", out, "--stats", stats, *LIGHT, "--size", "512")
    run.wait_frames(5)
    run.proc.send_signal(signal.SIGINT)
    run.wait_text("finishing the frames in flight")  # the first one is being handled
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    assert run.finish(15) == 130, run.text
    # "At once": well inside the 600-frame clip's run. Under a second when the machine is idle;
    # 10 s because a loaded 2-core machine stretches the exit itself (closing the output, the
    # interpreter's teardown) several times over. The message says the abort path was taken.
    assert time.monotonic() - t0 < 10
    assert "again: aborting" in run.text
    s = stats_of(stats)
    got = indices(out)
    assert s["interrupted"] is True and len(got) == s["frames_out"] >= 5 and got == list(range(len(got)))


def test_sigkill_never_leaves_a_half_file_under_the_final_name(long_clip, tmp_path):
    out = tmp_path / "o.mp4"
    run = TerminalCli("video", long_clip, "-o", out, *LIGHT)
    run.wait_frames(5)
    run.proc.kill()
    assert run.finish(15) == -signal.SIGKILL
    assert not out.exists()
    [temp] = leftovers(tmp_path)  # only the hidden temporary file is left (see the README)
    assert re.fullmatch(r"\.o\.\w+\.partial\.mp4", temp)


# --- weights files ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """Weights files, good and bad (the payload would create a marker file if unpickled)."""
    import torch
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    folder = tmp_path_factory.mktemp("weights")
    marker = folder / "PAYLOAD_RAN"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    good = folder / "lraspp.pth"
    torch.save(lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21).state_dict(), good)
    data = good.read_bytes()
    files = {"good": good, "marker": marker}
    files["truncated"] = folder / "truncated.pth"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["corrupt"] = folder / "corrupt.pth"
    files["corrupt"].write_bytes(data[:1000] + bytes(len(data) - 2000) + data[-1000:])
    files["code, torch.save"] = folder / "code.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "x": Payload()}, files["code, torch.save"])
    files["code, plain pickle"] = folder / "code.pkl"
    files["code, plain pickle"].write_bytes(pickle.dumps({"w": Payload()}, protocol=2))
    files["code, legacy torch.save"] = folder / "legacy.pth"
    torch.save({"w": Payload()}, files["code, legacy torch.save"], _use_new_zipfile_serialization=False)
    return files


@pytest.mark.parametrize(
    ("case", "model", "message"),
    [
        ("truncated", "lraspp_mobilenet_v3_large", "is not a readable torch file"),
        ("corrupt", "lraspp_mobilenet_v3_large", "is not a readable torch file"),
        ("good", "deeplabv3_mobilenet_v3_large", "does not fit deeplabv3_mobilenet_v3_large"),
        ("code, torch.save", "lraspp_mobilenet_v3_large", "loading it would run code"),
        ("code, plain pickle", "lraspp_mobilenet_v3_large", "loading it would run code"),
        ("code, legacy torch.save", "lraspp_mobilenet_v3_large", "loading it would run code"),
    ],
    ids=["truncated", "corrupt", "another model", "code torch.save", "code plain pickle", "code legacy torch.save"],
)
def test_bad_weights_file_is_one_line_error(cli, media, tmp_path, weights, case, model, message):
    src = clip(media, "small.mp4", frames=6)
    out = tmp_path / "o.mp4"
    r = cli("video", src, "-o", out, "--model", model, "--weights", weights[case], "--size", "128", "--device", "cpu")
    assert "Traceback" not in r.stderr and r.returncode == 1
    errors = [ln for ln in r.lines if ln.startswith("error")]
    assert len(errors) == 1 and message in errors[0] and str(weights[case]) in errors[0]
    assert [ln for ln in r.lines if not ln.startswith(("error", "opened"))] == []
    assert not weights["marker"].exists()  # nothing beyond tensors was unpickled
    assert not out.exists() and leftovers(tmp_path) == []
    assert live_threads() == []


def test_good_weights_file_loads(cli, media, tmp_path, weights):
    src = clip(media, "small.mp4", frames=6)
    r = cli("video", src, "-o", tmp_path / "o.mp4", *LIGHT[:2], "--weights", weights["good"], *LIGHT[4:])
    assert r.returncode == 0, r.stderr


# --- live sources: the input checks ---------------------------------------------------------------


def test_live_camera_that_does_not_exist_is_one_line_error(cli):
    r = cli("live", "--source", "97", "--display", "none", "--duration", "5", *LIGHT)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [ln for ln in r.lines if ln.startswith("error")]
    assert len(errors) == 1 and "could not open camera 97" in errors[0]
    assert all(ln.startswith(("error", "untrained", "model ")) for ln in r.lines), r.stderr  # OpenCV says nothing
    assert live_threads() == []


def test_live_unreachable_url_retries_then_one_line_error(cli):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    t0 = time.monotonic()
    r = cli("live", "--source", url, "--reconnect", "2", "--display", "none", *LIGHT)
    took = time.monotonic() - t0
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.lines[-1].startswith(f"error: could not open {url} after 3 attempts")
    assert f"could not open {url}: attempt 1/2 in 0.5 s" in r.stderr
    assert f"could not open {url}: attempt 2/2 in 1.0 s" in r.stderr
    assert 1.5 <= took < 30  # the waits between attempts, bounded
    assert live_threads() == []
