"""Key frames (``--key-interval N --propagate flow|hold``): whole-job speed and mask disagreement.

For each clip, runs the ``video`` job as a whole process with ``--key-interval 1`` (every frame) and
with each interval for ``flow`` and ``hold``, alternating (1, N flow, N hold, 1, ...), and prints
medians: the process's wall time, its speed-up over every frame, and the share of pixels of the
frames between key frames whose class differs from the every-frame run's mask (key frames are
checked to be identical). Masks come back through ``--mask-video`` (lossless).

Clips: ``pan``, a camera panning over a wide scene built from scikit-image's photographs (a rocket
on a street, a motorcycle, an astronaut, a cat, a cup), and ``sample`` (``samples/sample.mp4``, the
bundled clip: slow pans and zooms with crossfades). The default model is LRASPP with
content-following weights (low classifier from N(0, 10), zero bias, high branch zero: masks follow
local image content, so propagation is judged on real edges).

    python scripts/keyframe_bench.py --out /tmp/kf --clips pan sample --intervals 2 4 8 --repeat 2
    python scripts/keyframe_bench.py --out /tmp/kf --clips sample --model fcn_resnet101 --weights random \
        --intervals 2 4 8 --repeat 0 --frames 40
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
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live_seg.analysis.masks import read_masks  # noqa: E402

PAN_PHOTOS = ("rocket", "stereo_motorcycle", "astronaut", "chelsea", "coffee")


def content_weights(path: Path, seed: int = 0) -> Path:
    """The content-following LRASPP state_dict (seeded), saved at ``path``."""
    import torch
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(seed)
    sd = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21).state_dict()
    for key in sd:
        if key.startswith("classifier."):
            sd[key].zero_()
    w = sd["classifier.low_classifier.weight"]
    w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(seed)) * 10)
    torch.save(sd, path)
    return path


def pan_canvas(height: int = 500) -> np.ndarray:
    """scikit-image's photographs side by side at one height: a wide BGR scene to pan over."""
    from skimage import data

    parts = []
    for name in PAN_PHOTOS:
        image = getattr(data, name)()
        image = image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)
        image = np.ascontiguousarray(image[..., :3][..., ::-1])
        width = round(image.shape[1] * height / image.shape[0])
        parts.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    return np.hstack(parts)


def make_pan_clip(path: Path, frames: int = 100, width: int = 640, height: int = 360, fps: int = 25) -> Path:
    """A camera panning left to right over :func:`pan_canvas` at a constant speed, with a slow vertical
    sway: ``frames`` frames of ``width`` x ``height``, H.264 (crf 16)."""
    canvas = pan_canvas()
    view_h = canvas.shape[0] - 40  # room for the sway
    view_w = round(view_h * width / height)
    scale = width / view_w
    travel = min(canvas.shape[1] - view_w, 12 * frames)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "16", "preset": "veryfast"}
        for i in range(frames):
            x = travel * i / max(frames - 1, 1)
            y = 20 + 18 * np.sin(2 * np.pi * i / frames)
            m = np.array([[scale, 0, -x * scale], [0, scale, -y * scale]], dtype=np.float64)
            frame = cv2.warpAffine(canvas, m, (width, height), flags=cv2.INTER_LINEAR)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        out.mux(stream.encode(None))
    return path


