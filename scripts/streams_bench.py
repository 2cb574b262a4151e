"""Many cameras, one ``live`` process against one process per camera (issue 20, item 7).

For each configuration (a model and a number of loopback MJPEG cameras at 25 fps) the same
cameras are watched, in turn, by one multi-source ``live`` (``--source`` repeated) and by as
many separate single-source ``live`` processes started at once; the order of the two alternates
between rounds so the machine's load hits them alike. Each ``live`` runs with ``--display none
--duration S --stats FILE``; a run's figures come from those stats files:

* processed fps: frames that got a mask, over all cameras, divided by the run's wall time
  (``sources[*].frames_processed``, or ``frames_inferred`` of a single-source run, over
  ``wall_s``); the separate processes' figure is the sum of theirs;
* latency p95: the worst camera's p95 capture → shown latency, in ms.

Medians over the rounds are printed as a Markdown table with each command and ``uptime``'s load
average beside them. Cameras are the test suite's :class:`mjpeg.MJPEGServer` (frames stamped with
their index), started in this process on 127.0.0.1.

Examples::

    python scripts/streams_bench.py                                  # LRASPP 1, 2, 4 cameras; FCN 2
    python scripts/streams_bench.py --duration 20 --rounds 3
    python scripts/streams_bench.py --configs lraspp_mobilenet_v3_large:4 -- --size 256
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from mjpeg import MJPEGServer  # noqa: E402

log = logging.getLogger("streams_bench")

DEFAULT_CONFIGS = (
    "lraspp_mobilenet_v3_large:1",
    "lraspp_mobilenet_v3_large:2",
    "lraspp_mobilenet_v3_large:4",
    "fcn_resnet101:2",
)
MODES = ("one", "separate")
"""``one``: one process with every camera; ``separate``: one process per camera, all at once."""


@dataclass
class Figures:
    """One run's result: aggregate processed fps and the worst camera's latency p95 (ms)."""

    fps: float
    p95_ms: float


def parse_config(text: str) -> tuple[str, int]:
    """``MODEL:CAMERAS`` → ``(model, cameras)``."""
    model, _, count = text.rpartition(":")
    try:
        cameras = int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MODEL:CAMERAS, got {text!r}") from None
    if not model or cameras < 1:
        raise argparse.ArgumentTypeError(f"expected MODEL:CAMERAS with CAMERAS >= 1, got {text!r}")
    return model, cameras


def live_command(urls: list[str], model: str, stats: Path, duration: float, extra: list[str]) -> list[str]:
    """The ``live`` command line for ``urls`` (one or more sources)."""
    cmd = [sys.executable, str(ROOT / "run_live.py"), "-q", "live"]
    for url in urls:
        cmd += ["--source", url]
    cmd += ["--display", "none", "--duration", str(duration), "--stats", str(stats)]
    return [*cmd, "--model", model, "--weights", "random", "--device", "cpu", *extra]


def shown(cmd: list[str]) -> str:
    """A command as a reader would type it (repo-relative script, placeholders for URLs/files)."""
    out = ["python", "run_live.py"]
    skip = {"--stats": "STATS.json"}
    args = cmd[2:]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in skip:
            out += [arg, skip[arg]]
            i += 2
            continue
        out.append("URL" if arg.startswith("http://") else arg)
        i += 1
    return shlex.join(out).replace("'", "")


def read_figures(stats_files: list[Path]) -> Figures:
    """Aggregate fps and worst p95 from the stats files of the processes of one run."""
    fps, p95 = 0.0, 0.0
    for path in stats_files:
        stats = json.loads(path.read_text())
        wall = float(stats["wall_s"])
        sources = stats.get("sources") or [
            {"frames_processed": stats["frames_inferred"], "latency_ms": stats["latency_ms"]}
        ]
        fps += sum(s["frames_processed"] for s in sources) / wall
        p95 = max([p95, *(float(s["latency_ms"]["p95"]) for s in sources)])
    return Figures(fps, p95)


def run_mode(mode: str, urls: list[str], model: str, work: Path, duration: float, extra: list[str]) -> Figures:
    """Run one mode over ``urls`` and read its figures; exits on a failed ``live``."""
    groups = [urls] if mode == "one" else [[url] for url in urls]
    stats = [work / f"{mode}-{i}.json" for i in range(len(groups))]
    for path in stats:
        path.unlink(missing_ok=True)
    procs = [
        subprocess.Popen(
            live_command(group, model, path, duration, extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for group, path in zip(groups, stats, strict=True)
    ]
    failed = []
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=duration + 600)
            if proc.returncode != 0:
                failed.append(err.decode(errors="replace").strip()[-1500:])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if failed:
        raise SystemExit(f"{mode} run failed:\n" + "\n".join(failed))
    return read_figures(stats)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def bench(configs: list[tuple[str, int]], rounds: int, duration: float, extra: list[str]) -> list[str]:
    """Run every configuration (both modes, alternating over ``rounds``); Markdown table rows."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="streams_bench.") as tmp:
        work = Path(tmp)
        for model, count in configs:
            servers = [MJPEGServer(fps=25, size=(640, 360), duration=None).start() for _ in range(count)]
            try:
                urls = [s.url for s in servers]
                results: dict[str, list[Figures]] = {mode: [] for mode in MODES}
                for r in range(rounds):
                    for mode in MODES if r % 2 == 0 else MODES[::-1]:
                        figures = run_mode(mode, urls, model, work, duration, extra)
                        log.info(
                            "%s x%d %s round %d: %.2f fps, p95 %.0f ms",
                            model,
                            count,
                            mode,
                            r + 1,
                            figures.fps,
                            figures.p95_ms,
                        )
                        results[mode].append(figures)
            finally:
                for server in servers:
                    server.stop()
            med = {
                m: Figures(statistics.median(f.fps for f in v), statistics.median(f.p95_ms for f in v))
                for m, v in results.items()
            }
            ratio = med["one"].fps / med["separate"].fps if med["separate"].fps else float("nan")
            for mode in MODES:
                group = urls if mode == "one" else urls[:1]
                cmd = shown(live_command(group, model, Path("STATS.json"), duration, extra))
                if mode == "separate":
                    cmd = f"{count} x `{cmd}` at once"
                else:
                    cmd = f"`{cmd}`"
                rows.append(
                    f"| {model} | {count} | {mode} | {med[mode].fps:.2f} | {med[mode].p95_ms:.0f} | "
                    f"{ratio if mode == 'one' else 1.0:.2f} | {load_average()} | {cmd} |"
                )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        type=parse_config,
        default=[parse_config(c) for c in DEFAULT_CONFIGS],
        metavar="MODEL:CAMERAS",
        help=f"what to measure (default: {' '.join(DEFAULT_CONFIGS)})",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds each live run lasts (default 20)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of both modes, medians (default 1)")
    parser.add_argument("extra", nargs="*", help="more live options, after --")
    opts = parser.parse_args()
    if opts.duration <= 0 or opts.rounds < 1:
        parser.error("--duration must be > 0 and --rounds >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = bench(opts.configs, opts.rounds, opts.duration, opts.extra)
    print(
        f"\n{opts.rounds} round(s) of {opts.duration:g} s per mode; "
        "load average (1, 5, 15 min) after each configuration\n"
    )
    print(
        "| model | cameras | mode | processed fps (all cameras) | latency p95 ms (worst camera) "
        "| one / separate fps | load | command |"
    )
    print("|---|---:|---|---:|---:|---:|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
