"""Tests of live_seg.model.ov_runtime: agreement with torch, the cache, scores, threads and errors.

The light model runs with a controllable state (GUIDE: low classifier drawn from N(0, 10), high
branch zero) so that masks follow image content (a dozen classes on a real frame) and agreement
figures mean something; FCN-ResNet101 runs with its untrained weights (slow).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from harness import run_cli
from media import frame_pattern, make_video, read_frames, read_index

import live_seg.model.ov_runtime as ovb
from live_seg.base.errors import ModelError
from live_seg.base.frames import FramePacket
from live_seg.base.specs import SPECS, get_spec
from live_seg.cli.main import main
from live_seg.model.segmenter import Segmenter
from live_seg.model.select import build_segmenter, resolve_backend
from live_seg.pipeline.file_run import run_file

SMALL = "lraspp_mobilenet_v3_large"
FP32_TARGET = 0.999
FRAMES_FROM_SAMPLE = 3


def real_frames() -> list[np.ndarray]:
    """The first frames of samples/sample.mp4 (720p) and three photographs, BGR uint8."""
    cap = cv2.VideoCapture("samples/sample.mp4")
    frames = []
    for _ in range(FRAMES_FROM_SAMPLE):
        ok, frame = cap.read()
        assert ok, "samples/sample.mp4 could not be read"
        frames.append(frame)
    cap.release()
    from skimage import data

    frames += [np.ascontiguousarray(im[..., ::-1]) for im in (data.astronaut(), data.coffee(), data.chelsea())]
    return frames


def content_following(seg: Segmenter, seed: int = 1) -> None:
    """Give the light model masks that follow local image content (see the module docstring)."""
    state = seg.module.state_dict()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in state.items():
            if key.startswith("classifier.high_classifier"):
                value.zero_()
        state["classifier.low_classifier.weight"].copy_(
            torch.randn(state["classifier.low_classifier.weight"].shape, generator=gen) * 10
        )
        state["classifier.low_classifier.bias"].zero_()


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.asarray(a) == np.asarray(b)).mean())


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return real_frames()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("ov-cache"))


@pytest.fixture(scope="module")
def small_torch() -> Segmenter:
    seg = Segmenter(SMALL, weights="random", device="cpu", precision="fp32")
    content_following(seg)
    return seg


def build(torch_seg: Segmenter, cache: str, **kwargs) -> ovb.OpenVinoSegmenter:
    seg = torch_seg
    return ovb.OpenVinoSegmenter(seg.module, spec=seg.spec, weights=seg.weights, cache_dir=cache, **kwargs)


@pytest.fixture(scope="module")
def small_ov(small_torch, cache) -> ovb.OpenVinoSegmenter:
    return build(small_torch, cache, precision="fp32")


def check_agreement(torch_seg: Segmenter, ov_seg: ovb.OpenVinoSegmenter, frames, target: float) -> list[float]:
    ref = [torch_seg.predict([f])[0] for f in frames]
    got = ov_seg.predict(frames)
    figures = [round(agreement(a, b), 5) for a, b in zip(got, ref, strict=True)]
    logging.getLogger(__name__).info("%s %s agreement with torch fp32: %s", ov_seg.name, ov_seg.precision, figures)
    assert min(len(np.unique(r)) for r in ref) >= 5, "masks should follow the content for a meaningful figure"
    assert min(figures) >= target, figures
    return figures


def test_fp32_masks_agree_with_torch_on_real_frames(small_torch, small_ov, frames):
    check_agreement(small_torch, small_ov, frames, FP32_TARGET)


def test_bf16_masks_agree_with_torch_fp32(small_torch, cache, frames):
    if not ovb.native_bf16():
        pytest.skip("no native bf16 on this CPU")
    seg = build(small_torch, cache, precision="bf16")
    assert seg.precision == "bf16"
    check_agreement(small_torch, seg, frames, 0.98)  # 99.1-99.5 % measured (README)


@pytest.mark.slow
def test_fcn_resnet101_fp32_agrees_with_torch(frames, cache):
    torch_seg = Segmenter("fcn_resnet101", weights="random", device="cpu", precision="fp32")
    check_agreement(torch_seg, build(torch_seg, cache, precision="fp32"), frames[:2], FP32_TARGET)


def test_second_build_hits_the_cache(small_torch, small_ov, cache):
    again = build(small_torch, cache, precision="fp32")
    assert not again.converted and again.cache_hit
    assert again.setup_s < small_ov.setup_s
    assert again.describe()["cache_hit"] is True


def test_cache_is_keyed_by_weights_and_size(small_torch, tmp_path, monkeypatch):
    from live_seg.model.ov_convert import weights_digest

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ovb.cache_root() == tmp_path / "live_seg" / "openvino"
    other = Segmenter(SMALL, weights="random", device="cpu", precision="fp32")
    assert weights_digest(other.module) != weights_digest(small_torch.module)
    assert weights_digest(other.module) == weights_digest(
        Segmenter(SMALL, weights="random", device="cpu", precision="fp32").module
    )


def test_weights_key_needs_no_torch_and_follows_the_file_contents(tmp_path):
    from live_seg.model.identity import weights_key

    a, b, c = tmp_path / "a.pth", tmp_path / "copy of a.pth", tmp_path / "c.pth"
    a.write_bytes(b"weights" * 1000)
    b.write_bytes(a.read_bytes())
    c.write_bytes(a.read_bytes()[:-1] + b"X")
    small, other = get_spec(SMALL), get_spec("fcn_resnet50")
    assert weights_key(small, str(a)) == weights_key(small, str(b)) != weights_key(small, str(c))
    assert weights_key(small, str(a)) != weights_key(other, str(a))
    assert weights_key(small, str(a)) != weights_key(small.sized(256), str(a))  # the input size is traced in
    assert weights_key(small, "random") == weights_key(small, "random") != weights_key(small, "default")
    assert weights_key(small, str(tmp_path / "missing.pth")) is None
    assert weights_key(small, str(tmp_path)) is None  # a folder


def test_official_weights_files_are_torchvision_s(monkeypatch):
    """The torch-free names that key ``--weights default`` are the files torchvision downloads."""
    from urllib.parse import urlparse

    from live_seg.model.segmenter import MODELS

    files = {n: SPECS[n].weights.file for n in MODELS}
    assert files == {n: Path(urlparse(s.weights.DEFAULT.url).path).name for n, s in MODELS.items()}


def test_unreadable_weights_file_is_the_loader_s_error(tmp_path):
    with pytest.raises(ModelError, match="weights file not found"):
        build_segmenter(SMALL, str(tmp_path / "missing.pth"), "cpu", "fp32", 64, mode="latency")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="not a readable torch file"):
        build_segmenter(SMALL, str(bad), "cpu", "fp32", 64, mode="latency")


def test_a_start_from_the_cache_never_imports_torch(tmp_path):
    """The second ``video`` run reads the converted network from the cache: torch stays unloaded."""
    src = make_video(tmp_path / "in.mp4", frames=6, width=160, height=96)
    said = "import atexit\natexit.register(lambda: print('torch' in sys.modules, 'torchvision' in sys.modules))"
    args = ["-q", "video", src, "-o", tmp_path / "o.mp4", "--overwrite", "--model", SMALL, "--weights", "random",
            "--size", "96", "--stats", tmp_path / "s.json"]  # fmt: skip
    runs = [run_cli(*args, setup=said) for _ in range(2)]
    assert [r.stdout.split() for r in runs] == [["True", "True"], ["False", "False"]], runs[1].stderr
    assert [r.returncode for r in runs] == [0, 0], runs[1].stderr
    assert "untrained weights" in runs[1].stderr  # said without torch too
    stats = json.loads((tmp_path / "s.json").read_text())
    assert (stats["backend"], stats["cache_hit"], stats["frames_out"]) == ("openvino", True, 6)


def test_device_auto_is_the_cpu_without_torch_where_no_gpu_driver_exists(monkeypatch, tmp_path):
    import live_seg.model.segmenter as model
    import live_seg.model.select as backends

    asked = []
    monkeypatch.setattr(model, "resolve_device", lambda name: asked.append(name) or "cuda")
    monkeypatch.setattr(backends.sys, "platform", "linux")
    monkeypatch.setattr(backends, "GPU_DEVICE_FILES", (str(tmp_path / "nvidiactl"),))
    assert backends.resolve_device("auto") == "cpu" and backends.resolve_device("cpu") == "cpu" and asked == []
    (tmp_path / "nvidiactl").touch()
    assert backends.resolve_device("auto") == "cuda" and asked == ["auto"]
    with pytest.raises(ModelError, match="unknown device"):
        backends.resolve_device("tpu")


def test_scores_are_probabilities_whose_argmax_is_the_mask(small_ov, frames):
    batch = small_ov.preprocess(frames[:2])
    scores = small_ov.infer_scores(batch)
    assert isinstance(scores, torch.Tensor) and scores.dtype == torch.float32
    assert scores.shape == (2, small_ov.num_classes, 512, 512)
    assert torch.allclose(scores.sum(1), torch.ones(2, 512, 512), atol=1e-4)
    assert agreement(scores.argmax(1).numpy(), small_ov.infer(batch)) > 0.9999


def test_batch_larger_than_the_request_pool_and_many_threads(small_ov, frames):
    """Batches beyond the pool, from several threads at once, come back complete and in order."""
    batch = small_ov.preprocess(frames + frames[:1])
    expected = np.stack([small_ov.infer(batch[i : i + 1])[0] for i in range(len(batch))])
    assert len(batch) > small_ov.requests
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        results[k] = small_ov.infer(np.roll(batch, k, axis=0))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for k in range(3):
        np.testing.assert_array_equal(results[k], np.roll(expected, k, axis=0))


def test_preprocess_resizes_like_the_torch_path(small_ov, small_torch, frames):
    batch = small_ov.preprocess([frames[0], frames[3]])
    assert batch.shape == (2, 512, 512, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], cv2.resize(frames[0], (512, 512)))
    with pytest.raises(ValueError, match="at least one frame"):
        small_ov.preprocess([])
    with pytest.raises(ValueError, match=r"frames\[0\]"):
        small_ov.preprocess([np.zeros((8, 8), np.uint8)])


class _Frames:
    """A source of stamped frames (index code and a moving square)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __iter__(self):
        for i in range(self.count):
            yield FramePacket(i, i / 25, time.perf_counter(), frame_pattern(i, 320, 192))

    def stop(self) -> None:
        pass


