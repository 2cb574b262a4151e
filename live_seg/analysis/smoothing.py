"""Steady masks and a number for how steady they are: temporal smoothing, scene cuts, flicker.

Smoothing (``--smooth ema``) keeps an exponential moving average of the model's per-pixel
class probabilities (softmax) and takes the argmax of the average::

    state = strength * state + (1 - strength) * probabilities       # strength in [0, 1)

A pixel changes class only when the evidence for the new class outweighs the old one over
the last few frames, so the one-frame class flips that grain, compression noise and small
motions cause are voted away. ``strength`` 0 is no smoothing; 0.5 remembers about two frames,
0.8 about five (the weight of a frame ``k`` frames back is ``strength**k``).

Where the running state lives, and why:

* The average must be taken **in frame order**: frame ``n``'s output depends on frames
  ``n-1, n-2, ...``. A file run has several inference workers that finish out of order, so
  the state cannot live in a worker. It lives in one :class:`TemporalSmoother` stepped by
  the single in-order consumer, after the results are put back in order (the same place the
  masks are rendered). The workers compute the softmax (the expensive, parallel part) and
  hand their scores over in float16 (:func:`pack_scores`: half the bytes of float32, 11 MB a
  frame at 512x512), so the results waiting to be put back in order stay smaller; the average
  itself is kept in float32. Bytes (probability x 255) were tried and dropped: with an unsure
  model (21 classes near 0.05 each) rounding to 1/255 tied the top two classes on 10 % of the
  pixels, so even strength 0 changed the masks; float16 keeps 3 significant digits. This keeps every worker busy:
  running inference in order (one worker) would cost the parallelism of a file run.
* A live run has one inference worker that always takes the newest frame, so its results
  are already in order; frames the worker never saw were dropped and take no part. The state
  lives in that worker, right after the forward pass, and a step is one *inferred* frame
  (so ``strength`` means "remember the last few masks", whatever the drop rate).
* The state stays on the device the model runs on (the scores are torch tensors of any
  backend; this module only calls tensor methods, it does not import torch).

A scene cut resets the state, so the new scene's first mask is its own and the old scene
does not smear into it. :class:`SceneCutDetector` compares ``32x32`` grayscale thumbnails of
consecutive frames (area-averaged, so grain and noise average out): a mean absolute
difference above :data:`CUT_THRESHOLD` grey levels is a cut.

Flicker (``--stats``): :class:`FlickerMeter` is the mean share of pixels whose class changed
between consecutive output masks (at the model's size), computed streaming in frame order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..base.frames import Frame, Mask
from ..base.options import check_strength
from ..base.registry import DEFAULT_SMOOTH_STRENGTH

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

THUMB_SIZE = 32
"""Side of the grayscale thumbnails the scene-cut detector compares, in pixels."""

CUT_THRESHOLD = 20.0
"""Mean absolute difference (grey levels, 0..255) between consecutive thumbnails above which a
frame starts a new scene. Measured on the sample clip: its pans, zooms and crossfades reach 8.4
from frame to frame (median 2.6), grain noise (sigma 12) changes that by under 0.1, and a hard
cut between any two of its photographs is 38.5 or more. A false cut (very fast motion) only
costs one unsmoothed frame; a missed one smears, so the threshold sits nearer the motion."""


def pack_scores(scores: torch.Tensor) -> torch.Tensor:
    """Probabilities in ``[0, 1]`` as float16, on the same device (to carry them between threads).

    Args:
        scores: ``(..., C, H, W)`` float softmax probabilities.

    Returns:
        The same shape, float16.
    """
    return scores.half()


def first_argmax(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(0)`` as uint8 (the first class among ties), on the scores' device.

    Through ``amax`` and a comparison: on the CPU, torch's ``argmax`` over the leading dim of
    a ``(C, H, W)`` tensor walks it with a stride and took 3.5x as long (30 against 105 ms at
    21x512x512, one thread, measured on 2026-11-21).

    Args:
        scores: ``(C, H, W)`` float, C <= 256.

    Returns:
        ``(H, W)`` uint8 class ids.
    """
    last = scores.shape[0] - 1
    ties = (scores == scores.amax(0)).byte()
    reverse = ties.new_tensor(list(range(last, -1, -1))).view(-1, 1, 1)  # class c weighs last - c
    return (last - ties.mul_(reverse).amax(0)).byte()


