"""Video output formats by extension: H.264 MP4, and the two that keep an alpha channel.

H.264 in MP4 has no alpha. A transparent video (the ``cutout`` effect) is written as WebM
(VP9, ``yuva420p``: the alpha travels as a second VP9 layer that browsers play) or MOV
(ProRes 4444, ``yuva444p10le``: what editors take). Reading a VP9 alpha back needs the
``libvpx-vp9`` decoder: FFmpeg's own ``vp9`` decoder drops the alpha layer.

H.264 frames are converted to 4:2:0 by OpenCV (BT.601 coefficients, limited range; about a
third of the CPU time of libswscale's ``bgr24`` path here) and the stream is tagged with that
matrix and range, so players do not have to guess. Encoders run frame threads where they have
them: libx264's frame threads cost less CPU a frame than its slice threads (PyAV's default).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import ColorRange

from ..base.errors import OutputError, SourceError, one_line


@dataclass(frozen=True, slots=True)
class VideoFormat:
    """How to encode a video for one output extension.

    Attributes:
        extension: ``".mp4"``, ``".webm"`` or ``".mov"``.
        container: the muxer name.
        codec: the video encoder.
        pix_fmt: the encoded pixel format.
        alpha: frames are BGRA and the alpha is kept.
        options: encoder options.
        audio_copy: audio codecs the container takes as they are; others are transcoded.
        audio_codec: the audio encoder for transcoding.
        even_size: the pixel format needs an even width and height (4:2:0).
    """

    extension: str
    container: str
    codec: str
    pix_fmt: str
    alpha: bool
    options: dict[str, str] = field(default_factory=dict)
    audio_copy: frozenset[str] = frozenset()
    audio_codec: str = "aac"
    even_size: bool = True

    @property
    def input_format(self) -> str:
        """The PyAV name of the frames handed in: ``"bgra"`` with alpha, else ``"bgr24"``."""
        return "bgra" if self.alpha else "bgr24"


MP4 = VideoFormat(
    ".mp4", "mp4", "libx264", "yuv420p", False, {"preset": "veryfast", "crf": "20"},
    frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}),
)  # fmt: skip
WEBM_ALPHA = VideoFormat(
    ".webm", "webm", "libvpx-vp9", "yuva420p", True,
    {"crf": "12", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
    frozenset({"opus", "vorbis"}), "libopus",
)  # fmt: skip
MOV_ALPHA = VideoFormat(
    ".mov", "mov", "prores_ks", "yuva444p10le", True, {"profile": "4444", "vendor": "apl0"},
    frozenset({"aac", "mp3", "alac", "pcm_s16le", "pcm_s24le"}), "aac", even_size=False,
)  # fmt: skip

ALPHA_FORMATS: dict[str, VideoFormat] = {f.extension: f for f in (WEBM_ALPHA, MOV_ALPHA)}
"""Output extensions that keep an alpha channel (the same as ``registry.ALPHA_EXTENSIONS``)."""

BT601 = 6
"""FFmpeg's ``AVCOL_SPC_SMPTE170M``: the BT.601 matrix of OpenCV's ``COLOR_BGR2YUV_I420``."""


def video_format(path: str | os.PathLike[str], alpha: bool = False) -> VideoFormat:
    """The format to write ``path`` in.

    Args:
        path: the output file; its extension picks the format when ``alpha`` is set.
        alpha: the frames carry an alpha channel that must be kept.

    Raises:
        OutputError: ``alpha`` and an extension without alpha (``.mp4``): one line naming the fix.
    """
    if not alpha:
        return MP4
    ext = Path(path).suffix.lower()
    if ext not in ALPHA_FORMATS:
        stem = Path(path).with_suffix("")
        raise OutputError(
            f"{Path(path).name}: {ext or 'this output'} cannot hold transparency (H.264 has no alpha); "
            f"write {stem}.webm (VP9) or {stem}.mov (ProRes 4444)"
        )
    return ALPHA_FORMATS[ext]


def add_video_stream(
    container: av.container.OutputContainer,
    fmt: VideoFormat,
    width: int,
    height: int,
    rate: object,
    threads: int = 0,
) -> av.VideoStream:
    """Add the video stream of ``fmt`` to ``container`` (the caller sets its time base).

    Args:
        width, height: the encoded size (even for 4:2:0 formats).
        rate: the nominal frame rate (a ``Fraction``).
        threads: encoder threads (0: the encoder decides).
    """
    stream = container.add_stream(fmt.codec, rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = fmt.pix_fmt
    stream.options = dict(fmt.options)
    stream.codec_context.thread_count = threads
    stream.codec_context.thread_type = "AUTO"  # frame threads where the encoder has them, else slices
    if fmt.pix_fmt == "yuv420p":  # what video_frame() hands in
        stream.codec_context.colorspace = BT601
        stream.codec_context.color_range = ColorRange.MPEG
    return stream


def video_frame(fmt: VideoFormat, image: np.ndarray) -> av.VideoFrame:
    """``image`` (``fmt.input_format``, even size for 4:2:0) as a frame for ``fmt``'s encoder.

    ``yuv420p`` formats get the frame already converted by OpenCV (BT.601, limited range, as
    :func:`add_video_stream` tags the stream); others are converted by the encoder's scaler.
    """
    if fmt.pix_fmt == "yuv420p":
        return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
    return av.VideoFrame.from_ndarray(image, format=fmt.input_format)


def read_bgra(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Decode a video with its alpha, frame by frame.

    Uses the ``libvpx-vp9`` decoder for VP9 (FFmpeg's ``vp9`` decoder drops the alpha).

    Yields:
        ``(H, W, 4)`` uint8 BGRA frames (alpha 255 where the file has none).

    Raises:
        SourceError: the file cannot be opened or decoded.
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            decoder = None
            if stream.codec_context.name == "vp9":
                decoder = av.CodecContext.create("libvpx-vp9", "r")
            packets = container.demux(stream)
            for packet in packets:
                if decoder is not None and packet.size == 0:
                    continue  # the demuxer's flush packet: flushed below
                frames = decoder.decode(packet) if decoder is not None else packet.decode()
                for frame in frames:
                    yield frame.to_ndarray(format="bgra")
            if decoder is not None:
                for frame in decoder.decode(None):
                    yield frame.to_ndarray(format="bgra")
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise SourceError(f"cannot read {path}: {one_line(exc)}") from exc
