"""Tests of live_seg.model.segmenter: registry, weights, device/precision policy and the seeds' fidelity.

Everything runs offline on the CPU with untrained weights (``weights="random"``, seed fixed);
the official download is exercised up to the network call, and through a file in the cache.
"""

from __future__ import annotations

import os
import urllib.error

import cv2
import numpy as np
import pytest
import torch
from torchvision import transforms
from torchvision.models import segmentation as tvseg

import live_seg.model.segmenter as model_module
from live_seg.base.errors import ModelError
from live_seg.base.specs import MODEL_NAMES, SPECS, TORCHVISION
from live_seg.model.segmenter import (
    DEFAULT_MODEL,
    MODELS,
    Segmenter,
    available_precisions,
    resolve_device,
    resolve_precision,
    torch_runtime,
)

IMAGENET_MEAN = [0.485, 0.456, 0.406]  # as the seeds wrote them, not read from live_seg
IMAGENET_STD = [0.229, 0.224, 0.225]
SMALL = "lraspp_mobilenet_v3_large"  # ~40 ms a forward here: the model when the model isn't the point
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A real photograph as a 1280x720 BGR uint8 frame (a synthetic gradient without scikit-image)."""
    try:
        from skimage import data

        rgb = data.astronaut()
    except ImportError:
        y, x = np.mgrid[0:512, 0:512]
        rgb = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (1280, 720), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def small() -> Segmenter:
    return Segmenter(SMALL, weights="random", device="cpu", precision="fp32")


@pytest.fixture
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def seeds_reference(frame: np.ndarray, size: int = 512) -> torch.Tensor:
    """The model input as the project's seeds built it: (1, 3, size, size) float32 RGB."""
    rgb = cv2.cvtColor(cv2.resize(frame, (size, size)), cv2.COLOR_BGR2RGB)
    return transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)(transforms.ToTensor()(rgb)).unsqueeze(0)


def other_lraspp(seed: int = 1, **kwargs) -> torch.nn.Module:
    """An LRASPP with weights different from ``weights="random"`` (which uses seed 0)."""
    torch.manual_seed(seed)
    kwargs.setdefault("num_classes", 21)
    return tvseg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, **kwargs).eval()


