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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import LiveSegError
from .pipeline import Control, Stats

log = logging.getLogger("live_seg")

EXIT_ERROR = 1
EXIT_USAGE = 2
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
MODEL_NAMES = (
    "fcn_resnet101",
    "fcn_resnet50",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def _model_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", default="fcn_resnet101", choices=MODEL_NAMES, help="segmentation model (default: %(default)s)")
    g.add_argument(
        "--weights",
        default="default",
        help="'default' = official VOC weights (downloaded once, 208 MB for fcn_resnet101), "
        "'random' = untrained (benchmarks, tests), or a state_dict file PATH",
    )
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="default: cuda, then mps, then cpu")
    g.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"), help="auto: fp16 on CUDA, fp32 elsewhere"
    )
    g.add_argument("--size", type=_positive_int, default=512, help="model input is SIZE x SIZE (default: %(default)s)")
    g.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch decides)")


def _render_options(parser: argparse.ArgumentParser, legend_default: bool = False) -> None:
    g = parser.add_argument_group("rendering")
    g.add_argument("--palette", default="voc", choices=("voc", "random"), help="class colours (default: %(default)s)")
    g.add_argument("--alpha", type=_unit_float, default=0.4, help="weight of the mask colour (default 0.4: 60/40 blend)")
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
    video.add_argument("--batch", type=_positive_int, default=1, help="frames per forward pass (default: %(default)s)")
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
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if verbose else "%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class SignalGate:
    """While a run is active: the first SIGINT/SIGTERM stops it gracefully, the second aborts."""

    def __init__(self, control: Control) -> None:
        self.control = control
        self.signum: int | None = None

    def _handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum = signum
            log.warning("%s: finishing the frames in flight and closing the output (again to abort)", name)
            self.control.stop(f"interrupted by {name}")
        else:
            log.warning("%s again: aborting", name)
            self.control.abort(f"aborted by {name}")

    @contextlib.contextmanager
    def installed(self) -> Iterator[SignalGate]:
        previous = {s: signal.signal(s, self._handle) for s in SIGNAL_EXIT}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


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
    from .video import default_output, process_video

    control = Control()
    gate = SignalGate(control)
    bar = None

    def on_open(source: Any) -> None:
        nonlocal bar
        bar = _progress(source.info.frames, args.quiet)

    def on_frame(stats: Stats) -> None:
        if bar is not None:
            bar.update(1)

    output = args.output or str(default_output(args.input))
    try:
        with gate.installed():
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
                preset=args.preset,
                crf=args.crf,
                control=control,
                on_frame=on_frame,
                on_open=on_open,
                **_model_args(args),
            )
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


COMMANDS = {"video": _cmd_video, "image": _cmd_image}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = get_args_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for bad arguments
        return int(exc.code or 0)
    _setup_logging(args.verbose, args.quiet)
    try:
        return COMMANDS[args.command](args)
    except LiveSegError as exc:
        if args.verbose:
            log.exception("error")
        log.error("error: %s", " ".join(str(exc).split()))
        return EXIT_ERROR
    except KeyboardInterrupt:
        log.error("interrupted")
        return SIGNAL_EXIT[signal.SIGINT]
    except Exception as exc:  # noqa: BLE001 - a bug must still not greet the user with a traceback
        if args.verbose:
            log.exception("internal error")
        log.error("internal error: %s: %s (run with -v for the traceback)", type(exc).__name__, exc)
        return EXIT_ERROR
