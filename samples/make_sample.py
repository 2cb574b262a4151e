"""Make the bundled demo clip ``samples/sample.mp4`` from photographs shipped with scikit-image.

Each photo gets a slow pan and zoom (a "Ken Burns" move), with short crossfades between them: an
astronaut (PASCAL VOC class person), a cat (cat), a cameraman (person, in black and white) and a cup
of coffee (nothing from VOC: background, a useful negative). All four are public domain or CC0
according to scikit-image's documentation of them. The sound track is a soft chord per photo that
crossfades with the pictures. Everything is computed, nothing is random, so the same command makes
the same pictures and sound every time.

Video: H.264 (libx264, yuv420p, BT.709, CRF 23, preset medium), ``+faststart``. Audio: AAC stereo,
48 kHz, as long as the video. Only PyAV, NumPy, OpenCV and scikit-image are needed.

Usage::

    python samples/make_sample.py                      # 6 s, 1280x720, 25 fps -> samples/sample.mp4
    python samples/make_sample.py -o out/long.mp4 --seconds 20 --width 1920 --height 1080
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc
from skimage import data

AUDIO_RATE = 48000
CROSSFADE_S = 0.5


@dataclass(frozen=True)
class Shot:
    """One photo and its camera move.

    Attributes:
        name: What the photo shows.
        load: Returns the photo as (H, W, 3) uint8 RGB.
        start: Framing at the start of the shot: (centre x, centre y, zoom). Centres are fractions
            of the photo's width and height; zoom 1.0 is the widest 16:9 crop that fits, 1.25
            shows 80 % of that width.
        end: Framing at the end of the shot, same convention.
        chord_hz: Frequencies of the chord that plays under this photo.
    """

    name: str
    load: Callable[[], np.ndarray]
    start: tuple[float, float, float]
    end: tuple[float, float, float]
    chord_hz: tuple[float, ...]


SHOTS: tuple[Shot, ...] = (
    # C major, A minor, F major, G major: I - vi - IV - V.
    Shot("astronaut (person)", data.astronaut, (0.5, 0.45, 1.0), (0.42, 0.38, 1.3), (261.63, 329.63, 392.00)),
    Shot("cat", data.chelsea, (0.45, 0.5, 1.15), (0.55, 0.45, 1.0), (220.00, 261.63, 329.63)),
    Shot(
        "cameraman (person)",
        lambda: np.repeat(data.camera()[..., None], 3, axis=2),
        (0.5, 0.42, 1.0),
        (0.42, 0.36, 1.25),
        (174.61, 220.00, 261.63),
    ),
    Shot("coffee (background)", data.coffee, (0.5, 0.5, 1.2), (0.5, 0.55, 1.0), (196.00, 246.94, 293.66)),
)


def smoothstep(x: np.ndarray | float) -> np.ndarray:
    """Ease 0..1 to 0..1 with zero slope at both ends; values outside are clamped."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def shot_timing(seconds: float, count: int) -> tuple[float, float]:
    """Return (length of one shot, crossfade) for ``count`` shots filling ``seconds``.

    Shots overlap by the crossfade, so ``count * length - (count - 1) * crossfade == seconds``.
    """
    fade = min(CROSSFADE_S, seconds / (2 * count))
    return (seconds + (count - 1) * fade) / count, fade


def weights(t: np.ndarray, seconds: float, count: int) -> np.ndarray:
    """Blend weight of each shot at times ``t``.

    Args:
        t: (N,) times in seconds.
        seconds: Total duration.
        count: Number of shots.

    Returns:
        (count, N) float64 weights, summing to 1 over the shots at every time.
    """
    length, fade = shot_timing(seconds, count)
    w = np.zeros((count, t.size))
    for i in range(count):
        start = i * (length - fade)
        rise = np.ones_like(t) if i == 0 else smoothstep((t - start) / fade)
        fall = np.ones_like(t) if i == count - 1 else 1.0 - smoothstep((t - (start + length - fade)) / fade)
        w[i] = np.minimum(rise, fall) * ((t >= start - 1e-9) & (t < start + length + 1e-9))
    return w / w.sum(axis=0, keepdims=True)


