"""``live-seg video --model selfie`` against the same job written with MediaPipe, side by side.

Both run as whole processes on the same clip, alternating (MediaPipe, live_seg, live_seg,
MediaPipe, …, so the machine's load hits both alike), and each run's wall time is measured here,
from starting the process to its exit (interpreter start, imports, model loading, decoding,
encoding and closing the file included). Prints each run, then the medians as a Markdown table:
frames per second of the clip, and live_seg's fps over MediaPipe's (the issue asks for >= 1.5x).

The MediaPipe side is ``scripts/mediapipe_loop.py`` in a venv of its own (``mediapipe==0.10.21``
pins numpy below 2), given by ``--mp-python``; the live_seg side is ``run_live.py -q video CLIP -o
OUT.mp4 --model MODEL`` with any options after ``--``. The clip's frame count is read with PyAV.

    python samples/make_sample.py -o clip720.mp4 --seconds 41.2 --fps 25       # 1030 frames, 720p
    python scripts/selfie_speed.py clip720.mp4 --mp-python mpvenv/bin/python --rounds 3
    python scripts/selfie_speed.py clip720.mp4 --mp-python mpvenv/bin/python --model lraspp_mobilenet_v3_large \\
        -- --weights random
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]


def count_frames(clip: Path) -> int:
    """Frames in ``clip`` (decoded, not the container's estimate)."""
    with av.open(str(clip)) as container:
        return sum(1 for _ in container.decode(video=0))


def timed(cmd: list[str]) -> float:
    """Run ``cmd`` to its end; its wall time in seconds (exits with its error when it fails)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')[-1500:]}")
    return wall


def split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """``(this script's arguments, live-seg options after --)``."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def load_average() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Options after -- go to live-seg video."
    )
    parser.add_argument("clip", type=Path, help="the clip (the issue's: 720p, 1030 frames)")
    parser.add_argument("--mp-python", type=Path, required=True, help="python of a venv with mediapipe==0.10.21")
    parser.add_argument("--model", default="selfie", help="live_seg's --model (default: selfie)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    argv, extra = split_extra(sys.argv[1:])
    opts = parser.parse_args(argv)
    if opts.rounds < 1:
        parser.error("--rounds must be >= 1")
    frames = count_frames(opts.clip)
    with tempfile.TemporaryDirectory(prefix="selfie_speed.") as tmp:
        out = Path(tmp)
        loop = [str(opts.mp_python), str(ROOT / "scripts" / "mediapipe_loop.py"), str(opts.clip)]
        video = [sys.executable, str(ROOT / "run_live.py"), "-q", "video", str(opts.clip)]
        sides = {
            "mediapipe": [*loop, "-o", str(out / "mediapipe.mp4")],
            "live_seg": [*video, "-o", str(out / "live_seg.mp4"), "--overwrite", "--model", opts.model, *extra],
        }
        walls: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides)
        for r in range(opts.rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                wall = timed(sides[name])
                walls[name].append(wall)
                print(
                    f"round {r + 1} {name}: {wall:.2f} s, {frames / wall:.2f} fps (load {load_average()})", flush=True
                )
    med = {name: statistics.median(w) for name, w in walls.items()}
    ratio = med["mediapipe"] / med["live_seg"]
    print(f"\n{frames} frames of {opts.clip.name}, {opts.rounds} round(s), medians, whole process\n")
    print("| job | wall s | fps | vs MediaPipe | command |\n|---|---:|---:|---:|---|")
    for name, cmd in sides.items():
        shown = shlex.join([Path(cmd[0]).name, *(Path(c).name if c.startswith("/") else c for c in cmd[1:])])
        vs = ratio if name == "live_seg" else 1.0
        print(f"| {name} | {med[name]:.2f} | {frames / med[name]:.2f} | {vs:.2f}x | `{shown}` |")
    print(f"\nload average after: {load_average()}")
    if opts.json:
        opts.json.write_text(json.dumps({"frames": frames, "walls_s": walls, "ratio": ratio}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
