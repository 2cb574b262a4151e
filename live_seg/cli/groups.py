"""Argument groups shared by the subcommands (model, rendering, analysis, effects, global flags) and
the argparse value types, with their defaults read from the option values in :mod:`live_seg.base.options`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..base.options import (
    EVENT_MASKS,
    AnalysisOptions,
    BenchOptions,
    EventOptions,
    ModelOptions,
    RenderOptions,
)
from ..base.registry import (
    ALPHA_EFFECTS,
    ALPHA_EXTENSIONS,
    AUTO,
    BACKENDS,
    DEFAULT_WEIGHTS,
    DEVICES,
    EFFECTS,
    INT8,
    MASK_SIZES,
    PALETTES,
    PRECISIONS,
    PROPAGATE_MODES,
    RANDOM_WEIGHTS,
    SMOOTH_MODES,
    auto_backend_text,
    auto_device_text,
    auto_precision_text,
)
from ..base.specs import CUSTOM_SUFFIXES, MODEL_NAMES, SPECS, is_custom


def arg_type(convert: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
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


positive_int = arg_type(int, lambda v: v >= 1, "a whole number >= 1")
non_negative_int = arg_type(int, lambda v: v >= 0, "a whole number >= 0")
unit_float = arg_type(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
strength = arg_type(float, lambda v: 0.0 <= v < 1.0, "a number with 0 <= S < 1")
seconds = arg_type(float, lambda v: v > 0, "a number of seconds > 0")
non_negative_float = arg_type(float, lambda v: v >= 0, "a number >= 0")
positive_float = arg_type(float, lambda v: v > 0, "a number > 0")
open_unit = arg_type(float, lambda v: 0.0 < v < 1.0, "a number between 0 and 1 (exclusive)")


def field_option(group: Any, flag: str, owner: object, **kwargs: Any) -> None:
    """Add ``flag`` to ``group`` (a parser or an argument group), its default read from ``owner``'s field of
    the same name (``--key-interval``: ``key_interval``), the field :func:`~live_seg.cli.args.options_from`
    fills from it; ``owner``: an options dataclass or value, ``kwargs``: the rest of ``add_argument``'s."""
    group.add_argument(flag, default=getattr(owner, flag[2:].replace("-", "_")), **kwargs)


def model_name(text: str) -> str:
    """``--model``: a built-in model's name, or the path of your own ``.onnx`` / ``.xml`` network."""
    if text in SPECS or is_custom(text):
        return text
    raise argparse.ArgumentTypeError(
        f"expected one of {', '.join(MODEL_NAMES)}, or your own model file "
        f"({' or '.join(CUSTOM_SUFFIXES)}); got {text!r}"
    )


