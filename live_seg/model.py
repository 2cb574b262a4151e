"""The segmentation model: registry, weights, device and precision, and ``Segmenter``.

This is the only module of the project that imports torch and torchvision. Everything else
hands it :data:`~live_seg.frames.Frame` arrays (``(H, W, 3)`` uint8 **BGR**) and receives
:data:`~live_seg.frames.Mask` arrays (``(size, size)`` uint8 PASCAL VOC class ids).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.models import WeightsEnum
from torchvision.models import segmentation as tvseg
from torchvision.models.resnet import Bottleneck

from live_seg.errors import ModelError
from live_seg.frames import check_frame

logger = logging.getLogger(__name__)

MEAN = (0.485, 0.456, 0.406)
"""ImageNet channel means, RGB order, for inputs scaled to [0, 1]."""
STD = (0.229, 0.224, 0.225)
"""ImageNet channel standard deviations, RGB order."""

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# The one place that says which precision "auto" means on each device (cpu: see auto_precision).
_AUTO_PRECISION = {"cuda": "fp16", "mps": "fp32", "cpu": "fp32"}
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16).

    Only then is bf16 on the CPU a speed-up (about 3x for FCN-ResNet101 here); elsewhere it is
    emulated and slower than fp32.
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
    bf16 (masks agree with fp32 on about 99.5 % of pixels for FCN-ResNet101: see the README);
    fp32 otherwise."""
    if device == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return _AUTO_PRECISION[device]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A torchvision segmentation model: its builder and its weights enum."""

    builder: Callable[..., nn.Module]
    weights: type[WeightsEnum]


MODELS: dict[str, ModelSpec] = {
    "fcn_resnet101": ModelSpec(tvseg.fcn_resnet101, tvseg.FCN_ResNet101_Weights),
    "fcn_resnet50": ModelSpec(tvseg.fcn_resnet50, tvseg.FCN_ResNet50_Weights),
    "deeplabv3_resnet50": ModelSpec(tvseg.deeplabv3_resnet50, tvseg.DeepLabV3_ResNet50_Weights),
    "deeplabv3_resnet101": ModelSpec(tvseg.deeplabv3_resnet101, tvseg.DeepLabV3_ResNet101_Weights),
    "deeplabv3_mobilenet_v3_large": ModelSpec(
        tvseg.deeplabv3_mobilenet_v3_large, tvseg.DeepLabV3_MobileNet_V3_Large_Weights
    ),
    "lraspp_mobilenet_v3_large": ModelSpec(tvseg.lraspp_mobilenet_v3_large, tvseg.LRASPP_MobileNet_V3_Large_Weights),
}
DEFAULT_MODEL = "fcn_resnet101"


def resolve_device(name: str = "auto") -> str:
    """Turn ``"auto" | "cpu" | "cuda" | "mps"`` into a concrete device name.

    ``"auto"`` picks cuda, then mps, then cpu.

    Raises:
        ModelError: for an unknown name, or a device that this machine does not have.
    """
    if name not in DEVICES:
        raise ModelError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda" and not cuda:
        raise ModelError("CUDA was requested but torch.cuda.is_available() is False; use --device cpu")
    if name == "mps" and not mps:
        raise ModelError("MPS was requested but torch.backends.mps.is_available() is False; use --device cpu")
    return name


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
    ok = available_precisions(device)
    if precision not in ok:
        raise ModelError(f"{precision} is not supported on {device}; use --precision {' or '.join(ok)}")
    return precision


def _cache_path(weights: WeightsEnum) -> str:
    """Where torchvision's download of ``weights`` lives (TORCH_HOME/hub/checkpoints/<file>)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))


