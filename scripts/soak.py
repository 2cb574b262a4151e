"""Soak test: run the ``live`` job on a loopback MJPEG source for N minutes and watch it age.

The source is the test suite's MJPEG server (``tests/mjpeg.py``), serving numbered test frames
at a fixed rate on 127.0.0.1. The live job runs as a separate process
(``python run_live.py live --source URL --serve 0 --pairing matched --no-hud --no-legend``), and
every ``--interval`` seconds this script samples

* its resident memory (``VmRSS`` from ``/proc/PID/status``; Linux), and
* its latency from the outside: it fetches the live view (``/frame.jpg``) a few times, reads
  the frame number stamped in the picture, and subtracts the moment the server made that
  frame. With ``--pairing matched`` each view shows a mask on the frame it was computed on,
  so this is capture → mask → view, plus the age of the view when it was fetched.

It prints one line per sample and a summary, writes everything as JSON, and exits

* 0 when memory and latency stay flat: RSS grows by at most ``--max-growth-mb`` (default 50)
  from the end of the warm-up to the largest value of the last quarter, and the median
  latency of the last quarter exceeds that of the first quarter (after warm-up) by at most
  ``max(--max-drift-ms, 50 % of the first)``, and so does the job's own latency (its stats'
  ``latency_thirds_ms``: last third against first third);
* 1 when one of those limits is exceeded;
* 2 when the live job failed or could not be measured.

Examples::

    python scripts/soak.py --minutes 1                      # quick look
    python scripts/soak.py --minutes 10 --json soak.json    # the 10-minute soak
    python scripts/soak.py --minutes 10 -- --model fcn_resnet101 --weights default
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from media import CODE_BITS, read_index  # noqa: E402 - the test helpers live beside the tests
from mjpeg import MJPEGServer, parse_size  # noqa: E402

DEFAULT_LIVE_ARGS = ["--model", "lraspp_mobilenet_v3_large", "--weights", "random", "--size", "256"]


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB, or ``None`` when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024 if out.stdout.strip() else None


def fetch_view(host: str, port: int, timeout: float = 5.0) -> np.ndarray | None:
    """The live view's newest picture (BGR), or ``None`` when there is none yet."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/frame.jpg")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    finally:
        conn.close()


def view_latency_ms(server: MJPEGServer, host: str, port: int, size: tuple[int, int]) -> float | None:
    """Fetch the view once: now minus the time its frame was made, in ms."""
    image = fetch_view(host, port)
    t_seen = time.perf_counter()
    if image is None:
        return None
    if (image.shape[1], image.shape[0]) != size:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    code = read_index(image)
    newest = server.frames_made - 1
    index = newest - (newest - code) % (1 << CODE_BITS)  # the code wraps every 1024 frames
    made = server.produced_at(index)
    return None if made is None else (t_seen - made) * 1000


