"""What ``--smooth ema`` does to flicker and speed: paired whole-process runs of ``live-seg video``.

Builds an LRASPP state_dict whose masks follow local image content (low classifier weights drawn
from N(0, 10), zero bias, high branch zero: a dozen classes on the sample, flickering under grain),
adds sigma-12 grain to ``samples/sample.mp4``, then runs the ``video`` job on it with ``--smooth off``
and ``--smooth ema`` alternately (off, ema, off, ema, ...) and prints the medians: flicker from
``--stats``, the run's fps, the whole process's wall time, and the smoothing step's median ms.

    python scripts/smooth_bench.py --out /tmp/smooth --pairs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

ROOT = Path(__file__).resolve().parents[1]


def content_weights(path: Path) -> Path:
    """The content-following LRASPP state_dict (seeded)."""
    torch.manual_seed(0)
    sd = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21).state_dict()
    for key in sd:
        if key.startswith("classifier."):
            sd[key].zero_()
    w = sd["classifier.low_classifier.weight"]
    w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0)) * 10)
    torch.save(sd, path)
    return path


def grainy(src: Path, dst: Path, sigma: float = 12.0) -> Path:
    """``src`` with Gaussian grain, near-lossless H.264 (crf 8) so the grain survives."""
    rng = np.random.default_rng(0)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        s = out.add_stream("libx264", rate=vin.average_rate)
        s.width, s.height, s.pix_fmt = vin.width, vin.height, "yuv420p"
        s.options = {"crf": "8", "preset": "veryfast"}
        for frame in inp.decode(vin):
            img = frame.to_ndarray(format="bgr24")
            img = np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)
            out.mux(s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        out.mux(s.encode(None))
    return dst


def run(mode: str, clip: Path, weights: Path, out: Path, size: int, backend: str) -> dict:
    stats = out / f"{mode}.json"
    cmd = [sys.executable, str(ROOT / "run_live.py"), "video", str(clip), "-o", str(out / f"{mode}.mp4"),
           "--overwrite", "--model", "lraspp_mobilenet_v3_large", "--weights", str(weights), "--size", str(size),
           "--backend", backend, "--smooth", mode, "--stats", str(stats), "-q"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    data = json.loads(stats.read_text())
    data["process_s"] = time.perf_counter() - t0
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="working folder")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--backend", default="torch", help="torch (the README's figures) or openvino")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    weights = content_weights(args.out / "content.pth")
    clip = grainy(ROOT / "samples" / "sample.mp4", args.out / "grainy.mp4")
    runs: dict[str, list[dict]] = {"off": [], "ema": []}
    for i in range(args.pairs + 1):  # the first pair warms the caches and is not counted
        for mode in ("off", "ema"):
            data = run(mode, clip, weights, args.out, args.size, args.backend)
            if i:
                runs[mode].append(data)
            print(f"{'warm-up' if not i else f'pair {i}'} {mode}: flicker {data['flicker']:.4f} "
                  f"fps {data['fps']:.2f} process {data['process_s']:.1f} s", flush=True)  # fmt: skip
    keys = ("flicker", "fps", "process_s")
    med = {m: {k: statistics.median(r[k] for r in rs) for k in keys} for m, rs in runs.items()}
    smooth_ms = statistics.median(r["smooth_ms"] for r in runs["ema"])
    off, ema = med["off"], med["ema"]
    print("| smoothing | flicker | fps | whole process (s) |\n|---|---:|---:|---:|")
    for mode, m in med.items():
        print(f"| {mode} | {m['flicker'] * 100:.2f} % | {m['fps']:.2f} | {m['process_s']:.1f} |")
    print(f"flicker {1 - ema['flicker'] / off['flicker']:.0%} lower; fps ratio ema/off {ema['fps'] / off['fps']:.3f}; ")
    print(f"process time ratio {ema['process_s'] / off['process_s']:.3f}; smoothing step median {smooth_ms:.1f} ms")


if __name__ == "__main__":
    main()
