"""int8 against fp32 (and bf16) for the whole ``video`` job: process wall time and mask agreement.

Runs ``live-seg video`` as a whole process on the OpenVINO runtime at each precision, alternating
(fp32, bf16, int8, fp32, ...) after a warm-up round that fills the caches (the converted network,
the int8 network quantised on the clip, the compiled blobs), and prints medians: wall time, the
ratio to fp32, and the share of pixels whose class matches the fp32 run's (``--mask-video``).

    python scripts/int8_bench.py --out /tmp/i8 --model lraspp_mobilenet_v3_large --weights content
    python scripts/int8_bench.py --out /tmp/i8 --model fcn_resnet101 --weights random --frames 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from keyframe_bench import content_weights, head  # noqa: E402

from live_seg.analysis.masks import read_masks  # noqa: E402


def main() -> None:
    import json
    import subprocess
    import time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="lraspp_mobilenet_v3_large")
    parser.add_argument("--weights", default="content", help="content (LRASPP only), random, or a file")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"])
    parser.add_argument("--frames", type=int, default=0, help="use the sample's first N frames (0: all)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    weights = str(content_weights(args.out / "content.pth")) if args.weights == "content" else args.weights
    clip = ROOT / "samples" / "sample.mp4"
    if args.frames:
        clip = head(clip, args.out / f"sample-{args.frames}.mp4", args.frames)
    times: dict[str, list[float]] = {p: [] for p in args.precisions}
    fps: dict[str, list[float]] = {p: [] for p in args.precisions}
    for r in range(args.repeat + 1):
        for p in args.precisions:
            stats, masks = args.out / f"{args.model}-{p}.json", args.out / f"{args.model}-{p}.mkv"
            cmd = [sys.executable, str(ROOT / "run_live.py"), "-q", "video", str(clip), "-o",
                   str(args.out / f"{p}.mp4"), "--overwrite", "--model", args.model, "--weights", weights,
                   "--device", "cpu", "--backend", "openvino", "--precision", p, "--stats", str(stats),
                   "--mask-video", str(masks), "--calibration", str(clip)]  # fmt: skip
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT)
            took = time.perf_counter() - t0
            print(f"  round {r} {p}: {took:.1f} s", file=sys.stderr, flush=True)
            if r:
                times[p].append(took)
                fps[p].append(json.loads(stats.read_text())["fps"])
    ref = list(read_masks(args.out / f"{args.model}-fp32.mkv"))
    with open("/proc/loadavg", encoding="ascii") as f:
        load = " ".join(f.read().split()[:3])
    print(f"{args.model}, weights {args.weights}, {len(ref)} frames of {clip.name}; load average {load}")
    print("| precision | whole process (s) | vs fp32 | job fps | masks same as fp32 |\n|---|---:|---:|---:|---:|")
    base = statistics.median(times["fp32"])
    for p in args.precisions:
        masks = list(read_masks(args.out / f"{args.model}-{p}.mkv"))
        same = float(np.mean([(a == b).mean() for a, b in zip(ref, masks, strict=True)]))
        t = statistics.median(times[p])
        print(f"| {p} | {t:.1f} | {base / t:.2f}x | {statistics.median(fps[p]):.2f} | {same * 100:.2f} % |")


if __name__ == "__main__":
    main()
