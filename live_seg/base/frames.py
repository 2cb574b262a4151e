"""Types passed between the pipeline's stages, and validators for its edges.

A :data:`Frame` is an ``(H, W, 3)`` ``uint8`` array in **BGR** order (OpenCV's order).
A :data:`Mask` is an ``(H, W)`` ``uint8`` array of class ids (0 = background).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Frame = np.ndarray
"""``(H, W, 3)`` uint8, BGR."""

Mask = np.ndarray
"""``(H, W)`` uint8 class ids."""


@dataclass(frozen=True, slots=True)
class FramePacket:
    """One captured frame.

    Attributes:
        index: 0-based position in the source (capture order).
        pts: presentation time in seconds from the source's start, or ``None`` when the
            source has no timestamps (cameras: capture wall-clock is used instead).
        t_capture: ``time.perf_counter()`` when the frame was read.
        image: the frame, ``(H, W, 3)`` uint8 BGR.
        decode_s: seconds spent reading/decoding this frame.
    """

    index: int
    pts: float | None
    t_capture: float
    image: Frame
    decode_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SegResult:
    """A frame together with its class mask.

    Attributes:
        packet: the frame the mask was computed on.
        mask: ``(size, size)`` uint8 class ids at the model's input resolution; the
            renderer resizes it to the frame (nearest neighbour).
        preprocess_s: seconds of preprocessing charged to this frame (batch time / batch).
        infer_s: seconds of forward + argmax charged to this frame.
        soft: for a model that outputs a probability, ``(h, w)`` uint8 at the mask's size: how surely each
            pixel is the foreground (class 1), with :data:`SOFT_THRESHOLD` at the model's threshold
            (``mask == (soft >= SOFT_THRESHOLD)``); ``None`` for other models and for masks that did not
            come straight from the network (carried, smoothed). Effects draw smooth edges from it, and
            masks at a larger size are thresholded after a bilinear resize of it.
    """

    packet: FramePacket
    mask: Mask
    preprocess_s: float = 0.0
    infer_s: float = 0.0
    soft: np.ndarray | None = None


SOFT_THRESHOLD = 128
"""The value of :attr:`SegResult.soft` at the model's threshold: a pixel at or above it is the foreground."""


def soft_from_probability(p: np.ndarray, threshold: float) -> np.ndarray:
    """A probability map as :attr:`SegResult.soft`: ``(..., h, w)`` float in [0, 1] → uint8 with the
    threshold at :data:`SOFT_THRESHOLD` (piecewise linear: 0 → 0, ``threshold`` → 128, 1 → 255), so that a
    bilinear resize of it thresholded at 128 follows the probability's own ``> threshold`` edge."""
    p = np.asarray(p, dtype=np.float32)
    low = p * np.float32(SOFT_THRESHOLD / threshold)
    high = SOFT_THRESHOLD + (p - np.float32(threshold)) * np.float32((255 - SOFT_THRESHOLD) / (1 - threshold))
    out = np.where(p > threshold, np.maximum(high, SOFT_THRESHOLD), np.minimum(low, SOFT_THRESHOLD - 1))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def ids_and_soft(p: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """A probability model's output as class ids and :attr:`SegResult.soft`: ``(..., h, w)`` float in [0, 1] →
    two uint8 arrays of its shape, ids 1 where ``p > threshold`` (``ids == (soft >= SOFT_THRESHOLD)``)."""
    soft = soft_from_probability(p, threshold)
    return (soft >= SOFT_THRESHOLD).astype(np.uint8), soft


def _check_uint8(array: object, name: str, channels: int | None, order: str = "") -> np.ndarray:
    """Return ``array`` if it is an ``(H, W)`` or ``(H, W, channels)`` uint8 array (H, W >= 1), else raise.

    Args:
        array: the candidate.
        name: what to call it in the message.
        channels: the third axis's length, or ``None`` for a 2-D array.
        order: the channel order, as the message names it (``" BGR"``).

    Raises:
        ValueError: naming the expected and the actual type, dtype or shape.
    """
    layout = "(H, W)" if channels is None else f"(H, W, {channels})"
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array {layout} uint8{order}, got {type(array).__name__}")
    if array.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {array.dtype}")
    trailing = () if channels is None else (channels,)
    if array.ndim != 2 + len(trailing) or array.shape[2:] != trailing or min(array.shape[:2]) < 1:
        raise ValueError(f"{name}: expected shape {layout}, got {array.shape}")
    return array


def check_frame(image: object, name: str = "frame") -> Frame:
    """Return ``image`` if it is a :data:`Frame` (``(H, W, 3)`` uint8), else raise ``ValueError`` naming
    ``name`` and the expected and the actual type, dtype or shape."""
    return _check_uint8(image, name, 3, " BGR")


def check_mask(mask: object, name: str = "mask") -> Mask:
    """Return ``mask`` if it is a :data:`Mask` (``(H, W)`` uint8 class ids), else raise ``ValueError`` naming
    ``name`` and the expected and the actual type, dtype or shape."""
    return _check_uint8(mask, name, None)
