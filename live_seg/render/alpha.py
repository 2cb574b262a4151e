"""The alpha of an effect: which pixels of a frame it changes, and how much, from a mask at the model's size.

A hard mask gives 0 or 255 (nearest resize, or a feathered edge); a probability model's soft map gives a ramp
over the band where the model is unsure. :func:`composite` blends only that band, so an edge costs what its
band costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..base.frames import SOFT_THRESHOLD, Frame


@dataclass(frozen=True, slots=True)
class Alpha:
    """Where an effect applies, at frame size.

    Attributes:
        coverage: ``"none"``, ``"all"`` (every pixel fully chosen) or ``"some"``.
        roi: ``(y0, y1, x0, x1)`` frame box outside which the alpha is 0.
        values: ``(H, W)`` uint8 alpha, 0..255 (0/255 only when ``hard``); ``None`` when
            ``coverage`` is ``"none"``.
        hard: no value between 0 and 255 (feather 0).
    """

    coverage: str
    roi: tuple[int, int, int, int]
    values: np.ndarray | None = None
    hard: bool = True


def _odd(x: float) -> int:
    return max(1, 2 * round((x - 1) / 2) + 1)


SOFT_EDGE = np.clip((np.arange(256, dtype=np.float32) - 32) * (255 / (224 - 32)), 0, 255).round().astype(np.uint8)
"""A probability model's soft map (:attr:`~live_seg.base.frames.SegResult.soft`, the threshold at 128) → the
effect's alpha: a ramp over the band where the model is unsure (a quarter below the threshold to a quarter
above it), 0 and 255 outside it. The edge follows the model's own uncertainty, and pixels it is sure of stay
exactly in or out (only the band is blended: see :func:`_composite`)."""


def upsample_threshold(soft: np.ndarray, height: int, width: int, value: int = 1) -> np.ndarray:
    """A soft map (:attr:`~live_seg.base.frames.SegResult.soft`, or an alpha ramp of it) at ``(height, width)``:
    resized bilinear, then ``value`` where it reaches :data:`~live_seg.base.frames.SOFT_THRESHOLD`, else 0
    (``value=1``: class ids; 255: a hard alpha). As MediaPipe's graph upsamples its probability."""
    big = soft if soft.shape == (height, width) else cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.threshold(big, SOFT_THRESHOLD - 1, value, cv2.THRESH_BINARY)[1]


def soft_alpha(
    chosen: np.ndarray, height: int, width: int, feather: float, weight: np.ndarray | None = None
) -> Alpha:
    """The alpha of the chosen pixels at frame size.

    Args:
        chosen: ``(h, w)`` uint8, 1 where chosen, 0 elsewhere (mask size).
        height, width: frame size.
        feather: edge width in frame pixels; 0 for hard nearest-neighbour edges (without ``weight``).
        weight: ``(h, w)`` uint8, how surely each pixel is chosen (a probability model's soft map): the alpha
            is its linear upsampling (then the feather's blur), so edges are as soft as the model is unsure.
    """
    mh, mw = chosen.shape
    count = cv2.countNonZero(chosen)
    if count == 0:
        return Alpha("none", (0, 0, 0, 0))
    full = (0, height, 0, width)
    if count == chosen.size:
        return Alpha("all", full, np.full((height, width), 255, np.uint8))
    if feather <= 0:
        if weight is None:
            hard = cv2.resize(chosen * np.uint8(255), (width, height), interpolation=cv2.INTER_NEAREST)
        else:  # the probability's own edge at frame size (as MediaPipe upsamples it), still hard: no blend
            hard = upsample_threshold(weight, height, width, 255)
        x, y, w, h = cv2.boundingRect(hard)
        return Alpha("some", (y, y + h, x, x + w), hard)
    kx, ky = _odd(feather * mw / width), _odd(feather * mh / height)
    alpha = chosen.astype(np.float32) * 255.0 if weight is None else weight.astype(np.float32)
    if kx > 1 or ky > 1:
        alpha = cv2.blur(alpha, (kx, ky))
    values = cv2.convertScaleAbs(cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR))
    x, y, w, h = cv2.boundingRect(chosen if weight is None else (weight > 4).astype(np.uint8))
    sx, sy = width / mw, height / mh
    # the blur spreads k // 2 mask pixels, linear interpolation one more: stay outside both
    x0, x1 = math.floor((x - kx // 2 - 1) * sx) - 1, math.ceil((x + w + kx // 2 + 1) * sx) + 1
    y0, y1 = math.floor((y - ky // 2 - 1) * sy) - 1, math.ceil((y + h + ky // 2 + 1) * sy) + 1
    roi = (max(0, y0), min(height, y1), max(0, x0), min(width, x1))
    return Alpha("some", roi, values, hard=False)


BAND_SHARE = 0.05
"""Above this share of a box's pixels in the edge band, :func:`composite` blends the whole box at once."""


def composite(out: Frame, top: Frame, alpha: Alpha) -> None:
    """Put ``top`` (the ROI's size) over ``out`` inside ``alpha.roi``, weighted by the alpha, in place.

    Fully chosen pixels are copied; only the edge band (alpha strictly between 0 and 255) is
    blended, on its own pixels: a soft edge costs what its band costs, not what the box costs.
    """
    y0, y1, x0, x1 = alpha.roi
    if alpha.coverage == "none" or y1 <= y0 or x1 <= x0:
        return
    dst = out[y0:y1, x0:x1]
    if alpha.coverage == "all":
        dst[:] = top
        return
    values = alpha.values[y0:y1, x0:x1]
    if alpha.hard:
        cv2.copyTo(top, values, dst)
        return
    band_mask = cv2.inRange(values, 1, 254)
    count = cv2.countNonZero(band_mask)
    if count > BAND_SHARE * band_mask.size:  # a wide band (a soft map): one weighted sum over the box, in C
        a = values.astype(np.float32) * np.float32(1 / 255)
        dst[:] = cv2.blendLinear(np.ascontiguousarray(top), np.ascontiguousarray(dst), a, 1 - a)
        return
    cv2.copyTo(top, cv2.compare(values, 255, cv2.CMP_EQ), dst)
    if count == 0:
        return
    band = cv2.findNonZero(band_mask).reshape(-1, 2)
    xs, ys = band[:, 0], band[:, 1]
    w = values[ys, xs].astype(np.uint16)[:, None]
    flat = out.reshape(-1, 3)
    where = (ys + y0) * out.shape[1] + (xs + x0)
    top_px = np.ascontiguousarray(top).reshape(-1, 3)[ys * (x1 - x0) + xs]
    flat[where] = ((top_px * w + flat[where] * (255 - w) + 127) // 255).astype(np.uint8)
