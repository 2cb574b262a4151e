"""Issue 20, item 2: on this CPU, are N frames (one per camera) faster through OpenVINO as N
single-frame infer requests, or as one batched request? LRASPP at 512x512, random weights.

Variants, measured side by side in one process, alternating, median of the rounds (ms per step of N frames):

* ``requests-latency``: the live job's segmenter (``mode="latency"``), N frames over its infer requests;
* ``requests-throughput``: the same in ``throughput`` mode (more requests, each on fewer cores);
* ``batched-latency``: one request with an ``(N, s, s, 3)`` input (the model reshaped to batch N).

Usage: ``python scripts/ov_batching.py [--n 1 2 4] [--rounds 15] [--model lraspp_mobilenet_v3_large]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import openvino as ov

from live_seg.model.ov_runtime import PRECISIONS, OpenVinoSegmenter, with_head
from live_seg.model.select import build_segmenter


def batched(seg: OpenVinoSegmenter, n: int) -> object:
    """A compiled model of ``seg``'s class-id head taking ``n`` frames in one request."""
    model = with_head(seg._model.clone(), "ids")  # the segmenter's converted network
    model.reshape({model.inputs[0]: [n, seg.size, seg.size, 3]})
    config = {"INFERENCE_PRECISION_HINT": PRECISIONS[seg.precision], "PERFORMANCE_HINT": "LATENCY"}
    return ov.Core().compile_model(model, "CPU", config)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--model", default="lraspp_mobilenet_v3_large")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    kw = {"model": args.model, "weights": "random", "size": args.size, "device": "cpu", "backend": "openvino"}
    segs = {
        "requests-latency": build_segmenter(**kw, mode="latency"),
        "requests-throughput": build_segmenter(**kw, mode="throughput"),
    }
    rng = np.random.default_rng(0)
    print(f"model {args.model}, {args.size}x{args.size}, cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    for name, seg in segs.items():
        print(f"{name}: {seg.requests} infer request(s)")
    for n in args.n:
        frames = rng.integers(0, 256, (n, args.size, args.size, 3), dtype=np.uint8)
        one = batched(segs["requests-latency"], n)
        runs = {
            "requests-latency": lambda s=segs["requests-latency"], f=frames: s.infer(f),
            "requests-throughput": lambda s=segs["requests-throughput"], f=frames: s.infer(f),
            "batched-latency": lambda c=one, f=frames: c({0: f})[0],
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(3):  # warm-up
            for run in runs.values():
                run()
        for _ in range(args.rounds):
            for key, run in runs.items():
                t0 = time.perf_counter()
                run()
                times[key].append(time.perf_counter() - t0)
        cells = ", ".join(f"{k} {statistics.median(v) * 1000:.1f} ms" for k, v in times.items())
        print(f"N={n}: {cells}; load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
