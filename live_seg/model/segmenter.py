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
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..base.errors import ModelError
from ..base.frames import check_frame, ids_and_soft
from ..base.options import ModelOptions, check_threshold
from ..base.registry import (
    AUTO,
    AUTO_DEVICE_ORDER,
    AUTO_PRECISION,
    DEFAULT_MODEL,
    DEVICES,
    INT8,
    NATIVE_CPU_PRECISION,
    PRECISIONS,
    RANDOM_WEIGHTS,
)
from ..base.specs import (
    HALF_PIXEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PROBABILITY,
    TORCHVISION,
    ModelSpec,
)
from . import device_ops
from .identity import UNTRAINED_NOTE, describe_model
from .networks import MODELS, build_module, fold_batchnorm, main_output
from .preprocess import resize_batch

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "DEVICES", "MODELS", "PRECISIONS", "Segmenter", "torch_runtime"]

MEAN = IMAGENET_MEAN
STD = IMAGENET_STD

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



class Segmenter:
    """A segmentation network on torch that turns BGR frames into class masks.

    Attributes:
        spec: what the network is (:class:`~live_seg.base.specs.ModelSpec`): categories, input size,
            normalisation, output kind.
        name: the model's name (``--model``).
        weights: the weights argument as given (``"default"``, ``"random"`` or a path).
        untrained: ``True`` for random weights (the masks are meaningless).
        device: ``"cpu"``, ``"cuda"`` or ``"mps"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        size: the input's longer side, in pixels (the side of a square input); ``input_hw``: ``(h, w)``.
        categories: class names, index = class id; ``num_classes``: their count.
        threshold: for a probability model, the probability above which a pixel is the foreground class.
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
        size: int | None = ModelOptions.size,
        threads: int | None = ModelOptions.threads,
        threshold: float = ModelOptions.threshold,
        spec: ModelSpec | None = None,
    ) -> None:
        """Build the model and load its weights.

        Args:
            model: a built-in model's name (:data:`~live_seg.base.specs.SPECS`).
            weights: ``"default"`` (the trained weights, fetched once), ``"random"`` or a weights file
                (see :mod:`live_seg.model.weights`).
            device: a :data:`~live_seg.base.registry.DEVICES` name (``"auto"``: the best available).
            precision: a :data:`~live_seg.base.registry.PRECISIONS` name (``"auto"``: per device).
            size: side of the square model input (``None``: the model's own).
            threads: torch CPU threads for the jobs that run this model (kept in
                :attr:`threads`; torch's setting is left alone here).
            threshold: for a probability model, the foreground threshold (0 < t < 1).
            spec: the spec to run, instead of ``model`` and ``size`` (see :meth:`ModelOptions.spec`).

        Raises:
            ModelError: unknown model, device or precision; weights that cannot be had or do not fit.
        """
        spec = spec or ModelOptions(model=model, size=size).spec()
        _check_threads(threads)
        check_threshold(threshold)
        self.spec, self.name, self.weights, self.threads, self.threshold = spec, spec.name, weights, threads, threshold
        self.input_hw, self.size = spec.input_hw, spec.size
        self.device = resolve_device(device)
        if precision == AUTO and self.device == "cpu" and spec.cpu_precision is not None:
            precision = spec.cpu_precision
        self.precision = resolve_precision(precision, self.device)
        self.untrained = weights == RANDOM_WEIGHTS
        self.categories: list[str] = list(spec.categories)
        self.num_classes = len(self.categories)

        module = build_module(spec, weights)
        if self.untrained:
            logger.warning(UNTRAINED_NOTE)

        # fp16 / bf16 cast the weights and the input, not autocast (faster on the CPU, same error).
        self._cast = _DTYPES[self.precision] if self.precision != "fp32" else None
        self._memory_format = torch.contiguous_format if self.precision == "fp32" else torch.channels_last
        module = module.to(self.device, dtype=self._cast, memory_format=self._memory_format).eval()
        if self.precision != "fp32" and spec.family == TORCHVISION:
            # fp32 stays the plain reference network; the fast paths fold BatchNorm into convs.
            module = fold_batchnorm(module, spec.name)
        self.module = module
        self._mean = torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(spec.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._pinned: tuple[torch.Tensor, torch.cuda.Event] | None = None
        h, w = spec.input_hw
        logger.info(
            "model %s (%s weights) on %s, %s, input %dx%d", spec.name, weights, self.device, self.precision, w, h
        )

    def describe(self) -> dict:
        """What runs, for logs and benchmark reports."""
        return {**describe_model(self), "torch": torch.__version__, "threads": torch.get_num_threads()}

    def preprocess(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize, reorder and normalise frames into one model input batch.

        Args:
            frames: ``(H, W, 3)`` uint8 BGR images; their sizes may differ.

        Returns:
            ``(N, 3, h, w)`` tensor on ``device`` in the network's channel order, normalised as its spec
            says, float32 (fp16 / bf16 when the weights are cast to it).

        Raises:
            ValueError: a frame that is not ``(H, W, 3)`` uint8, or no frames at all.
        """
        if len(frames) == 0:
            raise ValueError("frames: expected at least one frame, got 0")
        if self.device == "cuda" and self.spec.resize == HALF_PIXEL:
            return self._preprocess_cuda(frames)
        buf = resize_batch(frames, self.spec)  # uint8 BGR at the input size
        with torch.inference_mode():
            x = torch.from_numpy(buf).to(self.device)  # move uint8: a quarter of the float bytes
            return self._normalise(x)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, H, W, 3)`` uint8 BGR on the device → normalised ``(N, 3, H, W)`` model input."""
        spec = self.spec
        return device_ops.normalise(x, self._mean, self._std, self._memory_format, self._cast, spec.rgb, spec.scale)

    def _preprocess_cuda(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """GPU preprocessing: upload uint8 frames from pinned memory, resize and normalise on the GPU.

        The resize is bilinear with half-pixel centres, as ``cv2.INTER_LINEAR`` is, but in float
        (OpenCV rounds to uint8 first): inputs differ from the CPU path by less than one grey level.
        """
        h, w = self.input_hw
        out = torch.empty((len(frames), h, w, 3), dtype=torch.uint8, device=self.device)
        for i, frame in enumerate(frames):
            frame = check_frame(frame, f"frames[{i}]")
            staging, done = self._staging(frame.shape)
            done.synchronize()  # the previous upload from this buffer has finished
            staging.numpy()[...] = frame
            gpu = staging.to(self.device, non_blocking=True)
            done.record()
            out[i] = device_ops.resize_bilinear_u8(gpu.unsqueeze(0), (h, w))[0]
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
            return main_output(self.module(batch))

    def infer(self, batch: torch.Tensor) -> np.ndarray:
        """Forward pass and the class of each pixel: the argmax of the logits, or for a probability
        model ``probability > threshold`` (class 1, else 0).

        In fp16, outputs that overflow (inf/NaN) switch the model to fp32 for good, with a
        warning, and the batch is computed again.

        Args:
            batch: the output of :meth:`preprocess`, ``(N, 3, h, w)``.

        Returns:
            ``(N, h, w)`` uint8 class ids on the CPU (only uint8 leaves the device).
        """
        with torch.inference_mode():
            out = self._checked_output(batch)
            ids = (out[:, 0] > self.threshold) if self.spec.output == PROBABILITY else out.argmax(1)
            return ids.to(torch.uint8).cpu().numpy()

    @property
    def soft_output(self) -> bool:
        """Whether :meth:`infer_soft` gives a soft foreground map (a probability model)."""
        return self.spec.output == PROBABILITY

    def infer_soft(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """For a probability model: the class ids and the soft foreground map
        (:attr:`~live_seg.base.frames.SegResult.soft`), both ``(N, h, w)`` uint8; ids == (soft >= 128)."""
        with torch.inference_mode():
            p = self._checked_output(batch)[:, 0].float().cpu().numpy()
        return ids_and_soft(p, self.threshold)

    def _checked_output(self, batch: torch.Tensor) -> torch.Tensor:
        """The forward pass; in fp16, outputs that overflow switch the model to fp32 and run again."""
        out = self._forward(batch)
        if self.precision == "fp16" and not bool(torch.isfinite(out).all()):
            self._fall_back_to_fp32()
            out = self._forward(batch.float())
        return out

    def infer_scores(self, batch: torch.Tensor) -> torch.Tensor:
        """Forward pass and each class's probability per pixel, for temporal smoothing: the softmax of
        the logits, or for a probability model ``(1 - p, p)``.

        Args:
            batch: the output of :meth:`preprocess`, ``(N, 3, h, w)``.

        Returns:
            ``(N, num_classes, h, w)`` float32 probabilities on the model's device
            (they stay there: the smoother averages them on the device).
        """
        with torch.inference_mode():
            out = self._checked_output(batch).float()
            return torch.cat([1 - out, out], 1) if self.spec.output == PROBABILITY else out.softmax(1)

    def _fall_back_to_fp32(self) -> None:
        logger.warning("fp16 overflowed (inf/NaN outputs) with %s: switching to fp32", self.name)
        self.module = self.module.float()
        self._cast = None
        self.precision = "fp32"

    def predict(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Segment frames.

        Args:
            frames: ``(H, W, 3)`` uint8 BGR images; their sizes may differ.

        Returns:
            One ``(h, w)`` uint8 mask of class ids per frame (the model's input size).
        """
        return list(self.infer(self.preprocess(frames)))

    def logits(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """The network's raw output, for numerical comparisons.

        Args:
            frames: ``(H, W, 3)`` uint8 BGR images.

        Returns:
            ``(N, num_classes, h, w)`` float32 logits, or ``(N, 1, h, w)`` probabilities for a probability
            model, on the CPU.
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
