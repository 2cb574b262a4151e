"""Whole-process timings of ``live-seg video`` batches: a local batch, the same batch on a local
Ray (one actor of 2 cores, or actors of 1 core), and a rerun with everything done.

Each round runs every mode once, in turn (so that the machine's load hits them alike), each
into a fresh output folder; the medians over the rounds and their ratios to the local batch are
printed. Clips are the test suite's numbered test pattern (``tests/media.py``).

Examples::

    python scripts/batch_bench.py                           # 4 clips of 90 frames, 640x360
    python scripts/batch_bench.py --rounds 5 --modes local ray ray1
    python scripts/batch_bench.py -- --model fcn_resnet101  # options after -- go to live-seg
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from media import make_video  # noqa: E402

MODES = {
    "local": [],
    "ray": ["--ray"],
    "ray1": ["--ray", "--ray-actor-cpus", "1"],
}
"""Mode name → extra arguments of the batch command."""


def run(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "run_live.py"), "-q", *args], cwd=cwd, capture_output=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr.decode()[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("extra", nargs="*", help="live-seg options (default: LRASPP, random weights, CPU)")
    opts = parser.parse_args()
    extra = opts.extra or ["--model", "lraspp_mobilenet_v3_large", "--weights", "random", "--device", "cpu"]
    with tempfile.TemporaryDirectory(prefix="batch_bench.") as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        for i in range(opts.clips):
            make_video(work / "in" / f"clip{i}.mp4", frames=opts.frames, width=opts.width, height=opts.height)
        times: dict[str, list[float]] = {m: [] for m in [*opts.modes, "rerun"]}
        for r in range(opts.rounds):
            for mode in opts.modes:
                shutil.rmtree(work / "out", ignore_errors=True)
                command = ["video", "in", "-o", "out/", *MODES[mode], *extra]
                times[mode].append(run(command, work))
                if mode == opts.modes[0]:
                    times["rerun"].append(run(command, work))
            print(f"round {r + 1}: " + ", ".join(f"{m} {t[-1]:.1f} s" for m, t in times.items()), flush=True)
    base = statistics.median(times[opts.modes[0]])
    print(f"{opts.clips} clips x {opts.frames} frames, {opts.width}x{opts.height}, {' '.join(extra)}")
    for mode, values in times.items():
        med = statistics.median(values)
        print(f"{mode:>6}: median {med:6.1f} s  ({med / base:.2f}x {opts.modes[0]})  runs {values}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