def forward(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return module(x)["out"]


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# --- registry -----------------------------------------------------------------------------------


def test_registry_holds_the_six_models():
    assert set(MODELS) == {
        "fcn_resnet101",
        "fcn_resnet50",
        "deeplabv3_resnet50",
        "deeplabv3_resnet101",
        "deeplabv3_mobilenet_v3_large",
        "lraspp_mobilenet_v3_large",
    }
    assert tuple(MODELS) == tuple(n for n in MODEL_NAMES if SPECS[n].family == TORCHVISION)
    assert DEFAULT_MODEL == "fcn_resnet101"
    for name, spec in MODELS.items():
        assert tuple(spec.weights.DEFAULT.meta["categories"]) == SPECS[name].categories


def test_unknown_model_lists_the_names():
    with pytest.raises(ModelError) as excinfo:
        Segmenter("unet", weights="random", device="cpu")
    msg = one_line_error(excinfo)
    assert "'unet'" in msg and all(name in msg for name in MODEL_NAMES)


# --- fidelity to the seeds ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [SMALL, "fcn_resnet101"])
def test_fp32_cpu_is_bit_identical_to_the_seeds(name, frame):
    """Same input tensor, same logits and the same mask, pixel for pixel, as the seeds' code path.

    The reference does not go through live_seg: torchvision's network built on its own, given
    the same weights, and the seeds' preprocessing, forward and argmax.
    """
    seg = Segmenter(name, weights="random", device="cpu", precision="fp32")
    reference = getattr(tvseg, name)(weights=None, weights_backbone=None, num_classes=21)
    reference.load_state_dict(seg.module.state_dict())
    reference.eval()
    x = seeds_reference(frame)
    with torch.no_grad():
        ref = reference(x)["out"]
    ref_mask = ref.argmax(1)[0].numpy().astype(np.uint8)
    assert torch.equal(seg.preprocess([frame]), x)
    mask = seg.predict([frame])[0]
    assert mask.dtype == np.uint8 and mask.shape == (512, 512)
    np.testing.assert_array_equal(mask, ref_mask)
    if name == SMALL:  # a third FCN-ResNet101 forward would cost ~2 s for no new information
        assert torch.equal(seg.logits([frame]), ref)


def test_batch_of_mixed_sizes_is_preprocessed_frame_by_frame(small, frame):
    other = np.ascontiguousarray(frame[100:340, 200:520])  # 240x320, a view made contiguous
    batch = small.preprocess([frame, other, frame[::2, ::2]])
    assert batch.shape == (3, 3, 512, 512) and batch.dtype == torch.float32
    for i, f in enumerate([frame, other, frame[::2, ::2]]):
        assert torch.equal(batch[i : i + 1], seeds_reference(f))
    masks = small.predict([frame, other])
    assert len(masks) == 2 and all(m.shape == (512, 512) and m.dtype == np.uint8 for m in masks)


def test_size_sets_the_mask_size(frame):
    seg = Segmenter(SMALL, weights="random", device="cpu", precision="fp32", size=256)
    assert seg.predict([frame])[0].shape == (256, 256)
    assert seg.logits([frame]).shape == (1, 21, 256, 256)


# --- weights ------------------------------------------------------------------------------------------


def test_random_weights_are_marked_untrained_and_deterministic(small, caplog):
    before = torch.random.get_rng_state()
    with caplog.at_level("WARNING", logger="live_seg.model.segmenter"):
        again = Segmenter(SMALL, weights="random", device="cpu", precision="fp32")
    assert torch.equal(torch.random.get_rng_state(), before), "building must not consume the global RNG"
    assert "untrained weights" in caplog.text
    assert again.untrained and small.untrained
    for k, v in small.module.state_dict().items():
        assert torch.equal(v, again.module.state_dict()[k]), k
    info = small.describe()
    assert info == {
        "model": SMALL,
        "weights": "random",
        "untrained": True,
        "backend": "torch",
        "device": "cpu",
        "precision": "fp32",
        "size": 512,
        "spec": SPECS[SMALL].describe(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    assert small.categories[0] == "__background__" and small.categories[15] == "person"
    assert small.num_classes == 21 and not small.module.training


def test_random_resnet101_stays_in_fp16_range(frame):
    """With torchvision's init the ResNet-101 stream reaches ~3e5 (fp16 max 65504): it is tamed."""
    seg = Segmenter("fcn_resnet101", weights="random", device="cpu", precision="fp32", size=128)
    peak = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: peak.append(out.abs().max().item()))
        for m in seg.module.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.BatchNorm2d)
    ]
    logits = seg.logits([frame])
    for h in hooks:
        h.remove()
    assert max(peak) < 65504 / 16
    assert len(logits.argmax(1).unique()) > 1  # not a constant mask


@pytest.mark.parametrize("wrap", ["plain", "model", "state_dict", "module."])
def test_state_dict_file_round_trip(tmp_path, frame, wrap):
    module = other_lraspp()
    sd = module.state_dict()
    obj = {
        "plain": sd,
        "model": {"model": sd, "epoch": 3},
        "state_dict": {"state_dict": sd},
        "module.": {f"module.{k}": v for k, v in sd.items()},
    }[wrap]
    path = tmp_path / "lraspp.pth"
    torch.save(obj, path)
    seg = Segmenter(SMALL, weights=str(path), device="cpu", precision="fp32", size=256)
    assert not seg.untrained and seg.weights == str(path)
    x = seg.preprocess([frame])
    assert torch.equal(seg.logits([frame]), forward(module, x))
    np.testing.assert_array_equal(seg.predict([frame])[0], forward(module, x).argmax(1)[0].numpy())


def test_aux_classifier_keys_are_dropped_without_changing_out(tmp_path, frame):
    """Official FCN/DeepLab checkpoints carry aux_classifier.*; inference does not need it."""
    name = "deeplabv3_mobilenet_v3_large"
    torch.manual_seed(2)
    module = tvseg.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True
    ).eval()
    assert any(k.startswith("aux_classifier.") for k in module.state_dict())
    torch.save(module.state_dict(), tmp_path / "dl.pth")
    seg = Segmenter(name, weights=str(tmp_path / "dl.pth"), device="cpu", precision="fp32", size=256)
    assert seg.module.aux_classifier is None
    assert torch.equal(seg.logits([frame]), forward(module, seg.preprocess([frame])))