def render_shot(photo: np.ndarray, shot: Shot, progress: float, width: int, height: int) -> np.ndarray:
    """Render one frame of a shot's camera move.

    Args:
        photo: (H, W, 3) uint8 BGR photo.
        shot: The shot (its start and end framing are used).
        progress: 0 at the start of the shot, 1 at its end; eased here.
        width: Output width in pixels.
        height: Output height in pixels.

    Returns:
        (height, width, 3) uint8 BGR frame.
    """
    p = float(smoothstep(progress))
    cx, cy, zoom = (a + (b - a) * p for a, b in zip(shot.start, shot.end, strict=True))
    ph, pw = photo.shape[:2]
    aspect = width / height
    crop_w = min(pw, ph * aspect) / zoom
    crop_h = crop_w / aspect
    x0 = float(np.clip(cx * pw - crop_w / 2, 0, pw - crop_w))
    y0 = float(np.clip(cy * ph - crop_h / 2, 0, ph - crop_h))
    scale = width / crop_w
    # Pixel centres: output (u + 0.5) shows photo point x0 + (u + 0.5) / scale. Sub-pixel offsets keep
    # the motion smooth where whole-pixel crops would judder.
    matrix = np.array([[scale, 0.0, 0.5 * scale - 0.5 - x0 * scale], [0.0, scale, 0.5 * scale - 0.5 - y0 * scale]])
    return cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def render_frame(photos: Sequence[np.ndarray], t: float, seconds: float, width: int, height: int) -> np.ndarray:
    """Render the frame shown at time ``t``: the visible shots, crossfaded.

    Returns:
        (height, width, 3) uint8 BGR frame.
    """
    length, fade = shot_timing(seconds, len(SHOTS))
    w = weights(np.array([t]), seconds, len(SHOTS))[:, 0]
    out = np.zeros((height, width, 3), np.float32)
    for i, (shot, photo) in enumerate(zip(SHOTS, photos, strict=True)):
        if w[i] > 0:
            progress = (t - i * (length - fade)) / length
            out += w[i] * render_shot(photo, shot, progress, width, height).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def soundtrack(seconds: float, rate: int = AUDIO_RATE) -> np.ndarray:
    """Synthesise the sound track: one soft chord per shot, crossfading with the pictures.

    Each chord tone is a sine with a quieter octave above, spread left to right; the whole track fades
    in over 0.3 s and out over 0.6 s.

    Args:
        seconds: Duration.
        rate: Sample rate in Hz.

    Returns:
        (2, round(seconds * rate)) float32 samples in [-1, 1], left and right.
    """
    n = round(seconds * rate)
    t = np.arange(n) / rate
    w = weights(t, seconds, len(SHOTS))
    out = np.zeros((2, n))
    for i, shot in enumerate(SHOTS):
        for k, hz in enumerate(shot.chord_hz):
            tone = np.sin(2 * np.pi * hz * t) + 0.25 * np.sin(4 * np.pi * hz * t)
            pan = (k + 0.5) / len(shot.chord_hz)
            out[0] += w[i] * tone * np.sqrt(1 - pan)
            out[1] += w[i] * tone * np.sqrt(pan)
    envelope = np.minimum(smoothstep(t / 0.3), smoothstep((seconds - t) / 0.6))
    return (0.2 * out * envelope).astype(np.float32)


def load_photos() -> list[np.ndarray]:
    """Load the photos of :data:`SHOTS` as (H, W, 3) uint8 BGR."""
    return [cv2.cvtColor(np.ascontiguousarray(shot.load()[..., :3]), cv2.COLOR_RGB2BGR) for shot in SHOTS]


def make_sample(
    output: str | os.PathLike[str],
    *,
    seconds: float = 6.0,
    fps: int = 25,
    width: int = 1280,
    height: int = 720,
    crf: int = 23,
) -> int:
    """Write the demo clip.

    Args:
        output: Destination ``.mp4``.
        seconds: Duration; the frame count is ``round(seconds * fps)``.
        fps: Frame rate.
        width: Frame width, even.
        height: Frame height, even.
        crf: libx264 constant rate factor (lower is better and bigger).

    Returns:
        The number of video frames written.
    """
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even for yuv420p, got {width}x{height}")
    frames = round(seconds * fps)
    if frames < 1:
        raise ValueError(f"--seconds {seconds} at {fps} fps gives no frame")
    duration = frames / fps  # the sound matches the video exactly
    photos = load_photos()
    rate = Fraction(fps)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with av.open(os.fspath(output), "w", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = 1 / rate
        video.options = {"crf": str(crf), "preset": "medium"}
        # Tag HD colour (BT.709, limited range) to match the conversion below; players assume it for
        # untagged HD anyway, and PyAV's to_ndarray() reads the tag back.
        ctx = video.codec_context
        ctx.color_range = ColorRange.MPEG
        ctx.color_primaries = ColorPrimaries.BT709
        ctx.color_trc = ColorTrc.BT709
        ctx.colorspace = 1  # AVCOL_SPC_BT709 (PyAV has no enum for AVColorSpace)
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        audio.bit_rate = 128_000

        for k in range(frames):
            image = render_frame(photos, k / fps, duration, width, height)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(
                format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
            )
            frame.pts = k
            frame.time_base = 1 / rate
            container.mux(video.encode(frame))
        container.mux(video.encode(None))

        samples = soundtrack(duration)
        block = 1024 * 16
        for start in range(0, samples.shape[1], block):
            chunk = np.ascontiguousarray(samples[:, start : start + block])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = AUDIO_RATE
            frame.pts = start
            frame.time_base = Fraction(1, AUDIO_RATE)
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return frames


def get_args_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of this script."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path(__file__).resolve().parent / "sample.mp4",
        help="output .mp4 (default: sample.mp4 next to this script)",
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="duration in seconds (default 6)")
    parser.add_argument("--fps", type=int, default=25, help="frame rate (default 25)")
    parser.add_argument("--width", type=int, default=1280, help="frame width, even (default 1280)")
    parser.add_argument("--height", type=int, default=720, help="frame height, even (default 720)")
    parser.add_argument("--crf", type=int, default=23, help="libx264 quality, lower is better (default 23)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit status."""
    args = get_args_parser().parse_args(argv)
    if args.seconds <= 0 or args.fps <= 0 or args.width <= 0 or args.height <= 0:
        get_args_parser().error("--seconds, --fps, --width and --height must be positive")
    try:
        frames = make_sample(
            args.output,
            seconds=args.seconds,
            fps=args.fps,
            width=args.width,
            height=args.height,
            crf=args.crf,
        )
    except ValueError as exc:
        get_args_parser().error(str(exc))
    size = args.output.stat().st_size
    print(f"wrote {args.output}: {frames} frames {args.width}x{args.height} @ {args.fps} fps, {size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
