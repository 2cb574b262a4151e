"""Model specs and your own models: the registry, the options that reach every job, ``--model FILE.onnx``.

Own models are small torchvision networks exported here with ``torch.onnx.export`` (and saved as an
OpenVINO IR), run through ``image``, ``video`` and ``live`` from the command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from harness import run_cli
from media import frame_pattern, make_video
from PIL import Image
from torchvision.models import segmentation as tvseg

from live_seg.base.errors import ModelError
from live_seg.base.options import ModelOptions
from live_seg.base.specs import MODEL_NAMES, PROBABILITY, SPECS, custom_spec, get_spec, resolve_spec

ROOT = Path(__file__).resolve().parents[1]
SIDE = 64
LABELS = ("background", "thing", "other")


def test_every_built_in_model_has_a_complete_spec():
    assert MODEL_NAMES[0] == "fcn_resnet101" and {"selfie", "selfie_landscape"} <= set(MODEL_NAMES)
    for name, spec in SPECS.items():
        assert spec.name == name and len(spec.categories) >= 2
        assert spec.weights is not None and spec.weights.file and spec.weights.licence
        assert len(spec.mean) == len(spec.std) == 3 and spec.runtimes
    selfie, landscape = get_spec("selfie"), get_spec("selfie_landscape")
    assert selfie.categories == ("background", "person") and selfie.output == PROBABILITY
    assert (selfie.input_hw, landscape.input_hw) == ((256, 256), (144, 256))
    assert selfie.weights.sha256 and selfie.weights.wheel.package == "mediapipe"
    assert "not a person detector" in selfie.note


def test_the_spec_registry_is_torch_free():
    code = "import sys, live_seg.base.specs, live_seg.cli.args; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ModelOptions(model="selfie", size=512), "takes 256x256 inputs only"),
        (ModelOptions(model="fcn_resnet101", labels="x.txt"), "--labels is for your own model"),
        (ModelOptions(model="unet"), "unknown model 'unet'"),
        (ModelOptions(model="missing.onnx", labels="x.txt"), "model file not found"),
        (ModelOptions(model="fcn_resnet101", size=16), "integer >= 32"),
    ],
)
def test_bad_model_options_are_one_line_errors(options, message):
    with pytest.raises(ModelError, match=message) as excinfo:
        resolve_spec(options)
    assert "\n" not in str(excinfo.value)


def test_a_size_changes_a_resizable_spec_only():
    assert resolve_spec(ModelOptions(model="lraspp_mobilenet_v3_large", size=128)).input_hw == (128, 128)
    assert resolve_spec(ModelOptions(model="selfie")).input_hw == (256, 256)


# --- your own model ---------------------------------------------------------------------------------


class _Out(torch.nn.Module):
    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)["out"]


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> dict[str, Path | torch.nn.Module]:
    """A 3-class LRASPP exported to ONNX (fixed 64x64 input) and to an OpenVINO IR, with its labels file."""
    import openvino as ov

    folder = tmp_path_factory.mktemp("own")
    torch.manual_seed(3)
    net = tvseg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=len(LABELS)).eval()
    with torch.no_grad():  # masks that follow the picture (a few classes), not one class everywhere
        for p in net.classifier.low_classifier.parameters():
            p.normal_(0, 10)
    module = _Out(net).eval()
    onnx = folder / "own.onnx"
    torch.onnx.export(module, (torch.zeros(1, 3, SIDE, SIDE),), onnx, input_names=["image"], output_names=["out"],
                      dynamo=False)  # fmt: skip
    ir = folder / "own.xml"
    ov.save_model(ov.Core().read_model(onnx), ir)
    labels = folder / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    wrong = folder / "two.txt"
    wrong.write_text("a\nb\n")
    return {"onnx": onnx, "ir": ir, "labels": labels, "wrong": wrong, "module": module, "folder": folder}


def reference_mask(module: torch.nn.Module, frame: np.ndarray) -> np.ndarray:
    """What the exported network says of ``frame`` in torch, preprocessed as torchvision's conventions."""
    import cv2

    rgb = cv2.resize(frame, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)[:, :, ::-1] / 255.0
    x = (rgb - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    with torch.no_grad():
        out = module(torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32)))
    return out.argmax(1)[0].numpy().astype(np.uint8)


@pytest.mark.parametrize("kind", ["onnx", "ir"])
def test_own_model_agrees_with_the_network_it_was_exported_from(own, kind, tmp_path):
    from live_seg.model.select import segmenter_for

    seg = segmenter_for(ModelOptions(model=str(own[kind]), labels=own["labels"], precision="fp32"), mode="latency")
    frames = [frame_pattern(i, 320, 240) for i in (0, 7, 30)]
    masks = seg.predict(frames)
    assert seg.categories == list(LABELS) and seg.input_hw == (SIDE, SIDE)  # the file's fixed input size
    for frame, mask in zip(frames, masks, strict=True):
        ref = reference_mask(own["module"], frame)
        assert mask.shape == (SIDE, SIDE) and (mask == ref).mean() >= 0.99


