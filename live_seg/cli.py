"""Command line: ``live-seg video|image …`` (also ``python run_live.py …``).

The only module that parses arguments, sets up logging and prints. Errors the tool
expects are one line on stderr and exit 1; bad arguments exit 2; an interrupt exits
130 (SIGINT) or 143 (SIGTERM) after the output is finalised. ``-v`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import LiveSegError, OutputError
from .metrics import Stats
from .pipeline import Control

log = logging.getLogger("live_seg")

EXIT_ERROR = 1
EXIT_USAGE = 2
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
# The registry's names (live_seg.model.MODELS; a test keeps the two equal), spelled out so that
# parsing arguments does not import torch: a bad source fails in a fraction of a second.
MODEL_NAMES = (
    "fcn_resnet101",
    "fcn_resnet50",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
)


def _arg_type(convert: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argparse ``type=``: ``convert`` the text and check it, with one message naming ``what``."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_positive_int = _arg_type(int, lambda v: v >= 1, "a whole number >= 1")
_unit_float = _arg_type(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
_seconds = _arg_type(float, lambda v: v > 0, "a number of seconds > 0")
_port = _arg_type(int, lambda v: 0 <= v <= 65535, "a TCP port 0..65535 (0 = any free port)")


def _model_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model", default="fcn_resnet101", choices=MODEL_NAMES, help="segmentation model (default: %(default)s)"
    )
    g.add_argument(
        "--weights",
        default="default",
        help="'default' = official VOC weights (downloaded once, 208 MB for fcn_resnet101), "
        "'random' = untrained (benchmarks, tests), or a state_dict file PATH",
    )
    g.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="default: cuda, then mps, then cpu"
    )
    g.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "fp16", "bf16"),
        help="auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32",
    )
    g.add_argument("--size", type=_positive_int, default=512, help="model input is SIZE x SIZE (default: %(default)s)")
    g.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch decides)")


def _render_options(parser: argparse.ArgumentParser, legend_default: bool = False) -> None:
    g = parser.add_argument_group("rendering")
    g.add_argument("--palette", default="voc", choices=("voc", "random"), help="class colours (default: %(default)s)")
    g.add_argument(
        "--alpha", type=_unit_float, default=0.4, help="weight of the mask colour (default 0.4: 60/40 blend)"
    )
    g.add_argument(
        "--legend", action=argparse.BooleanOptionalAction, default=legend_default, help="draw the classes present"
    )


def get_args_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="live-seg",
        description="Real-time semantic segmentation (FCN-ResNet101, PASCAL VOC) for video files, cameras and images.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging; -v also shows tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bar")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    video = sub.add_parser("video", help="video file -> overlaid MP4 (H.264, source timestamps and audio kept)")
    video.add_argument("input", help="input video file")
    video.add_argument("-o", "--output", help="output .mp4 (default: INPUT.seg.mp4 beside the input)")
    video.add_argument("--overwrite", action="store_true", help="replace an existing output")
    video.add_argument("--no-audio", dest="audio", action="store_false", help="drop the source's audio")
    video.add_argument("--view", default="overlay", choices=("overlay", "mask", "side"), help="what to encode")
    video.add_argument(
        "--batch",
        type=_positive_int,
        default=None,
        help="frames per forward pass (default: 2 on CPU, 1 on a GPU)",
    )
    video.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="inference threads sharing the model (default: one per core, up to 4, on CPU; 1 on a GPU)",
    )
    video.add_argument("--preset", default="veryfast", help="libx264 preset (default: %(default)s)")
    video.add_argument("--crf", type=int, default=20, help="libx264 quality, lower is better (default: %(default)s)")
    video.add_argument("--stats", metavar="FILE.json", help="write run statistics as JSON")
    _model_options(video)
    _render_options(video)

    image = sub.add_parser("image", help="one image -> overlay.png, mask.png, side_by_side.png")
    image.add_argument("input", help="input image file")
    image.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: current folder)")
    image.add_argument("--overwrite", action="store_true", help="replace existing PNGs")
    image.add_argument("--show", action="store_true", help="show original | segmented in a window")
    _model_options(image)
    _render_options(image, legend_default=True)
    _bench_parser(sub)
    _live_parser(sub)
    return parser


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _bench_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="fps per device x precision x model: naive loop, model only, pipeline")
    g = bench.add_argument_group("what to measure")
    g.add_argument(
        "--device", nargs="+", default=["auto"], choices=("auto", "cpu", "cuda", "mps", "all"), help="default: auto"
    )
    g.add_argument(
        "--precision",
        nargs="+",
        default=["auto"],
        choices=("auto", "fp32", "fp16", "bf16", "all"),
        help="default: auto",
    )
    g.add_argument(
        "--model",
        nargs="+",
        default=["fcn_resnet101"],
        choices=MODEL_NAMES,
        metavar="NAME",
        help=f"one or more of {', '.join(MODEL_NAMES)} (default: fcn_resnet101)",
    )
    g.add_argument(
        "--weights",
        default="random",
        help="default 'random': speed does not depend on the weights ('default' or a file PATH also work)",
    )
    g.add_argument("--source", metavar="FILE|synthetic", help="clip to read (default: samples/sample.mp4)")
    g.add_argument("--size", type=_positive_int, default=512, help="model input is SIZE x SIZE (default: %(default)s)")
    g.add_argument("--batch", type=_positive_int, default=1, help="frames per forward pass (default: %(default)s)")
    g.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch decides)")
    t = bench.add_argument_group("timing")
    t.add_argument("--frames", type=_positive_int, default=10, help="frames per timed run (default: %(default)s)")
    t.add_argument("--warmup", type=_non_negative_int, default=1, help="untimed frames first (default: %(default)s)")
    t.add_argument("--repeat", type=_positive_int, default=3, help="timed runs; the median is kept (default: 3)")
    o = bench.add_argument_group("reports")
    o.add_argument("--json", metavar="FILE", help="write the full report as JSON (schema in the README)")
    o.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown")
    o.add_argument("--plot", metavar="FILE.png", help="bar chart of fps per configuration (needs matplotlib)")


def _live_parser(sub: Any) -> None:
    live = sub.add_parser(
        "live", help="camera / stream / video file -> segmentation on screen, live (or in a browser without a display)"
    )
    s = live.add_argument_group("source")
    s.add_argument(
        "--source",
        default="0",
        metavar="0|N|URL|FILE",
        help="camera index, stream URL (rtsp://…, http://…/stream.mjpg) or video file (default: camera 0)",
    )
    s.add_argument(
        "--realtime",
        action="store_true",
        help="video file: play it at its own pace, like a camera (frames the model cannot keep up with are "
        "dropped); without it the file is read as fast as the model takes frames and nothing is dropped",
    )
    s.add_argument(
        "--reconnect",
        type=_non_negative_int,
        default=5,
        metavar="N",
        help="camera/stream: reopen attempts after it is lost, waiting 0.5, 1, 2, 4, 8, 8… s (default: %(default)s)",
    )
    v = live.add_argument_group("view")
    v.add_argument(
        "--pairing",
        default="newest",
        choices=("newest", "matched"),
        help="newest: the newest frame with the newest mask, refreshed at the source's rate (default); "
        "matched: each mask on the frame it was computed on (the picture lags by one inference)",
    )
    v.add_argument("--view", default="overlay", choices=("overlay", "mask", "side"), help="first view (key m cycles)")
    v.add_argument("--no-hud", dest="hud", action="store_false", help="hide the HUD (rates, latency, drops, model)")
    v.add_argument(
        "--display",
        default="auto",
        choices=("auto", "window", "browser", "none"),
        help="auto: a window when there is a display, else the browser view; none: no view (record/stats only)",
    )
    v.add_argument(
        "--serve",
        type=_port,
        metavar="PORT",
        help="show the view in a browser at http://HOST:PORT/ instead of a window (0 = any free port; "
        "without a display this happens by itself on port 8090)",
    )
    v.add_argument(
        "--host", default="127.0.0.1", help="address the browser view binds (default: %(default)s, this machine only)"
    )
    v.add_argument("--snapshot-dir", default=".", metavar="DIR", help="where key s saves PNGs (default: .)")
    o = live.add_argument_group("output")
    o.add_argument("--record", metavar="OUT.mp4", help="record the rendered view (H.264, timed by capture wall-clock)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing recording")
    o.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds")
    o.add_argument("--stats", metavar="FILE.json", help="write run statistics as JSON (also when the source is lost)")
    _model_options(live)
    _render_options(live, legend_default=True)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if verbose else "%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


GRACE_S = 7.0
"""After the first SIGINT/SIGTERM, frames in flight get this long to finish before the run is
aborted, so that a stop takes seconds whatever the model's speed."""


