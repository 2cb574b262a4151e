"""The ``video`` job end to end: real H.264 in, H.264/yuv420p/faststart MP4 out."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from harness import run_cli
from media import make_video, probe, read_frames, read_index

from live_seg.base.errors import OutputError, SourceError
from live_seg.base.options import EncodeOptions
from live_seg.jobs.video import process_video

LIGHT = {"model": "lraspp_mobilenet_v3_large", "weights": "random", "device": "cpu", "size": 128}


def assert_same_timeline(src: Path, dst: Path, audio: bool) -> None:
    a, b = probe(src), probe(dst)
    v = b["video"]
    assert (v["codec"], v["pix_fmt"]) == ("h264", "yuv420p")
    assert b["faststart"] is True
    assert (v["width"], v["height"]) == (a["video"]["width"], a["video"]["height"])
    assert v["frames"] == a["video"]["frames"]
    frame = 1 / float(a["video"]["average_rate"])
    assert abs(v["duration"] - a["video"]["duration"]) <= frame
    for p, q in zip(a["video"]["pts"], v["pts"], strict=True):
        assert abs((p - a["video"]["pts"][0]) - q) <= 0.002
    if audio:
        assert b["audio"] is not None and b["audio"]["codec"] == "aac"
        assert abs(b["audio"]["duration"] - a["audio"]["duration"]) <= frame
    else:
        assert b["audio"] is None


def test_720p_h264_with_aac(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=10, width=1280, height=720, audio="aac")
    out = tmp_path / "out.mp4"
    stats = process_video(src, out, **LIGHT)
    assert stats["frames_in"] == stats["frames_out"] == 10
    assert stats["untrained"] is True and stats["output"] == str(out)
    assert_same_timeline(src, out, audio=True)
    assert [read_index(f) for f in read_frames(out)] == list(range(10))  # order kept, none dropped
    assert not list(tmp_path.glob(".*partial*"))


def test_variable_frame_rate_timestamps_kept(tmp_path):
    pts = [0, 40, 80, 200, 240, 400, 440, 480]  # ms, gaps included
    src = make_video(tmp_path / "vfr.mp4", frames=len(pts), pts=pts, audio="aac")
    out = tmp_path / "out.mp4"
    process_video(src, out, **LIGHT)
    got = probe(out)["video"]["pts"]
    assert got == pytest.approx([p / 1000 for p in pts], abs=0.002)


def test_audio_mp4_cannot_hold_is_transcoded_to_aac(tmp_path):
    src = make_video(tmp_path / "phone.mov", frames=8, audio="pcm_mulaw")
    out = tmp_path / "out.mp4"
    process_video(src, out, **LIGHT)
    p = probe(out)
    assert p["audio"]["codec"] == "aac"
    assert abs(p["audio"]["duration"] - probe(src)["audio"]["duration"]) < 0.05


def test_no_audio_and_side_view(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=4, audio="aac")
    out = tmp_path / "out.mp4"
    process_video(src, out, audio=False, view="side", **LIGHT)
    p = probe(out)
    assert p["audio"] is None and p["video"]["width"] == 2 * 160


def test_refuses_to_overwrite_and_bad_input_leaves_nothing(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=2)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="--overwrite"):
        process_video(src, out, **LIGHT)
    assert out.read_bytes() == b"keep me"
    process_video(src, out, overwrite=True, **LIGHT)
    assert probe(out)["video"]["frames"] == 2
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(SourceError, match=r"notes\.mp4"):
        process_video(text, tmp_path / "x.mp4", **LIGHT)
    assert not (tmp_path / "x.mp4").exists()


def test_cli_video_with_stats_json(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=6, audio="aac")
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    r = run_cli("video", str(src), "-o", str(out), "--stats", str(stats), "--model", "lraspp_mobilenet_v3_large",
                "--weights", "random", "--size", "128")  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads(stats.read_text())
    for key in ("frames_in", "frames_out", "wall_s", "fps", "model", "weights", "device", "precision"):
        assert key in data
    assert data["frames_out"] == 6 and data["weights"] == "random" and data["untrained"] is True
    assert set(data["stage_ms"]) == {"decode", "preprocess", "infer", "render", "encode"}
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["video", "missing.mp4", "-o", "{tmp}/o.mp4"], 1, "input not found"),
        (["video", "{src}", "-o", "{tmp}/nope/o.mp4"], 1, "output folder does not exist"),
        (["video", "{src}", "--model", "resnet9000"], 2, "expected one of fcn_resnet101"),
        (["video", "{src}", "--alpha", "3"], 2, "expected a number in [0, 1]"),
        (["video", "{src}", "-o", "{tmp}/o.mp4", "--weights", "{tmp}/none.pth"], 1, "weights file not found"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, code, message):
    src = make_video(tmp_path / "in.mp4", frames=2)
    argv = [a.format(tmp=tmp_path, src=src) for a in args]
    r = run_cli(*argv)
    assert r.returncode == code
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    if code == 1:
        assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error")]) == 1
    assert not (tmp_path / "o.mp4").exists()


@pytest.fixture
def refused_url():
    """``http://127.0.0.1:PORT``: a port bound but not listening, so every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_cli_offline_default_weights_is_one_line(tmp_path, refused_url):
    """The download fails the same way with or without a network: it goes through a proxy that
    refuses every connection (urllib, which torch.hub uses, honours the proxy variables)."""
    src = make_video(tmp_path / "in.mp4", frames=2)
    names = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")
    env = {**os.environ, **dict.fromkeys(names, refused_url), "no_proxy": "", "NO_PROXY": ""}
    env["TORCH_HOME"] = str(tmp_path / "torch")
    r = run_cli("video", str(src), "-o", str(tmp_path / "o.mp4"), env=env)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert len(line) == 1
    for part in ("fcn_resnet101_coco-7ecb50ca.pth", "MB", "https://", "--weights random", "--weights PATH"):
        assert part in line[0]
    assert "Connection refused" in line[0]  # the local proxy answered, not a missing network
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_fcn_resnet101_on_720p(tmp_path):
    """The default model on real-size footage (3 frames: about 5 s on this CPU)."""
    src = make_video(tmp_path / "in.mp4", frames=3, width=1280, height=720, audio="aac")
    out = tmp_path / "out.mp4"
    r = run_cli("video", str(src), "-o", str(out), "--weights", "random", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert_same_timeline(src, out, audio=True)


def test_stop_request_cuts_the_audio_at_the_video_end(tmp_path):
    """After an interrupt, closing does not copy the rest of a long audio track (it could be
    hours long, or still growing): it ends with the last video frame."""
    import threading

    import numpy as np

    from live_seg.media.writer import VideoWriter

    src = make_video(tmp_path / "in.mp4", frames=50, audio="aac")  # 2 s of sound
    stop = threading.Event()
    writer = VideoWriter(tmp_path / "o.mp4", 160, 96, fps=25, audio_from=src, stop=stop)
    for i in range(5):
        writer.write(np.zeros((96, 160, 3), np.uint8), i / 25)
    stop.set()
    writer.close(complete=True)
    p = probe(tmp_path / "o.mp4")
    assert p["video"]["frames"] == 5
    assert p["audio"]["duration"] < 0.5


def test_h264_colours_kept_and_the_matrix_tagged(tmp_path):
    """Frames go to 4:2:0 through OpenCV's BT.601: the stream says so (matrix and limited range,
    for players that would otherwise guess BT.709 at HD sizes), the colours read back, and libx264
    runs frame threads rather than PyAV's default slice threads."""
    import av
    import numpy as np

    from live_seg.media.writer import VideoWriter

    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (128, 128, 128), (30, 200, 90), (255, 255, 255)]
    with VideoWriter(tmp_path / "c.mp4", 64, 48, fps=25, encode=EncodeOptions(crf=0)) as writer:
        for bgr in colours:
            writer.write(np.full((48, 64, 3), bgr, np.uint8))
    with av.open(str(tmp_path / "c.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.colorspace, stream.codec_context.color_range) == (6, 1)  # SMPTE170M, tv
        got = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
    assert len(got) == len(colours)
    for bgr, image in zip(colours, got, strict=True):
        assert np.abs(image.astype(int) - bgr).max() <= 3, (bgr, image[24, 32])
    settings = (tmp_path / "c.mp4").read_bytes().split(b"x264 - core", 1)[1][:2000]
    assert b"sliced_threads=0" in settings
