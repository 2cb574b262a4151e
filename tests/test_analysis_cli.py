"""Analysis end to end through the command line: coverage, masks, mask video, smoothing, live."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from harness import ROOT, run_cli, start_cli, wait_for
from media import make_video, probe
from PIL import Image

from live_seg.analysis.coverage import partial_path
from live_seg.analysis.masks import read_masks
from live_seg.analysis.run import AnalysisOptions
from live_seg.jobs.video import process_video

SAMPLE = ROOT / "samples" / "sample.mp4"
LIGHT = ["--model", "lraspp_mobilenet_v3_large", "--device", "cpu"]


def lraspp_state(low_weight: torch.Tensor | None = None, bias_class: int | None = None) -> dict:
    """An LRASPP state_dict with a controllable classifier (the rest untrained)."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(0)
    sd = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21).state_dict()
    for key in sd:
        if key.startswith("classifier."):
            sd[key].zero_()
    if low_weight is not None:
        sd["classifier.low_classifier.weight"].copy_(low_weight)
    if bias_class is not None:
        sd["classifier.low_classifier.bias"][bias_class] = 10.0
    return sd


@pytest.fixture(scope="module")
def person_weights(tmp_path_factory) -> Path:
    """Every pixel is class 15 (person)."""
    path = tmp_path_factory.mktemp("w") / "person.pth"
    torch.save(lraspp_state(bias_class=15), path)
    return path


