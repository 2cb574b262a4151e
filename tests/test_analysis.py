"""Analysis outputs: temporal smoothing, scene cuts, flicker, per-frame masks, mask video, coverage."""

from __future__ import annotations

import csv
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from live_seg.analysis import coverage as coverage_mod
from live_seg.analysis.coverage import Coverage, CoverageSeries, partial_path
from live_seg.analysis.masks import MaskOutputs, MaskVideo, PngMasks, mask_name, read_masks
from live_seg.analysis.smoothing import (
    CUT_THRESHOLD,
    FlickerMeter,
    SceneCutDetector,
    TemporalSmoother,
    check_strength,
    first_argmax,
    pack_scores,
)
from live_seg.base.errors import OutputError, SourceError
from live_seg.render.renderer import VOC_CLASSES, voc_palette

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "sample.mp4"


def sample_frames(step: int = 1) -> list[np.ndarray]:
    with av.open(str(SAMPLE)) as c:
        return [f.to_ndarray(format="bgr24") for i, f in enumerate(c.decode(video=0)) if i % step == 0]


def grain(frame: np.ndarray, rng: np.random.Generator, sigma: float = 12) -> np.ndarray:
    noise = rng.normal(0, sigma, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def one_hot_scores(cls: int, shape=(21, 4, 4), p: float = 0.9) -> torch.Tensor:
    s = torch.full(shape, (1 - p) / (shape[0] - 1))
    s[cls] = p
    return s


# --- smoothing -------------------------------------------------------------------------------


def reference_ema(seq: list[np.ndarray], strength: float) -> list[np.ndarray]:
    state, out = None, []
    for p in seq:
        state = p.copy() if state is None else strength * state + (1 - strength) * p
        out.append(state.argmax(0).astype(np.uint8))
    return out


@pytest.mark.parametrize("strength", [0.0, 0.3, 0.6, 0.9])
def test_smoother_is_an_ema_of_probabilities_then_argmax(strength):
    rng = np.random.default_rng(1)
    seq = [torch.from_numpy(rng.random((5, 6, 7))).float().softmax(0) for _ in range(12)]
    sm = TemporalSmoother(strength, cut_threshold=None)
    got = [sm.step(s) for s in seq]
    want = reference_ema([s.numpy().astype(np.float64) for s in seq], strength)
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    assert got[0].dtype == np.uint8 and got[0].shape == (6, 7)
    if strength == 0.0:
        assert all(np.array_equal(g, s.argmax(0).numpy()) for g, s in zip(got, seq, strict=True))


def test_smoother_votes_away_a_one_frame_flip_and_does_not_touch_its_input():
    sm = TemporalSmoother(0.6, cut_threshold=None)
    for _ in range(3):
        assert (sm.step(one_hot_scores(15)) == 15).all()
    flip = one_hot_scores(8)
    before = flip.clone()
    assert (sm.step(flip) == 15).all()  # one frame of "cat" does not win over three of "person"
    assert torch.equal(flip, before)
    for _ in range(3):
        last = sm.step(flip)
    assert (last == 8).all()  # a lasting change does win


def test_first_argmax_is_argmax_with_ties_to_the_lowest_class():
    rng = np.random.default_rng(4)
    s = torch.from_numpy(rng.integers(0, 4, (21, 9, 11))).float()  # many ties
    got = first_argmax(s)
    assert got.dtype == torch.uint8 and torch.equal(got, s.argmax(0).byte())


def test_packed_scores_smooth_like_floats_even_for_an_unsure_model():
    """float16 keeps the top two classes apart where an unsure model puts ~0.05 on each of 21."""
    rng = np.random.default_rng(2)
    seq = [torch.from_numpy(rng.normal(0, 0.5, (21, 32, 32))).float().softmax(0) for _ in range(8)]
    packed = [pack_scores(s) for s in seq]
    assert packed[0].dtype == torch.float16
    for strength in (0.0, 0.6):
        a, b = TemporalSmoother(strength, None), TemporalSmoother(strength, None)
        agree = np.mean([(a.step(s) == b.step(p)).mean() for s, p in zip(seq, packed, strict=True)])
        assert agree > 0.995, (strength, agree)
    with pytest.raises(ValueError, match="float"):
        TemporalSmoother().step(packed[0].mul(255).byte())


def test_strength_range():
    assert check_strength(0) == 0.0 and check_strength(0.99) == 0.99
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="0 <= S < 1"):
            check_strength(bad)