class SignalGate:
    """While a run is active: the first SIGINT/SIGTERM stops it gracefully, the second aborts.

    Args:
        control: the run's stop/abort requests.
        setup_interrupts: until :meth:`start` is called (the run's setup: model download and
            build), a signal raises ``KeyboardInterrupt`` at once: nothing is in flight yet.

    Attributes:
        grace_s: seconds the frames in flight get after the first signal before the run is
            aborted (``None``: no limit); timed by a thread named ``live_seg-grace`` that ends
            when the gate is uninstalled.
        signum: the first signal received, or ``None``.
    """

    grace_s: float | None = GRACE_S

    def __init__(self, control: Control, *, setup_interrupts: bool = False) -> None:
        self.control = control
        self.signum: int | None = None
        self.running = not setup_interrupts
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        """The run started: from now on a signal stops it gracefully."""
        self.running = True

    def _handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        first = self.signum is None
        self.signum = self.signum or signum
        if not self.running:
            log.warning("%s: stopping before the first frame", name)
            self.control.abort(f"interrupted by {name}")
            raise KeyboardInterrupt
        if first:
            log.warning("%s: finishing the frames in flight and closing the output (again to abort)", name)
            self.control.stop(f"interrupted by {name}")
            if self.grace_s is not None:
                self._timer = threading.Timer(self.grace_s, self._overdue, args=(name,))
                self._timer.name, self._timer.daemon = "live_seg-grace", True
                self._timer.start()
        else:
            log.warning("%s again: aborting", name)
            self.control.abort(f"aborted by {name}")

    @staticmethod
    def _late(signum: int, _frame: object) -> None:
        log.warning("%s: already stopping", signal.Signals(signum).name)

    def _overdue(self, name: str) -> None:
        if not self.control.aborted.is_set():
            log.warning("%s: the frames in flight took over %g s; aborting", name, self.grace_s)
            self.control.abort(f"aborted {self.grace_s:g} s after {name}")

    @contextlib.contextmanager
    def installed(self) -> Iterator[SignalGate]:
        previous = {s: signal.signal(s, self._handle) for s in SIGNAL_EXIT}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                # Once told to stop, a repeated Ctrl-C while the output is finished and the
                # interpreter exits is noted, not raised as a traceback from wherever it lands.
                signal.signal(s, handler if self.signum is None else self._late)
            if self._timer is not None:
                self._timer.cancel()
                self._timer.join()


