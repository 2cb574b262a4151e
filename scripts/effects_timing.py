"""What each effect costs per frame, on frames of a video at a chosen height.

Masks are 512x512 like the model's: a person-shaped region (an upright ellipse over about a
fifth of the frame, as on a webcam), nothing chosen, and every pixel chosen. Prints the median
milliseconds per frame of each effect for each mask, after a warm-up.

    python scripts/effects_timing.py --video samples/sample.mp4 --height 720 --frames 60
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from live_seg.render.effects import EFFECTS, Effect

PERSON = 15


def frames_from(path: str, count: int, height: int) -> list[np.ndarray]:
    """Up to ``count`` BGR frames of ``path``, resized to ``height`` (aspect kept)."""
    cap = cv2.VideoCapture(path)
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        width = round(frame.shape[1] * height / frame.shape[0] / 2) * 2
        frames.append(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA))
    cap.release()
    if not frames:
        raise SystemExit(f"no frame could be read from {path}")
    return frames


def masks() -> dict[str, np.ndarray]:
    """The 512x512 class maps the effects are timed on."""
    person = np.zeros((512, 512), np.uint8)
    cv2.ellipse(person, (256, 300), (110, 230), 0, 0, 360, PERSON, -1)
    return {
        "person": person,
        "none": np.zeros((512, 512), np.uint8),
        "all": np.full((512, 512), PERSON, np.uint8),
    }


def time_effect(effect: Effect, frames: list[np.ndarray], mask: np.ndarray, warmup: int = 5) -> float:
    """Median milliseconds of ``effect.apply`` over ``frames`` (after ``warmup`` calls)."""
    for frame in frames[:warmup]:
        effect.apply(frame, mask)
    samples = []
    for frame in frames:
        start = time.perf_counter()
        effect.apply(frame, mask)
        samples.append(time.perf_counter() - start)
    return 1000 * statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default="samples/sample.mp4")
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--background", default=None, help="for replace: a colour, picture or video")
    args = parser.parse_args()
    frames = frames_from(args.video, args.frames, args.height)
    cases = masks()
    h, w = frames[0].shape[:2]
    print(f"{len(frames)} frames {w}x{h}, cv2 threads {cv2.getNumThreads()}; median ms per frame")
    print(f"| effect | {' | '.join(cases)} |")
    print(f"|---|{'---:|' * len(cases)}")
    for name in EFFECTS:
        with Effect(name, background=args.background) as effect:
            row = [time_effect(effect, frames, mask) for mask in cases.values()]
        print(f"| {name} | {' | '.join(f'{ms:.1f}' for ms in row)} |")


if __name__ == "__main__":
    main()