def thumbnail(frame: Frame, size: int = THUMB_SIZE) -> np.ndarray:
    """A ``(size, size)`` float32 grayscale thumbnail of a BGR frame.

    Every ``step``-th pixel first (at least ``4 * size`` kept on the short side), then
    area-averaged: 0.4 ms for a 720p frame instead of 7 ms for area-averaging all of it.
    """
    step = max(1, min(frame.shape[:2]) // (4 * size))
    small = cv2.resize(frame[::step, ::step], (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)


class SceneCutDetector:
    """Tells whether a frame starts a new scene, from the frame before it.

    Args:
        threshold: mean absolute thumbnail difference (grey levels) that makes a cut.
    """

    def __init__(self, threshold: float = CUT_THRESHOLD) -> None:
        self.threshold = threshold
        self.previous: np.ndarray | None = None
        self.last_difference = 0.0
        self.cuts = 0

    def difference(self, frame: Frame) -> float:
        """Mean absolute thumbnail difference to the previous frame given (0 for the first);
        remembers ``frame`` as the previous one."""
        thumb = thumbnail(frame)
        prev, self.previous = self.previous, thumb
        self.last_difference = 0.0 if prev is None else float(np.abs(thumb - prev).mean())
        return self.last_difference

    def is_cut(self, frame: Frame) -> bool:
        """Whether ``frame`` starts a new scene (never for the first frame)."""
        cut = self.difference(frame) > self.threshold
        self.cuts += cut
        return cut


class TemporalSmoother:
    """Exponential moving average of class probabilities, argmax after, reset at scene cuts.

    Feed it every output frame in frame order (see the module docstring for where it runs).

    Args:
        strength: weight of the past, ``0 <= strength < 1`` (0: no smoothing).
        cut_threshold: see :class:`SceneCutDetector`; ``None`` never resets.
    """

    def __init__(self, strength: float = DEFAULT_SMOOTH_STRENGTH, cut_threshold: float | None = CUT_THRESHOLD) -> None:
        self.strength = check_strength(strength)
        self.cuts = SceneCutDetector(cut_threshold) if cut_threshold is not None else None
        self.state: Any = None  # (C, H, W) float32 tensor on the scores' device
        self.resets = 0
        self.steps = 0

    def reset(self) -> None:
        """Forget the past: the next frame's mask is its own."""
        self.state = None

    def step(self, scores: torch.Tensor, frame: Frame | None = None) -> Mask:
        """Add one frame's scores to the average and return the smoothed mask.

        Args:
            scores: ``(C, H, W)`` softmax probabilities, a float torch tensor of any precision
                (:func:`pack_scores`) on any device; it is not modified.
            frame: the frame the scores were computed on, ``(h, w, 3)`` uint8 BGR, for the
                scene-cut test (``None``: no test).

        Returns:
            ``(H, W)`` uint8 class ids on the CPU.
        """
        if scores.dim() != 3:
            raise ValueError(f"scores: expected (C, H, W), got shape {tuple(scores.shape)}")
        if not scores.is_floating_point():
            raise ValueError(f"scores: expected probabilities in a float dtype, got {scores.dtype}")
        cut = self.cuts is not None and frame is not None and self.cuts.is_cut(frame)
        if self.state is None or cut or self.state.shape != scores.shape:
            if self.state is not None:
                self.resets += 1
                log.debug("smoothing reset at step %d (scene cut)", self.steps)
            self.state = scores.float().clone()  # float32, never the caller's tensor
        else:  # float16 scores are added as they are (no float32 copy of them)
            self.state.mul_(self.strength).add_(scores, alpha=1.0 - self.strength)
        self.steps += 1
        return first_argmax(self.state).cpu().numpy()


class FlickerMeter:
    """Mean share of pixels whose class changed between consecutive masks (a mask sink).

    Feed it the output masks in frame order, at the model's size. Memory: one mask.
    """

    def __init__(self) -> None:
        self.previous: Mask | None = None
        self.total = 0.0
        self.pairs = 0

    def write(self, index: int, pts: float, mask: Mask) -> None:
        """Compare ``mask`` with the previous one (``index`` and ``pts`` are not used)."""
        prev = self.previous
        if prev is not None and prev.shape == mask.shape:
            self.total += np.count_nonzero(prev != mask) / mask.size
            self.pairs += 1
        self.previous = mask.copy()

    def close(self, complete: bool = True) -> Path | None:
        """Nothing to write; the figure stays readable in :attr:`value`."""
        return None

    @property
    def value(self) -> float | None:
        """The mean changed share over the consecutive pairs seen, ``None`` before two masks."""
        return self.total / self.pairs if self.pairs else None