def _model_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": args.model,
        "weights": args.weights,
        "device": args.device,
        "precision": args.precision,
        "size": args.size,
        "threads": args.threads,
    }


def _write_json(path: str, data: dict[str, Any]) -> None:
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        log.error("cannot write stats to %s: %s", path, exc.strerror or exc)


def _progress(total: int | None, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True)


def _cmd_video(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .video import default_output, process_video

    control = Control()
    gate = SignalGate(control, setup_interrupts=True)
    bar = None

    def on_open(source: Any) -> None:
        nonlocal bar
        bar = _progress(source.info.frames, args.quiet)

    def on_frame(stats: Stats) -> None:
        if bar is not None:
            bar.update(1)

    output = args.output or str(default_output(args.input))
    try:
        with gate.installed(), logging_redirect_tqdm():  # log lines above the progress bar, not into it
            summary = process_video(
                args.input,
                output,
                palette=args.palette,
                alpha=args.alpha,
                legend=args.legend,
                view=args.view,
                audio=args.audio,
                overwrite=args.overwrite,
                batch=args.batch,
                workers=args.workers,
                preset=args.preset,
                crf=args.crf,
                control=control,
                on_frame=on_frame,
                on_open=on_open,
                on_start=gate.start,
                **_model_args(args),
            )
    except KeyboardInterrupt:
        if gate.signum is None:
            raise
        log.warning("interrupted before the first frame: nothing was written")
        if args.stats:
            _write_json(args.stats, {"input": args.input, "output": None, "frames_in": 0, "frames_out": 0,
                                     "interrupted": True, "stop_reason": control.reason})  # fmt: skip
        return SIGNAL_EXIT[gate.signum]
    finally:
        if bar is not None:
            bar.close()
    if args.stats:
        _write_json(args.stats, summary)
    done = summary["frames_out"]
    if summary["output"]:
        log.info(
            "%s: %d frames in %.1f s (%.2f fps end to end)%s",
            summary["output"],
            done,
            summary["wall_s"],
            summary["fps"],
            ", untrained weights" if summary.get("untrained") else "",
        )
    if gate.signum is not None:
        log.warning("interrupted: kept the %d frame(s) done in %s", done, summary["output"] or "(nothing written)")
        return SIGNAL_EXIT[gate.signum]
    return 0


def _cmd_image(args: argparse.Namespace) -> int:
    from .image import process_image

    summary = process_image(
        args.input,
        args.output,
        palette=args.palette,
        alpha=args.alpha,
        legend=args.legend,
        overwrite=args.overwrite,
        **_model_args(args),
    )
    note = " (untrained weights: classes are meaningless)" if summary.get("untrained") else ""
    print(f"classes found in {args.input}{note}:")
    for c in summary["classes"]:
        print(f"  {c['name']:<14} {c['share'] * 100:6.2f} %")
    for path in summary["outputs"]:
        print(f"wrote {path}")
    if args.show:
        from .sinks import show_image

        show_image("live_seg: original | segmented", summary["outputs"][2])
    return 0


def _bench_command(args: argparse.Namespace) -> str:
    """The command line that reproduces a bench run, with every setting spelled out."""
    parts = ["python run_live.py bench", "--device", *args.device, "--precision", *args.precision]
    parts += ["--model", *args.model]
    parts += ["--weights", args.weights, "--source", args.source or "samples/sample.mp4", "--size", str(args.size)]
    parts += ["--batch", str(args.batch), "--frames", str(args.frames), "--warmup", str(args.warmup)]
    parts += ["--repeat", str(args.repeat)] + (["--threads", str(args.threads)] if args.threads else [])
    return " ".join(parts)


def _write_text(path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import check_plot_available, format_markdown, format_table, run_bench, write_plot

    if args.plot:
        check_plot_available()  # before minutes of measuring
    if args.weights == "random":
        log.info("weights: random (untrained); speed does not depend on the weights and nothing is downloaded")
    report = run_bench(
        args.device,
        args.precision,
        args.model,
        source=args.source,
        size=args.size,
        frames=args.frames,
        warmup=args.warmup,
        repeat=args.repeat,
        batch=args.batch,
        weights=args.weights,
        threads=args.threads,
        command=_bench_command(args),
    )
    print(format_table(report))
    if args.json:
        _write_text(args.json, json.dumps(report, indent=2) + "\n")
        log.info("wrote %s", args.json)
    if args.markdown:
        _write_text(args.markdown, format_markdown(report))
        log.info("wrote %s", args.markdown)
    if args.plot:
        log.info("wrote %s", write_plot(report, args.plot))
    statuses = [r["status"] for r in report["results"]]
    if "ok" not in statuses:
        log.warning("nothing was measured: no requested configuration is available here")
    return EXIT_ERROR if "error" in statuses else 0


def _cmd_live(args: argparse.Namespace) -> int:
    from .live import LiveOptions, LiveSession

    control = Control()
    gate = SignalGate(control)
    options = LiveOptions(
        source=args.source,
        realtime=args.realtime,
        reconnect=args.reconnect,
        pairing=args.pairing,
        view=args.view,
        legend=args.legend,
        hud=args.hud,
        palette=args.palette,
        alpha=args.alpha,
        display="browser" if args.serve is not None else args.display,
        host=args.host,
        port=args.serve,
        record=args.record,
        overwrite=args.overwrite,
        duration=args.duration,
        snapshot_dir=args.snapshot_dir,
    )

    def on_serve(url: str) -> None:
        print(f"live view: {url}", flush=True)

    session = LiveSession(options, control=control, on_serve=on_serve, **_model_args(args))
    try:
        with gate.installed():
            summary = session.run()
    finally:
        if args.stats and session.summary is not None:
            _write_json(args.stats, session.summary)
    lat = summary["latency_ms"]
    log.info(
        "%s: %d frames captured, %d inferred, %d dropped, %d shown in %.1f s (%.1f fps); "
        "latency p50 %s ms, p95 %s ms%s",
        summary["input"],
        summary["frames_captured"],
        summary["frames_inferred"],
        summary["frames_dropped"],
        summary["frames_shown"],
        summary["wall_s"],
        summary["display_fps"],
        lat["p50"],
        lat["p95"],
        ", untrained weights" if summary.get("untrained") else "",
    )
    if summary["output"]:
        log.info("recorded %s (%d frames)", summary["output"], summary["frames_recorded"])
    if gate.signum is not None:
        return SIGNAL_EXIT[gate.signum]
    return 0


COMMANDS = {"video": _cmd_video, "image": _cmd_image, "bench": _cmd_bench, "live": _cmd_live}


class _Terminated(KeyboardInterrupt):
    """SIGTERM before a command handles signals itself (e.g. while torch is imported)."""


def _terminated(_signum: int, _frame: object) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = get_args_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for bad arguments
        return int(exc.code or 0)
    _setup_logging(args.verbose, args.quiet)
    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        previous = signal.signal(signal.SIGTERM, _terminated)  # exit 143 like a handled SIGTERM
    try:
        return COMMANDS[args.command](args)
    except LiveSegError as exc:
        if args.verbose:
            log.exception("error")
        log.error("error: %s", " ".join(str(exc).split()))
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        log.error("interrupted")
        return SIGNAL_EXIT[signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT]
    except Exception as exc:  # a bug must still not greet the user with a traceback
        if args.verbose:
            log.exception("internal error")
        log.error("internal error: %s: %s (run with -v for the traceback)", type(exc).__name__, exc)
        return EXIT_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