def test_throughput_file_run_keeps_frame_order_and_count(small_ov):
    count = 23
    expected = {i: small_ov.predict([frame_pattern(i, 320, 192)])[0] for i in range(count)}
    seen: list[int] = []

    def render(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
        i = read_index(frame)
        np.testing.assert_array_equal(mask, expected[i])  # each frame got its own mask
        return frame

    stats = run_file(
        _Frames(count), small_ov, render, lambda image, pts: seen.append(read_index(image)), batch=2, workers=2
    )
    assert seen == list(range(count))
    assert stats.frames_out == count and not stats.interrupted


def test_missing_openvino_is_one_line_naming_the_torch_backend(monkeypatch, small_torch):
    monkeypatch.setattr(ovb, "ov", None)
    monkeypatch.setattr(ovb, "_IMPORT_ERROR", ImportError("No module named 'openvino'"))
    with pytest.raises(ModelError) as info:
        build(small_torch, "")
    message = str(info.value)
    assert "\n" not in message and "--backend torch" in message and "openvino" in message


def test_compile_failure_is_one_line_naming_the_torch_backend(monkeypatch, small_torch, cache):
    class Core:
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def compile_model(self, *args, **kwargs):
            raise RuntimeError("Exception from src/plugins/intel_cpu/src/graph.cpp:209:\nCheck failed\nmore")

    real = ovb._core()
    monkeypatch.setattr(ovb, "_core", lambda: Core(real))
    with pytest.raises(ModelError) as info:
        build(small_torch, cache, precision="fp32")
    message = str(info.value)
    assert "\n" not in message and "--backend torch" in message and "could not compile" in message


@pytest.mark.parametrize(
    ("precision", "expected"),
    [("fp16", "--precision fp32"), ("int4", "--precision fp32")],
)
def test_precisions_openvino_cannot_run(precision, expected):
    with pytest.raises(ModelError, match=expected):
        ovb.resolve_precision(precision)


def test_auto_precision_is_bf16_where_native():
    assert ovb.resolve_precision("auto") == ("bf16" if ovb.native_bf16() else "fp32")
    assert ovb.resolve_precision("fp32") == "fp32"


def test_unknown_mode(small_torch):
    with pytest.raises(ModelError, match="throughput"):
        build(small_torch, "", mode="fast")


@pytest.mark.parametrize(
    ("backend", "device", "expected"),
    [("auto", "cpu", "openvino"), ("auto", "cuda", "torch"), ("auto", "mps", "torch"), ("torch", "cpu", "torch"),
     ("openvino", "cpu", "openvino")],
)  # fmt: skip
def test_backend_is_chosen_as_documented(backend, device, expected):
    assert resolve_backend(backend, device) == expected


@pytest.mark.parametrize(
    ("backend", "device", "message"),
    [("openvino", "cuda", "--backend torch"), ("onnx", "cpu", "choose one of auto, torch, openvino")],
)
def test_backend_errors(backend, device, message):
    with pytest.raises(ModelError, match=message):
        resolve_backend(backend, device)


def test_build_segmenter_on_the_cpu(frames):
    torch_seg = build_segmenter(SMALL, "random", "cpu", "fp32", 128, backend="torch")
    ov_seg = build_segmenter(SMALL, "random", "cpu", "fp32", 128, mode="latency")
    assert type(torch_seg) is Segmenter and torch_seg.describe()["backend"] == "torch"
    assert ov_seg.describe()["backend"] == "openvino" and ov_seg.mode == "latency" and ov_seg.requests == 1
    np.testing.assert_array_equal(ov_seg.predict(frames[:1])[0], torch_seg.predict(frames[:1])[0])
    scores = torch_seg.infer_scores(torch_seg.preprocess(frames[:1]))
    assert scores.shape == (1, 21, 128, 128) and torch.allclose(scores.sum(1), torch.ones(1, 128, 128), atol=1e-4)
    assert torch.allclose(scores, ov_seg.infer_scores(ov_seg.preprocess(frames[:1])), atol=1e-4)


def test_cli_video_on_openvino_keeps_every_frame_in_order(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=30, width=320, height=192)
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    r = run_cli("video", str(src), "-o", str(out), "--stats", str(stats), "--model", SMALL, "--weights", "random",
                "--device", "cpu", "--backend", "openvino", "--view", "side", "--alpha", "0")  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads(stats.read_text())
    assert (data["backend"], data["mode"], data["frames_out"]) == ("openvino", "throughput", 30)
    assert data["workers"] == data["requests"] and data["batch"] == 1
    assert [read_index(f[:, :320]) for f in read_frames(out)] == list(range(30))


def test_cli_image_with_auto_backend_on_the_cpu(tmp_path):
    import cv2

    img = tmp_path / "in.png"
    cv2.imwrite(str(img), real_frames()[3])
    r = run_cli("image", str(img), "-o", str(tmp_path), "--model", SMALL, "--weights", "random", "--device", "cpu",
                "-v")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "OpenVINO" in r.stderr and "latency mode" in r.stderr


def test_cli_without_openvino_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ovb, "ov", None)
    monkeypatch.setattr(ovb, "_IMPORT_ERROR", ImportError("No module named 'openvino'"))
    src = make_video(tmp_path / "in.mp4", frames=2)
    code = main(["video", str(src), "-o", str(tmp_path / "o.mp4"), "--model", SMALL, "--weights", "random",
                 "--device", "cpu", "--backend", "openvino"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert len(lines) == 1 and "--backend torch" in lines[0]
    assert not (tmp_path / "o.mp4").exists()