@pytest.fixture(scope="module")
def content_weights(tmp_path_factory) -> Path:
    """Masks that follow local image content (a dozen classes on a photo; they flicker under grain)."""
    path = tmp_path_factory.mktemp("w") / "content.pth"
    shape = lraspp_state()["classifier.low_classifier.weight"].shape
    low = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 10
    torch.save(lraspp_state(low_weight=low), path)
    return path


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """BGR frames into a near-lossless H.264 MP4 (grain survives)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "8", "preset": "ultrafast"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="bgr24")))
        c.mux(s.encode(None))
    return path


def sample_frames(count: int, width: int, height: int, start: int = 0) -> list[np.ndarray]:
    import cv2

    out = []
    with av.open(str(SAMPLE)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= start + count:
                break
            if i >= start:
                out.append(cv2.resize(f.to_ndarray(format="bgr24"), (width, height), interpolation=cv2.INTER_AREA))
    return out


@pytest.fixture(scope="module")
def grainy_clip(tmp_path_factory) -> Path:
    """48 frames of the sample at 480x272 with sigma-12 grain: a real clip whose masks flicker."""
    rng = np.random.default_rng(0)
    frames = [np.clip(f + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8) for f in sample_frames(48, 480, 272)]
    return write_clip(tmp_path_factory.mktemp("clip") / "grainy.mp4", frames)


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


# --- with one class everywhere ---------------------------------------------------------------


def test_all_person_coverage_masks_and_mask_video(tmp_path, person_weights):
    n = 12
    src = make_video(tmp_path / "in.mp4", frames=n, width=160, height=96, pts=[i * 40 + 7 * (i % 3) for i in range(n)])
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("video", src, "-o", out / "o.mp4", *LIGHT, "--weights", person_weights, "--size", "64",
                "--coverage", out / "c.csv", "--masks", out / "masks", "--mask-video", out / "m.mkv",
                "--coverage-plot", out / "c.png", "--stats", out / "s.json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    header, rows = read_csv(out / "c.csv")
    assert header == ["index", "pts", "person"]  # only the classes seen in the run
    assert len(rows) == n and all(float(row[2]) == 1.0 for row in rows)
    assert [int(row[0]) for row in rows] == list(range(n))
    overlay_pts = probe(out / "o.mp4")["video"]["pts"]
    assert [float(row[1]) for row in rows] == pytest.approx(overlay_pts, abs=1e-6)
    pngs = sorted((out / "masks").iterdir())
    assert len(pngs) == n
    masks = [np.array(Image.open(p)) for p in pngs]
    assert all(Image.open(p).mode == "P" for p in pngs)
    assert all(m.shape == (64, 64) and (m == 15).all() for m in masks)
    assert [p.name for p in pngs][:2] == ["000000_000000ms.png", "000001_000047ms.png"]
    back = list(read_masks(out / "m.mkv", with_pts=True))
    assert len(back) == n and all(np.array_equal(m, b) for m, (_, b) in zip(masks, back, strict=True))
    assert [t for t, _ in back] == pytest.approx(overlay_pts, abs=0.0011)  # same pts (Matroska: ms)
    stats = json.loads((out / "s.json").read_text())
    assert stats["flicker"] == 0.0 and stats["smooth"] == "off" and stats["coverage"] == str(out / "c.csv")
    assert Image.open(out / "c.png").size[0] > 800
    assert sorted(p.name for p in out.iterdir()) == ["c.csv", "c.png", "m.mkv", "masks", "o.mp4", "s.json"]


def test_masks_at_source_size_match_the_mask_video(tmp_path, content_weights):
    src = write_clip(tmp_path / "in.mp4", sample_frames(6, 200, 120, start=20))
    opts = AnalysisOptions(masks=tmp_path / "m", masks_size="source", mask_video=tmp_path / "m.mkv")
    summary = process_video(src, tmp_path / "o.mp4", analysis=opts, model="lraspp_mobilenet_v3_large",
                            weights=str(content_weights), device="cpu", size=64)  # fmt: skip
    pngs = [np.array(Image.open(p)) for p in sorted((tmp_path / "m").iterdir())]
    video = list(read_masks(tmp_path / "m.mkv"))
    assert len(pngs) == len(video) == 6 == summary["frames_out"]
    assert all(p.shape == (120, 200) and np.array_equal(p, v) for p, v in zip(pngs, video, strict=True))
    assert len(np.unique(np.stack(pngs))) > 3  # content-following masks, several classes


# --- smoothing -------------------------------------------------------------------------------


def test_ema_smoothing_cuts_flicker_on_a_grainy_clip(tmp_path, content_weights, grainy_clip):
    figures = {}
    for mode in ("off", "ema"):
        stats = tmp_path / f"{mode}.json"
        r = run_cli("video", grainy_clip, "-o", tmp_path / f"{mode}.mp4", *LIGHT, "--weights", content_weights,
                    "--size", "256", "--smooth", mode, "--stats", stats)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "flicker:" in r.stderr
        figures[mode] = json.loads(stats.read_text())
    off, ema = figures["off"]["flicker"], figures["ema"]["flicker"]
    print(f"flicker off {off:.4f}, ema {ema:.4f} ({1 - ema / off:.0%} less)")
    assert off > 0.005  # the clip does flicker
    assert ema <= 0.7 * off
    assert figures["ema"]["smooth_strength"] == 0.6 and figures["ema"]["scene_cuts"] == 0
    assert figures["ema"]["smooth_ms"] > 0 and "smooth_ms" not in figures["off"]


def test_a_scene_cut_resets_smoothing_end_to_end(tmp_path, content_weights):
    """Astronaut then coffee with a hard cut: the first coffee frame's mask is its own."""
    a, b = sample_frames(4, 160, 96, start=5), sample_frames(4, 160, 96, start=140)
    src = write_clip(tmp_path / "cut.mp4", a + b)
    args = dict(model="lraspp_mobilenet_v3_large", weights=str(content_weights), device="cpu", size=64)
    runs = {}
    for mode in ("off", "ema"):
        opts = AnalysisOptions(smooth=mode, mask_video=tmp_path / f"{mode}.mkv")
        runs[mode] = process_video(src, tmp_path / f"{mode}.mp4", analysis=opts, **args)
    assert runs["ema"]["scene_cuts"] == 1
    off, ema = list(read_masks(tmp_path / "off.mkv")), list(read_masks(tmp_path / "ema.mkv"))
    agree = [float((a == b).mean()) for a, b in zip(off, ema, strict=True)]
    assert agree[0] > 0.99 and agree[4] > 0.99, agree  # the first frame of each scene is its own: no smear
    assert agree[5] < 0.99, agree  # and smoothing goes on after the cut


# --- bad paths and the Python API ------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--masks", "{tmp}/file.txt"], 1, "is a file"),
        (["--mask-video", "{tmp}/m.mp4"], 1, ".mkv"),
        (["--coverage", "{tmp}/no/c.csv"], 1, "does not exist"),
        (["--coverage", "{tmp}/old.csv"], 1, "--overwrite"),
        (["--coverage-plot", "{tmp}/c.jpg"], 1, ".png"),
        (["--smooth-strength", "1"], 2, "0 <= S < 1"),
    ],
)
def test_bad_analysis_paths_are_one_line_errors_before_processing(tmp_path, extra, code, message):
    src = make_video(tmp_path / "in.mp4", frames=3)
    (tmp_path / "file.txt").write_text("")
    (tmp_path / "old.csv").write_text("")
    args = [a.format(tmp=tmp_path) for a in extra]
    r = run_cli("video", src, "-o", tmp_path / "o.mp4", *LIGHT, "--weights", "random", "--size", "64", *args)
    assert r.returncode == code, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(lines) == 1 if code == 1 else lines[-1].startswith("live-seg")
    assert not (tmp_path / "o.mp4").exists() and "untrained" not in r.stderr  # the model never loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "in.mp4", "old.csv"]


