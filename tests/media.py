"""Synthetic test media for the test suite, written and read with PyAV only.

Every generator is deterministic (no randomness without a fixed seed) and fast at its default
tiny size. Frames come from :func:`frame_pattern`, which stamps the frame index as a binary code
that survives lossy encoding, so a test can check order, drops and duplicates with
:func:`read_index` on whatever it decoded.

What the options really produce (measured with the PyAV 18 / FFmpeg 8 wheels):

* ``codec="libx264", pix_fmt="yuv420p"`` (default): H.264 High profile with B-frames, so packets
  arrive in decode order and pts != dts. Width and height must be even.
* ``pix_fmt="yuv420p10le"`` with libx264 (or libx265): a 10-bit stream (High 10); decodes as
  ``yuv420p10le``.
* ``pix_fmt="gray"`` with libx264: a monochrome (4:0:0) H.264 stream that FFmpeg's decoder
  nevertheless hands out as ``yuv420p`` with neutral chroma. For a stream that *decodes* as
  ``gray`` use ``codec="libx265"`` (HEVC in MP4) or ``codec="ffv1"`` in a ``.mkv``.
* Odd sizes such as 321x241: libx264 refuses them with ``yuv420p``; use ``pix_fmt="yuv444p"``,
  ``codec="mpeg4"`` (yuv420p, the "mp4v" that browsers refuse) or ``codec="ffv1"`` in ``.mkv``.
* ``audio="aac"`` / ``"mp3"`` in ``.mp4``; ``audio="pcm_mulaw"`` needs a ``.mov`` (the MP4 muxer
  rejects it). Stream durations in the container equal the video's; decoded AAC/MP3 carries a few
  hundred samples of encoder padding past that end.
* ``rotation=90``: a display matrix (coded side data), which is how FFmpeg 7+ stores rotation;
  the old ``rotate`` metadata tag is no longer written by the muxer.
"""

from __future__ import annotations

import itertools
import os
import struct
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

CODE_BITS = 10
"""Bits of the frame-index code stamped by :func:`frame_pattern` (indices wrap at 1024)."""

TONES_HZ = (440.0, 660.0)
"""Sine frequency of each audio channel written by the generators (left, right; mono uses the first)."""

SQUARE_BGR = (0, 0, 255)
"""Colour of the moving square in :func:`frame_pattern`: pure red, in BGR order."""

_MP4_FAMILY = {".mp4", ".m4a", ".m4v", ".mov", ".3gp"}


def _code_geometry(width: int, height: int) -> tuple[int, int]:
    """Return (cell width, strip height) of the index code; raise if the frame is too small."""
    if width < 4 * CODE_BITS or height < 16:
        raise ValueError(f"frame_pattern needs at least {4 * CODE_BITS}x16 pixels, got {width}x{height}")
    return width // CODE_BITS, max(8, height // 8)


