"""Frames to a network's input size, the way its spec says (both runtimes, int8 calibration).

The rest of the preprocessing (channel order, scale, mean/std, layout) runs inside the network's
graph (torch: :func:`live_seg.model.device_ops.normalise`; OpenVINO: traced in front of the network),
so that only uint8 pixels are moved and resized here.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..base.frames import Frame, check_frame
from ..base.specs import CORNERS, ModelSpec


def resize_into(frame: Frame, spec: ModelSpec, dst: np.ndarray) -> None:
    """Resize one ``(H, W, 3)`` uint8 BGR frame into ``dst`` (``(h, w, 3)`` uint8, the spec's input size).

    :data:`~live_seg.base.specs.HALF_PIXEL`: ``cv2.resize`` (bilinear, pixel centres aligned), as torchvision's
    models were trained. :data:`~live_seg.base.specs.CORNERS`: corner to corner (``src = dst * W / w``,
    bilinear, zero border), as MediaPipe's graph stretches frames for its selfie models: matching it keeps
    the masks the same as MediaPipe's to a few pixels.
    """
    h, w = spec.input_hw
    if frame.shape[:2] == (h, w):
        dst[...] = frame
    elif spec.resize == CORNERS:
        fh, fw = frame.shape[:2]
        m = np.array([[w / fw, 0.0, 0.0], [0.0, h / fh, 0.0]])  # src -> dst: dst = src * w / W
        cv2.warpAffine(frame, m, (w, h), dst=dst, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    else:
        cv2.resize(frame, (w, h), dst=dst, interpolation=cv2.INTER_LINEAR)


def resize_batch(frames: Sequence[Frame], spec: ModelSpec) -> np.ndarray:
    """Frames as one ``(N, h, w, 3)`` uint8 BGR batch at the spec's input size.

    Raises:
        ValueError: no frames, or a frame that is not ``(H, W, 3)`` uint8.
    """
    if len(frames) == 0:
        raise ValueError("frames: expected at least one frame, got 0")
    h, w = spec.input_hw
    batch = np.empty((len(frames), h, w, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        resize_into(check_frame(frame, f"frames[{i}]"), spec, batch[i])
    return batch
