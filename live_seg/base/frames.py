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
    """

    packet: FramePacket
    mask: Mask
    preprocess_s: float = 0.0
    infer_s: float = 0.0


def check_frame(image: object, name: str = "frame") -> Frame:
    """Return ``image`` if it is an ``(H, W, 3)`` uint8 array, else raise ``ValueError``.

    Args:
        image: the candidate frame.
        name: what to call it in the message.

    Raises:
        ValueError: naming the expected and the actual type, dtype or shape.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array (H, W, 3) uint8 BGR, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name}: expected shape (H, W, 3), got {image.shape}")
    return image


def check_mask(mask: object, name: str = "mask") -> Mask:
    """Return ``mask`` if it is an ``(H, W)`` uint8 array of class ids, else raise ``ValueError``.

    Args:
        mask: the candidate mask.
        name: what to call it in the message.

    Raises:
        ValueError: naming the expected and the actual type, dtype or shape.
    """
    if not isinstance(mask, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array (H, W) uint8, got {type(mask).__name__}")
    if mask.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {mask.dtype}")
    if mask.ndim != 2 or mask.shape[0] < 1 or mask.shape[1] < 1:
        raise ValueError(f"{name}: expected shape (H, W), got {mask.shape}")
    return mask