def frame_pattern(index: int, width: int = 160, height: int = 96) -> np.ndarray:
    """Draw test frame number ``index``.

    The top strip (``max(8, height // 8)`` rows) holds ``index % 1024`` as ten black/white cells,
    most significant bit on the left. Below it: a blue ramp left to right, a green ramp top to
    bottom, and a pure red square (:data:`SQUARE_BGR`) that moves right by 4 px per frame.

    Args:
        index: Frame number, >= 0.
        width: Frame width in pixels, >= 40.
        height: Frame height in pixels, >= 16.

    Returns:
        (height, width, 3) uint8 image in BGR order.
    """
    cell, strip = _code_geometry(width, height)
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, width, dtype=np.float32).round().astype(np.uint8)[None, :]
    img[..., 1] = np.linspace(0, 255, height, dtype=np.float32).round().astype(np.uint8)[:, None]
    img[..., 2] = 64
    side = max(4, min(width, height - strip) // 3)
    x0 = (4 * index) % max(1, width - side)
    y0 = strip + (height - strip - side) // 2
    img[y0 : y0 + side, x0 : x0 + side] = SQUARE_BGR
    img[:strip] = 0
    code = index % (1 << CODE_BITS)
    for bit in range(CODE_BITS):
        if code >> (CODE_BITS - 1 - bit) & 1:
            img[:strip, bit * cell : (bit + 1) * cell] = 255
    return img


def read_index(image: np.ndarray) -> int:
    """Read back the index stamped by :func:`frame_pattern` from a decoded frame.

    The code survives lossy encoding, scaling by whole factors, and a 60/40 blend with any mask
    colour (white stays >= 153, black <= 102).

    Args:
        image: (H, W, 3) BGR or (H, W) gray uint8 frame of the size it was drawn at.

    Returns:
        The frame index modulo 1024.
    """
    height, width = image.shape[:2]
    cell, strip = _code_geometry(width, height)
    luma = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    code = 0
    for bit in range(CODE_BITS):
        x0 = bit * cell
        patch = luma[strip // 4 : strip - strip // 4, x0 + cell // 4 : x0 + cell - cell // 4]
        code = code << 1 | int(patch.mean() > 127)
    return code


def _tone(start: int, count: int, rate: int, channels: int) -> np.ndarray:
    """Return (channels, count) float32 samples of the test tone beginning at sample ``start``."""
    t = (start + np.arange(count)) / rate
    rows = [0.25 * np.sin(2 * np.pi * TONES_HZ[c % len(TONES_HZ)] * t) for c in range(channels)]
    return np.asarray(rows, np.float32)


def _write_audio(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    start: float,
    seconds: float,
) -> None:
    """Encode the test tone from ``start`` for ``seconds`` into ``stream`` and mux it."""
    rate = stream.codec_context.sample_rate
    channels = stream.codec_context.layout.nb_channels
    layout = stream.codec_context.layout.name
    first = round(start * rate)
    total = round(seconds * rate)
    block = 4096
    for pos in range(0, total, block):
        samples = _tone(first + pos, min(block, total - pos), rate, channels)
        interleaved = np.round(samples.T * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout=layout)
        frame.sample_rate = rate
        frame.pts = first + pos
        frame.time_base = Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _container_options(path: Path, faststart: bool) -> dict[str, str]:
    return {"movflags": "+faststart"} if faststart and path.suffix.lower() in _MP4_FAMILY else {}


def make_video(
    path: str | os.PathLike[str],
    *,
    frames: int = 12,
    width: int = 160,
    height: int = 96,
    fps: int | Fraction = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio: str | None = None,
    audio_rate: int = 48000,
    audio_channels: int = 2,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    rotation: int | None = None,
    faststart: bool = False,
    gop: int | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Write a test clip of :func:`frame_pattern` frames; the container follows the file suffix.

    Args:
        path: Output file (``.mp4``, ``.mov``, ``.mkv``, ``.avi``...). Parent folders must exist.
        frames: Number of video frames.
        width: Frame width; libx264 with 4:2:0 needs it even (see the module notes).
        height: Frame height; same constraint.
        fps: Nominal frame rate; also the spacing of frames when ``pts`` is None.
        codec: Video encoder name as FFmpeg knows it.
        pix_fmt: Pixel format handed to the encoder.
        audio: Audio encoder (``"aac"``, ``"mp3"``, ``"pcm_mulaw"`` in ``.mov``...), or None for no
            audio. The track is a sine per channel (:data:`TONES_HZ`) spanning exactly the video,
            from its first pts to the end of its last frame.
        audio_rate: Audio sample rate in Hz.
        audio_channels: 1 (mono) or 2 (stereo).
        pts: Presentation time of every frame in ``time_base`` units, increasing (a variable frame
            rate clip, possibly not starting at 0). Each frame lasts until the next one; the last
            one lasts ``1 / fps``. B-frames are off (``bf=0``) unless ``options`` sets ``bf``.
            With audio and a first pts > 0, the MP4 muxer keeps the AAC priming (1024 samples) in
            the audio track: its start is 21 ms early and its duration 21 ms long at 48 kHz.
        time_base: Unit of ``pts``. Default ``1 / fps`` without ``pts`` and ``1/1000`` (ms) with it.
            The MP4 muxer then picks its own finer track timescale; times in seconds are kept.
        rotation: Display rotation in degrees counter-clockwise, written as a display matrix (the
            value ffprobe prints as ``rotation`` and PyAV's ``VideoFrame.rotation`` reads; a phone
            held upright writes 270 a.k.a. -90). OpenCV's ``CAP_PROP_ORIENTATION_META`` reports the
            clockwise angle ``(360 - rotation) % 360`` and, by default, turns the frames itself.
        faststart: For MP4/MOV, move the index (``moov``) in front of the media data. Without it the
            index is at the end, so a truncated copy cannot be opened at all.
        gop: Keyframe interval in frames; None keeps the encoder's default (250 for libx264).
        options: Extra encoder options, e.g. ``{"crf": "35", "bf": "0"}``. For libx264 the default
            ``{"x264-params": "asm=0"}`` (no SIMD) keeps the output byte-identical from run to
            run; passing your own ``x264-params`` replaces it.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    fps = Fraction(fps)
    if time_base is None:
        time_base = 1 / fps if pts is None else Fraction(1, 1000)
    period = round(1 / (fps * time_base))
    if pts is None:
        stamps = [round(i / (fps * time_base)) for i in range(frames)]
    else:
        stamps = list(pts)
        if len(stamps) != frames or any(b <= a for a, b in itertools.pairwise(stamps)):
            raise ValueError(f"pts must hold {frames} increasing values, got {stamps}")
    ends = [*stamps[1:], stamps[-1] + period]
    durations = {p: e - p for p, e in zip(stamps, ends, strict=True)}

    with av.open(str(path), "w", options=_container_options(path, faststart)) as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = time_base
        video.codec_context.time_base = time_base
        if gop is not None:
            video.codec_context.gop_size = gop
        opts = dict(options or {})
        if pts is not None:
            # With B-frames the encoder derives evenly spaced dts from a VFR clip, and the MP4 muxer
            # then writes a track (and edit list) shorter than the last frame's end: avoid them.
            opts.setdefault("bf", "0")
        if codec == "libx264":
            # With its AVX-512 code, x264 encoded the same frames differently in up to half of the runs
            # on an AVX-512 test machine; its plain C code is deterministic and fast at these sizes.
            opts.setdefault("x264-params", "asm=0")
        if codec == "libx265":
            opts.setdefault("x265-params", "log-level=error")
        video.options = opts
        if rotation is not None:
            video.set_display_rotation(rotation)
        sound = None
        if audio is not None:
            layout = {1: "mono", 2: "stereo"}[audio_channels]
            sound = container.add_stream(audio, rate=audio_rate, layout=layout)

        def mux_video(packets: list[av.Packet]) -> None:
            for packet in packets:
                if packet.pts is not None:
                    packet.duration = durations.get(packet.pts, period)
                container.mux(packet)

        for i, stamp in enumerate(stamps):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, width, height), format="bgr24")
            frame.pts = stamp
            frame.time_base = time_base
            mux_video(video.encode(frame))
        mux_video(video.encode(None))
        if sound is not None:
            start = float(stamps[0] * time_base)
            _write_audio(container, sound, start, float((ends[-1] - stamps[0]) * time_base))
    return path


def make_audio_only(
    path: str | os.PathLike[str],
    seconds: float = 1.0,
    *,
    codec: str = "aac",
    rate: int = 48000,
    channels: int = 2,
) -> Path:
    """Write a file with one audio stream (the :data:`TONES_HZ` sines) and no video.

    Args:
        path: Output file, e.g. ``.m4a`` or ``.mp4`` for AAC.
        seconds: Duration of the track.
        codec: Audio encoder name.
        rate: Sample rate in Hz.
        channels: 1 or 2.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    with av.open(str(path), "w") as container:
        layout = {1: "mono", 2: "stereo"}[channels]
        stream = container.add_stream(codec, rate=rate, layout=layout)
        _write_audio(container, stream, 0.0, seconds)
    return path


def truncate(src: str | os.PathLike[str], dst: str | os.PathLike[str], fraction: float) -> Path:
    """Copy the first ``fraction`` of the bytes of ``src`` to ``dst`` (a download cut short).

    Measured with :func:`make_video` MP4s: without faststart the index is lost and opening the
    copy raises an ``av.error.FFmpegError`` (``InvalidDataError``, or ``EOFError`` when the cut
    falls inside the index); with faststart it opens, decodes the frames whose bytes survived, and
    decoding the last, partial packet raises ``InvalidDataError``.

    Args:
        src: Source file.
        dst: Destination file.
        fraction: Share of the bytes kept, 0 < fraction < 1.

    Returns:
        ``dst`` as a :class:`~pathlib.Path`.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def video_packets(path: str | os.PathLike[str]) -> list[tuple[int, int, bool]]:
    """List the video packets of a file in file (decode) order.

    Args:
        path: Media file with a video stream.

    Returns:
        One ``(byte offset, size, is_keyframe)`` per non-empty packet.
    """
    with av.open(str(path)) as container:
        return [(p.pos, p.size, p.is_keyframe) for p in container.demux(video=0) if p.size and p.pos >= 0]


def corrupt_packets(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    packets: Sequence[int] | None = None,
    count: int = 3,
    keep: int = 0,
    seed: int = 0,
) -> Path:
    """Copy ``src`` with the payload of some video packets overwritten by random bytes.

    The container structure stays intact, so the copy opens and demuxes normally. What the decoder
    makes of it depends on ``keep`` (measured with libx264 MP4s): with ``keep=0`` the NAL length
    prefix is destroyed and decoding each damaged packet raises ``av.error.InvalidDataError``
    (that frame is lost, later ones decode); with ``keep >= 16`` the slice headers survive, the
    decoder conceals the damage silently and every frame comes out, some of them garbled.

    Args:
        src: Source MP4/MOV/MKV file.
        dst: Destination file.
        packets: Indices into :func:`video_packets` of the packets to damage. Default: ``count``
            consecutive packets in the middle of the stream.
        count: Number of packets damaged when ``packets`` is None.
        keep: Leading bytes of each packet left intact.
        seed: Seed of the garbage bytes.

    Returns:
        ``dst`` as a :class:`~pathlib.Path`.
    """
    table = video_packets(src)
    if packets is None:
        first = max(0, len(table) // 2 - count // 2)
        packets = range(first, min(len(table), first + count))
    rng = np.random.default_rng(seed)
    data = bytearray(Path(src).read_bytes())
    for index in packets:
        pos, size, _ = table[index]
        n = max(0, size - keep)
        data[pos + keep : pos + size] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    dst = Path(dst)
    dst.write_bytes(bytes(data))
    return dst


def top_level_boxes(path: str | os.PathLike[str]) -> list[str]:
    """Return the types of the top-level ISO-BMFF (MP4/MOV) boxes of a file, in file order.

    Stops quietly at a truncated or malformed box.
    """
    names: list[str] = []
    with open(path, "rb") as fh:
        size_total = os.fstat(fh.fileno()).st_size
        offset = 0
        while offset + 8 <= size_total:
            fh.seek(offset)
            size, kind = struct.unpack(">I4s", fh.read(8))
            if size == 1:
                if offset + 16 > size_total:
                    break
                (size,) = struct.unpack(">Q", fh.read(8))
            elif size == 0:
                size = size_total - offset
            if size < 8:
                break
            names.append(kind.decode("latin-1"))
            offset += size
    return names


def is_faststart(path: str | os.PathLike[str]) -> bool:
    """Tell whether an MP4/MOV file has its ``moov`` index before its first ``mdat``."""
    boxes = top_level_boxes(path)
    if "moov" not in boxes:
        return False
    return "mdat" not in boxes or boxes.index("moov") < boxes.index("mdat")


def read_frames(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """Decode every video frame of a file with PyAV, skipping packets that fail to decode.

    Args:
        path: Media file with a video stream.

    Returns:
        (H, W, 3) uint8 BGR frames in presentation order, display rotation not applied.
    """
    images: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            images.extend(frame.to_ndarray(format="bgr24") for frame in frames)
    return images


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


def probe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe a media file by demuxing and decoding all of it with PyAV.

    Decoding errors of single packets are counted, not raised; failing to open raises the
    ``av.error.FFmpegError`` that PyAV raised.

    Args:
        path: Media file.

    Returns:
        ``{"format": demuxer name, "faststart": bool, or None for a non-MP4/MOV file,
        "video": None or {"codec", "profile", "pix_fmt" (decoder output), "width", "height",
        "frames" (decoded), "pts" (seconds, presentation order), "duration", "stream_duration",
        "rotation", "average_rate", "decode_errors"},
        "audio": None or {"codec", "sample_rate", "channels", "samples" (decoded), "duration",
        "stream_duration", "decode_errors"}}``.

        Video ``duration`` is last pts + last frame's duration - first pts, in seconds (the frame's
        duration from the container, else 1 / average rate). Audio ``duration`` is the
        container's stream duration (which for AAC/MP3 in MP4 excludes encoder delay and padding),
        else decoded samples / rate. ``stream_duration`` is the container's figure or None.
        ``rotation`` is in degrees counter-clockwise, 0 <= rotation < 360 (see :func:`make_video`).
    """
    path = Path(path)
    with av.open(str(path)) as container:
        vstream = container.streams.video[0] if container.streams.video else None
        astream = container.streams.audio[0] if container.streams.audio else None
        streams = [s for s in (vstream, astream) if s is not None]
        times: list[float] = []
        last_duration: float | None = None
        rotation = 0
        nframes = 0
        samples = 0
        errors = {"video": 0, "audio": 0}
        for packet in container.demux(streams):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                errors[packet.stream.type] += 1
                continue
            for frame in decoded:
                if isinstance(frame, av.VideoFrame):
                    if nframes == 0:
                        rotation = frame.rotation % 360
                    nframes += 1
                    if frame.pts is not None:
                        times.append(float(frame.pts * frame.time_base))
                    last_duration = float(frame.duration * frame.time_base) if frame.duration else None
                else:
                    samples += frame.samples

        result: dict[str, Any] = {
            "format": container.format.name,
            "faststart": is_faststart(path) if path.suffix.lower() in _MP4_FAMILY else None,
            "video": None,
            "audio": None,
        }
        if vstream is not None:
            ctx = vstream.codec_context
            rate = vstream.average_rate
            duration = None
            if times:
                step = last_duration if last_duration is not None else float(1 / rate) if rate else 0.0
                duration = times[-1] - times[0] + step
            result["video"] = {
                "codec": ctx.name,
                "profile": vstream.profile,
                "pix_fmt": ctx.pix_fmt,
                "width": ctx.width,
                "height": ctx.height,
                "frames": nframes,
                "pts": times,
                "duration": duration,
                "stream_duration": _seconds(vstream.duration, vstream.time_base),
                "rotation": rotation,
                "average_rate": rate,
                "decode_errors": errors["video"],
            }
        if astream is not None:
            ctx = astream.codec_context
            stream_duration = _seconds(astream.duration, astream.time_base)
            result["audio"] = {
                "codec": ctx.name,
                "sample_rate": ctx.sample_rate,
                "channels": ctx.layout.nb_channels,
                "samples": samples,
                "duration": stream_duration if stream_duration is not None else samples / ctx.sample_rate,
                "stream_duration": stream_duration,
                "decode_errors": errors["audio"],
            }
    return result


CLIP_TREE = ("a.mp4", "day1/b.mp4", "day1/c.mov", "day2/d.mkv", "day2/deep/e.mp4", "day2/deep/damaged.mp4")
"""Relative paths of :func:`make_clip_tree`'s clips; the last one is not a video."""


def make_clip_tree(
    root: str | os.PathLike[str], names: Sequence[str] = CLIP_TREE, frames: int = 12, width: int = 64, height: int = 48
) -> list[Path]:
    """Write a folder of tiny clips in subfolders (a batch's input); a name containing
    ``damaged`` gets bytes that no demuxer reads.

    Returns:
        The files written, in the order of ``names``.
    """
    paths = []
    for name in names:
        path = Path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if "damaged" in name:
            path.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video " * 64)
        else:
            make_video(path, frames=frames, width=width, height=height)
        paths.append(path)
    return paths


class SlowModel:
    """A real model made deliberately slow: each forward pass takes at least ``delay`` seconds.

    The delay is a sleep, so a test sees a model slower than its source without loading the CPU
    it shares with the other threads.
    """

    def __init__(self, model, delay: float) -> None:
        self.model, self.delay = model, delay

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def infer(self, batch):
        t0 = time.perf_counter()
        masks = self.model.infer(batch)
        time.sleep(max(0.0, self.delay - (time.perf_counter() - t0)))
        return masks
