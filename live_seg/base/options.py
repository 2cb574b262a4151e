"""What a job is told, as small frozen values that own their defaults.

Each default has one home: here (or, for a name chosen from a list, the list in
:mod:`live_seg.base.registry`). The command line's parser reads its defaults from these classes,
and the jobs, the model builder and the video writer take them whole instead of re-threading
their fields one keyword at a time. Torch-free and import-light, like the parser.

* :class:`ModelOptions`: which network, weights, device, precision, runtime, input size, threads;
* :class:`RenderOptions`: palette, mask weight, legend, view;
* :class:`EncodeOptions`: libx264 preset and quality, the source's audio kept or not;
* :class:`RunOptions`: how a file run goes (batch, workers, pacing, overwrite, partial outputs);
* :class:`AnalysisOptions`: smoothing and per-frame mask outputs;
* :class:`EventOptions`: per-frame event records (JSON lines, MQTT);
* :class:`BenchOptions`: what ``bench`` measures on and how long.

The effect's options (:class:`live_seg.render.effects.EffectOptions`) stay beside the effects they
build; their defaults are the registry's first effect and ``None`` ("decided by the frame").
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError
from .registry import (
    ALPHA_EXTENSIONS,
    AUTO,
    DEFAULT_ALPHA,
    DEFAULT_MODEL,
    DEFAULT_SMOOTH_STRENGTH,
    DEFAULT_WEIGHTS,
    MASK_SIZES,
    PALETTES,
    PROPAGATE_MODES,
    RANDOM_WEIGHTS,
    SMOOTH_MODES,
    VIEWS,
)
from .specs import ModelSpec, resolve_spec

PathLike = str | os.PathLike[str]

CPU_ACTOR_CORES = 2
"""CPU cores per actor on Ray nodes without GPUs (``--ray-actor-cpus``' default): one model per actor,
its file pipeline planned for that many cores (see the README for the measurement behind it)."""

MP4_SUFFIX = ".mp4"
"""A video output without alpha."""


@dataclass(frozen=True)
class ModelOptions:
    """Which model a job runs, and how (see :func:`live_seg.model.select.build_segmenter`): the one value
    that carries every model setting from the parser (or a Python caller) into every job.

    Attributes:
        model: a built-in model's name (:data:`~live_seg.base.specs.SPECS`), or the path of your own
            ``.onnx`` / OpenVINO ``.xml`` network.
        weights: ``"default"`` (the model's trained weights, fetched once), ``"random"`` (untrained) or
            a weights file (a state_dict, or a ``.tflite`` for the selfie models).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        precision: ``"auto"``, ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"int8"``.
        backend: ``"auto"``, ``"torch"`` or ``"openvino"``.
        size: the model's input is ``size x size`` (``None``: the model's own input size).
        threads: torch CPU threads (``None``: torch decides; OpenVINO runs its own).
        calibration: int8's calibration frames (a video or a folder of images; ``None``: the job's input
            or the bundled sample).
        labels: your own model's class names file (one per line).
        mean, std: your own model's per-channel normalisation (``None``: ImageNet's).
        rgb: your own model's channel order (``None``: RGB).
        threshold: for a model that outputs a probability (the selfie models), the probability above
            which a pixel is the foreground class.
    """

    model: str = DEFAULT_MODEL
    weights: str = DEFAULT_WEIGHTS
    device: str = AUTO
    precision: str = AUTO
    backend: str = AUTO
    size: int | None = None
    threads: int | None = None
    calibration: PathLike | None = None
    labels: PathLike | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    rgb: bool | None = None
    threshold: float = 0.5

    def spec(self) -> ModelSpec:
        """The :class:`~live_seg.base.specs.ModelSpec` these options ask for (see
        :func:`~live_seg.base.specs.resolve_spec`).

        Raises:
            ModelError: an unknown model, a size it cannot take, a bad labels file.
        """
        return resolve_spec(self)


@dataclass(frozen=True)
class RenderOptions:
    """How masks are drawn (see :class:`live_seg.render.renderer.Renderer`).

    Attributes:
        palette: a :data:`~live_seg.base.registry.PALETTES` name.
        alpha: weight of the mask colour in the blend (the frame gets ``1 - alpha``).
        legend: draw the classes present.
        view: ``"overlay"``, ``"mask"`` or ``"side"`` (original | overlay).
    """

    palette: str = PALETTES[0]
    alpha: float = DEFAULT_ALPHA
    legend: bool = False
    view: str = VIEWS[0]

    def keeps_alpha(self, effect_alpha: bool) -> bool:
        """Whether frames carry an alpha channel: an effect with alpha (``cutout``) in the
        overlay view; the other views show it flattened over a checkerboard.

        Args:
            effect_alpha: the effect's frames are BGRA (``EffectOptions.alpha_output``).
        """
        return effect_alpha and self.view == VIEWS[0]


IMAGE_RENDER = RenderOptions(legend=True)
"""Rendering defaults of the jobs that show a picture to a person (``image``, ``live``): the legend on."""


def video_suffix(alpha: bool) -> str:
    """A video output's suffix: ``.mp4``, or the first container that keeps alpha (``.webm``)."""
    return ALPHA_EXTENSIONS[0] if alpha else MP4_SUFFIX