def test_read_masks_is_exported_lazily():
    code = "import sys, live_seg; assert 'live_seg.analysis.masks' not in sys.modules; print(live_seg.read_masks)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "read_masks" in r.stdout, r.stderr


# --- streaming -------------------------------------------------------------------------------


@pytest.mark.slow
def test_memory_stays_flat_over_a_long_clip(tmp_path, content_weights):
    """Every output (smoothing on) over 800 frames: the peak of Python memory over frames
    400-800 is no higher than over frames 200-400 (nothing is kept per frame)."""
    src = make_video(tmp_path / "long.mp4", frames=800, width=96, height=64)
    opts = AnalysisOptions(smooth="ema", masks=tmp_path / "m", mask_video=tmp_path / "m.mkv",
                           coverage=tmp_path / "c.csv", coverage_plot=tmp_path / "c.png")  # fmt: skip
    peaks: dict[int, int] = {}

    def on_frame(stats) -> None:
        if stats.frames_out in (200, 400, 800):
            peaks[stats.frames_out] = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()

    tracemalloc.start()
    try:
        summary = process_video(src, tmp_path / "o.mp4", analysis=opts, on_frame=on_frame, batch=1, workers=1,
                                model="lraspp_mobilenet_v3_large", weights=str(content_weights), device="cpu",
                                size=32)  # fmt: skip
    finally:
        tracemalloc.stop()
    print(peaks)
    assert summary["frames_out"] == 800
    assert peaks[800] < peaks[400] * 1.1 + 32_000, peaks
    assert len(read_csv(tmp_path / "c.csv")[1]) == 800 and len(os.listdir(tmp_path / "m")) == 800


# --- live ------------------------------------------------------------------------------------


def test_live_writes_coverage_and_masks_per_inferred_frame(tmp_path, person_weights):
    src = make_video(tmp_path / "in.mp4", frames=10)
    stats = tmp_path / "s.json"
    r = run_cli("live", "--source", src, "--display", "none", *LIGHT, "--weights", person_weights, "--size", "64",
                "--smooth", "ema", "--coverage", tmp_path / "c.csv", "--mask-video", tmp_path / "m.mkv",
                "--stats", stats)  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(stats.read_text())
    header, rows = read_csv(tmp_path / "c.csv")
    assert header == ["index", "pts", "person"] and len(rows) == summary["frames_inferred"] == 10
    assert all(float(row[2]) == 1.0 for row in rows)
    assert [float(row[1]) for row in rows] == pytest.approx([i / 25 for i in range(10)], abs=1e-3)
    assert summary["flicker"] == 0.0 and summary["smooth"] == "ema"
    assert sum(1 for _ in read_masks(tmp_path / "m.mkv")) == 10


def test_live_coverage_is_flushed_as_it_goes_and_survives_a_kill(tmp_path, person_weights):
    src = make_video(tmp_path / "in.mp4", frames=600, fps=Fraction(20))  # 30 s played in real time
    csv_path = tmp_path / "c.csv"
    proc = start_cli(
        "live", "--source", src, "--realtime", "--display", "none", *LIGHT, "--weights", person_weights,
        "--size", "64", "--coverage", csv_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    partial = partial_path(csv_path)

    def rows() -> int:
        return len(read_csv(partial)[1]) if partial.exists() and partial.stat().st_size else 0

    try:
        counts = [wait_for(rows, 120, "the first coverage rows", alive=proc)]
        for _ in range(2):  # rows reach the file while the run goes on
            counts.append(wait_for(lambda: (n := rows()) > counts[-1] and n, 120, "more coverage rows", alive=proc))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    header, lines = read_csv(partial)  # what a crash leaves: every class's column, rows to the last second
    assert len(header) == 23 and header[2] == "background" and len(lines) >= counts[-1]
    assert all(float(row[2 + 15]) == 1.0 for row in lines)
    assert not csv_path.exists()