@pytest.mark.parametrize(
    ("saved", "model", "expected"),
    [
        (lambda: other_lraspp().state_dict(), "deeplabv3_mobilenet_v3_large", "missing keys"),
        (lambda: other_lraspp(num_classes=5).state_dict(), SMALL, "4 shape mismatches"),
        (lambda: {**other_lraspp().state_dict(), "extra.weight": torch.zeros(1)}, SMALL, "1 unexpected keys"),
    ],
    ids=["other-model", "other-classes", "extra-key"],
)
def test_state_dict_that_does_not_fit(tmp_path, saved, model, expected):
    path = tmp_path / "w.pth"
    torch.save(saved(), path)
    with pytest.raises(ModelError) as excinfo:
        Segmenter(model, weights=str(path), device="cpu")
    msg = one_line_error(excinfo)
    assert f"weights file {path} does not fit {model}" in msg
    assert expected in msg and "--model" in msg


def _truncated(path):
    torch.save(other_lraspp().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_truncated, "is not a readable torch file"),
        (lambda p: p.write_text("this is not a checkpoint\n"), "is not a readable torch file"),
        (lambda p: p.write_bytes(b""), "is not a readable torch file"),
        (lambda p: torch.save([torch.zeros(1)], p), "does not hold a state_dict"),
        (lambda p: torch.save({"epoch": 3}, p), "does not hold a state_dict"),
        (lambda p: p.mkdir(), "weights file not found"),
    ],
    ids=["truncated", "text", "empty", "list", "no-tensors", "directory"],
)
def test_unreadable_weights_file(tmp_path, make, expected):
    path = tmp_path / "w.pth"
    make(path)
    with pytest.raises(ModelError) as excinfo:
        Segmenter(SMALL, weights=str(path), device="cpu")
    msg = one_line_error(excinfo)
    assert expected in msg and str(path) in msg


def test_missing_weights_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(ModelError) as excinfo:
        Segmenter(SMALL, weights=str(path), device="cpu")
    msg = one_line_error(excinfo)
    assert f"weights file not found: {path}" in msg and "'random'" in msg


