"""The video file output: H.264 MP4 (or WebM / MOV with alpha) encoded with PyAV, audio kept.

The writer encodes H.264 (libx264, yuv420p) into an MP4 with ``+faststart`` (BGRA frames with
alpha: VP9 in WebM or ProRes 4444 in MOV, by the output's extension), places each
frame at the timestamp it is given (variable frame rate is kept), and copies or transcodes
the source's audio in the same pass. It writes to a temporary name in the output's folder
and renames on :meth:`VideoWriter.close`, so the final name never holds a half-written file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..base.errors import OutputError, one_line
from ..base.files import PendingFile
from ..base.frames import Frame
from ..base.options import EncodeOptions
from .formats import MP4, VideoFormat, add_video_stream, video_format, video_frame

log = logging.getLogger(__name__)

AUDIO_COPY_CODECS = MP4.audio_copy
"""Audio codecs copied into MP4 as they are; anything else is transcoded to AAC."""

AAC_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000})
"""Sample rates the AAC encoder takes; audio at any other rate is resampled to 48 kHz."""

AUDIO_ENCODERS = {"aac": ("fltp", AAC_RATES), "libopus": ("flt", frozenset({8000, 12000, 16000, 24000, 48000}))}
"""Sample format and rates of each transcoding encoder (other rates are resampled to 48 kHz)."""


def check_output_path(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written.

    Jobs call this first, so that a bad output fails before a model is built or a frame is
    read; :class:`VideoWriter` then needs no probe of its own (its temporary file is one).

    Raises:
        OutputError: the folder is missing or not writable, the path is a folder, or the
            file exists and ``overwrite`` is False.
    """
    out = _output_target(path, overwrite)
    # Permissions alone do not tell (root, read-only mounts, special file systems): try.
    pending_beside(out, ".probe").discard()
    return out