@dataclass(frozen=True)
class EncodeOptions:
    """How the output video is encoded (see :class:`live_seg.media.writer.VideoWriter`).

    Attributes:
        preset: libx264 preset.
        crf: libx264 quality, lower is better.
        audio: keep the source's audio.
        tune: libx264's tune (``""``: none); the live recording uses ``zerolatency``: no look-ahead,
            no B-frames, so the encoder holds no queue of frames.
        x264_params: libx264 settings over the preset's (``""``: the preset's own). The default searches
            motion with the diamond pattern at subpixel level 1 and leaves out the smallest inter
            partitions: on 300 frames of a 720p clip at crf 20 it took 45 % less CPU than plain veryfast
            (5.7 against 10.5 ms a frame) for 7 % more bytes at the same luma PSNR (45.24 against 45.26 dB);
            ``superfast`` took 6.8 ms for 2.3x the bytes (README, "Speed").
    """

    preset: str = "veryfast"
    crf: int = 20
    audio: bool = True
    tune: str = ""
    x264_params: str = "me=dia:subme=1:partitions=i8x8,i4x4"


@dataclass(frozen=True)
class RunOptions:
    """How a file run goes (see :func:`live_seg.jobs.video.process_video`).

    Attributes:
        batch: frames per forward pass (``None``: 2 on the CPU, 1 on a GPU).
        workers: inference threads sharing the model (``None``: planned from the cores).
        realtime: read the file at its own pace, as a camera.
        max_frames: stop after that many frames (``None``: the whole file).
        overwrite: replace existing outputs.
        keep_partial: a run cut short keeps its frames under the output's name (else discarded).
    """

    batch: int | None = None
    workers: int | None = None
    realtime: bool = False
    max_frames: int | None = None
    overwrite: bool = False
    keep_partial: bool = True


def check_strength(strength: float) -> float:
    """Return ``strength`` if it is in ``[0, 1)``, else raise ``ValueError`` naming the range."""
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"smooth strength: expected 0 <= S < 1 (1 would never change a mask), got {strength}")
    return float(strength)


def model_options(model: ModelOptions | str | None) -> ModelOptions:
    """What a Python caller passes as ``model=``: a :class:`ModelOptions`, a model's name (with every other
    setting at its default), or ``None`` (the defaults)."""
    if model is None:
        return ModelOptions()
    if isinstance(model, str):
        return ModelOptions(model=model)
    if isinstance(model, ModelOptions):
        return model
    raise TypeError(f"model: expected ModelOptions or a model name, got {type(model).__name__}")


def check_threshold(threshold: float) -> float:
    """``threshold`` if it is strictly between 0 and 1, else :class:`~live_seg.base.errors.ModelError`."""
    if not 0.0 < threshold < 1.0:
        raise ModelError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    return float(threshold)


def check_key_interval(interval: object) -> int:
    """``interval`` if it is an integer >= 1, else ``ValueError``."""
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        raise ValueError(f"key interval: expected an integer >= 1, got {interval!r}")
    return interval


ANALYSIS_FILES = ("masks", "mask_video", "coverage", "coverage_plot")
"""The analysis options that name a file or folder (and a summary's fields for them)."""


