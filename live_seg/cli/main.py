"""Command line: ``live-seg video|image|bench|live …`` (also ``python run_live.py …``).

The only module that sets up logging and prints; the arguments are parsed by the parser of
:mod:`live_seg.cli.args`. Errors the tool expects are one line on stderr and exit 1; bad
arguments exit 2; an interrupt exits 130 (SIGINT) or 143 (SIGTERM) after the output is
finalised. ``-v`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..base.errors import LiveSegError, OutputError, UsageError, one_line
from ..base.files import write_json
from ..base.metrics import Stats
from ..base.options import AnalysisOptions, BenchOptions, EventOptions, ModelOptions, RenderOptions
from ..base.registry import RANDOM_WEIGHTS
from ..pipeline.threads import Control
from .args import effect_options, get_args_parser, options_from, video_options

__all__ = ["SignalGate", "get_args_parser", "main", "write_stats"]

log = logging.getLogger(__name__)

EXIT_ERROR = 1
EXIT_USAGE = 2
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _setup_logging(verbose: int, quiet: bool) -> None:
    """One stderr handler on the root logger: every ``live_seg.*`` logger's lines reach it."""
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


def _log_flicker(summary: dict[str, Any]) -> None:
    """One line on how steady the masks were (and what smoothing did)."""
    if summary.get("flicker") is None:
        return
    how = "no smoothing"
    if summary.get("smooth") != "off":
        how = f"{summary['smooth']} smoothing {summary['smooth_strength']:g}, {summary['scene_cuts']} scene cut(s)"
    log.info("flicker: %.3f %% of pixels changed class per frame (%s)", summary["flicker"] * 100, how)


def write_stats(path: str, data: dict[str, Any]) -> None:
    """Write a run's statistics as JSON (``--stats``); a failure is logged, not raised: the run's
    outputs are what matters."""
    try:
        write_json(path, data)
    except OSError as exc:
        log.error("cannot write stats to %s: %s", path, one_line(exc))