def channel_values(text: str) -> tuple[float, ...]:
    """``--mean`` / ``--std``: three numbers, comma-separated (e.g. ``0.5,0.5,0.5``)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers (one per channel), got {text!r}")
    return values


def models_help() -> str:
    """The built-in models in one line each, with what to know about them (the spec's note)."""
    return "; ".join(f"{name}" + (f" ({spec.note})" if spec.note else "") for name, spec in SPECS.items())


port = arg_type(int, lambda v: 0 <= v <= 65535, "a TCP port 0..65535 (0 = any free port)")


def global_flags(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
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


def size_and_threads(g: Any, defaults: ModelOptions | BenchOptions) -> None:
    field_option(
        g,
        "--size",
        defaults,
        type=positive_int,
        help="model input is SIZE x SIZE (default: the model's own, 512 for torchvision's; "
        "a model with a fixed input size takes only that)",
    )
    field_option(g, "--threads", defaults, type=positive_int, help="torch CPU threads (default: torch decides)")


def model_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    field_option(
        g,
        "--model",
        ModelOptions,
        type=model_name,
        metavar="NAME|FILE",
        help=f"segmentation model (default: %(default)s): {models_help()}; or your own network "
        f"({' or '.join(CUSTOM_SUFFIXES)}, run by OpenVINO) with --labels",
    )
    field_option(
        g,
        "--weights",
        ModelOptions,
        help=f"{DEFAULT_WEIGHTS!r} = the model's trained weights (fetched once, then cached), "
        f"{RANDOM_WEIGHTS!r} = untrained (benchmarks, tests), "
        "or a file PATH (a state_dict; a .tflite for MediaPipe's models)",
    )
    field_option(
        g,
        "--threshold",
        ModelOptions,
        type=open_unit,
        help="for a model that outputs a probability (MediaPipe's): foreground above it (default: %(default)s)",
    )
    own = parser.add_argument_group("your own model (--model FILE.onnx|FILE.xml)")
    own.add_argument("--labels", metavar="FILE", help="class names, one per line, in the output's channel order")
    own.add_argument(
        "--mean", type=channel_values, metavar="R,G,B", help="per-channel mean of [0, 1] inputs (default: ImageNet's)"
    )
    own.add_argument(
        "--std", type=channel_values, metavar="R,G,B", help="per-channel std of [0, 1] inputs (default: ImageNet's)"
    )
    order = own.add_mutually_exclusive_group()
    order.add_argument("--rgb", dest="rgb", action="store_const", const=True, help="the network takes RGB (default)")
    order.add_argument("--bgr", dest="rgb", action="store_const", const=False, help="the network takes BGR")
    field_option(g, "--device", ModelOptions, choices=DEVICES, help=f"default: {auto_device_text()}")
    field_option(
        g,
        "--precision",
        ModelOptions,
        choices=PRECISIONS,
        help=f"{AUTO}: {auto_precision_text()}; {INT8}: OpenVINO, quantised once on calibration frames",
    )
    field_option(
        g, "--backend", ModelOptions, choices=BACKENDS, help=f"inference runtime; {AUTO}: {auto_backend_text()}"
    )
    g.add_argument(
        "--calibration",
        metavar="PATH",
        help=f"--precision {INT8}: a video or a folder of images to calibrate on "
        "(default: the input video, else the bundled sample); cached per source",
    )
    size_and_threads(g, ModelOptions())


def render_arguments(parser: argparse.ArgumentParser, defaults: RenderOptions) -> None:
    g = parser.add_argument_group("rendering")
    field_option(g, "--palette", defaults, choices=PALETTES, help="class colours (default: %(default)s)")
    field_option(g, "--alpha", defaults, type=unit_float, help="weight of the mask colour (default %(default)s)")
    field_option(g, "--legend", defaults, action=argparse.BooleanOptionalAction, help="draw the classes present")


def smooth_arguments(a: Any) -> None:
    """``--smooth`` and ``--smooth-strength`` into the argument group ``a``."""
    field_option(
        a,
        "--smooth",
        AnalysisOptions,
        choices=SMOOTH_MODES,
        help="ema: average the class probabilities over frames (steadier masks, reset at scene cuts; "
        "default: %(default)s)",
    )
    field_option(
        a,
        "--smooth-strength",
        AnalysisOptions,
        type=strength,
        metavar="S",
        help="weight of the past in the average, 0 <= S < 1 (default: %(default)s)",
    )


def analysis_arguments(parser: argparse.ArgumentParser, live: bool = False, per: str | None = None) -> None:
    """The analysis group: smoothing, key frames and mask files (``per``: one set of files per source
    of this kind, named after it: ``client`` gives ``FILE-client-N.csv``, ``DIR/client-N/``)."""
    title = "analysis (per-frame masks and figures; --stats also reports flicker)"
    if per is not None:
        title = f"analysis (each {per} on its own: FILE-{per}-N.csv, DIR/{per}-N/...)"
    a = parser.add_argument_group(title)
    smooth_arguments(a)
    each = "processed frame" if live else "frame"
    a.add_argument("--masks", metavar="DIR", help=f"one palette PNG of class ids per {each} (INDEX_TIMEms.png)")
    field_option(
        a,
        "--masks-size",
        AnalysisOptions,
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
    field_option(
        a,
        "--key-interval",
        AnalysisOptions,
        type=positive_int,
        metavar="N",
        help="run the network on every N-th frame only, masks carried in between (default: %(default)s: all)",
    )
    field_option(
        a,
        "--cut-keys",
        AnalysisOptions,
        action=argparse.BooleanOptionalAction,
        help="with --key-interval: the first frame after a scene cut is a key frame too (default: on)",
    )
    field_option(
        a,
        "--propagate",
        AnalysisOptions,
        choices=PROPAGATE_MODES,
        help=(
            "between key frames, and a newer frame than the newest mask's: move that mask along the optical "
            "flow, or hold it"
            if live
            else "between key frames: move the key mask along the optical flow, or hold it"
        )
        + " (default: %(default)s)",
    )


def effect_arguments(parser: argparse.ArgumentParser, cycles: bool = False) -> None:
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
        type=non_negative_float,
        metavar="PX",
        help="soft edge width in frame pixels (default: 0 for overlay, frame height / 120 for the others)",
    )
    g.add_argument(
        "--blur", type=positive_float, metavar="PX", help="blur strength, sigma in pixels (default: height / 36)"
    )
    g.add_argument("--block", type=positive_int, metavar="PX", help="pixelate block size (default: height / 45)")
    g.add_argument(
        "--background",
        metavar="COLOR|IMAGE|VIDEO",
        help="replace: #00ff00 or a colour name, a picture (scaled to cover) or a video (looped); default green",
    )


def mqtt_url(text: str) -> str:
    """An argparse ``type=`` for ``--mqtt``: the URL as given, once it reads as one."""
    from ..media.mqtt import MqttTarget  # import-light: paho is imported when a publisher is built

    try:
        MqttTarget.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def events_arguments(parser: argparse.ArgumentParser) -> None:
    e = parser.add_argument_group("events (one record per frame as data; the events extra)")
    field_option(
        e,
        "--events",
        EventOptions,
        metavar="FILE.jsonl",
        help="one JSON line per processed frame: source, frame, pts, time, key, class shares ('-': stdout)",
    )
    field_option(
        e,
        "--events-masks",
        EventOptions,
        choices=EVENT_MASKS,
        help="rle: each class's mask at the source's size in the records, COCO run-length encoded "
        "(default: %(default)s)",
    )
    field_option(
        e,
        "--mqtt",
        EventOptions,
        type=mqtt_url,
        metavar="mqtt://HOST[:PORT]/PREFIX",
        help="publish the records to PREFIX/<source>/frame, appear/leave to PREFIX/<source>/event, "
        "PREFIX/available online/offline; a broker that is down or goes away never stalls the run",
    )
    field_option(
        e,
        "--events-every",
        EventOptions,
        type=positive_int,
        metavar="N",
        help="publish every N-th frame's record to MQTT (default: %(default)s)",
    )
    field_option(
        e,
        "--event-threshold",
        EventOptions,
        type=arg_type(float, lambda v: 0.0 <= v < 1.0, "a share with 0 <= T < 1"),
        metavar="T",
        help="a class is seen when it covers more than this share of the frame (default: %(default)s)",
    )
    field_option(
        e,
        "--event-frames",
        EventOptions,
        type=positive_int,
        metavar="N",
        help="frames in a row a class must be seen (or not) to appear (or leave) (default: %(default)s)",
    )