def test_scene_cut_resets_the_average():
    frames = sample_frames(step=10)
    a, b = frames[1], frames[14]  # astronaut, coffee: a hard cut between them
    for threshold, first_after_cut in ((CUT_THRESHOLD, 2), (None, 1)):
        sm = TemporalSmoother(0.8, cut_threshold=threshold)
        for _ in range(4):
            sm.step(one_hot_scores(1), a)
        assert (sm.step(one_hot_scores(2), b) == first_after_cut).all()
    assert sm.resets == 0


def test_scene_cut_detector_on_the_sample_clip():
    """Pans, zooms and crossfades (with grain) are no cut; jumping between its photos is."""
    frames = sample_frames()
    rng = np.random.default_rng(0)
    det = SceneCutDetector()
    assert not any(det.is_cut(grain(f, rng)) for f in frames)
    assert det.cuts == 0 and det.last_difference < CUT_THRESHOLD / 2
    for i, j in ((10, 60), (60, 100), (100, 145), (145, 10)):
        det = SceneCutDetector()
        det.is_cut(frames[i])
        assert det.is_cut(frames[j]), (i, j, det.last_difference)


def test_infer_scores_agrees_with_infer():
    from live_seg.model.segmenter import Segmenter

    seg = Segmenter("lraspp_mobilenet_v3_large", weights="random", device="cpu", precision="fp32", size=64)
    frames = sample_frames(step=50)[:2]
    batch = seg.preprocess(frames)
    scores = seg.infer_scores(batch)
    assert scores.shape == (2, 21, 64, 64) and scores.dtype == torch.float32
    assert torch.allclose(scores.sum(1), torch.ones(2, 64, 64), atol=1e-5)
    assert np.array_equal(scores.argmax(1).byte().numpy(), seg.infer(batch))


# --- flicker ---------------------------------------------------------------------------------


def test_flicker_is_the_mean_changed_share():
    fm = FlickerMeter()
    assert fm.value is None
    m = np.zeros((10, 10), np.uint8)
    fm.write(0, 0.0, m)
    assert fm.value is None
    m2 = m.copy()
    m2[:2] = 3  # 20 % changed
    fm.write(1, 0.04, m2)
    fm.write(2, 0.08, m2)  # 0 % changed
    assert fm.value == pytest.approx(0.1)
    m2[:] = 7  # the caller reuses its buffer: the meter kept a copy
    fm.write(3, 0.12, m2)
    assert fm.value == pytest.approx((0.2 + 0 + 1.0) / 3)
    assert fm.close() is None


# --- per-frame PNG masks ---------------------------------------------------------------------


def test_mask_name():
    assert mask_name(123, 4.92) == "000123_004920ms.png"
    assert mask_name(1234567, 1000.0) == "1234567_1000000ms.png"


def test_png_masks_are_palette_images_of_class_ids(tmp_path):
    out = tmp_path / "masks"
    sink = PngMasks(out)
    assert out.is_dir()
    masks = [np.full((6, 8), k, np.uint8) for k in (0, 15, 8)]
    masks[1][0, 0] = 20
    for i, m in enumerate(masks):
        sink.write(i, i * 0.04, m)
    assert sink.close() == out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["000000_000000ms.png", "000001_000040ms.png", "000002_000080ms.png"]
    for name, m in zip(names, masks, strict=True):
        img = Image.open(out / name)
        assert img.mode == "P" and np.array_equal(np.array(img), m)
        assert np.array_equal(np.array(img.getpalette()[: 21 * 3], np.uint8).reshape(21, 3), voc_palette())


def test_png_masks_refuse_bad_folders_and_old_masks(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        PngMasks(tmp_path / "file")
    with pytest.raises(OutputError, match="does not exist"):
        PngMasks(tmp_path / "missing" / "masks")
    out = tmp_path / "m"
    sink = PngMasks(out)
    sink.write(0, 0.0, np.zeros((4, 4), np.uint8))
    sink.close()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="--overwrite"):
        PngMasks(out)
    PngMasks(out, overwrite=True)  # removes the old masks only
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    assert PngMasks(empty).close() is None and not empty.exists()  # nothing written: no folder left