def _output_target(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """``path`` as a file name that may be (over)written, from what the file system says."""
    out = Path(path)
    folder = out.parent
    if out.is_dir():
        raise OutputError(f"output is a folder: {out}; give a file name such as {out / 'out.mp4'}")
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {folder}")
    if out.exists() and not overwrite:
        raise OutputError(f"output exists: {out}; pass --overwrite to replace it")
    return out


def pending_beside(out: Path, suffix: str) -> PendingFile:
    """A :class:`~live_seg.base.files.PendingFile` for ``out`` (the caller commits or discards it).

    Raises:
        OutputError: the folder does not take new files.
    """
    try:
        return PendingFile(out, suffix)
    except OSError as exc:
        raise OutputError(f"output folder is not writable: {out.parent} ({one_line(exc)})") from exc


class _AudioPass:
    """Audio from the source file, muxed alongside the video as the video advances."""

    def __init__(
        self,
        src: Path,
        output: av.container.OutputContainer,
        offset: float,
        stop: threading.Event | None = None,
        fmt: VideoFormat = MP4,
    ) -> None:
        """Open the source's audio and add its stream to ``output``.

        ``stop``, once set, cuts the audio at the video's end (:attr:`video_end`): an
        interrupted run does not wait for a long (or still growing) audio track.

        Raises:
            av.error.FFmpegError, OSError, ValueError: the audio cannot be read or encoded;
                ``output`` is left untouched then.
        """
        self.input = av.open(str(src), metadata_errors="ignore")
        try:
            self.in_stream = self.input.streams.audio[0]
            self.offset = offset
            self.copy = self.in_stream.codec_context.name in fmt.audio_copy
            if self.copy:
                self.out_stream = output.add_stream_from_template(self.in_stream)
                self.out_stream.time_base = self.in_stream.time_base
            else:
                ctx = self.in_stream.codec_context
                sample_fmt, rates = AUDIO_ENCODERS[fmt.audio_codec]
                rate = ctx.sample_rate if ctx.sample_rate in rates else 48000
                # By channel count: a layout without channel order ("1 channels") is refused by AAC.
                layout = "mono" if ctx.channels == 1 else "stereo"
                probe = av.CodecContext.create(fmt.audio_codec, "w")  # fails here, before output is touched
                probe.sample_rate, probe.layout, probe.format = rate, layout, sample_fmt
                probe.open()
                self.out_stream = output.add_stream(fmt.audio_codec, rate=rate)
                self.out_stream.layout = layout
                self.resampler = av.AudioResampler(format=sample_fmt, layout=layout, rate=rate)
        except BaseException:
            self.input.close()
            raise
        self.output = output
        self.stop = stop
        self.video_end = float("inf")
        self.packets = self.input.demux(self.in_stream)
        self.done = False
        self.muxed_until = float("-inf")
        self.errors = 0

    def _mux_packet(self, packet: av.Packet) -> None:
        if self.copy:
            if packet.pts is not None:
                shift = round(self.offset / packet.time_base)
                packet.pts -= shift
                packet.dts = packet.dts - shift if packet.dts is not None else None
            packet.stream = self.out_stream
            self.output.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None
            for resampled in self.resampler.resample(frame):
                self.output.mux(self.out_stream.encode(resampled))

    def advance(self, until: float) -> None:
        """Mux source audio up to ``until`` seconds (output time); after a stop request, up to
        the video's end at most."""
        while not self.done and self.muxed_until <= until:
            if self.stop is not None and self.stop.is_set() and self.muxed_until > self.video_end:
                break
            try:
                packet = next(self.packets)
            except StopIteration:
                self.done = True
                break
            except av.error.FFmpegError:
                self.done = True
                break
            if packet.pts is None and packet.size == 0:
                continue
            if packet.pts is not None:
                self.muxed_until = float(packet.pts * packet.time_base) - self.offset
                if self.muxed_until < 0 and not self.copy:
                    continue
            try:
                self._mux_packet(packet)
            except (av.error.FFmpegError, ValueError) as exc:  # ValueError: format changed mid-stream
                self.errors += 1
                log.debug("audio packet skipped: %s", exc)

    def finish(self, until: float | None) -> None:
        """Mux the rest of the audio (up to ``until`` seconds when given), flush, close the input."""
        self.advance(float("inf") if until is None else until)
        if not self.copy:
            try:
                for resampled in self.resampler.resample(None):
                    self.output.mux(self.out_stream.encode(resampled))
                self.output.mux(self.out_stream.encode(None))
            except (av.error.FFmpegError, ValueError) as exc:
                self.errors += 1
                log.debug("audio flush failed: %s", exc)
        self.input.close()
        if self.errors:
            log.warning("audio: %d packet(s) could not be muxed and were skipped", self.errors)


class VideoWriter(contextlib.AbstractContextManager["VideoWriter"]):
    """Encode BGR frames into an H.264 MP4 (BGRA frames into WebM or MOV) at the timestamps given.

    Args:
        path: the final output file (``.mp4``; with ``alpha``, ``.webm`` or ``.mov``).
        width, height: frame size; odd sizes are padded by one pixel (right/bottom edge
            repeated) for the 4:2:0 formats, which need even sizes.
        fps: nominal rate, used for frames written without a timestamp.
        time_base: timestamp unit; the source's is best (exact pts).
        audio_from: a media file whose first audio stream is copied (AAC/MP3/…) or
            transcoded to AAC; ``None`` for no audio.
        audio_offset: seconds of the source's first video timestamp (output time 0).
        overwrite: replace an existing file.
        encode: libx264's preset and crf (``None``: :class:`~live_seg.base.options.EncodeOptions`' defaults).
        threads: encoder threads (0 = libx264 decides).
        stop: once set (an interrupt), the audio is cut at the last video frame on close.
        alpha: frames are ``(H, W, 4)`` BGRA and their alpha is kept (see :mod:`live_seg.media.formats`).

    Raises:
        OutputError: ``path`` cannot be written (as :func:`check_output_path` tells), cannot
            hold alpha, or the encoder cannot be set up.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: float = 25.0,
        time_base: Fraction | None = None,
        audio_from: str | os.PathLike[str] | None = None,
        audio_offset: float = 0.0,
        overwrite: bool = False,
        encode: EncodeOptions | None = None,
        threads: int = 0,
        stop: threading.Event | None = None,
        alpha: bool = False,
    ) -> None:
        self.format = video_format(path, alpha)
        self.path = _output_target(path, overwrite)
        self.width, self.height = width, height
        even = self.format.even_size
        self.enc_w, self.enc_h = width + (width % 2 if even else 0), height + (height % 2 if even else 0)
        if (self.enc_w, self.enc_h) != (width, height):
            log.warning("%dx%d is odd: padding to %dx%d for 4:2:0", width, height, self.enc_w, self.enc_h)
        self.fps = fps if fps and fps > 0 else 25.0
        self.time_base = time_base or Fraction(1, 90000)
        self.pending = pending_beside(self.path, f".partial{self.format.extension}")
        self.tmp = self.pending.path
        encode = encode or EncodeOptions()
        try:
            options = {"movflags": "+faststart"} if self.format.container in ("mp4", "mov") else {}
            self.container = av.open(str(self.tmp), mode="w", format=self.format.container, options=options)
            rate = Fraction(self.fps).limit_denominator(1001)
            self.stream = add_video_stream(self.container, self.format, self.enc_w, self.enc_h, rate, threads)
            self.stream.time_base = self.time_base
            self.stream.codec_context.time_base = self.time_base
            if self.format is MP4:
                tune = {"tune": encode.tune} if encode.tune else {}
                params = {"x264-params": encode.x264_params} if encode.x264_params else {}
                self.stream.options = {"preset": encode.preset, "crf": str(encode.crf), **tune, **params}
            self.audio = None
            if audio_from:
                try:
                    self.audio = _AudioPass(Path(audio_from), self.container, audio_offset, stop, self.format)
                except (av.error.FFmpegError, OSError, ValueError) as exc:
                    log.warning("the audio of %s cannot be kept (%s): writing the video only", audio_from, exc)
        except Exception as exc:
            self._discard()
            raise OutputError(f"cannot set up the encoder for {self.path}: {one_line(exc)}") from exc
        except BaseException:  # an interrupt: leave no temporary file behind
            self._discard()
            raise
        self.frames = 0
        self.last_pts: int | None = None
        self.last_time = 0.0
        self.closed = False

    def write(self, image: Frame, pts: float | None = None) -> None:
        """Encode one frame (BGR; BGRA with alpha) shown at ``pts`` seconds (``None``: one after the last).

        Timestamps must increase; a repeated or earlier one is moved one tick after the last.
        """
        if image.shape[0] != self.height or image.shape[1] != self.width:
            raise OutputError(
                f"frame size changed mid-stream: {image.shape[1]}x{image.shape[0]}, "
                f"the output was opened at {self.width}x{self.height}"
            )
        if (self.enc_w, self.enc_h) != (self.width, self.height):
            image = np.pad(image, ((0, self.enc_h - self.height), (0, self.enc_w - self.width), (0, 0)), mode="edge")
        ticks = round(pts / self.time_base) if pts is not None else None
        if ticks is None:
            ticks = 0 if self.last_pts is None else self.last_pts + max(1, round(1 / self.fps / self.time_base))
        if self.last_pts is not None and ticks <= self.last_pts:
            ticks = self.last_pts + 1
        frame = video_frame(self.format, image)
        frame.pts = ticks
        frame.time_base = self.time_base
        self.last_pts = ticks
        self.last_time = float(ticks * self.time_base)
        if self.audio is not None:
            self.audio.advance(self.last_time)
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self, complete: bool = True) -> Path | None:
        """Flush the encoder, finish the audio, close and move the file to its final name.

        Args:
            complete: the whole source was processed; when False (interrupted) the audio is
                cut at the last video frame.

        Returns:
            The final path, or ``None`` when no frame was written (nothing is left behind).
        """
        if self.closed:
            return self.path if self.frames else None
        self.closed = True
        try:
            self.container.mux(self.stream.encode(None))
            if self.audio is not None:
                self.audio.video_end = self.last_time + 1.0 / self.fps
                self.audio.finish(None if complete else self.audio.video_end)
            self.container.close()
        except Exception as exc:
            self._discard()
            raise OutputError(f"cannot finish writing {self.path}: {one_line(exc)}") from exc
        if not self.frames:
            self._discard()
            return None
        self.pending.commit()
        log.info("wrote %s (%d frames)", self.path, self.frames)
        return self.path

    def discard(self) -> None:
        """Drop the output: close it and delete the temporary file; nothing reaches the final name.

        Returns:
            ``None`` (no output), like :meth:`close` when no frame was written.
        """
        self.closed = True
        self._discard()

    def _discard(self) -> None:
        container = getattr(self, "container", None)
        audio = getattr(self, "audio", None)
        for closable in (container, audio.input if audio else None):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # noqa: BLE001 - best effort while discarding
                    pass
        self.pending.discard()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        elif not self.closed:
            self.close(complete=False)