def quarter(values: list[float], which: str) -> list[float]:
    n = max(1, len(values) // 4)
    return values[:n] if which == "first" else values[-n:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the live job runs (default 10)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds left out of the limits (default 30)")
    parser.add_argument("--fps", type=float, default=25.0, help="rate of the MJPEG source (default 25)")
    parser.add_argument("--frame-size", type=parse_size, default=(640, 360), help="WxH of the source (640x360)")
    parser.add_argument("--fetches", type=int, default=5, help="view fetches per latency sample (default 5)")
    parser.add_argument("--max-growth-mb", type=float, default=50.0, help="RSS growth limit (default 50)")
    parser.add_argument("--max-drift-ms", type=float, default=50.0, help="latency drift floor (default 50)")
    parser.add_argument("--json", default="soak.json", help="where the report goes (default soak.json)")
    parser.add_argument("live_args", nargs="*", help=f"after --: model options for live (default: {DEFAULT_LIVE_ARGS})")
    args = parser.parse_args(argv)

    seconds = args.minutes * 60
    report: dict[str, Any] = {"minutes": args.minutes, "interval_s": args.interval, "warmup_s": args.warmup}
    samples: list[dict[str, Any]] = []
    stats_path = Path(args.json).with_suffix(".live-stats.json")
    with MJPEGServer(fps=args.fps, size=args.frame_size, duration=seconds + 120) as server:
        command = [
            sys.executable,
            str(ROOT / "run_live.py"),
            "live",
            "--source",
            server.url,
            "--serve",
            "0",
            "--pairing",
            "matched",
            "--no-hud",
            "--no-legend",
            "--duration",
            str(seconds),
            "--stats",
            str(stats_path),
            *(args.live_args or DEFAULT_LIVE_ARGS),
        ]
        report["command"] = "python run_live.py " + " ".join(command[2:])
        report["source"] = {"url": server.url, "fps": args.fps, "size": list(args.frame_size)}
        print(f"soak: {args.minutes:g} min of `{' '.join(command[2:])}`", flush=True)
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line.startswith("live view: "):
                print(f"soak: the live job did not start its view (got {line!r})", file=sys.stderr)
                return 2
            host_port = line.split("//", 1)[1].split("/", 1)[0]
            host, port = host_port.rsplit(":", 1)
            t0 = time.perf_counter()
            print(f"{'t_s':>7} {'rss_mb':>8} {'latency_ms':>11} {'frames_made':>12}", flush=True)
            while proc.poll() is None:
                next_at = t0 + (len(samples) + 1) * args.interval
                time.sleep(max(0.0, next_at - time.perf_counter()))
                if proc.poll() is not None:
                    break
                mem = rss_mb(proc.pid)
                lat = []
                for _ in range(args.fetches):
                    try:
                        value = view_latency_ms(server, host, int(port), args.frame_size)
                    except OSError:
                        value = None
                    if value is not None:
                        lat.append(value)
                    time.sleep(min(0.2, args.interval / (2 * args.fetches)))
                sample = {
                    "t_s": round(time.perf_counter() - t0, 1),
                    "rss_mb": None if mem is None else round(mem, 1),
                    "latency_ms": round(statistics.median(lat), 1) if lat else None,
                    "frames_made": server.frames_made,
                }
                samples.append(sample)
                print(
                    f"{sample['t_s']:>7} {sample['rss_mb'] or '-':>8} {sample['latency_ms'] or '-':>11} "
                    f"{sample['frames_made']:>12}",
                    flush=True,
                )
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    report["samples"] = samples
    report["live_exit_code"] = code
    if stats_path.exists():
        report["live_stats"] = json.loads(stats_path.read_text())
    steady = [s for s in samples if s["t_s"] >= args.warmup]
    mem = [s["rss_mb"] for s in steady if s["rss_mb"] is not None]
    lat = [s["latency_ms"] for s in steady if s["latency_ms"] is not None]
    problems = []
    if code != 0:
        problems.append(f"the live job exited with {code}")
    if len(mem) < 4 or len(lat) < 4:
        problems.append("too few samples after the warm-up (run longer or sample more often)")
    else:
        report["rss_start_mb"] = mem[0]
        report["rss_max_last_quarter_mb"] = max(quarter(mem, "last"))
        report["rss_growth_mb"] = round(report["rss_max_last_quarter_mb"] - mem[0], 1)
        first, last = statistics.median(quarter(lat, "first")), statistics.median(quarter(lat, "last"))
        report["latency_first_quarter_ms"] = round(first, 1)
        report["latency_last_quarter_ms"] = round(last, 1)
        report["latency_drift_ms"] = round(last - first, 1)
        allowed = max(args.max_drift_ms, 0.5 * first)
        report["latency_drift_allowed_ms"] = round(allowed, 1)
        if report["rss_growth_mb"] > args.max_growth_mb:
            problems.append(f"RSS grew by {report['rss_growth_mb']} MB (limit {args.max_growth_mb:g})")
        if last - first > allowed:
            problems.append(f"latency drifted by {last - first:.0f} ms (limit {allowed:.0f})")
    thirds = (report.get("live_stats") or {}).get("latency_thirds_ms") or {}
    if thirds.get("first") is not None and thirds.get("last") is not None:
        # The job's own figure (per mask, capture -> shown): the same limit.
        allowed = max(args.max_drift_ms, 0.5 * thirds["first"])
        if thirds["last"] - thirds["first"] > allowed:
            problems.append(
                f"the job's own latency drifted from {thirds['first']} to {thirds['last']} ms (limit +{allowed:.0f})"
            )
    report["problems"] = problems
    report["ok"] = not problems
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if "rss_growth_mb" in report:
        print(
            f"soak: RSS {report['rss_start_mb']} MB after warm-up, max {report['rss_max_last_quarter_mb']} MB in the "
            f"last quarter (growth {report['rss_growth_mb']} MB); latency median {report['latency_first_quarter_ms']}"
            f" ms in the first quarter, {report['latency_last_quarter_ms']} ms in the last "
            f"(drift {report['latency_drift_ms']} ms)"
        )
    live = report.get("live_stats") or {}
    if live:
        print(
            f"soak: live job: {live.get('frames_captured')} frames captured, {live.get('frames_inferred')} inferred, "
            f"{live.get('frames_dropped')} dropped; its own latency by thirds {live.get('latency_thirds_ms')} ms"
        )
    print(f"soak: {'OK' if report['ok'] else 'FAILED: ' + '; '.join(problems)} (report: {args.json})")
    if code != 0 or "rss_growth_mb" not in report:
        return 2
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