def test_own_model_through_image_video_and_live(own, tmp_path, capsys):
    model = ["--model", own["onnx"], "--labels", own["labels"]]
    image = tmp_path / "in.png"
    Image.fromarray(frame_pattern(5, 320, 240)[:, :, ::-1]).save(image)
    r = run_cli("-q", "image", image, "-o", tmp_path / "img", *model, capture=capsys)
    assert r.returncode == 0, r.stderr
    mask = np.array(Image.open(tmp_path / "img" / "mask.png"))
    assert mask.shape == (240, 320) and set(np.unique(mask)) <= {0, 1, 2}

    clip = make_video(tmp_path / "clip.mp4", frames=12, width=160, height=96, fps=25)
    r = run_cli("-q", "video", clip, "-o", tmp_path / "out.mp4", "--stats", tmp_path / "v.json", *model, capture=capsys)
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / "v.json").read_text())
    assert stats["frames_out"] == 12 and stats["model"] == str(own["onnx"]) and stats["backend"] == "openvino"

    r = run_cli(
        "-q", "live", "--source", clip, "--display", "none", "--stats", tmp_path / "l.json", *model, capture=capsys
    )
    assert r.returncode == 0, r.stderr
    live = json.loads((tmp_path / "l.json").read_text())
    assert live["model"] == str(own["onnx"]) and live["frames_in"] == 12


def test_own_labels_choose_the_classes_of_an_effect(own, tmp_path, capsys):
    """``--classes`` takes the labels file's names (none of them a VOC class) in ``image`` and ``video``:
    ``highlight`` keeps the named class in colour and greys the rest."""
    image = tmp_path / "in.png"
    blocks = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)  # colour everywhere
    Image.fromarray(blocks).resize((320, 240), Image.NEAREST).save(image)
    for cid in (1, 2):
        flags = ["--model", own["onnx"], "--labels", own["labels"], "--effect", "highlight", "--classes", LABELS[cid]]
        r = run_cli("-q", "image", image, "-o", tmp_path / LABELS[cid], *flags, capture=capsys)
        assert r.returncode == 0, r.stderr
        mask = np.array(Image.open(tmp_path / LABELS[cid] / "mask.png"))
        out = np.array(Image.open(tmp_path / LABELS[cid] / "highlight.png").convert("RGB")).astype(int)
        coloured = np.ptp(out, axis=2) > 0
        assert (coloured == (mask == cid)).mean() > 0.95  # all but a feathered edge
    clip = make_video(tmp_path / "clip.mp4", frames=4, width=160, height=96, fps=25)
    r = run_cli("-q", "video", clip, "-o", tmp_path / "out.mp4", *flags, capture=capsys)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--labels", "{wrong}"], "its output is (1, 3, 64, 64), but the labels file names 2 classes"),
        ([], "needs --labels FILE"),
        (["--labels", "{labels}", "--backend", "torch"], "runs on openvino only"),
        (["--labels", "{labels}", "--size", "96"], "takes input"),
    ],
)
def test_own_model_mistakes_are_one_line(own, tmp_path, capsys, extra, message):
    image = tmp_path / "in.png"
    Image.fromarray(frame_pattern(5, 160, 96)).save(image)
    extra = [e.format(wrong=own["wrong"], labels=own["labels"]) for e in extra]
    r = run_cli("-q", "image", image, "-o", tmp_path / "img", "--model", own["onnx"], *extra, capture=capsys)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


def test_labels_and_normalisation_flags_reach_the_spec(own):
    spec = custom_spec(own["onnx"], own["labels"], 128, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), rgb=False)
    assert spec.categories == LABELS and spec.input_hw == (128, 128) and not spec.rgb
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.25, 0.25, 0.25) and spec.runtimes == ("openvino",)


# --- every model option reaches every job -------------------------------------------------------------

JOBS = {
    "video": ["video", "{clip}", "-o", "{tmp}/out.mp4"],
    "batch": ["video", "{clip}", "{clip2}", "-o", "{tmp}/outdir/"],
    "image": ["image", "{image}", "-o", "{tmp}/img"],
    "live": ["live", "--source", "{clip}", "--display", "none"],
    "serve": ["serve", "--port", "0", "--duration", "1"],
}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_model_option_reaches_every_job(job, own, tmp_path, capsys, monkeypatch):
    """The parser's model options arrive whole, as one ModelOptions value, at the model builder of each
    job: ``--calibration`` and ``--threshold`` included (``serve --calibration`` was once dropped)."""
    seen: list[ModelOptions] = []

    def spec(self: ModelOptions):
        seen.append(self)
        raise ModelError("stopped here by the test")

    monkeypatch.setattr(ModelOptions, "spec", spec)
    clip = make_video(tmp_path / "clip.mp4", frames=4)
    clip2 = make_video(tmp_path / "clip2.mp4", frames=4)
    image = tmp_path / "in.png"
    Image.fromarray(frame_pattern(1)).save(image)
    calib = tmp_path / "calib"
    calib.mkdir()
    argv = [a.format(clip=clip, clip2=clip2, image=image, tmp=tmp_path) for a in JOBS[job]]
    flags = ["--model", str(own["onnx"]), "--labels", str(own["labels"]), "--weights", "random", "--device", "cpu",
             "--precision", "int8", "--backend", "openvino", "--size", "96", "--threads", "1",
             "--calibration", str(calib), "--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2", "--bgr",
             "--threshold", "0.7"]  # fmt: skip
    r = run_cli("-q", *argv, *flags, capture=capsys)
    assert r.returncode == 1 and "stopped here by the test" in r.stderr
    assert seen, r.stderr
    expected = ModelOptions(
        model=str(own["onnx"]), weights="random", device="cpu", precision="int8", backend="openvino", size=96,
        threads=1, calibration=str(calib), labels=str(own["labels"]), mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2),
        rgb=False, threshold=0.7,
    )  # fmt: skip
    assert seen[0] == expected
