"""The command line's arguments: one parser per subcommand, choices read from the registry.

Building the parser imports nothing heavy (no torch, no OpenCV), so a typo or a bad value is
reported in a fraction of a second.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..base.registry import (
    ALL,
    ALPHA_EFFECTS,
    ALPHA_EXTENSIONS,
    AUTO,
    BACKENDS,
    DEFAULT_ALPHA,
    DEFAULT_MODEL,
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_SMOOTH_STRENGTH,
    DEFAULT_WEIGHTS,
    DEVICES,
    DISPLAYS,
    EFFECTS,
    MASK_SIZES,
    MODEL_NAMES,
    PAIRINGS,
    PALETTES,
    PRECISIONS,
    RANDOM_WEIGHTS,
    RTSP_TRANSPORTS,
    SMOOTH_MODES,
    VIEWS,
    auto_backend_text,
    auto_device_text,
    auto_precision_text,
)
from ..jobs.batch.ray_runner import CPU_ACTOR_CORES


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
_non_negative_int = _arg_type(int, lambda v: v >= 0, "a whole number >= 0")
_unit_float = _arg_type(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
_strength = _arg_type(float, lambda v: 0.0 <= v < 1.0, "a number with 0 <= S < 1")
_seconds = _arg_type(float, lambda v: v > 0, "a number of seconds > 0")
_non_negative_float = _arg_type(float, lambda v: v >= 0, "a number >= 0")
_positive_float = _arg_type(float, lambda v: v > 0, "a number > 0")
_port = _arg_type(int, lambda v: 0 <= v <= 65535, "a TCP port 0..65535 (0 = any free port)")


def _global_flags(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """``-v`` / ``-q``, accepted before the subcommand and after it.

    After the subcommand their defaults are ``SUPPRESS``: a flag given before it is kept when
    the subcommand's parser does not see it again.
    """
    verbose: Any = argparse.SUPPRESS if after_command else 0
    quiet: Any = argparse.SUPPRESS if after_command else False
    parser.add_argument(
        "-v", "--verbose", action="count", default=verbose, help="more logging; -v also shows tracebacks"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=quiet, help="warnings and errors only, no progress bar"
    )


def _size_and_threads(g: Any) -> None:
    g.add_argument("--size", type=_positive_int, default=512, help="model input is SIZE x SIZE (default: %(default)s)")
    g.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch decides)")


def _model_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model", default=DEFAULT_MODEL, choices=MODEL_NAMES, help="segmentation model (default: %(default)s)"
    )
    g.add_argument(
        "--weights",
        default=DEFAULT_WEIGHTS,
        help=f"{DEFAULT_WEIGHTS!r} = official VOC weights (downloaded once, then cached), "
        f"{RANDOM_WEIGHTS!r} = untrained (benchmarks, tests), or a state_dict file PATH",
    )
    g.add_argument("--device", default=AUTO, choices=DEVICES, help=f"default: {auto_device_text()}")
    g.add_argument("--precision", default=AUTO, choices=PRECISIONS, help=f"{AUTO}: {auto_precision_text()}")
    g.add_argument(
        "--backend", default=AUTO, choices=BACKENDS, help=f"inference runtime; {AUTO}: {auto_backend_text()}"
    )
    _size_and_threads(g)


def _render_options(parser: argparse.ArgumentParser, legend_default: bool = False) -> None:
    g = parser.add_argument_group("rendering")
    g.add_argument("--palette", default=PALETTES[0], choices=PALETTES, help="class colours (default: %(default)s)")
    g.add_argument(
        "--alpha", type=_unit_float, default=DEFAULT_ALPHA, help="weight of the mask colour (default %(default)s)"
    )
    g.add_argument(
        "--legend", action=argparse.BooleanOptionalAction, default=legend_default, help="draw the classes present"
    )


def _analysis_options(parser: argparse.ArgumentParser, live: bool = False) -> None:
    a = parser.add_argument_group("analysis (per-frame masks and figures; --stats also reports flicker)")
    a.add_argument(
        "--smooth",
        default=SMOOTH_MODES[0],
        choices=SMOOTH_MODES,
        help="ema: average the class probabilities over frames (steadier masks, reset at scene cuts; "
        "default: %(default)s)",
    )
    a.add_argument(
        "--smooth-strength",
        type=_strength,
        default=DEFAULT_SMOOTH_STRENGTH,
        metavar="S",
        help="weight of the past in the average, 0 <= S < 1 (default: %(default)s)",
    )
    each = "inferred frame" if live else "frame"
    a.add_argument("--masks", metavar="DIR", help=f"one palette PNG of class ids per {each} (INDEX_TIMEms.png)")
    a.add_argument(
        "--masks-size",
        default=MASK_SIZES[0],
        choices=MASK_SIZES,
        help="size of --masks and --mask-video: the model's input or the source frame's (default: %(default)s)",
    )
    a.add_argument("--mask-video", metavar="FILE.mkv", help=f"class ids as lossless FFV1 video, one per {each}")
    a.add_argument(
        "--coverage",
        metavar="FILE.csv",
        help=f"share of each class seen, one row per {each}" + (" (flushed every second)" if live else ""),
    )
    a.add_argument("--coverage-plot", metavar="FILE.png", help="chart of each class's share over time (matplotlib)")


def _effect_arguments(parser: argparse.ArgumentParser, cycles: bool = False) -> None:
    g = parser.add_argument_group("effects")
    alpha = ", ".join(ALPHA_EFFECTS)
    g.add_argument(
        "--effect",
        default=EFFECTS[0],
        choices=EFFECTS,
        help=f"what the chosen classes get (default: %(default)s; {alpha}: transparent elsewhere, "
        f"video to {' or '.join(ALPHA_EXTENSIONS)})" + ("; key e cycles" if cycles else ""),
    )
    g.add_argument(
        "--classes",
        metavar="NAME[,NAME…]",
        help="the classes the effect applies to, by name (background included; default: every class but background)",
    )
    g.add_argument("--invert", action="store_true", help="apply the effect to every class except --classes")
    g.add_argument(
        "--feather",
        type=_non_negative_float,
        metavar="PX",
        help="soft edge width in frame pixels (default: 0 for overlay, frame height / 120 for the others)",
    )
    g.add_argument(
        "--blur", type=_positive_float, metavar="PX", help="blur strength, sigma in pixels (default: height / 36)"
    )
    g.add_argument("--block", type=_positive_int, metavar="PX", help="pixelate block size (default: height / 45)")
    g.add_argument(
        "--background",
        metavar="COLOR|IMAGE|VIDEO",
        help="replace: #00ff00 or a colour name, a picture (scaled to cover) or a video (looped); default green",
    )


def _video_parser(sub: Any, flags: argparse.ArgumentParser) -> None:
    alpha_effects = ", ".join(ALPHA_EFFECTS)
    video = sub.add_parser(
        "video", parents=[flags], help="video file -> overlaid MP4 (H.264, source timestamps and audio kept)"
    )
    video.add_argument(
        "input",
        nargs="+",
        help="input video file; or several files, folders (searched recursively) and globs: a batch into -o OUTDIR/",
    )
    video.add_argument(
        "-o",
        "--output",
        metavar="OUT.mp4|OUTDIR/",
        help=f"output .mp4 ({' or '.join(ALPHA_EXTENSIONS)} with --effect {alpha_effects}; default: INPUT.seg.mp4 "
        "beside the input, .webm for a cutout); a batch writes each input under "
        "OUTDIR/ at its path relative to the folder or glob given, and OUTDIR/live_seg_manifest.jsonl",
    )
    video.add_argument(
        "--overwrite", action="store_true", help="replace an existing output (a batch: redo the outputs already done)"
    )
    video.add_argument(
        "--ray",
        action="store_true",
        help="run the batch on a Ray cluster (RAY_ADDRESS, else a local Ray); needs the cluster extra",
    )
    video.add_argument(
        "--ray-actor-cpus",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"--ray without GPUs: CPU cores per actor, one model each (default: {CPU_ACTOR_CORES})",
    )
    video.add_argument("--no-audio", dest="audio", action="store_false", help="drop the source's audio")
    video.add_argument("--view", default=VIEWS[0], choices=VIEWS, help="what to encode")
    video.add_argument(
        "--batch", type=_positive_int, default=None, help="frames per forward pass (default: 2 on CPU, 1 on a GPU)"
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
    _analysis_options(video)
    _model_options(video)
    _render_options(video)
    _effect_arguments(video)


def _image_parser(sub: Any, flags: argparse.ArgumentParser) -> None:
    image = sub.add_parser("image", parents=[flags], help="one image -> overlay.png, mask.png, side_by_side.png")
    image.add_argument("input", help="input image file")
    image.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: current folder)")
    image.add_argument("--overwrite", action="store_true", help="replace existing PNGs")
    image.add_argument("--show", action="store_true", help="show original | segmented in a window")
    _model_options(image)
    _render_options(image, legend_default=True)
    _effect_arguments(image)


def _bench_parser(sub: Any, flags: argparse.ArgumentParser) -> None:
    bench = sub.add_parser(
        "bench", parents=[flags], help="fps per device x precision x model: naive loop, model only, pipeline"
    )
    g = bench.add_argument_group("what to measure")
    g.add_argument("--device", nargs="+", default=[AUTO], choices=(*DEVICES, ALL), help=f"default: {AUTO}")
    g.add_argument("--precision", nargs="+", default=[AUTO], choices=(*PRECISIONS, ALL), help=f"default: {AUTO}")
    g.add_argument(
        "--backend", nargs="+", default=[AUTO], choices=(*BACKENDS, ALL), help=f"{AUTO}: {auto_backend_text()}"
    )
    g.add_argument(
        "--model",
        nargs="+",
        default=[DEFAULT_MODEL],
        choices=MODEL_NAMES,
        metavar="NAME",
        help=f"one or more of {', '.join(MODEL_NAMES)} (default: {DEFAULT_MODEL})",
    )
    g.add_argument(
        "--weights",
        default=RANDOM_WEIGHTS,
        help=f"default {RANDOM_WEIGHTS!r}: speed does not depend on the weights "
        f"({DEFAULT_WEIGHTS!r} or a file PATH also work)",
    )
    g.add_argument("--source", metavar="FILE|synthetic", help="clip to read (default: samples/sample.mp4)")
    _size_and_threads(g)
    g.add_argument(
        "--batch",
        type=_positive_int,
        nargs="+",
        default=[1],
        help="frames per forward pass; several give one row each (default: 1)",
    )
    t = bench.add_argument_group("timing")
    t.add_argument("--frames", type=_positive_int, default=10, help="frames per timed run (default: %(default)s)")
    t.add_argument("--warmup", type=_non_negative_int, default=1, help="untimed frames first (default: %(default)s)")
    t.add_argument("--repeat", type=_positive_int, default=3, help="timed runs; the median is kept (default: 3)")
    o = bench.add_argument_group("reports")
    o.add_argument("--json", metavar="FILE", help="write the full report as JSON (schema in the README)")
    o.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown")
    o.add_argument("--plot", metavar="FILE.png", help="bar chart of fps per configuration (needs matplotlib)")


def _live_source_options(live: argparse.ArgumentParser) -> None:
    s = live.add_argument_group("source")
    s.add_argument(
        "--source",
        action="append",
        metavar="0|N|URL|FILE",
        help="camera index, stream URL (rtsp://…, http://…/stream.mjpg) or video file (default: camera 0); "
        "repeat it for several sources in one run (a grid of tiles, one model for all)",
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
        help="camera/stream: reopen attempts after it is lost, waiting 0.5, 1, 2, 4, 8, 8… s (default: %(default)s); "
        "with several sources each has its own, and one that gives up is reported while the others go on",
    )
    s.add_argument(
        "--rtsp-transport",
        default=RTSP_TRANSPORTS[0],
        choices=RTSP_TRANSPORTS,
        help="how RTSP media travel (default: %(default)s)",
    )
    s.add_argument(
        "--read-timeout",
        type=_positive_float,
        default=DEFAULT_READ_TIMEOUT_S,
        metavar="S",
        help="a stream that sends nothing for S seconds is lost and reconnected (default: %(default)s)",
    )


def _live_view_options(live: argparse.ArgumentParser) -> None:
    v = live.add_argument_group("view")
    v.add_argument(
        "--pairing",
        default=PAIRINGS[0],
        choices=PAIRINGS,
        help=f"{PAIRINGS[0]}: the newest frame with the newest mask, refreshed at the source's rate (default); "
        f"{PAIRINGS[1]}: each mask on the frame it was computed on (the picture lags by one inference)",
    )
    v.add_argument("--view", default=VIEWS[0], choices=VIEWS, help="first view (key m cycles)")
    v.add_argument("--no-hud", dest="hud", action="store_false", help="hide the HUD (rates, latency, drops, model)")
    v.add_argument(
        "--display",
        default=AUTO,
        choices=DISPLAYS,
        help=f"{AUTO}: a window when there is a display, else the browser view; none: no view (record/stats only)",
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


def _live_parser(sub: Any, flags: argparse.ArgumentParser) -> None:
    live = sub.add_parser(
        "live",
        parents=[flags],
        help="camera / stream / video file -> segmentation on screen, live (or in a browser without a display)",
    )
    _live_source_options(live)
    _live_view_options(live)
    o = live.add_argument_group("output")
    o.add_argument("--record", metavar="OUT.mp4", help="record the rendered view (H.264, timed by capture wall-clock)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing recording")
    o.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds")
    o.add_argument("--stats", metavar="FILE.json", help="write run statistics as JSON (also when the source is lost)")
    _analysis_options(live, live=True)
    _model_options(live)
    _render_options(live, legend_default=True)
    _effect_arguments(live, cycles=True)


def effect_options(args: argparse.Namespace) -> Any:
    """The :class:`~live_seg.render.effects.EffectOptions` of parsed ``--effect …`` arguments."""
    from ..render.effects import EffectOptions  # only when a job runs: parsing stays light

    return EffectOptions(args.effect, args.classes, args.invert, args.feather, args.blur, args.block, args.background)


def get_args_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (``-v`` / ``-q`` before or after the subcommand)."""
    parser = argparse.ArgumentParser(
        prog="live-seg",
        description=f"Real-time semantic segmentation (PASCAL VOC classes, default model {DEFAULT_MODEL}) "
        "for video files, cameras and images.",
    )
    _global_flags(parser, after_command=False)
    flags = argparse.ArgumentParser(add_help=False)
    _global_flags(flags, after_command=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _video_parser(sub, flags)
    _image_parser(sub, flags)
    _bench_parser(sub, flags)
    _live_parser(sub, flags)
    return parser
