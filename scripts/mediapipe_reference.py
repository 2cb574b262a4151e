"""MediaPipe's own selfie segmentation of a clip: the reference masks for ``--model selfie``.

Runs in a virtual environment of its own, outside the project (``mediapipe`` pins numpy below 2)::

    python3 -m venv mpvenv && mpvenv/bin/pip install mediapipe==0.10.21 opencv-python av==18.1.0

Each frame of each clip goes through ``mp.solutions.selfie_segmentation.SelfieSegmentation`` (its
graph stretches the RGB frame to 256x256 or 256x144, runs the network, resizes the probability back
to the frame's size bilinearly), and the person mask (probability > ``--threshold``) is written at
the frame's size as ``OUT/NNNNNN.png`` (8-bit grey, 1 = person, 0 = background; the frame index in
decoding order), each through a temporary name, with ``OUT/summary.json`` (MediaPipe's version, the
model, the clip, frames, mean person share, fps).

Frames are decoded by PyAV (as ``bgr24``, the way ``live-seg video`` reads files, then to RGB) when
it is installed, else by OpenCV; the reader is named in the summary: decode both sides with the same
library so the comparison is of the models, not of two YUV → RGB conversions.

    mpvenv/bin/python scripts/mediapipe_reference.py footage/carphone.mp4 --out ref/carphone
    mpvenv/bin/python scripts/mediapipe_reference.py clip.mp4 --out ref/clip-landscape --model-selection 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np


def frames_av(path: Path) -> Iterator[np.ndarray]:
    """``(H, W, 3)`` uint8 RGB frames decoded by PyAV (``bgr24``, as live_seg's file reader)."""
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield cv2.cvtColor(frame.to_ndarray(format="bgr24"), cv2.COLOR_BGR2RGB)


def frames_cv2(path: Path) -> Iterator[np.ndarray]:
    """``(H, W, 3)`` uint8 RGB frames decoded by OpenCV."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"cannot open {path}")
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def reader(name: str) -> tuple[str, object]:
    """``(name, frame generator)`` for ``--reader`` (``auto``: PyAV when installed)."""
    if name in ("auto", "av"):
        try:
            import av  # noqa: F401

            return "av", frames_av
        except ImportError:
            if name == "av":
                raise SystemExit("--reader av: PyAV is not installed in this environment") from None
    return "opencv", frames_cv2


def write_png(path: Path, mask: np.ndarray) -> None:
    """Write a 0/1 uint8 mask as a grey PNG through a temporary name."""
    partial = path.with_name(f".{path.name}.partial.png")
    if not cv2.imwrite(str(partial), mask):
        raise SystemExit(f"cannot write {partial}")
    os.replace(partial, path)


def segment_clip(clip: Path, out: Path, selection: int, threshold: float, read: str, limit: int | None) -> dict:
    """Write ``clip``'s masks into ``out``; the summary (also written to ``out/summary.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("[0-9]*.png"):
        old.unlink()
    reader_name, frames = reader(read)
    shares: list[float] = []
    size = None
    start = time.perf_counter()
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=selection) as seg:
        for index, rgb in enumerate(frames(clip)):
            if limit is not None and index >= limit:
                break
            prob = seg.process(rgb).segmentation_mask
            if prob.shape != rgb.shape[:2]:
                raise SystemExit(f"frame {index}: mask {prob.shape}, frame {rgb.shape[:2]}")
            mask = (prob > threshold).astype(np.uint8)
            write_png(out / f"{index:06d}.png", mask)
            shares.append(float(mask.mean()))
            size = rgb.shape[1], rgb.shape[0]
    wall = time.perf_counter() - start
    summary = {
        "clip": clip.name,
        "mediapipe": mp.__version__,
        "model_selection": selection,
        "threshold": threshold,
        "reader": reader_name,
        "frames": len(shares),
        "width": size[0] if size else None,
        "height": size[1] if size else None,
        "person_share_mean": round(float(np.mean(shares)), 5) if shares else None,
        "person_share_min": round(min(shares), 5) if shares else None,
        "person_share_max": round(max(shares), 5) if shares else None,
        "fps": round(len(shares) / wall, 2) if wall > 0 else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", type=Path, help="a video file")
    parser.add_argument("--out", type=Path, required=True, help="folder for NNNNNN.png and summary.json")
    parser.add_argument(
        "--model-selection", type=int, choices=(0, 1), default=0, help="0: general (256x256), 1: landscape (256x144)"
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="person where the probability is above it")
    parser.add_argument("--reader", choices=("auto", "av", "opencv"), default="auto", help="frame decoder")
    parser.add_argument("--frames", type=int, help="only the first N frames")
    opts = parser.parse_args()
    summary = segment_clip(opts.clip, opts.out, opts.model_selection, opts.threshold, opts.reader, opts.frames)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