# --- mask video ------------------------------------------------------------------------------


def test_mask_video_is_lossless_and_keeps_timestamps(tmp_path):
    rng = np.random.default_rng(3)
    masks = [rng.integers(0, 21, (48, 64)).astype(np.uint8) for _ in range(7)]
    pts = [0.0, 0.04, 0.08, 0.2, 0.201, 0.3, 0.3]  # variable rate, a repeated time
    path = tmp_path / "m.mkv"
    sink = MaskVideo(path)
    for i, (t, m) in enumerate(zip(pts, masks, strict=True)):
        sink.write(i, t, m)
    assert sink.close() == path
    assert not list(tmp_path.glob(".*partial*"))
    back = list(read_masks(path, with_pts=True))
    assert len(back) == len(masks)
    assert all(np.array_equal(m, b) for m, (_, b) in zip(masks, back, strict=True))
    assert [round(t, 3) for t, _ in back] == [0.0, 0.04, 0.08, 0.2, 0.201, 0.3, 0.301]
    assert all(np.array_equal(m, b) for m, b in zip(masks, read_masks(path), strict=True))


def test_mask_video_errors(tmp_path):
    with pytest.raises(OutputError, match=r"\.mkv"):
        MaskVideo(tmp_path / "m.mp4")
    with pytest.raises(OutputError, match="does not exist"):
        MaskVideo(tmp_path / "no" / "m.mkv")
    (tmp_path / "old.mkv").write_text("")
    with pytest.raises(OutputError, match="--overwrite"):
        MaskVideo(tmp_path / "old.mkv")
    sink = MaskVideo(tmp_path / "m.mkv")
    sink.write(0, 0.0, np.zeros((4, 6), np.uint8))
    with pytest.raises(OutputError, match="size changed"):
        sink.write(1, 0.04, np.zeros((6, 4), np.uint8))
    sink.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.mkv"]
    assert MaskVideo(tmp_path / "n.mkv").close() is None and not (tmp_path / "n.mkv").exists()
    with pytest.raises(SourceError, match="cannot open"):
        list(read_masks(tmp_path / "missing.mkv"))
    with pytest.raises(SourceError, match="not a mask video"):
        list(read_masks(SAMPLE))


# --- coverage --------------------------------------------------------------------------------


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_coverage_csv_keeps_only_classes_seen(tmp_path):
    path = tmp_path / "cov.csv"
    cov = Coverage(VOC_CLASSES, path)
    m = np.zeros((4, 4), np.uint8)
    m[:1] = 15  # person 25 %, background 75 %
    cov.write(0, 0.0, m)
    m2 = np.full((4, 4), 8, np.uint8)  # cat 100 %
    cov.write(1, 0.04, m2)
    assert partial_path(path).exists() and not path.exists()
    assert cov.close() == path
    assert not partial_path(path).exists()
    header, rows = read_csv(path)
    assert header == ["index", "pts", "background", "cat", "person"]
    assert [[float(v) for v in r] for r in rows] == [[0, 0.0, 0.75, 0.0, 0.25], [1, 0.04, 0.0, 1.0, 0.0]]


def test_coverage_partial_file_is_flushed_as_it_goes(tmp_path, monkeypatch):
    """What a crash leaves: the partial CSV with every class and all rows up to the last flush."""
    monkeypatch.setattr(coverage_mod, "FLUSH_S", 0.0)
    path = tmp_path / "live.csv"
    cov = Coverage(VOC_CLASSES, path)
    for i in range(3):
        cov.write(i, i * 0.5, np.full((4, 4), 15, np.uint8))
    header, rows = read_csv(partial_path(path))  # read while the file is still open
    assert len(header) == 2 + 21 and header[2] == "background" and len(rows) == 3
    assert {float(r[2 + 15]) for r in rows} == {1.0}
    cov.abort()
    assert not partial_path(path).exists() and not path.exists()