def _download_official(model: str, weights: WeightsEnum) -> Mapping[str, torch.Tensor]:
    """Official state dict: hash-checked download with a progress bar, or the cached file."""
    path = _cache_path(weights)
    cached = os.path.exists(path)
    if not cached:
        logger.info("downloading %s weights from %s to %s", model, weights.url, path)
    try:
        return weights.get_state_dict(progress=True, check_hash=True, map_location="cpu", weights_only=True)
    except Exception as exc:  # URLError, OSError, RuntimeError (hash), a corrupt cached file...
        alt = "or use --weights PATH (a state_dict file) or --weights random (untrained)"
        if cached:
            msg = f"cached weights file {path} could not be loaded ({_one_line(exc)}); delete it to retry, {alt}"
        else:
            size = weights.meta.get("_file_size", float("nan"))
            msg = (
                f"could not download the {model} weights {os.path.basename(path)} ({size:.1f} MB) from "
                f"{weights.url} ({_one_line(exc)}); download it by hand into {os.path.dirname(path)}, {alt}"
            )
        raise ModelError(msg) from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _read_file(path: str) -> Mapping[str, torch.Tensor]:
    """Load a state dict from ``path`` with ``weights_only=True`` (no code is run)."""
    if not os.path.isfile(path):
        raise ModelError(f"weights file not found: {path} (--weights takes 'default', 'random' or a file path)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. notes on the pickle protocol: the error below says enough
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a bad file
        text = str(exc)
        if "Weights only load failed" in text:
            detail = next((ln.strip() for ln in text.splitlines() if "nsupported" in ln), "")
            if "Unsupported operand" not in detail:  # a pickle naming functions or classes: code
                code = re.search(r"\bGLOBAL ([\w.]+)", detail)
                raise ModelError(
                    f"weights file {path} is not a plain tensor file: loading it would run code"
                    f"{f' ({code.group(1)})' if code else ''}, so it was not loaded"
                ) from exc
            raise ModelError(
                f"weights file {path} is not a readable torch file (torch.load(weights_only=True) refused it: {detail})"
            ) from exc
        reason = _one_line(exc).split(". ")[0]
        raise ModelError(f"weights file {path} is not a readable torch file; truncated or corrupt? ({reason})") from exc
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"weights file {path} does not hold a state_dict (a mapping of names to tensors)")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def _load_state(module: nn.Module, state: Mapping[str, torch.Tensor], model: str, source: str) -> None:
    """Load ``state`` strictly into ``module``, ignoring ``aux_classifier.*`` (unused at inference)."""
    state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = [
        f"{len(keys)} {what} (e.g. {', '.join(keys[:2])})"
        for keys, what in (
            (missing, "missing keys"),
            (unexpected, "unexpected keys"),
            (shapes, "shape mismatches"),
        )
        if keys
    ]
    if problems:
        raise ModelError(
            f"weights file {source} does not fit {model}: {', '.join(problems)}; "
            "pass --model NAME for the model it was made for"
        )
    module.load_state_dict(state, strict=True)


def _tame_random_init(module: nn.Module) -> None:
    """Keep an untrained ResNet's activations in fp16 range.

    With torchvision's init (and eval-mode BatchNorm at identity), each residual block adds a
    branch as large as its input, so the stream grows to ~3e5 over ResNet-101's 23-block stage
    and fp16 (max 65504) overflows to inf/NaN. Halving the gain of each branch's last BatchNorm
    keeps activations below ~100; speed does not depend on the values.
    """
    for block in module.modules():
        if isinstance(block, Bottleneck):
            nn.init.constant_(block.bn3.weight, 0.5)


