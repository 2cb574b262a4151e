"""Key frames: the mask propagator, the file run's skipped frames, and the ``video`` job end to end
(key frames identical to an every-frame run; flow closer to every-frame masks than hold on a pan)."""

from __future__ import annotations

import csv
import importlib.util
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from harness import run_cli

from live_seg.analysis.masks import read_masks
from live_seg.analysis.propagate import MaskPropagator
from live_seg.analysis.run import AnalysisOptions, RunAnalysis
from live_seg.base.frames import FramePacket
from live_seg.base.options import check_key_interval
from live_seg.jobs.video import process_video
from live_seg.pipeline.file_run import Steps, run_file

ROOT = Path(__file__).resolve().parents[1]
LIGHT = {"model": "lraspp_mobilenet_v3_large", "device": "cpu", "backend": "torch", "size": 512}


def _bench_script():
    spec = importlib.util.spec_from_file_location("keyframe_bench", ROOT / "scripts" / "keyframe_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kb = _bench_script()


@pytest.fixture(scope="module")
def content_weights(tmp_path_factory) -> Path:
    """The content-following LRASPP weights (the same recipe as the figures' script)."""
    return kb.content_weights(tmp_path_factory.mktemp("w") / "content.pth")


@pytest.fixture(scope="module")
def pan_clip(tmp_path_factory) -> Path:
    """33 frames of a camera panning over the photographs, 480x270."""
    return kb.make_pan_clip(tmp_path_factory.mktemp("clip") / "pan.mp4", frames=33, width=480, height=270)


def _scene(shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A 256x256 photograph shifted by ``shift`` pixels (x, y), BGR."""
    from skimage import data

    image = np.ascontiguousarray(cv2.resize(data.astronaut(), (256, 256))[..., ::-1])
    m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    return cv2.warpAffine(image, m, (256, 256), borderMode=cv2.BORDER_REFLECT)


def _classes(image: np.ndarray) -> np.ndarray:
    """A mask that follows the picture: 8 classes by brightness."""
    return (cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) // 32).astype(np.uint8)


@pytest.mark.parametrize("flow_size", [None, 128])
def test_flow_carries_a_mask_along_the_motion_and_hold_does_not(flow_size):
    key, moved = _scene(), _scene((6.0, 4.0))
    truth = _classes(moved)
    inner = (slice(16, -16), slice(16, -16))  # the border that came into view has no past
    flow = MaskPropagator("flow", flow_size=flow_size)
    hold = MaskPropagator("hold")
    assert flow.key(key, _classes(key)) is not None and hold.key(key, _classes(key)) is not None
    flow_err = float((flow.carry(moved)[inner] != truth[inner]).mean())
    hold_err = float((hold.carry(moved)[inner] != truth[inner]).mean())
    assert hold_err > 0.2  # the picture moved: holding the mask is wrong on the edges
    assert flow_err < 0.5 * hold_err
    assert flow.carry(moved).shape == truth.shape and flow.carry(moved).dtype == np.uint8


def test_hold_returns_the_key_mask_and_masks_of_another_size_follow():
    key = _scene()
    hold = MaskPropagator("hold")
    mask = _classes(key)
    assert hold.key(key, mask) is mask and hold.carry(_scene((3, 0))) is mask
    flow = MaskPropagator("flow")
    small = cv2.resize(mask, (64, 64), interpolation=cv2.INTER_NEAREST)
    flow.key(cv2.resize(key, (320, 180)), small)  # pictures at any size, masks at the model's
    assert flow.carry(cv2.resize(_scene((4, 0)), (320, 180))).shape == (64, 64)


def test_propagator_rejects_bad_use():
    with pytest.raises(ValueError, match="propagate"):
        MaskPropagator("warp")
    with pytest.raises(ValueError, match="preset"):
        MaskPropagator("flow", preset="slowest")
    with pytest.raises(RuntimeError, match="key frame"):
        MaskPropagator("flow").carry(_scene())
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="key interval"):
            check_key_interval(bad)
    with pytest.raises(ValueError, match="key interval"):
        RunAnalysis(AnalysisOptions(key_interval=0))
    with pytest.raises(ValueError, match="propagate"):
        RunAnalysis(AnalysisOptions(key_interval=2, propagate="warp"))


class _Frames:
    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        for i in range(self.n):
            yield FramePacket(i, i / 25, time.perf_counter(), np.full((8, 8, 3), i, np.uint8))

    def stop(self) -> None:
        pass


class _Counting:
    def __init__(self) -> None:
        self.seen: list[int] = []
        self.lock = threading.Lock()

    def preprocess(self, frames):
        return list(frames)

    def infer(self, batch):
        with self.lock:
            self.seen += [int(f[0, 0, 0]) for f in batch]
        return np.stack([np.full((2, 2), f[0, 0, 0], np.uint8) for f in batch])


@pytest.mark.parametrize(("batch", "workers"), [(1, 1), (2, 2), (3, 1)])
def test_file_run_skips_the_model_between_key_frames_and_keeps_frame_order(batch, workers, no_thread_left):
    model, out, refined = _Counting(), [], []
    last = {}

    def refine(result):
        if result.mask is None:  # a skipped frame: the key frame's mask, as hold would give
            return type(result)(result.packet, last["mask"])
        last["mask"] = result.mask
        refined.append(result.packet.index)
        return result

    stats = run_file(
        _Frames(23),
        model,
        lambda frame, mask: frame,
        lambda image, pts: out.append(int(image[0, 0, 0])),
        batch=batch,
        workers=workers,
        steps=Steps(refine=refine, skip=lambda p: p.index % 4 != 0),
    )
    assert sorted(model.seen) == refined == list(range(0, 23, 4))
    assert out == list(range(23)) and stats.frames_out == 23
    assert len(stats.stages["infer"]) == 6  # only the frames the model ran count as inference


@pytest.fixture(scope="module")
def pan_runs(pan_clip, content_weights, tmp_path_factory) -> dict[str, list[np.ndarray]]:
    """The pan through the video job: every frame, and key interval 8 with flow and with hold."""
    out = tmp_path_factory.mktemp("runs")
    masks = {}
    for name, interval, mode in (("every", 1, "flow"), ("flow", 8, "flow"), ("hold", 8, "hold")):
        summary = process_video(
            pan_clip,
            out / f"{name}.mp4",
            analysis=AnalysisOptions(key_interval=interval, propagate=mode, mask_video=out / f"{name}.mkv"),
            weights=str(content_weights),
            **LIGHT,
        )
        assert summary["key_interval"] == interval
        if interval > 1:
            assert summary["key_frames"] == 5 and summary["carried_frames"] == 28
        masks[name] = list(read_masks(out / f"{name}.mkv"))
    return masks


def test_key_frames_are_identical_to_an_every_frame_run(pan_runs):
    every = pan_runs["every"]
    assert len(every) == 33 and len(set(np.unique(np.stack(every)))) > 3  # masks that follow the picture
    for mode in ("flow", "hold"):
        assert len(pan_runs[mode]) == 33
        for i in range(0, 33, 8):
            np.testing.assert_array_equal(pan_runs[mode][i], every[i])


def test_flow_disagrees_with_every_frame_masks_at_most_three_quarters_as_much_as_hold(pan_runs):
    every = pan_runs["every"]
    flow, keys = kb.disagreement(every, pan_runs["flow"], 8)
    hold, _ = kb.disagreement(every, pan_runs["hold"], 8)
    assert keys and hold > 0.05
    assert flow <= 0.75 * hold, (flow, hold)


def test_key_frames_work_with_smoothing_masks_coverage_and_effects(pan_clip, content_weights, tmp_path):
    summary = process_video(
        pan_clip,
        tmp_path / "out.mp4",
        analysis=AnalysisOptions(
            key_interval=3,
            smooth="ema",
            masks=tmp_path / "masks",
            masks_size="source",
            coverage=tmp_path / "cov.csv",
            mask_video=tmp_path / "m.mkv",
        ),
        effect="blur",
        weights=str(content_weights),
        **LIGHT,
    )
    assert summary["frames_out"] == 33 and summary["key_frames"] == 11 and summary["carried_frames"] == 22
    assert summary["propagate"] == "flow" and summary["propagate_ms"] > 0
    assert len(list((tmp_path / "masks").glob("*.png"))) == 33
    masks = list(read_masks(tmp_path / "m.mkv"))
    assert len(masks) == 33 and masks[0].shape == (270, 480)
    with open(tmp_path / "cov.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 33


def test_cli_key_interval_runs_and_bad_values_are_one_line(pan_clip, content_weights, tmp_path):
    stats = tmp_path / "s.json"
    args = ["--model", "lraspp_mobilenet_v3_large", "--device", "cpu", "--backend", "torch", "--size", "128"]
    done = run_cli("-q", "video", pan_clip, "-o", tmp_path / "o.mp4", "--key-interval", "4", "--propagate", "hold",
                   "--weights", content_weights, "--stats", stats, *args)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"key_interval": 4' in stats.read_text() and '"propagate": "hold"' in stats.read_text()
    bad = run_cli("video", pan_clip, "-o", tmp_path / "b.mp4", "--key-interval", "0", *args)
    assert bad.returncode == 2 and "--key-interval" in bad.stderr and "Traceback" not in bad.stderr


# -- scene cuts make key frames ------------------------------------------------------------------

SCENE = 10
"""Frames per scene of the cut clip: cuts at 10 and 20, neither a multiple of the key interval 8."""


def cut_clip(path: Path, width: int = 256, height: int = 192) -> Path:
    """Three real photographs, each a slow pan (1 px a frame) of :data:`SCENE` frames, joined by hard
    cuts: the astronaut, the cameraman, the astronaut mirrored (people the selfie model finds steadily)."""
    from skimage import data
    from test_analysis_cli import write_clip

    frames = []
    for image in (data.astronaut(), np.dstack([data.camera()] * 3), data.astronaut()[:, ::-1]):
        scale = (height + 40) / image.shape[0]
        big = cv2.resize(np.ascontiguousarray(image[..., ::-1]), (round(image.shape[1] * scale), height + 40))
        frames += [big[20 : 20 + height, i : i + width].copy() for i in range(SCENE)]
    return write_clip(path, frames)


@pytest.fixture(scope="module")
def cut_runs(tmp_path_factory) -> dict[str, list[np.ndarray]]:
    """Person masks of the cut clip with the selfie model: every frame, key interval 8 with and without cuts."""
    from live_seg.base.errors import ModelError

    out = tmp_path_factory.mktemp("cuts")
    clip = cut_clip(out / "clip.mp4")
    masks = {}
    for name, interval, cut_keys in (("every", 1, True), ("cuts", 8, True), ("no cuts", 8, False)):
        analysis = AnalysisOptions(key_interval=interval, cut_keys=cut_keys, mask_video=out / f"{name}.mkv",
                                   masks_size="source")  # fmt: skip
        try:
            summary = process_video(clip, out / f"{name}.mp4", analysis=analysis, model="selfie", device="cpu")
        except ModelError as exc:  # the weights come from the registry's mediapipe wheel, cached once
            if "selfie" in str(exc) and not os.environ.get("CI"):
                pytest.skip(f"the selfie model is not available here: {exc}")
            raise
        if interval > 1:
            assert summary["cut_key_frames"] == (2 if cut_keys else None)  # exactly the two cuts, no pan
            assert summary["key_frames"] == (4 + 2 if cut_keys else 4)
        masks[name] = [m == 1 for m in read_masks(out / f"{name}.mkv")]
    return masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def test_a_scene_cut_makes_a_key_frame_and_the_masks_after_it_follow_the_new_scene(cut_runs):
    every = cut_runs["every"]
    assert all(0.2 < m.mean() < 0.8 for m in every)  # a person in every scene
    for cut in (SCENE, 2 * SCENE):
        after = range(cut, cut + 3)  # the cut's own frame and the two carried to after it
        with_cuts = [iou(cut_runs["cuts"][i], every[i]) for i in after]
        without = [iou(cut_runs["no cuts"][i], every[i]) for i in after]
        assert with_cuts[0] == 1.0 and np.mean(with_cuts) >= 0.9, with_cuts  # the network's own mask, then carried
        assert max(without) < 0.6, without  # the old scene's person, carried across the cut
    for i in range(0, 3 * SCENE, 8):  # the grid's key frames stay key frames
        assert iou(cut_runs["cuts"][i], every[i]) == 1.0


def test_live_key_frames_follow_scene_cuts_as_the_video_job_does(cut_runs, tmp_path):
    """The stream engine's key frames (``live --key-interval 8`` on a file, read as fast as the model goes):
    the same key frames as the video job (every 8th and each cut), every frame carried in between, in order."""
    from live_seg.jobs.live.session import LiveOptions, LiveSession

    clip = cut_clip(tmp_path / "clip.mp4")
    runs = {}
    for name, cut_keys in (("cuts", True), ("no cuts", False)):
        analysis = AnalysisOptions(key_interval=8, cut_keys=cut_keys, mask_video=tmp_path / f"{name}.mkv",
                                   masks_size="source")  # fmt: skip
        options = LiveOptions(source=str(clip), display="none", analysis=analysis)
        summary = LiveSession(options, model="selfie").run()
        assert summary["cut_key_frames"] == (2 if cut_keys else None)
        assert summary["key_frames"] == (6 if cut_keys else 4)
        assert summary["sinks"]["mask_video"] == {"handled": 3 * SCENE, "dropped": 0}, summary["sinks"]
        (source,) = summary["sources"]
        assert source["frames_carried"] == 3 * SCENE - summary["key_frames"] and source["dropped"] == 0
        runs[name] = [m == 1 for m in read_masks(tmp_path / f"{name}.mkv")]
    every = cut_runs["every"]
    for cut in (SCENE, 2 * SCENE):
        after = range(cut, cut + 3)
        with_cuts = [iou(runs["cuts"][i], every[i]) for i in after]
        without = [iou(runs["no cuts"][i], every[i]) for i in after]
        print(f"cut at {cut}: person IoU {np.round(with_cuts, 3)} with cut keys, {np.round(without, 3)} without")
        assert with_cuts[0] > 0.99 and np.mean(with_cuts) >= 0.9, with_cuts
        assert max(without) < 0.6, without


def test_stream_yields_key_and_carried_frames_in_order(cut_runs, tmp_path):
    """``live_seg.stream()`` runs the same engine: with key frames in its options every frame of a file comes
    out once, in order, marked key or carried, the carried masks following the new scene after each cut."""
    import live_seg
    from live_seg.jobs.live.session import LiveOptions

    clip = cut_clip(tmp_path / "clip.mp4")
    options = LiveOptions(analysis=AnalysisOptions(key_interval=8))
    got = list(live_seg.stream(str(clip), options=options, model="selfie"))
    assert [r.index for r in got] == list(range(3 * SCENE))
    assert [r.index for r in got if r.key] == [0, 8, SCENE, 16, 2 * SCENE, 24]
    every = cut_runs["every"]
    masks = [cv2.resize(r.mask, every[0].shape[::-1], interpolation=cv2.INTER_NEAREST) == 1 for r in got]
    assert min(iou(masks[i], every[i]) for i in (SCENE + 1, 2 * SCENE + 1)) >= 0.85


def test_look_marks_cuts_in_frame_order_and_skip_agrees_on_any_thread():
    analysis = RunAnalysis(AnalysisOptions(key_interval=4))
    flat = [np.full((48, 64, 3), v, np.uint8) for v in (40, 40, 40, 200, 200, 200, 200, 200, 90)]
    packets = [FramePacket(i, i / 25, 0.0, image) for i, image in enumerate(flat)]
    for packet in packets:
        analysis.look(packet)
    skipped = [analysis.skip(p) for p in reversed(packets)][::-1]  # asked out of order: the same answers
    assert skipped == [False, True, True, False, False, True, True, True, False]  # 0, cut at 3, 4, 8 (and a cut)
    assert analysis.summary()["cut_key_frames"] == 1  # frame 8 is a key frame anyway
    assert RunAnalysis(AnalysisOptions(key_interval=4, cut_keys=False)).look is None


def test_content_weights_follow_the_recipe(content_weights):
    state = torch.load(content_weights)
    assert state["classifier.high_classifier.weight"].abs().sum() == 0
    assert state["classifier.low_classifier.bias"].abs().sum() == 0
    assert 8 < state["classifier.low_classifier.weight"].std() < 12
