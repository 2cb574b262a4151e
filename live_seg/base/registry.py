"""Every name a user can choose: models, devices, precisions, views, palettes, pairings, displays.

The one list that the command line, the model layer, the renderer and the live view all read.
It imports nothing (no torch, no OpenCV), so that parsing arguments stays fast and a bad source
or a typo fails in a fraction of a second.
"""

from __future__ import annotations

DEFAULT_MODEL = "fcn_resnet101"
"""``--model``'s default (every built-in model has a spec in :data:`live_seg.base.specs.SPECS`)."""

DEFAULT_WEIGHTS = "default"
"""``--weights``: the model's trained weights (torchvision's VOC weights, MediaPipe's selfie files), fetched once."""
RANDOM_WEIGHTS = "random"
"""``--weights``: untrained and seeded, for benchmarks and tests (any other value is a file path)."""

AUTO = "auto"
"""Let the tool decide (device, precision, display)."""
ALL = "all"
"""Benchmark selector: every device, or every precision a device runs."""

AUTO_DEVICE_ORDER = ("cuda", "mps", "cpu")
"""What ``--device auto`` picks: the first of these that this machine has."""
DEVICES = (AUTO, "cpu", "cuda", "mps")

PRECISIONS = (AUTO, "fp32", "fp16", "bf16", "int8")
INT8 = "int8"
"""Post-training int8 (NNCF, on calibration frames): the OpenVINO runtime only, and never ``auto``."""
AUTO_PRECISION = {"cuda": "fp16", "mps": "fp32", "cpu": "fp32"}
"""What ``--precision auto`` means on each device, except a CPU that computes bf16 natively."""
NATIVE_CPU_PRECISION = "bf16"
"""``--precision auto`` on a CPU with native bf16 (x86 AVX512-BF16 or AMX-BF16)."""

BACKENDS = (AUTO, "torch", "openvino")
"""Inference runtimes: torch runs every device; OpenVINO runs the CPU."""
AUTO_BACKEND = {"cpu": "openvino", "cuda": "torch", "mps": "torch"}
"""What ``--backend auto`` picks on each device."""
OPENVINO_DEVICES = ("cpu",)
"""Devices the OpenVINO backend runs on."""
OPENVINO_MODES = ("throughput", "latency")
"""OpenVINO's performance hint: several streams and requests (file runs), or one request on every core
(live, one image)."""

VIEWS = ("overlay", "mask", "side")
"""Render modes: frame and mask blended, the colour mask alone, original | overlay."""
EFFECTS = ("overlay", "blur", "pixelate", "replace", "cutout", "highlight")
"""What happens to the chosen classes' pixels (in the order the live view's key e cycles):
the 60/40 colour blend, blurred, in blocks, replaced by a background, kept with the rest
transparent, kept in colour with the rest grey."""
ALPHA_EFFECTS = ("cutout",)
"""Effects whose frames carry an alpha channel (video: WebM or MOV; image: PNG with alpha)."""
ALPHA_EXTENSIONS = (".webm", ".mov")
"""Video outputs that keep alpha."""
DEFAULT_ALPHA = 0.4
"""Weight of the colour mask in the blend; the frame gets ``1 - alpha`` (60/40)."""
PALETTES = ("voc", "random")
"""Class colours: the standard PASCAL VOC colours, or colours drawn from a fixed seed."""
PAIRINGS = ("newest", "matched")
"""Live view: the newest frame with the newest mask, or each mask on its own frame."""
DISPLAYS = (AUTO, "window", "browser", "none")
"""Live view: a window when there is a display (else the browser), a window, a browser, nothing."""
RTSP_TRANSPORTS = ("tcp", "udp")
"""How RTSP's media travel (``--rtsp-transport``): TCP (the default: no loss, passes NATs) or UDP."""
DEFAULT_READ_TIMEOUT_S = 5.0
"""A stream that sends nothing for this long is lost and reconnected (``--read-timeout``)."""
DEFAULT_RECONNECT = 5
"""Reconnect attempts after a live source is lost (``--reconnect``)."""
DEFAULT_MAX_FRAME_PIXELS = 8192 * 8192
"""A live source whose frames are bigger (width x height) is refused (``--max-frame-pixels``): 64 MiP
holds an 8K square camera (7680x7680) and refuses a stream that announces 16384x16384."""


def auto_device_text() -> str:
    """``--device auto`` in words, e.g. ``"cuda, then mps, then cpu"``."""
    return ", then ".join(AUTO_DEVICE_ORDER)


def auto_precision_text() -> str:
    """``--precision auto`` in words, e.g. ``"fp16 on cuda, bf16 on a cpu with native bf16, else fp32"``."""
    special = [f"{p} on {d}" for d, p in AUTO_PRECISION.items() if p != AUTO_PRECISION["cpu"]]
    special.append(f"{NATIVE_CPU_PRECISION} on a cpu with native {NATIVE_CPU_PRECISION}")
    return f"{', '.join(special)}, else {AUTO_PRECISION['cpu']}"


def auto_backend_text() -> str:
    """``--backend auto`` in words, e.g. ``"openvino on cpu, torch on cuda and mps"``."""
    by_backend: dict[str, list[str]] = {}
    for device, backend in AUTO_BACKEND.items():
        by_backend.setdefault(backend, []).append(device)
    return ", ".join(f"{b} on {' and '.join(d)}" for b, d in by_backend.items())


SMOOTH_MODES = ("off", "ema")
"""``--smooth``: masks as the model gives them, or an exponential moving average of the class
probabilities over frames (argmax after)."""
DEFAULT_SMOOTH_STRENGTH = 0.6
"""``--smooth-strength``: the weight of the past in the average, ``0 <= S < 1`` (the README has
what it does to flicker and speed)."""
PROPAGATE_MODES = ("flow", "hold")
"""``--propagate``: between key frames, the key frame's mask moved along the optical flow, or held."""
MASK_SIZES = ("model", "source")
"""``--masks-size``: mask files at the model's square input size, or at the source frame's size."""

VOC_CLASSES: tuple[str, ...] = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
"""The 21 PASCAL VOC class names in id order (the same list torchvision's weights carry).
A model's own list travels with it (``segmenter.categories``, :func:`live_seg.model.identity.categories`); this
is the default where no model is at hand (a mask file read back, a legend drawn without one)."""
