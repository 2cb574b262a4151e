"""int8 for the OpenVINO runtime: NNCF post-training quantisation on calibration frames.

:func:`quantize` turns the converted network (uint8 BGR frames in, logits out; see
:mod:`live_seg.model.ov_convert`) into an int8 one with ``nncf.quantize``: NNCF runs the float network
on the calibration frames, records each activation's range and inserts FakeQuantize operations
that OpenVINO's CPU plugin executes as int8 arithmetic (VNNI where the CPU has it).

The frames come from a :class:`Calibration` (:func:`calibration`): a key that names them (part of
the cache key of the quantised network, so other footage gives another network) and a function that
loads them, called only when the cache has no network for that key. A source is a video (frames
sampled evenly across it, read with OpenCV) or a folder of images (sampled evenly in name order);
without one, the bundled sample clip.

The network's tail, the bilinear upsampling of the logits to the input size, stays in float by
default (``tail="float"``): the argmax over 21 upsampled logits is where small errors flip a pixel's
class, and quantising the upsampling's input agreed less with fp32 (the README has the figures).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..base.errors import ModelError, one_line
from ..base.frames import Frame, check_frame
from ..base.specs import ModelSpec
from . import ov_cache
from .preprocess import resize_batch

log = logging.getLogger(__name__)

CALIBRATION_FRAMES = 20
"""Frames NNCF calibrates on by default, sampled evenly across the source (20 frames of a street clip
gave masks 98.7 % the same as fp32 on FCN-ResNet101; more frames cost setup time once, then the cache)."""
TAILS = ("float", "int8")
"""``float``: the upsampling at the end of the network stays in float; ``int8``: NNCF quantises it too."""
TAIL_TYPES = ("Interpolate",)
"""OpenVINO operation types kept in float with ``tail="float"``."""
QUANTIZE_FORMAT = 1
"""Part of every calibration key: raise it when :func:`quantize` changes what it makes."""
SAMPLE_PATHS = (
    Path("samples", "sample.mp4"),
    Path(__file__).resolve().parents[2] / "samples" / "sample.mp4",
)
"""The bundled sample clip, the calibration source when none is given: the current folder, then
beside the package (a checkout)."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""What counts as an image in a calibration folder."""
NO_SOURCE = "pass --calibration a video or a folder of images"


@dataclass(frozen=True)
class Calibration:
    """The frames a network is quantised on, named before they are read.

    Attributes:
        key: what identifies the frames (the source's contents and the sampling); it goes into the
            cache key of the int8 network.
        source: the source in words, for logs (a path, or ``"the bundled sample"``).
        load: returns the frames, ``(H, W, 3)`` uint8 BGR each; called only when the cache has no
            int8 network for ``key``.
        tail: ``"float"`` or ``"int8"`` (see :data:`TAILS`).
    """

    key: str
    source: str
    load: Callable[[], Sequence[Frame]]
    tail: str = TAILS[0]

    def cache_name(self) -> str:
        """The folder name of the int8 network quantised on these frames, e.g. ``int8-float-1a2b...``."""
        digest = hashlib.blake2b(f"{QUANTIZE_FORMAT}|{self.key}".encode(), digest_size=8).hexdigest()
        return f"int8-{self.tail}-{digest}"


