"""Masks between key frames: the last key frame's mask carried to a newer frame by dense optical flow.

The network runs on key frames only (``--key-interval N``: frames 0, N, 2N, ...); every other frame
gets the last key frame's mask moved along the motion between the two pictures (``--propagate
flow``), or that mask as it is (``--propagate hold``). This is the idea of Deep Feature Flow (Zhu et
al., CVPR 2017), applied to the output mask rather than to features.

How a mask is carried: the flow is computed *from the newer frame to the key frame* with OpenCV's DIS
optical flow on grey images at :data:`FLOW_SIZE` (the README has its cost and quality at full and
reduced size), scaled to the mask's size, and the key mask is sampled at ``x + flow(x)`` with
nearest-neighbour interpolation (class ids must not blend). Each frame is warped from the key frame
directly, not from the frame before, so errors do not accumulate between key frames.

Masks live in the model's square input space (``(s, s)``), the pictures at any size: the pictures
are resized to the flow size's square, the same geometry as the mask.

:class:`MaskPropagator` is one key frame's state: ``key(frame, mask)`` then ``carry(frame)`` any
number of times. It is not thread-safe (one per thread); the file run uses it in frame order on the
thread that refines results, a live view can use it on its display thread.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..base.frames import Frame, Mask, check_frame, check_mask
from ..base.registry import PROPAGATE_MODES

FLOW_SIZE = 256
"""Side of the square grey images the flow is computed on (the masks' size when larger than them)."""
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
"""OpenCV's DIS presets by name (speed against accuracy)."""
DEFAULT_PRESET = "ultrafast"
"""The DIS preset carrying uses: on the panning clip and the sample (key interval 8), as close to
every-frame masks as ``medium`` (18.98 % and 18.77 % of pixels unlike them, against 18.88 % and 18.81 %)
at a quarter to a half of the cost (the README has the sweep)."""


class MaskPropagator:
    """Carries one key frame's mask to newer frames (see the module docstring).

    Args:
        mode: ``"flow"`` or ``"hold"``.
        flow_size: side of the square images the flow is computed on (``None``: the mask's size).
        preset: a :data:`DIS_PRESETS` name.

    Raises:
        ValueError: an unknown mode or preset, or a flow size below 16.
    """

    def __init__(self, mode: str = PROPAGATE_MODES[0], flow_size: int | None = FLOW_SIZE, preset: str = DEFAULT_PRESET):
        if mode not in PROPAGATE_MODES:
            raise ValueError(f"propagate: expected one of {', '.join(PROPAGATE_MODES)}, got {mode!r}")
        if preset not in DIS_PRESETS:
            raise ValueError(f"DIS preset: expected one of {', '.join(DIS_PRESETS)}, got {preset!r}")
        if flow_size is not None and flow_size < 16:
            raise ValueError(f"flow size: expected >= 16, got {flow_size}")
        self.mode, self.flow_size, self.preset = mode, flow_size, preset
        self._dis = cv2.DISOpticalFlow.create(DIS_PRESETS[preset]) if mode == "flow" else None
        self._key_grey: np.ndarray | None = None
        self._key_mask: Mask | None = None
        self._grid: np.ndarray | None = None

    @property
    def has_key(self) -> bool:
        """Whether a key frame was given."""
        return self._key_mask is not None

    def _side(self, mask: Mask) -> int:
        return min(self.flow_size or max(mask.shape), max(mask.shape))

    def _grey(self, frame: Frame, side: int) -> np.ndarray:
        small = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)

    def key(self, frame: Frame, mask: Mask) -> Mask:
        """Make ``frame`` (``(H, W, 3)`` uint8 BGR) and its ``mask`` (``(h, w)`` uint8 class ids) the key.

        Returns:
            ``mask`` itself (a key frame's mask is the network's).
        """
        check_frame(frame)
        check_mask(mask)
        self._key_mask = mask
        if self._dis is not None:
            self._key_grey = self._grey(frame, self._side(mask))
            h, w = mask.shape
            if self._grid is None or self._grid.shape[:2] != (h, w):
                xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
                self._grid = np.dstack([xs, ys])
        return mask

    def carry(self, frame: Frame) -> Mask:
        """The key mask moved to ``frame`` (``(H, W, 3)`` uint8 BGR, a newer picture of the same scene).

        Returns:
            ``(h, w)`` uint8 class ids, the key mask's shape; the key mask itself with ``hold``.

        Raises:
            RuntimeError: no key frame yet.
        """
        if self._key_mask is None:
            raise RuntimeError("carry() before the first key frame")
        if self._dis is None:
            return self._key_mask
        assert self._key_grey is not None and self._grid is not None
        check_frame(frame)
        side = self._key_grey.shape[0]
        flow = self._dis.calc(self._grey(frame, side), self._key_grey, None)  # newer frame -> key frame
        h, w = self._key_mask.shape
        if (h, w) != (side, side):
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
            flow[..., 0] *= w / side
            flow[..., 1] *= h / side
        flow += self._grid
        return cv2.remap(self._key_mask, flow, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
