"""``--model selfie`` against MediaPipe's own selfie segmentation: person IoU per frame.

Two ways to use it:

``compare REF CAND``: two folders of per-frame masks, matched by the frame index each file name
starts with: MediaPipe's (``scripts/mediapipe_reference.py``: ``NNNNNN.png``, grey, 1 = person) and
live_seg's (``live-seg video CLIP --masks DIR --masks-size source``: ``NNNNNN_TTTTTTms.png``, palette
indices, 1 = person). Prints per frame both person shares and the person IoU (|A ∩ B| / |A ∪ B|;
1.0 where neither marks a pixel), then the mean and the minimum, and checks them against
``--min-mean`` and ``--min-frame`` (the issue's 0.98 and 0.95).

``run``: the whole check. Photos from scikit-image (``--photos``) become short still clips, lossless
(FFV1, ``bgr0``: both sides decode the same pixels); then for each clip and photo MediaPipe's masks
(``MP_PYTHON scripts/mediapipe_reference.py``, in MediaPipe's own venv) and live_seg's (``run_live.py
-q video … --model MODEL --masks DIR --masks-size source``, plus any options after ``--``), then
``compare``. With ``--resize WxH`` each clip is first scaled (bilinear, lossless FFV1), to check the
upsampling of the probability on frames larger than the model's input. One table for everything
and, with ``--json``, every figure in a file. Exits 1 when a clip misses a threshold; photos are
reported (person share on each side), not judged.

Examples::

    python scripts/fetch_footage.py --out footage
    python scripts/selfie_agreement.py run --mp-python mpvenv/bin/python --work agreement \\
        --clips footage/carphone.mp4 footage/vtest.avi --photos astronaut rocket chelsea coffee --json agreement.json
    python scripts/selfie_agreement.py run --mp-python mpvenv/bin/python --work agreement-landscape \\
        --model selfie_landscape --model-selection 1 --clips footage/carphone.mp4
    python scripts/selfie_agreement.py run --mp-python mpvenv/bin/python --work agreement-720p \\
        --clips footage/carphone.mp4 --resize 1280x720
    python scripts/selfie_agreement.py compare ref/carphone live/carphone --json carphone.json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from mjpeg import parse_size  # noqa: E402  (the test suite's WIDTHxHEIGHT argument)

INDEX = re.compile(r"^(\d+)(?:_\d+ms)?\.png$")
"""A mask file: the frame index, then (live_seg's names) the frame's time."""
PERSON = 1
"""The person class id in live_seg's selfie masks (0 = background)."""


def read_folder(folder: Path) -> dict[int, Path]:
    """``{frame index: PNG path}`` of a mask folder (either naming)."""
    found = {int(m.group(1)): p for p in folder.iterdir() if (m := INDEX.match(p.name))}
    if not found:
        raise SystemExit(f"{folder}: no mask PNGs (NNNNNN.png or NNNNNN_TTTTTTms.png)")
    return found


def person(path: Path) -> np.ndarray:
    """``(H, W)`` bool: pixels whose value (grey level or palette index) is :data:`PERSON`."""
    with Image.open(path) as image:
        if image.mode not in ("L", "P"):
            raise SystemExit(f"{path}: mode {image.mode}, expected a grey or palette PNG of class ids")
        return np.asarray(image) == PERSON


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Person IoU; 1.0 where neither mask marks a pixel."""
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def compare(ref: Path, cand: Path) -> dict:
    """Per-frame person shares and IoU of the frames both folders hold, with their mean and minimum."""
    refs, cands = read_folder(ref), read_folder(cand)
    common = sorted(refs.keys() & cands.keys())
    if not common:
        raise SystemExit(f"{ref} and {cand} share no frame index")
    frames = []
    for index in common:
        a, b = person(refs[index]), person(cands[index])
        if a.shape != b.shape:
            raise SystemExit(
                f"frame {index}: MediaPipe's mask is {a.shape}, live_seg's {b.shape} (use --masks-size source)"
            )
        frames.append(
            {"index": index, "mediapipe_share": float(a.mean()), "live_seg_share": float(b.mean()), "iou": iou(a, b)}
        )
    ious = [f["iou"] for f in frames]
    worst = min(frames, key=lambda f: f["iou"])
    return {
        "reference": str(ref),
        "candidate": str(cand),
        "frames": len(frames),
        "only_reference": len(refs.keys() - cands.keys()),
        "only_candidate": len(cands.keys() - refs.keys()),
        "iou_mean": float(np.mean(ious)),
        "iou_min": worst["iou"],
        "iou_min_frame": worst["index"],
        "mediapipe_share_mean": float(np.mean([f["mediapipe_share"] for f in frames])),
        "live_seg_share_mean": float(np.mean([f["live_seg_share"] for f in frames])),
        "per_frame": frames,
    }


def print_frames(name: str, result: dict) -> None:
    print(f"\n{name}: per frame\n\n| frame | MediaPipe person share | live_seg person share | person IoU |")
    print("|---:|---:|---:|---:|")
    for f in result["per_frame"]:
        print(f"| {f['index']} | {f['mediapipe_share']:.4f} | {f['live_seg_share']:.4f} | {f['iou']:.4f} |")


def summary_table(results: dict[str, dict], min_mean: float, min_frame: float) -> bool:
    """Print one row per clip or photo; True when every clip meets both thresholds."""
    print("\n| clip | frames | MediaPipe person share | live_seg person share | IoU mean | IoU min (frame) | verdict |")
    print("|---|---:|---:|---:|---:|---:|---|")
    ok = True
    for name, r in results.items():
        if r.get("photo"):
            verdict = "photo (share only)"
        else:
            passed = r["iou_mean"] >= min_mean and r["iou_min"] >= min_frame
            ok &= passed
            verdict = "pass" if passed else f"FAIL (needs mean >= {min_mean}, min >= {min_frame})"
        print(
            f"| {name} | {r['frames']} | {r['mediapipe_share_mean']:.4f} | {r['live_seg_share_mean']:.4f} "
            f"| {r['iou_mean']:.4f} | {r['iou_min']:.4f} ({r['iou_min_frame']}) | {verdict} |"
        )
    return ok


def still_clip(photo: str, path: Path, frames: int = 3) -> Path:
    """A lossless FFV1 clip of a scikit-image photo (``frames`` identical frames, 1 fps)."""
    from skimage import data

    rgb = getattr(data, photo)()
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=Fraction(1))
        stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "bgr0"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[..., ::-1]), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def resized_clip(clip: Path, size: tuple[int, int], path: Path) -> Path:
    """``clip`` scaled to ``size`` (width, height; bilinear), lossless FFV1: both sides read the same pixels."""
    with av.open(str(clip)) as src, av.open(str(path), "w") as container:
        rate = src.streams.video[0].average_rate or Fraction(25)
        stream = container.add_stream("ffv1", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "bgr0"
        for frame in src.decode(video=0):
            bgr = cv2.resize(frame.to_ndarray(format="bgr24"), size, interpolation=cv2.INTER_LINEAR)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")))
        container.mux(stream.encode())
    return path


def run_pair(clip: Path, work: Path, opts: argparse.Namespace) -> dict:
    """MediaPipe's and live_seg's masks of ``clip`` under ``work``, compared."""
    ref, cand = work / "mediapipe", work / "live_seg"
    script = ROOT / "scripts" / "mediapipe_reference.py"
    reference = [str(opts.mp_python), str(script), str(clip), "--out", str(ref)]
    subprocess.run([*reference, "--model-selection", str(opts.model_selection)], check=True, stdout=subprocess.DEVNULL)
    cmd = [sys.executable, str(ROOT / "run_live.py"), "-q", "video", str(clip), "-o", str(work / "out.mkv")]
    cmd += ["--overwrite", "--no-audio", "--model", opts.model, "--masks", str(cand), "--masks-size", "source"]
    if cand.exists():
        for old in cand.glob("*.png"):
            old.unlink()
    subprocess.run([*cmd, *opts.extra], check=True)
    return compare(ref, cand)


def run(opts: argparse.Namespace) -> dict[str, dict]:
    """The ``run`` command: every clip and photo, in ``opts.work``."""
    results: dict[str, dict] = {}
    opts.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="selfie_agreement.") as tmp:
        for clip in opts.clips:
            name = clip.stem if opts.resize is None else f"{clip.stem}-{opts.resize[0]}x{opts.resize[1]}"
            if opts.resize is not None:
                clip = resized_clip(clip, opts.resize, Path(tmp) / f"{name}.mkv")
            results[name] = run_pair(clip, opts.work / name, opts)
        for photo in opts.photos:
            clip = still_clip(photo, Path(tmp) / f"{photo}.mkv")
            results[photo] = run_pair(clip, opts.work / photo, opts) | {"photo": True}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmp_ = sub.add_parser("compare", help="compare two folders of masks")
    cmp_.add_argument("reference", type=Path, help="MediaPipe's masks (mediapipe_reference.py)")
    cmp_.add_argument("candidate", type=Path, help="live_seg's masks (--masks DIR --masks-size source)")
    run_ = sub.add_parser("run", help="make both sides' masks of clips and photos, then compare")
    run_.add_argument("--mp-python", type=Path, required=True, help="python of a venv with mediapipe==0.10.21")
    run_.add_argument("--work", type=Path, required=True, help="folder for the masks of both sides")
    run_.add_argument("--clips", type=Path, nargs="*", default=[], help="video files with a person")
    run_.add_argument("--photos", nargs="*", default=[], help="scikit-image photos (astronaut, rocket, …)")
    run_.add_argument("--model", default="selfie", help="live_seg's --model (default: selfie)")
    run_.add_argument("--model-selection", type=int, choices=(0, 1), default=0, help="MediaPipe's (1: landscape)")
    run_.add_argument("--resize", type=parse_size, help="scale the clips to WIDTHxHEIGHT first (lossless)")
    run_.add_argument("extra", nargs="*", help="more live-seg video options, after --")
    for p in (cmp_, run_):
        p.add_argument("--json", type=Path, help="write every figure here")
        p.add_argument("--min-mean", type=float, default=0.98, help="mean person IoU a clip needs (default 0.98)")
        p.add_argument("--min-frame", type=float, default=0.95, help="IoU every frame needs (default 0.95)")
        p.add_argument("--frames", action="store_true", help="print the per-frame table too")
    opts = parser.parse_args()
    if opts.command == "compare":
        results = {opts.candidate.name: compare(opts.reference, opts.candidate)}
    else:
        if not opts.clips and not opts.photos:
            parser.error("run needs --clips or --photos")
        results = run(opts)
    if opts.frames:
        for name, result in results.items():
            print_frames(name, result)
    ok = summary_table(results, opts.min_mean, opts.min_frame)
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