def _digest(paths: Sequence[Path], extra: str) -> str:
    """A hash of the files' names and bytes and ``extra``."""
    h = hashlib.blake2b(digest_size=16)
    h.update(extra.encode())
    for path in paths:
        h.update(f"|{path.name}|".encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _spread(total: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (all of them when there are fewer)."""
    if total <= count:
        return list(range(total))
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)} if count > 1 else {total // 2})


def _video_frames(path: Path, count: int) -> list[Frame]:
    """``count`` frames spread across the video at ``path`` (BGR uint8)."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ModelError(f"could not open calibration video {path}; {NO_SOURCE}")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        frames: list[Frame] = []
        for index in _spread(total, count) if total > 0 else range(count):
            if total > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = cap.read()
            if ok:
                frames.append(frame)
            elif total <= 0:
                break
    finally:
        cap.release()
    if not frames:
        raise ModelError(f"no frames could be read from calibration video {path}; {NO_SOURCE}")
    return frames


def _image_frames(paths: Sequence[Path]) -> list[Frame]:
    frames = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ModelError(f"could not read calibration image {path}; {NO_SOURCE}")
        frames.append(image)
    return frames


def calibration(
    source: str | os.PathLike[str] | None, count: int = CALIBRATION_FRAMES, tail: str = TAILS[0]
) -> Calibration:
    """The calibration frames of ``source``, named by its contents, not read yet.

    Args:
        source: a video file, a folder of images, or ``None`` for the bundled sample clip.
        count: frames to sample, evenly across the video or the folder's images in name order.
        tail: see :data:`TAILS`.

    Raises:
        ModelError: a source that does not exist, a folder without images, or no source and no
            bundled sample.
    """
    if count < 1:
        raise ValueError(f"calibration frames: expected >= 1, got {count}")
    if source is None:
        path = next((p for p in SAMPLE_PATHS if p.is_file()), None)
        if path is None:
            raise ModelError(
                f"--precision int8 needs calibration frames and the bundled sample is missing; {NO_SOURCE}"
            )
    else:
        path = Path(source)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise ModelError(f"calibration folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); {NO_SOURCE}")
        chosen = [images[i] for i in _spread(len(images), count)]
        key = _digest(chosen, f"images:{count}")
        return Calibration(key, str(path), lambda: _image_frames(chosen), tail)
    if not path.is_file():
        raise ModelError(f"calibration source not found: {path}; {NO_SOURCE}")
    key = _digest([path], f"video:{count}")
    return Calibration(key, str(path), lambda: _video_frames(path, count), tail)


def model_frames(frames: Sequence[Frame], spec: ModelSpec) -> list[np.ndarray]:
    """Calibration frames as the network's input: ``(1, h, w, 3)`` uint8 BGR each, resized as the
    runtime's ``preprocess`` does (the spec's input size and resize).

    Raises:
        ModelError: no frames, or a frame that is not ``(H, W, 3)`` uint8.
    """
    if len(frames) == 0:
        raise ModelError("no calibration frames to quantise on; pass --calibration a video or a folder of images")
    out = []
    for i, frame in enumerate(frames):
        try:
            frame = check_frame(frame, f"calibration frame {i}")
        except ValueError as exc:
            raise ModelError(str(exc)) from exc
        out.append(resize_batch([frame], spec))
    return out


def quantize(model: Any, frames: Sequence[Frame], spec: ModelSpec, tail: str = TAILS[0]) -> Any:
    """The int8 version of ``model`` (an ``openvino.Model``, uint8 frames in, logits out).

    Args:
        model: the converted float network (:func:`live_seg.model.ov_convert.convert`).
        frames: calibration frames, ``(H, W, 3)`` uint8 BGR, any size.
        spec: the network's spec (its input size and resize).
        tail: ``"float"`` keeps the final upsampling in float; ``"int8"`` lets NNCF quantise it.

    Returns:
        The quantised ``openvino.Model`` (same inputs and outputs).

    Raises:
        ModelError: NNCF missing, no usable frames, or a network NNCF cannot quantise.
    """
    if tail not in TAILS:
        raise ValueError(f"tail: expected one of {TAILS}, got {tail!r}")
    try:
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime": NNCF's torch import
        import nncf
    except ImportError as exc:
        raise ModelError(
            f"--precision int8 needs NNCF ({one_line(exc)}); pip install nncf, or use --precision fp32"
        ) from exc
    batch = model_frames(frames, spec)
    ignored = nncf.IgnoredScope(types=list(TAIL_TYPES), validate=False) if tail == "float" else None
    t0 = time.perf_counter()
    log.info("quantising to int8 on %d calibration frames (NNCF %s, tail in %s)", len(batch), nncf.__version__, tail)
    nncf.set_log_level(logging.WARNING)  # its per-node notes; this module logs the step
    quiet = contextlib.ExitStack()
    if not log.isEnabledFor(logging.INFO):  # -q: no progress bar either (NNCF draws it on stdout)
        quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
        quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
    with quiet:
        try:
            quantized = nncf.quantize(model, nncf.Dataset(batch), subset_size=len(batch), ignored_scope=ignored)
        except Exception as exc:
            reason = one_line(exc, limit=200)
            raise ModelError(f"NNCF could not quantise the network ({reason}); use --precision fp32") from exc
    log.info("quantised in %.1f s", time.perf_counter() - t0)
    return quantized


def load_or_quantize(
    model: Any,
    calib: Calibration,
    spec: ModelSpec,
    folder: Path | None,
    read: Callable[[Path], Any],
    save: Callable[[Any, Path], None],
) -> tuple[Any, bool]:
    """The int8 network for ``calib``: read from ``folder`` (a cache entry, checked), or quantised and
    stored there (as one unit: see :mod:`live_seg.model.ov_cache`).

    Args:
        model: the float network; calib: the calibration frames; spec: the network's spec.
        folder: the cache entry of the int8 network (``None``: no cache).
        read, save: read an ``openvino.Model`` from an ``.xml``; write one to an ``.xml``.

    Returns:
        ``(network, quantised)``: ``quantised`` is False for a network read from the cache.
    """
    if folder is not None and (cached := ov_cache.load(folder, read)) is not None:
        return cached, False
    log.info("int8: calibration frames from %s", calib.source)
    quantized = quantize(model, calib.load(), spec, calib.tail)
    if folder is not None:
        try:
            ov_cache.store(folder, lambda tmp: save(quantized, tmp / "model.xml"))
            return read(folder / "model.xml"), True
        except OSError as exc:
            log.warning("could not cache the int8 network in %s (%s)", folder, one_line(exc))
    return quantized, True
