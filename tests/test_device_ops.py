"""The GPU path's tensor code, run on CPU tensors and compared with the OpenCV/numpy path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from live_seg.model import device_ops
from live_seg.model.segmenter import MEAN, STD, Segmenter
from live_seg.render.renderer import Renderer

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")],
    ),
]
SIZES = [(720, 1280), (241, 321), (512, 512), (90, 100), (1080, 1920)]


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8), (w, h))
    return np.clip(base.astype(np.int16) + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_resize_matches_opencv_within_one_level(h: int, w: int, device: str):
    frame = _frame(h, w)
    ref = cv2.resize(frame, (512, 512))  # INTER_LINEAR
    out = device_ops.resize_bilinear_u8(torch.from_numpy(frame).to(device)[None], 512)[0].cpu().numpy()
    diff = np.abs(out.astype(np.int16) - ref)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.25  # OpenCV rounds in fixed point: about 1 pixel in 8 is one level off


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("h", "w"), SIZES[:3])
@pytest.mark.parametrize("mask_size", [512, 256])
def test_overlay_equals_renderer_pixel_for_pixel(h: int, w: int, mask_size: int, device: str):
    frame = _frame(h, w, 1)
    mask = np.random.default_rng(2).integers(0, 21, (mask_size, mask_size), dtype=np.uint8)
    renderer = Renderer()
    ref = renderer.render(frame, mask).copy()
    t = [torch.from_numpy(a).to(device) for a in (frame, mask, renderer.lut)]
    np.testing.assert_array_equal(device_ops.overlay(*t, 0.4).cpu().numpy(), ref)


def test_overlay_per_class_weight_leaves_unchosen_classes_untouched():
    frame = _frame(241, 321, 3)
    mask = np.zeros((512, 512), np.uint8)
    mask[:, 256:] = 15
    lut = torch.from_numpy(Renderer().lut)
    alpha = torch.zeros(21)
    alpha[15] = 0.4
    out = device_ops.overlay(torch.from_numpy(frame), torch.from_numpy(mask), lut, alpha).numpy()
    near = cv2.resize(mask, (321, 241), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(out[near == 0], frame[near == 0])
    blended = cv2.addWeighted(frame, 0.6, np.broadcast_to(Renderer().lut[15], frame.shape).copy(), 0.4, 0)
    np.testing.assert_array_equal(out[near == 15], blended[near == 15])


def test_normalise_equals_the_cpu_preprocessing():
    seg = Segmenter("lraspp_mobilenet_v3_large", weights="random", device="cpu", precision="fp32", size=128)
    frames = [_frame(241, 321, 4), _frame(128, 128, 5)]
    ref = seg.preprocess(frames)
    resized = torch.from_numpy(np.stack([cv2.resize(f, (128, 128)) for f in frames]))
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    out = device_ops.normalise(resized, mean, std)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_gpu_style_preprocessing_on_cpu_is_within_one_grey_level_of_the_cpu_path():
    """What ``Segmenter`` does on CUDA (resize in float on the device, then normalise), on CPU tensors."""
    seg = Segmenter("lraspp_mobilenet_v3_large", weights="random", device="cpu", precision="fp32", size=128)
    frames = [_frame(720, 1280, 6), _frame(241, 321, 7)]
    ref = seg.preprocess(frames)
    batch = torch.stack([device_ops.resize_bilinear_u8(torch.from_numpy(f)[None], 128)[0] for f in frames])
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    out = device_ops.normalise(batch, mean, std, torch.channels_last, torch.float16)
    assert out.dtype == torch.float16 and out.is_contiguous(memory_format=torch.channels_last)
    # one grey level is 1/255 before dividing by the smallest std (0.225)
    assert (out.float() - ref).abs().max().item() <= 1 / 255 / min(STD) + 1e-2
