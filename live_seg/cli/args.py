"""The command line's arguments: one parser per subcommand, choices read from the registry.

Building the parser imports nothing heavy (no torch, no OpenCV), so a typo or a bad value is
reported in a fraction of a second.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from ..base.options import (
    CPU_ACTOR_CORES,
    IMAGE_RENDER,
    AnalysisOptions,
    BenchOptions,
    EncodeOptions,
    EventOptions,
    ModelOptions,
    RenderOptions,
    RunOptions,
)
from ..base.registry import (
    ALL,
    ALPHA_EFFECTS,
    ALPHA_EXTENSIONS,
    AUTO,
    BACKENDS,
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_RECONNECT,
    DEFAULT_WEIGHTS,
    DEVICES,
    DISPLAYS,
    PAIRINGS,
    PRECISIONS,
    RANDOM_WEIGHTS,
    RTSP_TRANSPORTS,
    VIEWS,
    auto_backend_text,
)
from ..base.specs import MODEL_NAMES
from .groups import (
    analysis_arguments,
    effect_arguments,
    events_arguments,
    field_option,
    global_flags,
    model_arguments,
    model_name,
    non_negative_int,
    port,
    positive_float,
    positive_int,
    render_arguments,
    seconds,
    size_and_threads,
)

if TYPE_CHECKING:
    from ..jobs.video import VideoOptions
    from ..render.effects import EffectOptions


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
        type=positive_int,
        default=None,
        metavar="N",
        help=f"--ray without GPUs: CPU cores per actor, one model each (default: {CPU_ACTOR_CORES})",
    )
    video.add_argument(
        "--no-audio", dest="audio", action="store_false", default=EncodeOptions.audio, help="drop the source's audio"
    )
    field_option(video, "--view", RenderOptions, choices=VIEWS, help="what to encode")
    field_option(
        video, "--batch", RunOptions, type=positive_int, help="frames per forward pass (default: 2 on CPU, 1 on a GPU)"
    )
    field_option(
        video,
        "--workers",
        RunOptions,
        type=positive_int,
        help="inference threads sharing the model (default: one per core, up to 4, on CPU; 1 on a GPU)",
    )
    field_option(video, "--preset", EncodeOptions, help="libx264 preset (default: %(default)s)")
    field_option(
        video, "--crf", EncodeOptions, type=int, help="libx264 quality, lower is better (default: %(default)s)"
    )
    field_option(
        video,
        "--x264-params",
        EncodeOptions,
        metavar="K=V:…",
        help="libx264 settings over the preset's; '' for the preset's own (default: %(default)s)",
    )
    video.add_argument("--stats", metavar="FILE.json", help="write run statistics as JSON")
    analysis_arguments(video)
    events_arguments(video)
    model_arguments(video)
    render_arguments(video, RenderOptions())
    effect_arguments(video)


def _image_parser(sub: Any, flags: argparse.ArgumentParser) -> None:
    image = sub.add_parser("image", parents=[flags], help="one image -> overlay.png, mask.png, side_by_side.png")
    image.add_argument("input", help="input image file")
    image.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: current folder)")
    image.add_argument("--overwrite", action="store_true", help="replace existing PNGs")
    image.add_argument("--show", action="store_true", help="show original | segmented in a window")
    model_arguments(image)
    render_arguments(image, IMAGE_RENDER)
    effect_arguments(image)


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
        default=[ModelOptions.model],
        type=model_name,
        metavar="NAME",
        help=f"one or more of {', '.join(MODEL_NAMES)} (default: {ModelOptions.model})",
    )
    field_option(
        g,
        "--weights",
        BenchOptions,
        help=f"default {RANDOM_WEIGHTS!r}: speed does not depend on the weights "
        f"({DEFAULT_WEIGHTS!r} or a file PATH also work)",
    )
    g.add_argument("--source", metavar="FILE|synthetic", help="clip to read (default: samples/sample.mp4)")
    size_and_threads(g, BenchOptions())
    g.add_argument(
        "--batch",
        type=positive_int,
        nargs="+",
        default=[BenchOptions.batch],
        help="frames per forward pass; several give one row each (default: %(default)s)",
    )
    t = bench.add_argument_group("timing")
    field_option(t, "--frames", BenchOptions, type=positive_int, help="frames per timed run (default: %(default)s)")
    field_option(t, "--warmup", BenchOptions, type=non_negative_int, help="untimed frames first (default: %(default)s)")
    field_option(
        t, "--repeat", BenchOptions, type=positive_int, help="timed runs; the median is kept (default: %(default)s)"
    )
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
        type=non_negative_int,
        default=DEFAULT_RECONNECT,
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
        type=positive_float,
        default=DEFAULT_READ_TIMEOUT_S,
        metavar="S",
        help="a stream that sends nothing for S seconds is lost and reconnected (default: %(default)s)",
    )
    s.add_argument(
        "--max-frame-pixels",
        type=positive_int,
        default=DEFAULT_MAX_FRAME_PIXELS,
        metavar="N",
        help="a camera or stream whose frames are bigger than N pixels (width x height) is refused with a "
        "one-line error; with several sources the others go on (default: %(default)s, 8192x8192)",
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
        type=port,
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
    o.add_argument("--duration", type=seconds, metavar="S", help="stop after S seconds")
    o.add_argument("--stats", metavar="FILE.json", help="write run statistics as JSON (also when the source is lost)")
    analysis_arguments(live, live=True)
    events_arguments(live)
    model_arguments(live)
    render_arguments(live, IMAGE_RENDER)
    effect_arguments(live, cycles=True)


def _serve_parser(sub: Any, flags: argparse.ArgumentParser) -> None:
    serve = sub.add_parser(
        "serve",
        parents=[flags],
        help="a web page: browsers send their camera over WebRTC and get the segmented picture back",
    )
    w = serve.add_argument_group("web (beyond loopback: HTTPS and a token on every request)")
    w.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    w.add_argument("--port", type=port, default=8443, help="TCP port (default: %(default)s; 0 = any free port)")
    w.add_argument("--token", help="token clients must show (default: $LIVE_SEG_TOKEN, or one made for the run)")
    w.add_argument("--token-file", metavar="FILE", help="read the token from FILE (kept out of the process list)")
    w.add_argument("--cert", metavar="FILE.pem", help="HTTPS certificate (default: self-signed, made once, cached)")
    w.add_argument("--key", metavar="FILE.pem", help="the certificate's private key (with --cert)")
    w.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME", help="another host name the server answers to"
    )
    w.add_argument("--max-clients", type=positive_int, default=4, help="clients at once (default: %(default)s)")
    w.add_argument(
        "--max-side", type=positive_int, default=1920, metavar="PX", help="larger camera frames are scaled down"
    )
    w.add_argument("--duration", type=seconds, metavar="S", help="stop after S seconds")
    w.add_argument("--stats", metavar="FILE.json", help="write run statistics as JSON, one entry per client")
    w.add_argument("--overwrite", action="store_true", help="replace existing analysis and event files")
    serve.add_argument("--view", default=VIEWS[0], choices=VIEWS, help="first view (the page can change it)")
    analysis_arguments(serve, live=True, per="client")
    events_arguments(serve)
    model_arguments(serve)
    render_arguments(serve, IMAGE_RENDER)
    effect_arguments(serve)


Options = TypeVar("Options")


def options_from(cls: type[Options], args: argparse.Namespace, **given: Any) -> Options:
    """An options dataclass from the parsed arguments named like its fields (the others: its defaults).

    Args:
        cls: the options dataclass.
        args: the parsed arguments.
        given: fields made from the arguments some other way; they win over arguments of the same name.
    """
    named = {f.name: getattr(args, f.name) for f in fields(cls) if f.name not in given and hasattr(args, f.name)}
    return cls(**named, **given)  # type: ignore[arg-type]


def effect_options(args: argparse.Namespace) -> EffectOptions:
    """The :class:`~live_seg.render.effects.EffectOptions` of parsed ``--effect …`` arguments."""
    from ..render.effects import EffectOptions  # only when a job runs: parsing stays light

    return EffectOptions(args.effect, args.classes, args.invert, args.feather, args.blur, args.block, args.background)


def video_options(args: argparse.Namespace) -> VideoOptions:
    """The :class:`~live_seg.jobs.video.VideoOptions` of a parsed ``video`` command line."""
    from ..jobs.video import VideoOptions  # only when a job runs: parsing stays light

    return VideoOptions(
        model=options_from(ModelOptions, args),
        render=options_from(RenderOptions, args),
        effect=effect_options(args),
        encode=options_from(EncodeOptions, args),
        run=options_from(RunOptions, args),
        analysis=options_from(AnalysisOptions, args),
        events=options_from(EventOptions, args),
    )


def get_args_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (``-v`` / ``-q`` before or after the subcommand)."""
    parser = argparse.ArgumentParser(
        prog="live-seg",
        description=f"Real-time semantic segmentation (PASCAL VOC classes, default model {ModelOptions.model}) "
        "for video files, cameras and images.",
    )
    global_flags(parser, after_command=False)
    flags = argparse.ArgumentParser(add_help=False)
    global_flags(flags, after_command=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _video_parser(sub, flags)
    _image_parser(sub, flags)
    _bench_parser(sub, flags)
    _live_parser(sub, flags)
    _serve_parser(sub, flags)
    return parser
