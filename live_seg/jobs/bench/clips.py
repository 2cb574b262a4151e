"""The clip a benchmark reads: a given file, the sample clip, or a generated one.

A regular (non-editable) install has no ``samples/`` folder: without ``--source`` the benchmark
then measures on a generated clip and says so in the log, rather than failing.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import cv2
import numpy as np

from ...base.errors import SourceError
from ...media.file_source import VideoFileSource
from ...media.writer import VideoWriter

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
SYNTHETIC_SIZE = (1280, 720)
SYNTHETIC_FPS = 25.0

SAMPLE_PATHS = (
    Path("samples", "sample.mp4"),
    Path(__file__).resolve().parents[3] / "samples" / "sample.mp4",
)
"""Where the sample clip is looked for: the current folder, then beside the package (a checkout)."""


def default_source() -> Path | None:
    """The first of :data:`SAMPLE_PATHS` that is a file, if any."""
    return next((path for path in SAMPLE_PATHS if path.is_file()), None)


def make_synthetic_clip(
    path: str | os.PathLike[str],
    frames: int,
    width: int = SYNTHETIC_SIZE[0],
    height: int = SYNTHETIC_SIZE[1],
    fps: float = SYNTHETIC_FPS,
) -> Path:
    """Write a generated clip (moving shapes over a textured gradient) as H.264 MP4.

    Deterministic: a fixed seed for the texture. Returns ``path``.
    """
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 48, size=(height, width, 1), dtype=np.uint8)
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None]
    base = np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8)
    with VideoWriter(path, width, height, fps=fps, overwrite=True) as writer:
        for i in range(frames):
            image = base + np.roll(texture, 3 * i, axis=1)
            for k, colour in enumerate(((40, 40, 220), (220, 120, 40), (60, 200, 60))):
                cx = int((0.2 + 0.3 * k) * width + 0.1 * width * math.sin(0.15 * i + k))
                cy = int(height / 2 + 0.25 * height * math.cos(0.1 * i + 2 * k))
                cv2.circle(image, (cx, cy), height // (5 + k), colour, -1, cv2.LINE_AA)
            writer.write(image, i / fps)
    return Path(path)


def resolve_source(source: str | None, workdir: Path, frames: int) -> tuple[Path, str]:
    """The clip to measure on and its kind (``"file"`` or ``"synthetic"``).

    Args:
        source: a file path, ``"synthetic"``, or ``None`` for the sample clip (synthetic without one).
        workdir: where a synthetic clip is written.
        frames: frames the synthetic clip must hold.

    Raises:
        SourceError: a file that does not exist.
    """
    if source is None:
        found = default_source()
        if found is not None:
            return found, "file"
        log.info("samples/sample.mp4 not found: measuring on a synthetic 720p clip")
    elif source != SYNTHETIC:
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"benchmark source not found: {path}; pass a video file or --source synthetic")
        return path, "file"
    return make_synthetic_clip(workdir / "synthetic.mp4", frames), SYNTHETIC


def read_frames(src: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``src`` (BGR uint8), the last repeated when the file is shorter."""
    with VideoFileSource(src, max_frames=count) as source:
        frames = [packet.image for packet in source]
    return [frames[min(i, len(frames) - 1)] for i in range(count)]