def _fold_batchnorm(module: nn.Module, name: str) -> nn.Module:
    """Fold every eval-mode BatchNorm into the convolution before it (one op instead of two).

    The same function up to rounding; on the CPU it saves 26 % of LRASPP's bf16 time (memory-bound
    BatchNorm passes). Uses torch.fx; a network it cannot trace is returned unchanged.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module)
    except Exception as exc:  # noqa: BLE001 - tracing limits differ between torch versions
        logger.debug("%s: BatchNorm folding skipped (%s)", name, _one_line(exc))
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
        module: the ``torch.nn.Module``, in eval mode, on ``device``.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        weights: str = "default",
        device: str = "auto",
        precision: str = "auto",
        size: int = 512,
        threads: int | None = None,
    ) -> None:
        """Build the model and load its weights.

        Raises:
            ModelError: unknown model, device or precision; weights that cannot be had or do not fit.
        """
        if model not in MODELS:
            raise ModelError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        if not isinstance(size, int) or size < 32:
            raise ModelError(f"model input size must be an integer >= 32, got {size!r}")
        if threads is not None:
            if threads < 1:
                raise ModelError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        spec = MODELS[model]
        self.name, self.weights, self.size = model, weights, size
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.untrained = weights == "random"
        self.categories: list[str] = list(spec.weights.DEFAULT.meta["categories"])
        self.num_classes = len(self.categories)

        state = None
        if weights == "default":
            state = _download_official(model, spec.weights.DEFAULT)
        elif not self.untrained:
            state = _read_file(weights)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # random weights are the same on every run; global RNG untouched
            module = spec.builder(weights=None, weights_backbone=None, num_classes=self.num_classes)
            if state is None:
                _tame_random_init(module)
        if state is not None:
            _load_state(module, state, model, _cache_path(spec.weights.DEFAULT) if weights == "default" else weights)
        else:
            logger.warning("untrained weights: masks are meaningless, for benchmarks and tests")
        module.aux_classifier = None  # FCN / DeepLab skip it when None; LRASPP has none

        # fp16 / bf16 cast the weights and the input (on the CPU, bf16 weights ran LRASPP 9 % faster
        # than fp32 weights under bf16 autocast, with the same 0.3 % logit error).
        self._cast = _DTYPES[self.precision] if self.precision != "fp32" else None
        self._memory_format = torch.contiguous_format if self.precision == "fp32" else torch.channels_last
        module = module.to(self.device, dtype=self._cast, memory_format=self._memory_format).eval()
        if self.precision != "fp32":
            # fp32 stays the plain reference network; the fast paths fold BatchNorm into convs.
            module = _fold_batchnorm(module, model)
        self.module = module
        if self.device == "cuda":
            torch.backends.cudnn.benchmark = True
        self._mean = torch.tensor(MEAN, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(STD, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._pinned: dict[tuple[int, ...], tuple[torch.Tensor, torch.cuda.Event]] = {}
        logger.info(
            "model %s (%s weights) on %s, %s, input %dx%d",
            model,
            weights,
            self.device,
            self.precision,
            size,
            size,
        )

    def describe(self) -> dict:
        """What runs, for logs and benchmark reports."""
        return {
            "model": self.name,
            "weights": self.weights,
            "untrained": self.untrained,
            "device": self.device,
            "precision": self.precision,
            "size": self.size,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }

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
        x = x.permute(0, 3, 1, 2).flip(1)  # NHWC BGR -> NCHW RGB
        # Same float ops as ToTensor (div 255) and Normalize ((x - mean) / std).
        x = x.to(torch.float32, memory_format=self._memory_format).div_(255).sub_(self._mean).div_(self._std)
        return x if self._cast is None else x.to(self._cast)

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
            if frame.shape[:2] == (s, s):
                out[i] = gpu
            else:
                img = gpu.permute(2, 0, 1).unsqueeze(0).float()
                img = torch.nn.functional.interpolate(img, size=(s, s), mode="bilinear", align_corners=False)
                out[i] = img.round_().clamp_(0, 255).to(torch.uint8)[0].permute(1, 2, 0)
        with torch.inference_mode():
            return self._normalise(out)

    def _staging(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.cuda.Event]:
        """A pinned host buffer for frames of ``shape`` and the event of its last upload."""
        entry = self._pinned.get(shape)
        if entry is None:
            entry = (torch.empty(shape, dtype=torch.uint8, pin_memory=True), torch.cuda.Event())
            entry[1].record()
            self._pinned = {shape: entry}  # one frame size at a time: a video keeps its size
        return entry

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
            logits = self._forward(batch)
            if self.precision == "fp16" and not bool(torch.isfinite(logits).all()):
                self._fall_back_to_fp32()
                logits = self._forward(batch.float())
            return logits.argmax(1).to(torch.uint8).cpu().numpy()

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

    def naive_preprocess(self, image_rgb: np.ndarray) -> torch.Tensor:
        """One frame prepared as the original single-image scripts did (the benchmark's naive baseline).

        torchvision's ``ToTensor`` and ``Normalize`` on the CPU, a batch of one, then moved to the
        device and cast like the weights (``.half()`` for fp16). :meth:`preprocess` is the fast path.

        Args:
            image_rgb: ``(size, size, 3)`` uint8 **RGB** image, already resized.

        Returns:
            ``(1, 3, size, size)`` tensor on ``device``.
        """
        from torchvision import transforms

        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=MEAN, std=STD)])
        x = transform(image_rgb).unsqueeze(0).to(self.device)
        return x if self._cast is None else x.to(self._cast)

    def naive_infer(self, x: torch.Tensor) -> np.ndarray:
        """Forward, ``["out"]``, argmax and ``.cpu().numpy()`` as the original scripts did.

        Args:
            x: the output of :meth:`naive_preprocess`, ``(1, 3, size, size)``.

        Returns:
            ``(size, size)`` int64 class ids.
        """
        with torch.no_grad():
            out = self.module(x)["out"]
        return torch.argmax(out.squeeze(0), dim=0).cpu().numpy()


def get_threads() -> int:
    """Torch's CPU intra-op threads (per inference call)."""
    return torch.get_num_threads()


def set_threads(threads: int) -> None:
    """Set torch's CPU intra-op threads (process-wide: every inference call uses this many)."""
    torch.set_num_threads(threads)


def runtime_info() -> dict:
    """The torch runtime, for benchmark reports: versions, threads and accelerators.

    Returns:
        A JSON-ready dict: ``torch``, ``torchvision``, ``torch_threads``, ``cuda`` (the version
        torch was built with, or ``None``), ``cudnn`` (version number or ``None``),
        ``cuda_available``, ``gpus`` (device names), ``mps_available``.
    """
    import torchvision

    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "mps_available": torch.backends.mps.is_available(),
    }


def agreement(seg: Segmenter, reference: Segmenter, frames: Sequence[np.ndarray]) -> dict[str, float]:
    """How far ``seg`` (e.g. bf16) is from ``reference`` (fp32, same weights) on ``frames``.

    Args:
        seg: the segmenter under test.
        reference: the same model and weights at the reference precision.
        frames: ``(H, W, 3)`` uint8 BGR frames (real footage gives meaningful figures).

    Returns:
        ``{"logit_rel_err": ||a - b|| / ||b|| over all logits, "mask_agreement": fraction of
        pixels whose argmax class is the same, "frames": len(frames)}``.
    """
    with torch.inference_mode():
        a = torch.cat([seg.logits([f]) for f in frames])
        b = torch.cat([reference.logits([f]) for f in frames])
        rel = float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-12))
        same = float((a.argmax(1) == b.argmax(1)).float().mean())
    return {"logit_rel_err": round(rel, 5), "mask_agreement": round(same, 5), "frames": len(frames)}