class _Payload:
    """Unpickling this runs os.mkdir(marker): code execution, harmless and visible."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth"
    torch.save({"backbone.weight": torch.zeros(1), "x": _Payload(str(marker))}, path)
    with pytest.raises(ModelError) as excinfo:
        Segmenter(SMALL, weights=str(path), device="cpu")
    msg = one_line_error(excinfo)
    assert "not a plain tensor file" in msg and "not loaded" in msg
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: an unsafe load does run it
    assert marker.exists()


# --- official weights, offline ---------------------------------------------------------------------------


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME, and a network that fails (the test must not depend on being offline)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    return tmp_path / "torch" / "hub" / "checkpoints", calls


@pytest.mark.parametrize(
    "exc",
    [urllib.error.URLError("offline"), ConnectionResetError("reset"), RuntimeError("invalid hash value")],
    ids=["url", "connection", "hash"],
)
def test_default_weights_offline_say_what_to_do(torch_home, monkeypatch, exc):
    cache, _ = torch_home

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(torch.hub, "urlopen", fail)
    with pytest.raises(ModelError) as excinfo:
        Segmenter("fcn_resnet101", weights="default", device="cpu")
    msg = one_line_error(excinfo)
    weights = tvseg.FCN_ResNet101_Weights.DEFAULT
    assert "fcn_resnet101_coco-7ecb50ca.pth" in msg
    assert weights.meta["_file_size"] == pytest.approx(207.711) and "(207.7 MB)" in msg
    assert weights.url in msg and str(cache) in msg
    assert "--weights PATH" in msg and "--weights random" in msg
    assert excinfo.value.__cause__ is exc
    assert not any(cache.iterdir())  # no partial download left behind


def test_default_weights_come_from_the_cache_without_network(torch_home, frame):
    cache, calls = torch_home
    module = other_lraspp()
    cache.mkdir(parents=True)
    name = os.path.basename(tvseg.LRASPP_MobileNet_V3_Large_Weights.DEFAULT.url)
    torch.save(module.state_dict(), cache / name)  # not the official bytes: the hash is checked on download only
    seg = Segmenter(SMALL, weights="default", device="cpu", precision="fp32", size=256)
    assert calls == [] and not seg.untrained
    assert torch.equal(seg.logits([frame]), forward(module, seg.preprocess([frame])))


def test_corrupt_cached_file_says_delete_it(torch_home):
    cache, _ = torch_home
    cache.mkdir(parents=True)
    path = cache / os.path.basename(tvseg.LRASPP_MobileNet_V3_Large_Weights.DEFAULT.url)
    path.write_bytes(b"PK\x03\x04 half a download")
    with pytest.raises(ModelError) as excinfo:
        Segmenter(SMALL, weights="default", device="cpu")
    msg = one_line_error(excinfo)
    assert f"cached weights file {path}" in msg and "delete it" in msg and "--weights random" in msg


# --- device and precision ------------------------------------------------------------------------------


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ModelError) as excinfo:
        resolve_device("cuda")
    assert one_line_error(excinfo) == ("CUDA was requested but torch.cuda.is_available() is False; use --device cpu")
    with pytest.raises(ModelError, match="MPS was requested"):
        resolve_device("mps")
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


@pytest.mark.parametrize(
    ("precision", "device", "native_bf16", "expected"),
    [
        ("auto", "cpu", False, "fp32"),
        ("auto", "cpu", True, "bf16"),
        ("fp32", "cpu", True, "fp32"),
        ("bf16", "cpu", False, "bf16"),
        ("auto", "cuda", True, "fp16"),
    ],
)
def test_resolve_precision(monkeypatch, precision, device, native_bf16, expected):
    monkeypatch.setattr(model_module, "cpu_has_native_bf16", lambda: native_bf16)
    assert resolve_precision(precision, device) == expected


def test_cpu_bf16_detection_reads_the_cpu_flags():
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    expected = "avx512_bf16" in flags or "amx_bf16" in flags
    assert model_module.cpu_has_native_bf16() is expected


@pytest.mark.parametrize(
    ("precision", "device", "expected"),
    [("fp16", "cpu", "use --precision fp32 or bf16"), ("int8", "cpu", "int8 runs on the OpenVINO runtime only")],
)
def test_resolve_precision_refuses(precision, device, expected):
    with pytest.raises(ModelError) as excinfo:
        resolve_precision(precision, device)
    assert expected in one_line_error(excinfo)


def test_available_precisions_on_cpu():
    assert available_precisions("cpu") == ["fp32", "bf16"]


def test_fp16_on_cpu_is_refused_by_the_segmenter():
    with pytest.raises(ModelError, match="fp16 is not supported on cpu"):
        Segmenter(SMALL, weights="random", device="cpu", precision="fp16")


def test_bf16_on_cpu_agrees_with_fp32(small, frame):
    """bf16 weights + channels_last (+ BatchNorm folded) vs fp32, same weights, one real frame.

    Tolerances: masks agree on >= 98% of pixels and logits are within 2% relative (L2) error
    (measured here: 100% and 0.3%; FCN-ResNet101: 99.7% and 1.0%). Random LRASPP masks are
    nearly constant, so the logit check is the informative one.
    """
    bf16 = Segmenter(SMALL, weights="random", device="cpu", precision="bf16")
    assert bf16.describe()["precision"] == "bf16"
    assert next(bf16.module.parameters()).dtype == torch.bfloat16
    ref = small.logits([frame])
    out = bf16.logits([frame])
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert ((out - ref).norm() / ref.norm()).item() < 0.02
    mask, ref_mask = bf16.predict([frame])[0], small.predict([frame])[0]
    assert (mask == ref_mask).mean() >= 0.98


def test_threads_are_set(keep_threads):
    """Building a Segmenter leaves torch's process-wide threads alone; torch_runtime sets and restores them."""
    torch.set_num_threads(2)
    seg = Segmenter(SMALL, weights="random", device="cpu", precision="fp32", threads=1)
    assert seg.threads == 1 and torch.get_num_threads() == 2
    with torch_runtime(seg.threads, seg.device):
        assert torch.get_num_threads() == 1 and seg.describe()["threads"] == 1
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_torch_runtime_restores_after_an_error(keep_threads, device):
    """cuDNN's autotuner is switched on for CUDA jobs only (a flag torch holds even without CUDA)."""
    torch.set_num_threads(2)
    before = torch.backends.cudnn.benchmark
    with pytest.raises(RuntimeError, match="boom"), torch_runtime(1, device):
        assert torch.get_num_threads() == 1
        assert torch.backends.cudnn.benchmark is (device == "cuda" or before)
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2 and torch.backends.cudnn.benchmark is before
    with pytest.raises(ModelError, match="threads must be >= 1"), torch_runtime(0, device):
        pass


