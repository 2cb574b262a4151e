"""Events never slow inference: ``live`` on two files, read as fast as the model goes, with and without an
event output that fails or falls behind (issue 29's must-shows).

The two sources are one 720p clip made by ``samples/make_sample.py --seconds S`` (photographs with pans
and cuts), read twice. Each round runs, one after the other (the order rotates between rounds so the
machine's load hits them alike), the same ``live --display none --source A --source B`` with:

* ``base``: no events;
* ``broker killed``: ``--mqtt`` to a Mosquitto on 127.0.0.1 that is SIGKILLed ``--kill-after`` seconds
  after the run started (the run must end with status 0, the dropped records counted);
* ``slow pipe``: ``--events - --events-masks rle`` into a pipe this script reads one line a second.

The figure is each run's ``infer_fps`` from its ``--stats``; ratios are taken against the base run of the
same round, and their median over the rounds is printed with the commands, and written as JSON.

Example::

    python scripts/events_bench.py --rounds 3 --seconds 20 --json benchmarks/events_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIVE = [sys.executable, "run_live.py", "live", "--display", "none"]  # run from the repository's root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_base(common: list[str], stats: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*LIVE, *common, "--stats", str(stats)], capture_output=True, text=True, check=False)


def run_broker_killed(common: list[str], stats: Path, kill_after: float) -> subprocess.CompletedProcess:
    port = free_port()
    broker = subprocess.Popen(["mosquitto", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        cmd = [*LIVE, *common, "--stats", str(stats), "--mqtt", f"mqtt://127.0.0.1:{port}/bench"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        timer = threading.Timer(kill_after, broker.send_signal, args=(signal.SIGKILL,))
        timer.start()
        _, err = proc.communicate()
        timer.cancel()
        return subprocess.CompletedProcess(cmd, proc.returncode, "", err)
    finally:
        if broker.poll() is None:
            broker.kill()
        broker.wait()


def run_slow_pipe(common: list[str], stats: Path) -> subprocess.CompletedProcess:
    cmd = [*LIVE, *common, "--stats", str(stats), "--events", "-", "--events-masks", "rle"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    assert proc.stdout is not None
    for _line in proc.stdout:  # one line a second while it runs: the sink falls behind at once
        if proc.poll() is not None:
            proc.stdout.read()  # it ended: what the pipe still holds is read at once
            break
        time.sleep(1.0)
    proc.wait()
    reader.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, "", "".join(err))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="the clip's length (25 fps)")
    parser.add_argument("--kill-after", type=float, default=8.0, help="seconds into the run the broker is killed")
    parser.add_argument("--json", type=Path)
    parser.add_argument("model", nargs="*", default=["--model", "lraspp_mobilenet_v3_large", "--weights", "random",
                                                      "--device", "cpu"])  # fmt: skip
    args = parser.parse_args()
    os.chdir(ROOT)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make = [sys.executable, "samples/make_sample.py", "-o", str(clip), "--seconds", str(args.seconds)]
        subprocess.run(make, check=True, capture_output=True)
        common = ["--source", str(clip), "--source", str(clip), *args.model]
        medians = run_rounds(args, common, tmp, rows)
        if medians is None:
            return 1
    shown = [*LIVE[1:], *(a if a != str(clip) else "clip.mp4" for a in common)]
    command = f"python samples/make_sample.py -o clip.mp4 --seconds {args.seconds:g}; " + shlex.join(shown)
    print(f"\ninference rate against a run without events (median of {args.rounds} rounds; {command}):")
    for k, v in medians.items():
        print(f"  {k}: {v:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "rounds": rows, "median_ratio": medians}, indent=2) + "\n")
    return 0


def run_rounds(args: argparse.Namespace, common: list[str], tmp: str, rows: list[dict]) -> dict[str, float] | None:
    """The rounds (see the module); the median ratio of each kind, or ``None`` when a run failed."""
    kinds = ("base", "broker killed", "slow pipe")
    for r in range(args.rounds):
        order = kinds[r % 3 :] + kinds[: r % 3]
        fps: dict[str, float] = {}
        extra: dict[str, dict] = {}
        for kind in order:
            stats = Path(tmp) / f"{r}-{kind.replace(' ', '_')}.json"
            if kind == "base":
                done = run_base(common, stats)
            elif kind == "broker killed":
                done = run_broker_killed(common, stats, args.kill_after)
            else:
                done = run_slow_pipe(common, stats)
            if done.returncode != 0:
                print(f"{kind}: exit {done.returncode}\n{done.stderr[-2000:]}", file=sys.stderr)
                return None
            summary = json.loads(stats.read_text())
            fps[kind] = summary["infer_fps"]
            extra[kind] = summary.get("events", {})
        row = {"round": r, "infer_fps": fps, "events": extra,
                   "ratio": {k: round(fps[k] / fps["base"], 3) for k in kinds[1:]},
                   "load": os.getloadavg()[0]}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {k: statistics.median(row["ratio"][k] for row in rows) for k in kinds[1:]}


if __name__ == "__main__":
    raise SystemExit(main())