def _write_text(path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {one_line(exc)}") from exc


class _ProgressBar:
    """A tqdm bar sized when the source opens; hidden with ``-q`` or when stderr is no terminal."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def open(self, source: Any) -> None:
        from tqdm import tqdm

        disable = self.quiet or not sys.stderr.isatty()
        self.bar = tqdm(total=source.info.frames, unit="frame", disable=disable, dynamic_ncols=True)

    def update(self, _stats: Stats) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cmd_video(args: argparse.Namespace) -> int:
    from ..jobs.batch.plan import is_batch

    if is_batch(args.input, args.output) or args.ray:
        from .batch import cmd_video_batch

        return cmd_video_batch(args, SIGNAL_EXIT)
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..jobs.video import VideoHooks, default_output, process_video

    src = args.input[0]
    control = Control()
    gate = SignalGate(control, setup_interrupts=True)
    bar = _ProgressBar(args.quiet)
    options = video_options(args)
    output = args.output or str(default_output(src, options.alpha_output))
    hooks = VideoHooks(control, on_frame=bar.update, on_open=bar.open, on_start=gate.start)
    try:
        with gate.installed(), logging_redirect_tqdm():  # log lines above the progress bar, not into it
            summary = process_video(src, output, None, options, hooks=hooks)
    except KeyboardInterrupt:
        if gate.signum is None:
            raise
        log.warning("interrupted before the first frame: nothing was written")
        if args.stats:
            write_stats(args.stats, {"input": src, "output": None, "frames_in": 0, "frames_out": 0,
                                     "interrupted": True, "stop_reason": control.reason})  # fmt: skip
        return SIGNAL_EXIT[gate.signum]
    finally:
        bar.close()
    if args.stats:
        write_stats(args.stats, summary)
    done = summary["frames_out"]
    _log_flicker(summary)
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
    from ..jobs.image import process_image

    summary = process_image(
        args.input,
        args.output,
        render=options_from(RenderOptions, args),
        effect=effect_options(args),
        overwrite=args.overwrite,
        model=options_from(ModelOptions, args),
    )
    note = " (untrained weights: classes are meaningless)" if summary.get("untrained") else ""
    print(f"classes found in {args.input}{note}:")
    for c in summary["classes"]:
        print(f"  {c['name']:<14} {c['share'] * 100:6.2f} %")
    for path in summary["outputs"]:
        print(f"wrote {path}")
    if args.show:
        from ..media.window import show_image

        show_image("live_seg: original | segmented", summary["outputs"][2])
    return 0


def _bench_command(args: argparse.Namespace) -> str:
    """The command line that reproduces a bench run, with every setting spelled out."""
    parts = ["python run_live.py bench", "--device", *args.device, "--backend", *args.backend]
    parts += ["--precision", *args.precision]
    parts += ["--model", *args.model]
    parts += ["--weights", args.weights, "--source", args.source or "samples/sample.mp4", "--size", str(args.size)]
    parts += ["--batch", *map(str, args.batch), "--frames", str(args.frames), "--warmup", str(args.warmup)]
    parts += ["--repeat", str(args.repeat)] + (["--threads", str(args.threads)] if args.threads else [])
    return " ".join(parts)


def _cmd_bench(args: argparse.Namespace) -> int:
    from ..jobs.bench import check_plot_available, format_markdown, format_table, run_bench, write_plot

    if args.plot:
        check_plot_available()  # before minutes of measuring
    if args.weights == RANDOM_WEIGHTS:
        log.info(
            "weights: %s (untrained); speed does not depend on the weights and nothing is downloaded", args.weights
        )
    report = run_bench(
        args.device,
        args.precision,
        args.model,
        backends=args.backend,
        options=options_from(BenchOptions, args),
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


def _live_options(args: argparse.Namespace) -> Any:
    from ..jobs.live.session import LiveOptions

    sources = args.source or ["0"]
    return options_from(
        LiveOptions,
        args,
        source=sources[0],
        sources=tuple(sources) if len(sources) > 1 else (),
        effect=effect_options(args),
        display="browser" if args.serve is not None else args.display,
        port=args.serve,
        analysis=options_from(AnalysisOptions, args),
        events=options_from(EventOptions, args),
    )


def _cmd_live(args: argparse.Namespace) -> int:
    from ..jobs.live.session import LiveSession
    from ..jobs.live.stats import log_sources

    control = Control()
    gate = SignalGate(control)

    def on_serve(url: str) -> None:
        print(f"live view: {url}", flush=True)

    model = options_from(ModelOptions, args)
    session = LiveSession(_live_options(args), control=control, on_serve=on_serve, model=model)
    try:
        with gate.installed():
            summary = session.run()
    finally:
        if args.stats and session.summary is not None:
            write_stats(args.stats, session.summary)
    lat = summary["latency_ms"]
    latency = f"latency p50 {lat['p50']} ms, p95 {lat['p95']} ms" if lat["p50"] is not None else "no mask shown"
    if not summary["frames_captured"]:
        latency = "no source delivered a frame"
    log.info(
        "%s: %d frames captured, %d inferred, %d dropped, %d shown in %.1f s (%.1f fps); %s%s",
        summary["input"],
        summary["frames_captured"],
        summary["frames_inferred"],
        summary["frames_dropped"],
        summary["frames_shown"],
        summary["wall_s"],
        summary["display_fps"],
        latency,
        ", untrained weights" if summary.get("untrained") else "",
    )
    log_sources(summary)  # several sources: one line each
    if len(summary["sources"]) == 1 and summary["output"]:
        log.info("recorded %s (%d frames)", summary["output"], summary["frames_recorded"])
    _log_flicker(summary)
    if gate.signum is not None:
        return SIGNAL_EXIT[gate.signum]
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import cmd_serve  # aiohttp and aiortc load only for serve

    return cmd_serve(args)


COMMANDS = {"video": _cmd_video, "image": _cmd_image, "bench": _cmd_bench, "live": _cmd_live, "serve": _cmd_serve}


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
    except UsageError as exc:  # e.g. a --classes name the weights do not have
        log.error("error: %s", one_line(exc))
        return EXIT_USAGE
    except LiveSegError as exc:
        if args.verbose:
            log.exception("error")
        log.error("error: %s", one_line(exc))
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
