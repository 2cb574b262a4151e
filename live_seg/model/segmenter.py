"""The segmentation model: device and precision policy, torch's runtime settings, ``Segmenter``.

With :mod:`live_seg.model.weights` (and :mod:`live_seg.model.ov_convert`, which converts for OpenVINO), the only
modules of the project that import torch and torchvision.
Everything else hands it :data:`~live_seg.base.frames.Frame` arrays (``(H, W, 3)`` uint8 **BGR**) and
receives :data:`~live_seg.base.frames.Mask` arrays (``(size, size)`` uint8 PASCAL VOC class ids). The
names a user can choose live in :mod:`live_seg.base.registry`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.models import WeightsEnum, get_model_builder, get_model_weights

from ..base.errors import ModelError, one_line
from ..base.frames import check_frame
from ..base.options import ModelOptions
from ..base.registry import (
    AUTO,
    AUTO_DEVICE_ORDER,
    AUTO_PRECISION,
    DEFAULT_MODEL,
    DEVICES,
    INT8,
    MODEL_NAMES,
    NATIVE_CPU_PRECISION,
    PRECISIONS,
    RANDOM_WEIGHTS,
)
from . import device_ops
from .identity import UNTRAINED_NOTE, check_model, describe_model
from .weights import build_network

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "DEVICES", "MODELS", "PRECISIONS", "Segmenter", "torch_runtime"]

MEAN = (0.485, 0.456, 0.406)
"""ImageNet channel means, RGB order, for inputs scaled to [0, 1]."""
STD = (0.229, 0.224, 0.225)
"""ImageNet channel standard deviations, RGB order."""

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16).

    Only then is bf16 on the CPU a speed-up (see the README); elsewhere it is emulated and
    slower than fp32.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in _NATIVE_BF16_FLAGS)
    except OSError:
        pass
    return False


def auto_precision(device: str) -> str:
    """What ``--precision auto`` means on ``device``: fp16 on CUDA; bf16 on a CPU with native
    bf16 (masks agree closely with fp32: see the README); fp32 otherwise."""
    if device == "cpu" and cpu_has_native_bf16():
        return NATIVE_CPU_PRECISION
    return AUTO_PRECISION[device]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A torchvision segmentation model: its builder and its weights enum."""

    builder: Callable[..., nn.Module]
    weights: type[WeightsEnum]


MODELS: dict[str, ModelSpec] = {
    name: ModelSpec(get_model_builder(name), get_model_weights(name)) for name in MODEL_NAMES
}
"""The registry's models (:data:`live_seg.base.registry.MODEL_NAMES`) with torchvision's builders."""


def _available(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        return torch.backends.mps.is_available()
    return device == "cpu"


def resolve_device(name: str = "auto") -> str:
    """Turn ``"auto" | "cpu" | "cuda" | "mps"`` into a concrete device name.

    ``"auto"`` picks the first of :data:`~live_seg.base.registry.AUTO_DEVICE_ORDER` this machine has.

    Raises:
        ModelError: for an unknown name, or a device that this machine does not have.
    """
    if name not in DEVICES:
        raise ModelError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == AUTO:
        return next(d for d in AUTO_DEVICE_ORDER if _available(d))
    if name == "cuda" and not _available(name):
        raise ModelError("CUDA was requested but torch.cuda.is_available() is False; use --device cpu")
    if name == "mps" and not _available(name):
        raise ModelError("MPS was requested but torch.backends.mps.is_available() is False; use --device cpu")
    return name


def _check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise ModelError(f"threads must be >= 1, got {threads}")


@contextlib.contextmanager
def torch_runtime(threads: int | None, device: str) -> Iterator[None]:
    """Torch's process-wide settings for one job, restored when it ends.

    Torch's CPU thread count and cuDNN's autotuner are global to the process, so a job (a video
    run, an image, a live session, a benchmark) sets them here, around its own work, rather
    than as a side effect of building a :class:`Segmenter`.

    Args:
        threads: torch CPU intra-op threads for every inference call in the job (``None``:
            leave torch's setting).
        device: the job's device (a :data:`~live_seg.base.registry.DEVICES` name); on CUDA, cuDNN
            picks the fastest convolution algorithms for the fixed input size
            (``torch.backends.cudnn.benchmark``).

    Raises:
        ModelError: ``threads`` below 1.
    """
    _check_threads(threads)
    cuda = device == "cuda" or (device == AUTO and _available("cuda"))
    previous = torch.get_num_threads(), torch.backends.cudnn.benchmark
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        if cuda:
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


def available_precisions(device: str) -> list[str]:
    """Concrete precisions that run on ``device`` (``"cpu"``, ``"cuda"`` or ``"mps"``)."""
    if device == "cuda":
        return ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    if device == "mps":
        return ["fp32", "fp16"]
    return ["fp32", "bf16"]


def resolve_precision(precision: str, device: str) -> str:
    """Turn ``"auto" | "fp32" | "fp16" | "bf16"`` into a precision that runs on ``device``.

    Raises:
        ModelError: for an unknown name or a precision the device cannot run.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return auto_precision(device)
    if precision == INT8:
        raise ModelError(
            "int8 runs on the OpenVINO runtime only; use --device cpu --backend openvino, or --precision fp32"
        )
    ok = available_precisions(device)
    if precision not in ok:
        raise ModelError(f"{precision} is not supported on {device}; use --precision {' or '.join(ok)}")
    return precision


def _fold_batchnorm(module: nn.Module, name: str) -> nn.Module:
    """Fold every eval-mode BatchNorm into the convolution before it (one op instead of two).

    The same function up to rounding, and faster on the CPU, where BatchNorm passes are
    memory-bound (see the README). Uses torch.fx; a network it cannot trace is returned unchanged.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module)
    except Exception as exc:  # noqa: BLE001 - tracing limits differ between torch versions
        logger.debug("%s: BatchNorm folding skipped (%s)", name, one_line(exc, with_type=True, limit=200))
        return module