@dataclass(frozen=True)
class AnalysisOptions:
    """What to do with each frame's mask besides showing it (the CLI's analysis flags).

    Attributes:
        smooth: ``"off"`` or ``"ema"`` (temporal smoothing, see :mod:`live_seg.analysis.smoothing`).
        smooth_strength: weight of the past in the average, ``0 <= S < 1``.
        masks: a folder for one palette PNG per frame, or ``None``.
        masks_size: ``"model"`` (the model's square input) or ``"source"`` (the frame's size),
            for ``masks`` and ``mask_video``.
        mask_video: an ``.mkv`` for the masks as lossless FFV1 gray video, or ``None``.
        coverage: a CSV of per-frame class shares, or ``None``.
        coverage_plot: a PNG chart of the class shares over time, or ``None``.
        key_interval: run the network on every N-th frame (0, N, 2N, ...); 1: every frame.
        propagate: between key frames, ``"flow"`` (the key mask moved along the optical flow) or
            ``"hold"`` (the key mask as it is).
        cut_keys: with key frames, the first frame after a scene cut is a key frame too (the cut
            is found on the pictures before inference; see :mod:`live_seg.analysis.run`).
    """

    smooth: str = SMOOTH_MODES[0]
    smooth_strength: float = DEFAULT_SMOOTH_STRENGTH
    masks: PathLike | None = None
    masks_size: str = MASK_SIZES[0]
    mask_video: PathLike | None = None
    coverage: PathLike | None = None
    coverage_plot: PathLike | None = None
    key_interval: int = 1
    propagate: str = PROPAGATE_MODES[0]
    cut_keys: bool = True

    def check(self) -> None:
        """Raise ``ValueError`` for a value out of its range."""
        if self.smooth not in SMOOTH_MODES:
            raise ValueError(f"smooth: expected one of {', '.join(SMOOTH_MODES)}, got {self.smooth!r}")
        if self.masks_size not in MASK_SIZES:
            raise ValueError(f"masks size: expected one of {', '.join(MASK_SIZES)}, got {self.masks_size!r}")
        check_strength(self.smooth_strength)
        check_key_interval(self.key_interval)
        if self.propagate not in PROPAGATE_MODES:
            raise ValueError(f"propagate: expected one of {', '.join(PROPAGATE_MODES)}, got {self.propagate!r}")

    @property
    def files(self) -> dict[str, PathLike]:
        """The files and folders asked for, by option name."""
        return {key: value for key in ANALYSIS_FILES if (value := getattr(self, key)) is not None}

    def for_source(self, name: str) -> AnalysisOptions:
        """Source ``name``'s files in a run of several sources (a camera of ``live``, a client of
        ``serve``): ``masks/NAME/``, ``FILE-NAME.EXT`` for the mask video, the coverage CSV and its chart."""
        changes = {
            key: Path(value) / name
            if key == "masks"
            else Path(value).with_name(f"{Path(value).stem}-{name}{Path(value).suffix}")
            for key, value in self.files.items()
        }
        return dataclasses.replace(self, **changes)


EVENT_MASKS = ("none", "rle")
"""``--events-masks``: no masks in the event records, or each class's mask as COCO run-length encoding."""


@dataclass(frozen=True)
class EventOptions:
    """Per-frame event records and where they go (see :mod:`live_seg.analysis.events`).

    Attributes:
        events: a JSON-lines file (``"-"``: standard output) for one record per source and
            processed frame, or ``None``.
        events_masks: ``"none"``, or ``"rle"`` (each class's mask at the source's size, COCO RLE).
        mqtt: ``mqtt://HOST[:PORT]/PREFIX`` to publish the records and appear/leave events to, or ``None``.
        events_every: publish every N-th record of a source to MQTT (events are always published).
        event_threshold: a class is seen in a frame when its share is above this, ``0 <= T < 1``.
        event_frames: frames in a row for a class to appear or to leave.
    """

    events: PathLike | None = None
    events_masks: str = EVENT_MASKS[0]
    mqtt: str | None = None
    events_every: int = 1
    event_threshold: float = 0.01
    event_frames: int = 3

    @property
    def wanted(self) -> bool:
        """Whether any event output is asked for."""
        return self.events is not None or self.mqtt is not None

    def check(self) -> None:
        """Raise ``ValueError`` for a value out of its range."""
        if self.events_masks not in EVENT_MASKS:
            raise ValueError(f"events masks: expected one of {', '.join(EVENT_MASKS)}, got {self.events_masks!r}")
        if not 0.0 <= self.event_threshold < 1.0:
            raise ValueError(f"event threshold: expected 0 <= T < 1, got {self.event_threshold}")
        for name, value in (("events every", self.events_every), ("event frames", self.event_frames)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class BenchOptions:
    """What ``bench`` measures on, and how long (see :func:`live_seg.jobs.bench.run_bench`).

    Attributes:
        source: a video file, ``"synthetic"``, or ``None`` for ``samples/sample.mp4``.
        size: the model's input side.
        frames: frames per timed run.
        warmup: frames processed first and not timed.
        repeat: timed runs per measurement (the median is kept).
        batch: frames per forward pass; several give one row each.
        weights: ``"random"`` (speed does not depend on the weights), ``"default"`` or a file.
        threads: torch CPU threads (``None``: torch's default).
    """

    source: str | None = None
    size: int | None = ModelOptions.size
    frames: int = 10
    warmup: int = 1
    repeat: int = 3
    batch: int | tuple[int, ...] = 1
    weights: str = RANDOM_WEIGHTS
    threads: int | None = None


def fold(groups: Mapping[str, Any], keywords: Mapping[str, Any]) -> dict[str, Any]:
    """The option ``groups`` (frozen dataclasses by name) with ``keywords`` set in the one that has
    each field: how a call with flat keywords (``legend=True, crf=18``) becomes options values.

    Returns:
        A copy of ``groups`` with the changed groups replaced.

    Raises:
        TypeError: a keyword no group has (as Python says of an unexpected keyword argument).
    """
    owners = {f.name: name for name, group in groups.items() for f in dataclasses.fields(group)}
    changes: dict[str, dict[str, Any]] = {}
    for key, value in keywords.items():
        if key not in owners:
            raise TypeError(f"unexpected keyword argument {key!r}")
        changes.setdefault(owners[key], {})[key] = value
    return {name: dataclasses.replace(group, **changes.get(name, {})) for name, group in groups.items()}
