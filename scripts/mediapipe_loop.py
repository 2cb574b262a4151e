"""The MP4 → overlaid MP4 job written the usual way with MediaPipe's Python solution.

What someone who wants a person overlay on a video writes with MediaPipe: OpenCV reads the frames,
``mp.solutions.selfie_segmentation.SelfieSegmentation`` gives the person probability, pixels above
0.5 get a 60/40 blend of the frame and a person colour, OpenCV's ``mp4v`` writer writes the result.
The baseline that ``live-seg video --model selfie`` is measured against, side by side.

Runs in a venv of its own (``mediapipe`` pins numpy below 2)::

    python3 -m venv mpvenv && mpvenv/bin/pip install mediapipe==0.10.21 opencv-python
    mpvenv/bin/python scripts/mediapipe_loop.py clip720.mp4 -o out.mp4

Prints one JSON line: frames, the loop's time and fps (read, segment, blend, write), and the time
and fps since this script started (imports and model loading included; a whole-process figure
measured from outside, as the side-by-side comparison does, also counts the interpreter's start).
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import cv2  # noqa: E402
import mediapipe as mp  # noqa: E402
import numpy as np  # noqa: E402

PERSON_BGR = (128, 128, 192)
"""VOC's person colour (192, 128, 128 in RGB), as live_seg's overlay paints it."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", help="input video")
    parser.add_argument("-o", "--output", required=True, help="output .mp4 (mp4v)")
    parser.add_argument("--model-selection", type=int, choices=(0, 1), default=0)
    opts = parser.parse_args()

    cap = cv2.VideoCapture(opts.clip)
    if not cap.isOpened():
        raise SystemExit(f"cannot open {opts.clip}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    partial = f"{opts.output}.partial.mp4"
    writer = cv2.VideoWriter(partial, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    colour = np.empty((height, width, 3), np.uint8)
    colour[:] = PERSON_BGR
    frames = 0
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=opts.model_selection) as seg:
        loop_start = time.perf_counter()
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            prob = seg.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)).segmentation_mask
            person = (prob > 0.5)[..., None]
            blend = cv2.addWeighted(frame, 0.6, colour, 0.4, 0.0)
            writer.write(np.where(person, blend, frame))
            frames += 1
        loop_s = time.perf_counter() - loop_start
    cap.release()
    writer.release()
    os.replace(partial, opts.output)
    total_s = time.perf_counter() - START
    print(
        json.dumps(
            {
                "frames": frames,
                "width": width,
                "height": height,
                "loop_s": round(loop_s, 3),
                "loop_fps": round(frames / loop_s, 2) if loop_s else None,
                "script_s": round(total_s, 3),
                "script_fps": round(frames / total_s, 2) if total_s else None,
                "mediapipe": mp.__version__,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