class Segmenter:
    """A torchvision segmentation network that turns BGR frames into VOC class masks.

    Attributes:
        name: registry name of the model.
        weights: the weights argument as given (``"default"``, ``"random"`` or a path).
        untrained: ``True`` for random weights (the masks are meaningless).
        device: ``"cpu"``, ``"cuda"`` or ``"mps"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        size: side of the square model input, in pixels.
        categories: the 21 PASCAL VOC class names, index = class id.
        num_classes: ``len(categories)``.
        threads: torch CPU threads asked for the jobs that run this model (``None``: torch's
            default); a process-wide setting, so jobs apply it with :func:`torch_runtime`.
        module: the ``torch.nn.Module``, in eval mode, on ``device``.
        backend: ``"torch"`` (see :func:`live_seg.model.select.build_segmenter` for the others).
    """

    backend = "torch"

    def __init__(
        self,
        model: str = ModelOptions.model,
        weights: str = ModelOptions.weights,
        device: str = ModelOptions.device,
        precision: str = ModelOptions.precision,
        size: int = ModelOptions.size,
        threads: int | None = ModelOptions.threads,
    ) -> None:
        """Build the model and load its weights.

        Args:
            model: a :data:`~live_seg.base.registry.MODEL_NAMES` name.
            weights: ``"default"`` (official, downloaded once), ``"random"`` or a state_dict path
                (see :mod:`live_seg.model.weights`).
            device: a :data:`~live_seg.base.registry.DEVICES` name (``"auto"``: the best available).
            precision: a :data:`~live_seg.base.registry.PRECISIONS` name (``"auto"``: per device).
            size: side of the square model input, in pixels.
            threads: torch CPU threads for the jobs that run this model (kept in
                :attr:`threads`; torch's setting is left alone here).

        Raises:
            ModelError: unknown model, device or precision; weights that cannot be had or do not fit.
        """
        check_model(model, size)
        _check_threads(threads)
        spec = MODELS[model]
        self.name, self.weights, self.size, self.threads = model, weights, size, threads
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.untrained = weights == RANDOM_WEIGHTS
        self.categories: list[str] = list(spec.weights.DEFAULT.meta["categories"])
        self.num_classes = len(self.categories)

        module = build_network(model, spec.builder, spec.weights.DEFAULT, weights, self.num_classes)
        if self.untrained:
            logger.warning(UNTRAINED_NOTE)
        module.aux_classifier = None  # FCN / DeepLab skip it when None; LRASPP has none

        # fp16 / bf16 cast the weights and the input, not autocast (faster on the CPU, same error).
        self._cast = _DTYPES[self.precision] if self.precision != "fp32" else None
        self._memory_format = torch.contiguous_format if self.precision == "fp32" else torch.channels_last
        module = module.to(self.device, dtype=self._cast, memory_format=self._memory_format).eval()
        if self.precision != "fp32":
            # fp32 stays the plain reference network; the fast paths fold BatchNorm into convs.
            module = _fold_batchnorm(module, model)
        self.module = module
        self._mean = torch.tensor(MEAN, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(STD, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._pinned: tuple[torch.Tensor, torch.cuda.Event] | None = None
        logger.info(
            "model %s (%s weights) on %s, %s, input %dx%d", model, weights, self.device, self.precision, size, size
        )

    def describe(self) -> dict:
        """What runs, for logs and benchmark reports."""
        return {**describe_model(self), "torch": torch.__version__, "threads": torch.get_num_threads()}

    def preprocess(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize, reorder and normalise frames into one model input batch.

        Args:
            frames: ``(H, W, 3)`` uint8 BGR images; their sizes may differ.

        Returns:
            ``(N, 3, size, size)`` RGB tensor on ``device``, ImageNet-normalised, float32
            (fp16 / bf16 when the weights are cast to it).

        Raises:
            ValueError: a frame that is not ``(H, W, 3)`` uint8, or no frames at all.
        """
        if len(frames) == 0:
            raise ValueError("frames: expected at least one frame, got 0")
        if self.device == "cuda":
            return self._preprocess_cuda(frames)
        s = self.size
        buf = np.empty((len(frames), s, s, 3), dtype=np.uint8)
        for i, frame in enumerate(frames):
            cv2.resize(check_frame(frame, f"frames[{i}]"), (s, s), dst=buf[i])  # INTER_LINEAR, uint8 BGR
        with torch.inference_mode():
            x = torch.from_numpy(buf).to(self.device)  # move uint8: a quarter of the float bytes
            return self._normalise(x)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, H, W, 3)`` uint8 BGR on the device → normalised ``(N, 3, H, W)`` RGB model input."""
        return device_ops.normalise(x, self._mean, self._std, self._memory_format, self._cast)

    def _preprocess_cuda(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """GPU preprocessing: upload uint8 frames from pinned memory, resize and normalise on the GPU.

        The resize is bilinear with half-pixel centres, as ``cv2.INTER_LINEAR`` is, but in float
        (OpenCV rounds to uint8 first): inputs differ from the CPU path by less than one grey level.
        """
        s = self.size
        out = torch.empty((len(frames), s, s, 3), dtype=torch.uint8, device=self.device)
        for i, frame in enumerate(frames):
            frame = check_frame(frame, f"frames[{i}]")
            staging, done = self._staging(frame.shape)
            done.synchronize()  # the previous upload from this buffer has finished
            staging.numpy()[...] = frame
            gpu = staging.to(self.device, non_blocking=True)
            done.record()
            out[i] = device_ops.resize_bilinear_u8(gpu.unsqueeze(0), s)[0]
        with torch.inference_mode():
            return self._normalise(out)

    def _staging(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.cuda.Event]:
        """A pinned host buffer viewed as ``shape`` and the event of its last upload: one buffer, grown
        to the biggest frame so far and never shrunk, so frames of changing sizes allocate nothing."""
        need = int(np.prod(shape))
        if self._pinned is None or self._pinned[0].numel() < need:
            if self._pinned is not None:
                self._pinned[1].synchronize()  # its last upload has finished before it is freed
            event = torch.cuda.Event()
            event.record()
            self._pinned = (torch.empty(need, dtype=torch.uint8, pin_memory=True), event)
        buffer, event = self._pinned
        return buffer[:need].view(shape), event

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(batch)["out"]

    def infer(self, batch: torch.Tensor) -> np.ndarray:
        """Forward pass and per-pixel argmax.

        In fp16, logits that overflow (inf/NaN) switch the model to fp32 for good, with a
        warning, and the batch is computed again.

        Args:
            batch: the output of :meth:`preprocess`, ``(N, 3, size, size)``.

        Returns:
            ``(N, size, size)`` uint8 class ids on the CPU (only uint8 leaves the device).
        """
        with torch.inference_mode():
            return self._checked_logits(batch).argmax(1).to(torch.uint8).cpu().numpy()

    def _checked_logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The forward pass; in fp16, logits that overflow switch the model to fp32 and run again."""
        logits = self._forward(batch)
        if self.precision == "fp16" and not bool(torch.isfinite(logits).all()):
            self._fall_back_to_fp32()
            logits = self._forward(batch.float())
        return logits

    def infer_scores(self, batch: torch.Tensor) -> torch.Tensor:
        """Forward pass and per-pixel softmax: class probabilities, for temporal smoothing.

        Args:
            batch: the output of :meth:`preprocess`, ``(N, 3, size, size)``.

        Returns:
            ``(N, num_classes, size, size)`` float32 probabilities on the model's device
            (they stay there: the smoother averages them on the device).
        """
        with torch.inference_mode():
            return self._checked_logits(batch).float().softmax(1)

    def _fall_back_to_fp32(self) -> None:
        logger.warning("fp16 overflowed (inf/NaN logits) with %s: switching to fp32", self.name)
        self.module = self.module.float()
        self._cast = None
        self.precision = "fp32"

    def predict(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Segment frames.

        Args:
            frames: ``(H, W, 3)`` uint8 BGR images; their sizes may differ.

        Returns:
            One ``(size, size)`` uint8 mask of class ids per frame.
        """
        return list(self.infer(self.preprocess(frames)))

    def logits(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Raw class scores, for numerical comparisons.

        Args:
            frames: ``(H, W, 3)`` uint8 BGR images.

        Returns:
            ``(N, num_classes, size, size)`` float32 tensor on the CPU.
        """
        with torch.inference_mode():
            return self._forward(self.preprocess(frames)).float().cpu()

    def synchronize(self) -> None:
        """Wait until the work queued on the device is done (CUDA, MPS); a no-op on the CPU.

        Benchmarks call it before reading a clock, so that asynchronous kernels are counted.
        """
        if self.device == "cuda":
            torch.cuda.synchronize()
        elif self.device == "mps":
            torch.mps.synchronize()
