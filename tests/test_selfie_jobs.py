"""``--model selfie`` in the jobs: both runtimes agree, the threshold decides, soft edges, source-size masks.

MediaPipe's trained selfie model (fetched once from the pinned wheel into the torch cache); real photographs
from scikit-image. Outside CI a machine without the weights and without the package registry skips, with
the reason; under CI these tests run.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from live_seg.base.frames import SOFT_THRESHOLD, soft_from_probability
from live_seg.base.options import ModelOptions
from live_seg.cli.main import main


@pytest.fixture(scope="module", autouse=True)
def selfie_weights(selfie_files):
    """Every test here runs MediaPipe's selfie model (conftest's ``selfie_files``: fetched once a session)."""
    return selfie_files


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    data = pytest.importorskip("skimage.data")
    return {name: np.ascontiguousarray(getattr(data, name)()[:, :, ::-1]) for name in ("astronaut", "rocket")}


@pytest.fixture(scope="module")
def segmenters():
    from live_seg.model.select import segmenter_for

    return {
        backend: segmenter_for(ModelOptions("selfie", backend=backend, device="cpu", precision="fp32"), "latency")
        for backend in ("torch", "openvino")
    }


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_soft_map_keeps_the_threshold_at_128(threshold):
    p = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    p[0, :3] = (threshold, np.nextafter(threshold, 1), 1.0)
    soft = soft_from_probability(p, threshold)
    np.testing.assert_array_equal(soft >= SOFT_THRESHOLD, p > threshold)
    assert soft.dtype == np.uint8 and soft.min() >= 0 and soft[0, 2] == 255


def test_torch_and_openvino_agree_and_mark_people_not_an_empty_scene(segmenters, photos):
    shares = {}
    for name, image in photos.items():
        masks = {b: seg.predict([image])[0] for b, seg in segmenters.items()}
        assert masks["torch"].shape == (256, 256)
        assert iou(masks["torch"] == 1, masks["openvino"] == 1) >= 0.99 or masks["torch"].sum() == 0
        shares[name] = float((masks["openvino"] == 1).mean())
    assert shares["astronaut"] > 0.4 and shares["rocket"] < 0.02, shares


def test_threshold_decides_the_class(photos):
    from live_seg.model.select import segmenter_for

    shares = []
    for t in (0.2, 0.8):
        seg = segmenter_for(ModelOptions("selfie", threshold=t, device="cpu"), "latency")
        ids, soft = seg.infer_soft(seg.preprocess([photos["astronaut"]]))
        np.testing.assert_array_equal(ids[0], soft[0] >= SOFT_THRESHOLD)
        shares.append(float(ids[0].mean()))
    assert shares[0] > shares[1] > 0.3


def test_source_size_masks_follow_the_upsampled_probability(segmenters, photos, tmp_path, capsys):
    """As MediaPipe's graph: the probability resized to the frame (bilinear), then the threshold; not the
    256x256 mask blown up with nearest neighbour."""
    image = photos["astronaut"]
    path = tmp_path / "astronaut.png"
    Image.fromarray(image[:, :, ::-1]).save(path)
    code = main(["-q", "image", str(path), "-o", str(tmp_path / "out"), "--model", "selfie"])
    assert code == 0, capsys.readouterr().err
    written = np.array(Image.open(tmp_path / "out" / "mask.png"))
    seg = segmenters["openvino"]
    p = seg.logits([image])[0, 0].numpy()
    reference = cv2.resize(p, image.shape[1::-1], interpolation=cv2.INTER_LINEAR) > 0.5
    assert written.shape == image.shape[:2]
    assert iou(written == 1, reference) > 0.995
    blocky = cv2.resize(seg.predict([image])[0], image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    assert (written != blocky).sum() > 0  # the edges differ from the nearest-resized model mask


def test_effects_get_soft_edges_from_the_probability(segmenters, photos):
    from live_seg.render.effects import EffectOptions

    image = photos["astronaut"]
    seg = segmenters["openvino"]
    ids, soft = seg.infer_soft(seg.preprocess([image]))
    between = lambda a: int(((a.values > 10) & (a.values < 245)).sum())  # noqa: E731
    blur = EffectOptions("blur", classes=None, invert=True).build(seg.categories)  # its default feather
    smooth = blur.alpha(image.shape, ids[0], soft[0])
    assert between(smooth) > 1000 and not smooth.hard
    overlay = EffectOptions("overlay", feather=0).build(seg.categories)  # hard edges, on the probability's contour
    hard, blocky = overlay.alpha(image.shape, ids[0], soft[0]), overlay.alpha(image.shape, ids[0])
    assert between(hard) == 0 and between(blocky) == 0
    p = seg.logits([image])[0, 0].numpy()
    contour = cv2.resize(p, image.shape[1::-1], interpolation=cv2.INTER_LINEAR) > 0.5
    assert iou(hard.values > 0, contour) > iou(blocky.values > 0, contour)