def head(src: Path, dst: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``src`` as a new clip (video only, H.264 crf 16)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        s = out.add_stream("libx264", rate=vin.average_rate)
        s.width, s.height, s.pix_fmt = vin.width, vin.height, "yuv420p"
        s.options = {"crf": "16", "preset": "veryfast"}
        for i, frame in enumerate(inp.decode(vin)):
            if i >= frames:
                break
            out.mux(s.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")))
        out.mux(s.encode(None))
    return dst


def run_video(clip: Path, out: Path, tag: str, interval: int, mode: str, model_args: list[str]) -> dict:
    """One whole ``live-seg video`` process; its ``--stats`` with ``process_s`` and the masks' path."""
    stats, masks = out / f"{tag}.json", out / f"{tag}.mkv"
    cmd = [sys.executable, str(ROOT / "run_live.py"), "-q", "video", str(clip), "-o", str(out / f"{tag}.mp4"),
           "--overwrite", "--stats", str(stats), "--mask-video", str(masks), "--key-interval", str(interval),
           "--propagate", mode, *model_args]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    data = json.loads(stats.read_text())
    data["process_s"] = time.perf_counter() - t0
    data["mask_path"] = str(masks)
    return data


def disagreement(reference: list[np.ndarray], masks: list[np.ndarray], interval: int) -> tuple[float, bool]:
    """Share of pixels of the frames between key frames whose class differs from ``reference``; and
    whether every key frame's mask is identical to the reference's."""
    if len(masks) != len(reference):
        raise SystemExit(f"mask count differs: {len(masks)} against {len(reference)}")
    keys_same = all(np.array_equal(reference[i], masks[i]) for i in range(0, len(masks), interval))
    between = [float((reference[i] != masks[i]).mean()) for i in range(len(masks)) if i % interval]
    return (statistics.fmean(between) if between else 0.0), keys_same


def flow_sweep(clip: Path, reference: list[np.ndarray], interval: int) -> list[dict]:
    """The carrying step alone, at several flow sizes and DIS presets: the every-frame masks of key
    frames carried to the frames between, against the every-frame masks there (no network involved)."""
    from live_seg.analysis.propagate import DIS_PRESETS, MaskPropagator

    with av.open(str(clip)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    rows = []
    for size in (128, 256, 512):
        for preset in DIS_PRESETS:
            prop, ms, wrong = MaskPropagator("flow", flow_size=size, preset=preset), [], []
            for i, (frame, mask) in enumerate(zip(frames, reference, strict=True)):
                if i % interval == 0:
                    prop.key(frame, mask)
                    continue
                t0 = time.perf_counter()
                carried = prop.carry(frame)
                ms.append((time.perf_counter() - t0) * 1000)
                wrong.append(float((carried != mask).mean()))
            rows.append({"flow_size": size, "preset": preset, "ms": statistics.median(ms),
                         "disagree": statistics.fmean(wrong)})  # fmt: skip
    return rows


def bench_clip(
    clip: Path, out: Path, intervals: list[int], repeat: int, model_args: list[str], modes: list[str]
) -> list[dict]:
    """Alternating runs on ``clip``; one summary row per (interval, mode), every frame first."""
    configs = [(1, "flow")] + [(n, m) for n in intervals for m in modes]
    times: dict[tuple[int, str], list[float]] = {c: [] for c in configs}
    last: dict[tuple[int, str], dict] = {}
    for r in range(repeat + 1):  # round 0 warms the caches (converted network, compiled blobs)
        for n, mode in configs:
            data = run_video(clip, out, f"{clip.stem}-k{n}-{mode}", n, mode, model_args)
            if r or repeat == 0:
                times[(n, mode)].append(data["process_s"])
            last[(n, mode)] = data
            print(f"  round {r} k={n} {mode}: {data['process_s']:.1f} s", file=sys.stderr, flush=True)
    reference = list(read_masks(last[(1, "flow")]["mask_path"]))
    base = statistics.median(times[(1, "flow")])
    rows = []
    for n, mode in configs:
        share, keys_same = disagreement(reference, list(read_masks(last[(n, mode)]["mask_path"])), n)
        s = statistics.median(times[(n, mode)])
        rows.append({"clip": clip.name, "interval": n, "propagate": "-" if n == 1 else mode, "process_s": s,
                     "speedup": base / s, "disagree": share, "keys_identical": keys_same,
                     "propagate_ms": last[(n, mode)].get("propagate_ms"), "frames": len(reference)})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="working folder")
    parser.add_argument("--clips", nargs="+", default=["pan", "sample"], choices=("pan", "sample"))
    parser.add_argument("--intervals", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--repeat", type=int, default=2, help="timed rounds after a warm-up round")
    parser.add_argument("--model", default="lraspp_mobilenet_v3_large")
    parser.add_argument("--weights", default="content", help="content (LRASPP only), random, or a file")
    parser.add_argument("--modes", nargs="+", default=["flow", "hold"], choices=("flow", "hold"))
    parser.add_argument("--sweep", action="store_true", help="also the flow step alone at several sizes and presets")
    parser.add_argument("--frames", type=int, default=0, help="the sample's first N frames only (0: all)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more video arguments")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    weights = str(content_weights(args.out / "content.pth")) if args.weights == "content" else args.weights
    model_args = ["--model", args.model, "--weights", weights, "--device", "cpu", *args.extra]
    sample = ROOT / "samples" / "sample.mp4"
    if args.frames:
        sample = head(sample, args.out / f"sample-{args.frames}.mp4", args.frames)
    clips = {"pan": lambda: make_pan_clip(args.out / "pan.mp4"), "sample": lambda: sample}
    paths = {name: clips[name]() for name in args.clips}
    rows = [row for name in args.clips for row in bench_clip(paths[name], args.out, args.intervals, args.repeat,
                                                             model_args, args.modes)]  # fmt: skip
    with open("/proc/loadavg", encoding="ascii") as f:
        load = f.read().split()[:3]
    print(f"model {args.model}, weights {args.weights}; load average {' '.join(load)}")
    print("| clip | key interval | between key frames | whole process (s) | speed-up | pixels unlike every frame "
          "| key frames identical | carry ms |\n|---|---:|---|---:|---:|---:|---|---:|")  # fmt: skip
    for r in rows:
        ms = "-" if r["propagate_ms"] is None else f"{r['propagate_ms']:.1f}"
        print(f"| {r['clip']} ({r['frames']} frames) | {r['interval']} | {r['propagate']} | {r['process_s']:.1f} "
              f"| {r['speedup']:.2f}x | {r['disagree'] * 100:.2f} % | {r['keys_identical']} | {ms} |")  # fmt: skip
    for clip in dict.fromkeys(r["clip"] for r in rows):
        if len(args.modes) < 2:
            break
        for n in args.intervals:
            flow = next(r for r in rows if r["clip"] == clip and r["interval"] == n and r["propagate"] == "flow")
            hold = next(r for r in rows if r["clip"] == clip and r["interval"] == n and r["propagate"] == "hold")
            if hold["disagree"]:
                print(f"{clip} k={n}: flow/hold disagreement {flow['disagree'] / hold['disagree']:.2f}")

    if args.sweep:
        n = max(args.intervals)
        for name, path in paths.items():
            reference = list(read_masks(args.out / f"{path.stem}-k1-flow.mkv"))
            print(f"\n{name}, key interval {n}: the flow step alone (every-frame key masks carried)")
            print("| flow size | DIS preset | ms per frame | pixels unlike every frame |\n|---:|---|---:|---:|")
            for r in flow_sweep(path, reference, n):
                print(f"| {r['flow_size']} | {r['preset']} | {r['ms']:.1f} | {r['disagree'] * 100:.2f} % |")


if __name__ == "__main__":
    main()