def test_coverage_errors_and_empty_runs(tmp_path):
    path = tmp_path / "c.csv"
    partial_path(path).write_text("index,pts\n0,0\n")
    with pytest.raises(OutputError, match="earlier run"):
        Coverage(VOC_CLASSES, path)
    with pytest.raises(OutputError, match="does not exist"):
        Coverage(VOC_CLASSES, tmp_path / "no" / "c.csv")
    with pytest.raises(OutputError, match=r"\.png"):
        Coverage(VOC_CLASSES, plot_path=tmp_path / "c.jpg")
    cov = Coverage(VOC_CLASSES, tmp_path / "d.csv", tmp_path / "d.png")
    assert cov.close() is None
    assert not (tmp_path / "d.csv").exists() and not (tmp_path / "d.png").exists()


def test_coverage_series_is_bounded_and_keeps_means():
    s = CoverageSeries(3, points=16)
    n = 10_000
    for i in range(n):
        row = np.array([1.0, 0.0, 0.0]) if i < n // 2 else np.array([0.0, 0.5, 0.5])
        s.add(i * 0.04, row)
    times, means = s.means()
    assert len(times) <= 16 and s.sums.shape == (16, 3)
    assert 8 <= len(times) and np.all(np.diff(times) > 0) and times[0] < n * 0.04 / 8 < times[-1] - n * 0.04 * 3 / 4
    assert means[0].tolist() == [1.0, 0.0, 0.0] and means[-1].tolist() == [0.0, 0.5, 0.5]
    assert np.allclose(means.sum(1), 1.0)
    assert s.seen.tolist() == [True, True, True]


def test_coverage_chart(tmp_path):
    pytest.importorskip("matplotlib")
    cov = Coverage(VOC_CLASSES, plot_path=tmp_path / "c.png", title="clip.mp4")
    for i in range(50):
        m = np.zeros((8, 8), np.uint8)
        m[: i % 8] = 15
        cov.write(i, i / 25, m)
    assert cov.close() == tmp_path / "c.png"
    img = Image.open(tmp_path / "c.png")
    assert img.size[0] >= 1000 and img.size[1] >= 400
    rgb = np.array(img.convert("RGB")).reshape(-1, 3)
    person = voc_palette()[15]
    assert (np.abs(rgb.astype(int) - person).sum(1) < 10).sum() > 200  # person's line in its colour


# --- fan-out and streaming memory ------------------------------------------------------------


def test_mask_outputs_resize_once_for_source_size_sinks(tmp_path):
    model, source = FlickerMeter(), PngMasks(tmp_path / "big")
    outs = MaskOutputs([model], [source])
    m = np.zeros((4, 4), np.uint8)
    m[:, 2:] = 15
    outs.write(0, 0.0, m, source_hw=(6, 10))
    assert outs.close() == [tmp_path / "big"]
    big = np.array(Image.open(next((tmp_path / "big").iterdir())))
    assert big.shape == (6, 10) and (big[:, :5] == 0).all() and (big[:, 5:] == 15).all()
    with pytest.raises(ValueError, match="source_hw"):
        MaskOutputs([], [FlickerMeter()]).write(0, 0.0, m)


def test_sinks_stream_in_flat_memory(tmp_path):
    """Coverage (CSV + chart summary), flicker and the mask video hold no per-frame state."""
    cov = Coverage(VOC_CLASSES, tmp_path / "c.csv")
    outs = MaskOutputs([cov, FlickerMeter(), MaskVideo(tmp_path / "m.mkv")])
    rng = np.random.default_rng(0)
    base = rng.integers(0, 21, (64, 64)).astype(np.uint8)
    peaks = []
    tracemalloc.start()
    try:
        for i in range(4000):
            outs.write(i, i * 0.04, np.roll(base, i, axis=1))
            if i in (999, 1999, 3999):  # peaks over frames 1000-2000, then 2000-4000
                peaks.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.reset_peak()
    finally:
        tracemalloc.stop()
    outs.close()
    assert peaks[2] < peaks[1] * 1.2 + 32_000, peaks  # twice the frames, no more memory
    assert len(read_csv(tmp_path / "c.csv")[1]) == 4000
    assert sum(1 for _ in read_masks(tmp_path / "m.mkv")) == 4000
