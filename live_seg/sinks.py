"""Where rendered frames go: an MP4 file encoded with PyAV.

The writer encodes H.264 (libx264, yuv420p) into an MP4 with ``+faststart``, places each
frame at the timestamp it is given (variable frame rate is kept), and copies or transcodes
the source's audio in the same pass. It writes to a temporary name in the output's folder
and renames on :meth:`VideoWriter.close`, so the final name never holds a half-written file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import OutputError
from .frames import Frame

log = logging.getLogger(__name__)

AUDIO_COPY_CODECS = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})
"""Audio codecs copied into MP4 as they are; anything else is transcoded to AAC."""


def check_output_path(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written.

    Raises:
        OutputError: the folder is missing or not writable, the path is a folder, or the
            file exists and ``overwrite`` is False.
    """
    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise OutputError(f"output is a folder: {out}; give a file name such as {out / 'out.mp4'}")
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {folder}")
    if out.exists() and not overwrite:
        raise OutputError(f"output exists: {out}; pass --overwrite to replace it")
    return out


class _AudioPass:
    """Audio from the source file, muxed alongside the video as the video advances."""

    def __init__(self, src: Path, output: av.container.OutputContainer, offset: float) -> None:
        self.input = av.open(str(src), metadata_errors="ignore")
        self.in_stream = self.input.streams.audio[0]
        self.offset = offset
        self.copy = self.in_stream.codec_context.name in AUDIO_COPY_CODECS
        if self.copy:
            self.out_stream = output.add_stream_from_template(self.in_stream)
            self.out_stream.time_base = self.in_stream.time_base
        else:
            rate = self.in_stream.codec_context.sample_rate or 48000
            self.out_stream = output.add_stream("aac", rate=rate)
            layout = self.in_stream.codec_context.layout.name if self.in_stream.codec_context.layout else "stereo"
            self.out_stream.layout = layout if self.in_stream.codec_context.channels <= 2 else "stereo"
            self.resampler = av.AudioResampler(format="fltp", layout=self.out_stream.layout, rate=rate)
        self.output = output
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
        """Mux source audio up to ``until`` seconds (output time)."""
        while not self.done and self.muxed_until <= until:
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
            except av.error.FFmpegError as exc:
                self.errors += 1
                log.debug("audio packet skipped: %s", exc)

    def finish(self, until: float | None) -> None:
        """Mux the rest of the audio (up to ``until`` seconds when given), flush, close the input."""
        self.advance(float("inf") if until is None else until)
        if not self.copy:
            for resampled in self.resampler.resample(None):
                self.output.mux(self.out_stream.encode(resampled))
            self.output.mux(self.out_stream.encode(None))
        self.input.close()
        if self.errors:
            log.warning("audio: %d packet(s) could not be muxed and were skipped", self.errors)


class VideoWriter:
    """Encode BGR frames into an H.264 MP4 at the timestamps given.

    Args:
        path: the final output file (``.mp4``).
        width, height: frame size; odd sizes are padded by one pixel (right/bottom edge
            repeated) because yuv420p needs even sizes.
        fps: nominal rate, used for frames written without a timestamp.
        time_base: timestamp unit; the source's is best (exact pts).
        audio_from: a media file whose first audio stream is copied (AAC/MP3/…) or
            transcoded to AAC; ``None`` for no audio.
        audio_offset: seconds of the source's first video timestamp (output time 0).
        overwrite: replace an existing file.
        preset, crf: libx264 settings.
        threads: encoder threads (0 = libx264 decides).
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
        preset: str = "veryfast",
        crf: int = 20,
        threads: int = 0,
    ) -> None:
        self.path = check_output_path(path, overwrite)
        self.width, self.height = width, height
        self.enc_w, self.enc_h = width + width % 2, height + height % 2
        if (self.enc_w, self.enc_h) != (width, height):
            log.warning("%dx%d is odd: padding to %dx%d for yuv420p", width, height, self.enc_w, self.enc_h)
        self.fps = fps if fps and fps > 0 else 25.0
        self.time_base = time_base or Fraction(1, 90000)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".partial.mp4", dir=self.path.parent or ".")
        os.close(fd)
        self.tmp = Path(tmp)
        try:
            self.container = av.open(str(self.tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
            rate = Fraction(self.fps).limit_denominator(1001)
            self.stream = self.container.add_stream("libx264", rate=rate)
            self.stream.width, self.stream.height = self.enc_w, self.enc_h
            self.stream.pix_fmt = "yuv420p"
            self.stream.time_base = self.time_base
            self.stream.codec_context.time_base = self.time_base
            self.stream.options = {"preset": preset, "crf": str(crf)}
            self.stream.codec_context.thread_count = threads
            self.audio = _AudioPass(Path(audio_from), self.container, audio_offset) if audio_from else None
        except Exception as exc:
            self._discard()
            raise OutputError(f"cannot set up the encoder for {self.path}: {exc}") from exc
        self.frames = 0
        self.last_pts: int | None = None
        self.last_time = 0.0
        self.closed = False

    def write(self, image: Frame, pts: float | None = None) -> None:
        """Encode one BGR frame shown at ``pts`` seconds (``None``: one frame after the last).

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
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
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
                end = None if complete else self.last_time + 1.0 / self.fps
                self.audio.finish(end)
            self.container.close()
        except Exception as exc:
            self._discard()
            raise OutputError(f"cannot finish writing {self.path}: {exc}") from exc
        if not self.frames:
            self._discard()
            return None
        os.replace(self.tmp, self.path)
        log.info("wrote %s (%d frames)", self.path, self.frames)
        return self.path

    def abort(self) -> None:
        """Drop the output: close and delete the temporary file."""
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
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        elif not self.closed:
            self.close(complete=False)


def show_image(title: str, path: str | os.PathLike[str]) -> None:
    """Show an image file in a resizable window until a key is pressed or the window closes."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OutputError(f"cannot read back {path} to show it")
    try:
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_GUI_NORMAL)
        cv2.imshow(title, image)
        while cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) >= 1:
            if cv2.waitKey(100) != -1:
                break
    except cv2.error as exc:
        raise OutputError(f"cannot open a window (no display?): {' '.join(str(exc).split())[:200]}") from exc
    finally:
        cv2.destroyAllWindows()