@pytest.mark.parametrize(("kwargs", "expected"), [({"size": 8}, "size"), ({"threads": 0}, "threads")])
def test_bad_size_or_threads(kwargs, expected):
    with pytest.raises(ModelError, match=expected):
        Segmenter(SMALL, weights="random", device="cpu", **kwargs)


# --- input validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([np.zeros((64, 64, 3), np.float32)], "expected dtype uint8, got float32"),
        ([np.zeros((64, 64), np.uint8)], "expected shape (H, W, 3), got (64, 64)"),
        ([np.zeros((64, 64, 4), np.uint8)], "expected shape (H, W, 3), got (64, 64, 4)"),
        ([[[0, 0, 0]]], "expected a numpy array (H, W, 3) uint8 BGR, got list"),
        ([], "expected at least one frame, got 0"),
    ],
    ids=["float", "2-D", "4-channel", "list", "empty"],
)
def test_bad_frames_are_refused(small, frames, expected):
    with pytest.raises(ValueError) as excinfo:
        small.predict(frames)
    assert expected in str(excinfo.value)


# --- CUDA ----------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_half_precision_agrees_with_fp32(frame, precision):
    """FCN-ResNet101 on CUDA: fp16 / bf16 masks agree with fp32 on >= 98% of pixels."""
    if precision not in available_precisions("cuda"):
        pytest.skip(f"{precision} is not supported on this GPU")
    ref = Segmenter("fcn_resnet101", weights="random", device="cuda", precision="fp32")
    half = Segmenter("fcn_resnet101", weights="random", device="cuda", precision=precision)
    assert half.preprocess([frame]).dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    # GPU resize rounds after float bilinear, OpenCV in fixed point: at most one grey level apart.
    torch.testing.assert_close(ref.preprocess([frame]).cpu(), seeds_reference(frame), rtol=0, atol=1.01 / 255 / 0.224)
    out = half.logits([frame])
    assert torch.isfinite(out).all()
    assert (half.predict([frame])[0] == ref.predict([frame])[0]).mean() >= 0.98


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_auto_is_fp16():
    seg = Segmenter(SMALL, weights="random", device="auto")
    assert (seg.device, seg.precision) == ("cuda", "fp16")
    with torch_runtime(seg.threads, seg.device):
        assert torch.backends.cudnn.benchmark


def test_pinned_staging_buffer_is_not_reallocated_when_frame_sizes_alternate(small, monkeypatch):
    """Two cameras of different sizes in one batch: before, every frame re-made the pinned buffer."""
    pinned: list[tuple[int, ...]] = []
    real_empty = torch.empty

    def empty(*size, **kwargs):
        if kwargs.pop("pin_memory", False):  # pinning needs CUDA: count it, allocate plain memory
            pinned.append(tuple(size[0]) if isinstance(size[0], tuple) else size)
        return real_empty(*size, **kwargs)

    class Event:  # a stand-in for torch.cuda.Event on a machine without CUDA
        def record(self) -> None: ...

        def synchronize(self) -> None: ...

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    shapes = [(720, 1280, 3), (360, 640, 3)] * 10 + [(1080, 1920, 3), (720, 1280, 3)]
    views = [small._staging(shape)[0] for shape in shapes]
    assert [v.shape for v in views] == [torch.Size(s) for s in shapes]
    assert len(pinned) == 2  # the first size, then once more when a bigger frame came
    assert len({v.data_ptr() for v in views[-2:]}) == 1  # the smaller size reuses the bigger buffer


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_preprocessing_matches_the_cpu_path(frame):
    """Pinned upload + GPU resize/normalise: same input as the CPU path within one grey level,
    for batches of two frame sizes, alternating (one staging buffer, grown for the bigger size)."""
    cpu = Segmenter(SMALL, weights="random", device="cpu", precision="fp32")
    gpu = Segmenter(SMALL, weights="random", device="cuda", precision="fp32")
    small = cv2.resize(frame, (320, 180))
    for batch in ([frame, frame], [small], [frame], [small, frame, small]):
        torch.testing.assert_close(gpu.preprocess(batch).cpu(), cpu.preprocess(batch), rtol=0, atol=1.01 / 255 / 0.224)
