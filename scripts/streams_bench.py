"""Many cameras, one ``live`` process against one process per camera (issue 20, item 7).

For each configuration (a model and a number of loopback MJPEG cameras at 25 fps) the same
cameras are watched, in turn, by one multi-source ``live`` (``--source`` repeated) and by as
many separate single-source ``live`` processes started at once; the order of the two alternates
between rounds so the machine's load hits them alike. Each ``live`` runs with ``--display none
--duration S --stats FILE``; a run's figures come from those stats files:

* processed fps: frames that got a mask, over all cameras, divided by the run's wall time
  (``sources[*].frames_processed``, or ``frames_inferred`` of a single-source run, over
  ``wall_s``); the separate processes' figure is the sum of theirs;
* latency p95: the worst camera's p95 capture → shown latency, in ms, over the cameras that
  got a mask; a camera that got none in a run (FCN-ResNet101 in a run too short for it) has no
  latency and is counted in its own column instead.

Medians over the rounds are printed as a Markdown table, a configuration's two rows as soon as
it is done, with each command and ``uptime``'s load average beside them. Cameras are the test
suite's :class:`mjpeg.MJPEGServer` (frames stamped with their index), started in this process on
127.0.0.1.

Examples::

    python scripts/streams_bench.py                                  # LRASPP 1, 2, 4 cameras; FCN 2
    python scripts/streams_bench.py --duration 20 --rounds 3
    python scripts/streams_bench.py --configs lraspp_mobilenet_v3_large:2 fcn_resnet101:2:90
    python scripts/streams_bench.py --configs lraspp_mobilenet_v3_large:4 -- --size 256
"""

from __future__ import annotations

import argparse
import json
import logging
import math
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
    "fcn_resnet101:2:60",
)
"""``MODEL:CAMERAS[:SECONDS]``; FCN-ResNet101 takes seconds a frame on a CPU, so it runs longer."""
MODES = ("one", "separate")
"""``one``: one process with every camera; ``separate``: one process per camera, all at once."""


@dataclass
class Figures:
    """One run's result: aggregate processed fps, the worst camera's latency p95 (ms, ``nan``
    when no camera got a mask) and how many cameras got no mask at all."""

    fps: float
    p95_ms: float
    starved: int = 0


@dataclass(frozen=True)
class Config:
    """What one table block measures: a model, a number of cameras, seconds per run."""

    model: str
    cameras: int
    duration: float | None = None
    """Seconds each run lasts; ``None``: the ``--duration`` given for all."""


def parse_config(text: str) -> Config:
    """``MODEL:CAMERAS`` or ``MODEL:CAMERAS:SECONDS`` → :class:`Config`."""
    model, _, rest = text.partition(":")
    count, _, seconds = rest.partition(":")
    try:
        config = Config(model, int(count), float(seconds) if seconds else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MODEL:CAMERAS[:SECONDS], got {text!r}") from None
    if not model or config.cameras < 1 or (config.duration is not None and config.duration <= 0):
        raise argparse.ArgumentTypeError(
            f"expected MODEL:CAMERAS[:SECONDS] with CAMERAS >= 1, SECONDS > 0, got {text!r}"
        )
    return config


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
    fps, p95s, starved = 0.0, [], 0
    for path in stats_files:
        stats = json.loads(path.read_text())
        wall = float(stats["wall_s"])
        sources = stats.get("sources") or [
            {"frames_processed": stats["frames_inferred"], "latency_ms": stats["latency_ms"]}
        ]
        fps += sum(s["frames_processed"] for s in sources) / wall
        for s in sources:
            if s["frames_processed"] and s["latency_ms"]["p95"] is not None:
                p95s.append(float(s["latency_ms"]["p95"]))
            else:  # no mask in the whole run: it has no latency (a run too short for the model)
                starved += 1
    return Figures(fps, max(p95s, default=math.nan), starved)


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


def median_figures(runs: list[Figures]) -> Figures:
    """Medians over rounds (p95 over the rounds that have one); the most starved cameras."""
    p95s = [f.p95_ms for f in runs if not math.isnan(f.p95_ms)]
    return Figures(
        statistics.median(f.fps for f in runs),
        statistics.median(p95s) if p95s else math.nan,
        max(f.starved for f in runs),
    )


def measure(config: Config, rounds: int, duration: float, work: Path, extra: list[str]) -> dict[str, Figures]:
    """Both modes over ``config.cameras`` fresh cameras, alternating over ``rounds``; medians."""
    servers = [MJPEGServer(fps=25, size=(640, 360), duration=None).start() for _ in range(config.cameras)]
    results: dict[str, list[Figures]] = {mode: [] for mode in MODES}
    try:
        urls = [s.url for s in servers]
        for r in range(rounds):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                figures = run_mode(mode, urls, config.model, work, duration, extra)
                log.info(
                    "%s x%d %s round %d: %.2f fps, p95 %.0f ms, %d camera(s) without a mask",
                    *(config.model, config.cameras, mode, r + 1),
                    *(figures.fps, figures.p95_ms, figures.starved),
                )
                results[mode].append(figures)
    finally:
        for server in servers:
            server.stop()
    return {mode: median_figures(runs) for mode, runs in results.items()}


def table_rows(config: Config, duration: float, med: dict[str, Figures], extra: list[str]) -> list[str]:
    """The two Markdown rows (one process, separate processes) of one configuration."""
    ratio = med["one"].fps / med["separate"].fps if med["separate"].fps else math.nan
    urls = [f"http://127.0.0.1:{i}/stream.mjpg" for i in range(config.cameras)]
    rows = []
    for mode in MODES:
        cmd = shown(live_command(urls if mode == "one" else urls[:1], config.model, Path("S.json"), duration, extra))
        cmd = f"{config.cameras} x `{cmd}` at once" if mode == "separate" else f"`{cmd}`"
        fig = med[mode]
        p95 = "n/a" if math.isnan(fig.p95_ms) else f"{fig.p95_ms:.0f}"
        rows.append(
            f"| {config.model} | {config.cameras} | {duration:g} | {mode} | {fig.fps:.2f} | {p95} | {fig.starved} "
            f"| {ratio if mode == 'one' else 1.0:.2f} | {load_average()} | {cmd} |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        type=parse_config,
        default=[parse_config(c) for c in DEFAULT_CONFIGS],
        metavar="MODEL:CAMERAS[:SECONDS]",
        help=f"what to measure (default: {' '.join(DEFAULT_CONFIGS)})",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds each live run lasts (default 20)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of both modes, medians (default 1)")
    parser.add_argument("extra", nargs="*", help="more live options, after --")
    opts = parser.parse_args()
    if opts.duration <= 0 or opts.rounds < 1:
        parser.error("--duration must be > 0 and --rounds >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"\n{opts.rounds} round(s) per mode, medians; load average (1, 5, 15 min) after each configuration\n")
    print(
        "| model | cameras | s per run | mode | processed fps (all cameras) | latency p95 ms (worst camera) "
        "| cameras without a mask | one / separate fps | load | command |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---|---|", flush=True)
    with tempfile.TemporaryDirectory(prefix="streams_bench.") as tmp:
        for config in opts.configs:
            duration = config.duration or opts.duration
            med = measure(config, opts.rounds, duration, Path(tmp), opts.extra)
            print("\n".join(table_rows(config, duration, med, opts.extra)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
