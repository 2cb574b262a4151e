"""int8 on the OpenVINO runtime: NNCF quantisation on calibration frames, its cache, its errors, the
bench's int8 row (light model, small input)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from harness import run_cli
from test_propagate import kb

from live_seg.base.errors import ModelError
from live_seg.jobs.bench import run_bench
from live_seg.model import ov_runtime, quantize
from live_seg.model.select import build_segmenter

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "sample.mp4"
SIZE = 128


@pytest.fixture(scope="module")
def content_weights(tmp_path_factory) -> Path:
    return kb.content_weights(tmp_path_factory.mktemp("w") / "content.pth")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder of five photographs (a calibration source of images)."""
    folder = tmp_path_factory.mktemp("photos")
    canvas = kb.pan_canvas(height=240)
    for i in range(5):
        cv2.imwrite(str(folder / f"{i:02d}.png"), canvas[:, i * 200 : i * 200 + 320])
    (folder / "notes.txt").write_text("not an image")
    return folder


def build(weights: str, cache: Path | str, calibration=None, precision: str = "int8"):
    return build_segmenter(
        "lraspp_mobilenet_v3_large",
        weights,
        "cpu",
        precision,
        SIZE,
        backend="openvino",
        cache_dir=str(cache),
        calibration=calibration,
    )


def test_calibration_sources_are_sampled_across_and_named_by_content(photos, tmp_path):
    video = quantize.calibration(SAMPLE, count=6)
    frames = video.load()
    assert len(frames) == 6 and frames[0].shape == (720, 1280, 3)
    assert not np.array_equal(frames[0], frames[-1])  # from across the clip, not its first frames
    assert quantize.calibration(None, count=6).key == video.key  # the bundled sample by default
    images = quantize.calibration(photos, count=3)
    assert len(images.load()) == 3 and images.source == str(photos)
    assert quantize.calibration(photos, count=4).key != images.key  # the sampling is part of the key
    assert images.cache_name() != quantize.Calibration(images.key, "", images.load, "int8").cache_name()
    assert quantize._spread(150, 3) == [0, 74, 149] and quantize._spread(2, 5) == [0, 1]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda tmp: tmp / "missing.mp4", "not found"),
        (lambda tmp: tmp, "holds no images"),
        (lambda tmp: (tmp / "broken.mp4").write_bytes(b"not a video") and tmp / "broken.mp4", "calibration video"),
    ],
)
def test_bad_calibration_sources_are_one_line(make, match, tmp_path):
    with pytest.raises(ModelError, match=match) as info:
        quantize.calibration(make(tmp_path)).load()
    assert "\n" not in str(info.value) and "--calibration" in str(info.value)


def test_int8_agrees_with_fp32_and_is_cached_per_calibration_source(content_weights, photos, tmp_path, monkeypatch):
    fp32 = build(str(content_weights), tmp_path, precision="fp32")
    int8 = build(str(content_weights), tmp_path, quantize.calibration(photos))
    assert int8.precision == "int8" and int8.describe()["calibration"] == str(photos)
    frames = quantize.calibration(SAMPLE, count=8).load()
    a, b = np.stack(fp32.predict(frames)), np.stack(int8.predict(frames))
    assert len(np.unique(a)) > 3  # masks that follow the picture, not one class
    assert (a == b).mean() > 0.9
    folders = sorted(p.name for p in next(tmp_path.glob("lraspp*")).iterdir() if p.name.startswith("int8-"))
    assert len(folders) == 1 and (next(tmp_path.glob("lraspp*")) / folders[0] / "model.xml").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("quantised again although the cache has this calibration source")

    monkeypatch.setattr(quantize, "quantize", refuse)
    again = build(str(content_weights), tmp_path, quantize.calibration(photos))
    np.testing.assert_array_equal(np.stack(again.predict(frames)), b)
    with pytest.raises(AssertionError, match="quantised again"):  # another source: another network
        build(str(content_weights), tmp_path, quantize.calibration(photos, count=2))


def test_a_cpu_without_int8_or_a_torch_backend_gets_one_line_naming_the_alternative(monkeypatch, tmp_path):
    class NoInt8:
        def get_property(self, device, name):
            return ["FP32", "BF16"]

    monkeypatch.setattr(ov_runtime, "_core", lambda: NoInt8())
    with pytest.raises(ModelError, match="cannot run int8 on this CPU; use --precision fp32"):
        ov_runtime.resolve_precision("int8")
    monkeypatch.undo()
    with pytest.raises(ModelError, match=r"OpenVINO runtime only; use .*--backend openvino"):
        build_segmenter("lraspp_mobilenet_v3_large", "random", "cpu", "int8", SIZE, backend="torch")
    assert ov_runtime.resolve_precision("auto") in ("fp32", "bf16")  # auto never picks int8


def test_video_cli_int8_bad_calibration_is_one_line(tmp_path):
    done = run_cli("video", SAMPLE, "-o", tmp_path / "o.mp4", "--model", "lraspp_mobilenet_v3_large",
                   "--weights", "random", "--precision", "int8", "--calibration", tmp_path / "none.mp4")  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: calibration source not found")


def test_bench_int8_row_fills_vs_fp32(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    report = run_bench(
        ["cpu"],
        ["fp32", "int8"],
        ["lraspp_mobilenet_v3_large"],
        backends=["openvino", "torch"],
        size=SIZE,
        frames=2,
        warmup=1,
        repeat=1,
        weights="random",
    )
    rows = {(r["backend"], r["precision"]): r for r in report["results"]}
    int8 = rows[("openvino", "int8")]
    assert int8["status"] == "ok" and int8["model_only"]["fps"] > 0
    assert int8["vs_fp32"] is not None and 0.0 <= int8["vs_fp32"]["mask_agreement"] <= 1.0
    assert rows[("torch", "int8")]["status"] == "not available"
    assert "--backend openvino" in rows[("torch", "int8")]["reason"]
    assert rows[("openvino", "fp32")]["status"] == "ok"
