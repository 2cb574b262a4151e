"""Where per-frame masks go: palette PNGs, a lossless mask video, and the sinks' protocol.

A *mask sink* receives every output mask of a run in frame order (:class:`MaskSink`):
``write(index, pts, mask)`` then ``close(complete)``. The video and live jobs feed the same
sinks through one :class:`MaskOutputs`, which resizes a mask to the source's size once for the
sinks that want it. Sinks here and in :mod:`live_seg.analysis.coverage` and :mod:`live_seg.analysis.smoothing`:

* :class:`PngMasks` (``--masks DIR``): one palette PNG per frame, pixel value = class id;
* :class:`MaskVideo` (``--mask-video FILE.mkv``): the class ids as FFV1 gray video in
  Matroska, lossless, one frame per output frame at the same timestamp (Matroska keeps
  milliseconds); :func:`read_masks` reads it back;
* :class:`~live_seg.analysis.coverage.Coverage` (``--coverage``, ``--coverage-plot``) and
  :class:`~live_seg.analysis.smoothing.FlickerMeter` (``--stats``).

Every file is written under a temporary name and renamed once complete.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import numpy as np

from ..base.errors import OutputError, SourceError, one_line
from ..base.files import PendingFile, write_palette_png
from ..base.frames import Mask, check_mask
from ..media.writer import check_output_path
from ..render.alpha import upsample_threshold
from ..render.renderer import resize_mask, voc_palette

log = logging.getLogger(__name__)

MASK_NAME = re.compile(r"^\d{6,}_\d+ms\.png$")
"""File names :class:`PngMasks` writes (and, with ``overwrite``, replaces)."""

MKV_TIME_BASE = Fraction(1, 1000)
"""Matroska stores timestamps in milliseconds."""


class MaskSink(Protocol):
    """Something that takes a run's masks, in frame order."""

    def write(self, index: int, pts: float, mask: Mask) -> None:
        """Take the mask of frame ``index`` (0-based, source order) shown at ``pts`` seconds.

        ``mask`` is ``(H, W)`` uint8 class ids; the caller may reuse its buffer afterwards.
        """

    def close(self, complete: bool = True) -> Path | None:
        """Finish; ``complete`` is False after an interrupt (what was written is kept).
        Returns the file or folder written, or ``None``."""


def check_file_path(path: str | os.PathLike[str], overwrite: bool = False, suffix: str | None = None) -> Path:
    """Check before any work that a file can be written at ``path`` (and has ``suffix``).

    Raises:
        OutputError: wrong suffix, missing or read-only folder, a folder at ``path``, or an
            existing file without ``overwrite``.
    """
    out = Path(path)
    if suffix is not None and out.suffix.lower() != suffix:
        raise OutputError(f"{out}: expected a {suffix} file name, such as {out.with_suffix(suffix)}")
    return check_output_path(out, overwrite)


def mask_name(index: int, pts: float) -> str:
    """``000123_004920ms.png``: the frame index (6 digits at least), then its time in ms."""
    return f"{index:06d}_{max(0, round(pts * 1000)):06d}ms.png"


class PngMasks:
    """One palette PNG per frame in a folder (pixel value = class id, VOC colours).

    Args:
        folder: created if missing (its parent must exist).
        num_classes: palette entries.
        overwrite: remove masks of an earlier run in ``folder`` (only files named like
            :func:`mask_name`); without it, such files are an error.

    Raises:
        OutputError: the folder cannot be used (checked here, before any frame).
    """

    def __init__(self, folder: str | os.PathLike[str], num_classes: int = 21, overwrite: bool = False) -> None:
        self.folder = Path(folder)
        self.created = False
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"--masks: {self.folder} is a file; give a folder")
        if not self.folder.exists():
            if not self.folder.parent.is_dir():
                raise OutputError(f"--masks: folder {self.folder.parent} does not exist; create it first")
            try:
                self.folder.mkdir()
            except OSError as exc:
                raise OutputError(f"--masks: cannot create {self.folder}: {one_line(exc)}") from exc
            self.created = True
        old = [p for p in self.folder.iterdir() if MASK_NAME.match(p.name)]
        if old and not overwrite:
            raise OutputError(f"--masks: {self.folder} holds {len(old)} masks of an earlier run; pass --overwrite")
        try:
            with tempfile.TemporaryFile(dir=self.folder, prefix=".live_seg-probe."):
                pass
            for p in old:
                p.unlink()
        except OSError as exc:
            raise OutputError(f"--masks: folder is not writable: {self.folder} ({one_line(exc)})") from exc
        self.palette = voc_palette(num_classes).reshape(-1).tolist()
        self.frames = 0

    def write(self, index: int, pts: float, mask: Mask) -> None:
        """Write ``mask`` as ``mask_name(index, pts)`` (through a temporary name)."""
        target = self.folder / mask_name(index, pts)
        try:
            write_palette_png(target, check_mask(mask), self.palette)
        except OSError as exc:
            raise OutputError(f"--masks: cannot write {target}: {one_line(exc)}") from exc
        self.frames += 1

    def close(self, complete: bool = True) -> Path | None:
        """Return the folder; a folder this run created and left empty is removed."""
        if self.frames:
            log.info("wrote %d masks into %s", self.frames, self.folder)
            return self.folder
        if self.created:
            try:
                self.folder.rmdir()
            except OSError:
                pass
        return None


class MaskVideo:
    """Class ids as a lossless FFV1 gray video in Matroska, at the timestamps given.

    Args:
        path: the final ``.mkv`` file.
        overwrite: replace an existing file.

    Raises:
        OutputError: the path cannot be written (checked here, before any frame).
    """

    def __init__(self, path: str | os.PathLike[str], overwrite: bool = False) -> None:
        self.path = check_file_path(path, overwrite, ".mkv")
        try:
            self.pending = PendingFile(self.path, ".partial.mkv")
        except OSError as exc:
            raise OutputError(f"cannot create a file beside {self.path}: {one_line(exc)}") from exc
        try:
            self.container = av.open(str(self.pending.path), mode="w", format="matroska")
        except Exception as exc:
            self.pending.discard()
            raise OutputError(f"cannot write {self.path}: {one_line(exc)}") from exc
        self.stream = None
        self.shape: tuple[int, int] | None = None
        self.last_ms: int | None = None
        self.frames = 0
        self.closed = False

    def _open_stream(self, height: int, width: int) -> None:
        stream = self.container.add_stream("ffv1", rate=25)
        stream.width, stream.height = width, height
        stream.pix_fmt = "gray"
        stream.time_base = MKV_TIME_BASE
        stream.codec_context.time_base = MKV_TIME_BASE
        stream.metadata["title"] = "class ids"
        self.stream, self.shape = stream, (height, width)

    def write(self, index: int, pts: float, mask: Mask) -> None:
        """Encode ``mask`` shown at ``pts`` seconds (to the millisecond; a repeated or earlier
        time moves one millisecond after the last)."""
        mask = check_mask(mask)
        if self.stream is None:
            self._open_stream(*mask.shape)
        elif mask.shape != self.shape:
            raise OutputError(
                f"--mask-video: mask size changed mid-stream: {mask.shape[1]}x{mask.shape[0]}, "
                f"the file was opened at {self.shape[1]}x{self.shape[0]}"
            )
        ms = round(pts * 1000)
        if self.last_ms is not None and ms <= self.last_ms:
            ms = self.last_ms + 1
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(mask), format="gray")
        frame.pts, frame.time_base = ms, MKV_TIME_BASE
        self.last_ms = ms
        try:
            self.container.mux(self.stream.encode(frame))
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"--mask-video: cannot write {self.path}: {one_line(exc)}") from exc
        self.frames += 1

    def close(self, complete: bool = True) -> Path | None:
        """Flush, close and rename to the final name; ``None`` (nothing left) without frames."""
        if self.closed:
            return self.path if self.frames else None
        self.closed = True
        try:
            if self.stream is not None:
                self.container.mux(self.stream.encode(None))
            self.container.close()
        except Exception as exc:
            self.pending.discard()
            raise OutputError(f"cannot finish writing {self.path}: {one_line(exc)}") from exc
        if not self.frames:
            self.pending.discard()
            return None
        self.pending.commit()
        log.info("wrote %s (%d masks)", self.path, self.frames)
        return self.path

    def abort(self) -> None:
        """Drop the output."""
        self.closed = True
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - best effort while discarding
            pass
        self.pending.discard()


def read_masks(path: str | os.PathLike[str], with_pts: bool = False) -> Iterator[Mask | tuple[float, Mask]]:
    """Read back a mask video written by ``--mask-video``, one mask at a time.

    Args:
        path: the ``.mkv`` file.
        with_pts: yield ``(pts_seconds, mask)`` pairs instead of masks.

    Yields:
        ``(H, W)`` uint8 class ids per frame, in order (or ``(pts, mask)``).

    Raises:
        SourceError: the file cannot be opened or is not a gray (mask) video.
    """
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError(f"cannot open mask video {path}: {one_line(exc)}") from exc
    try:
        if not container.streams.video:
            raise SourceError(f"{path} has no video stream; expected a --mask-video file")
        stream = container.streams.video[0]
        if stream.codec_context.pix_fmt != "gray":
            raise SourceError(f"{path} is not a mask video (pixel format {stream.codec_context.pix_fmt}, not gray)")
        for frame in container.decode(stream):
            mask = frame.to_ndarray()
            if with_pts:
                yield (float(frame.pts * frame.time_base) if frame.pts is not None else 0.0), mask
            else:
                yield mask
    finally:
        container.close()


class MaskOutputs:
    """The mask sinks of one run, fed in frame order from one thread.

    Args:
        model_size: sinks that take masks at the model's size (coverage, flicker, and the
            mask files with ``--masks-size model``).
        source_size: sinks that take masks resized (nearest) to the source frame's size.
    """

    def __init__(self, model_size: Sequence[MaskSink] = (), source_size: Sequence[MaskSink] = ()) -> None:
        self.model_size = list(model_size)
        self.source_size = list(source_size)
        self.closed = False

    def __bool__(self) -> bool:
        return bool(self.model_size or self.source_size)

    def write(
        self,
        index: int,
        pts: float,
        mask: Mask,
        source_hw: tuple[int, int] | None = None,
        soft: np.ndarray | None = None,
    ) -> None:
        """Give every sink the mask of frame ``index`` at ``pts`` seconds.

        Args:
            mask: ``(h, w)`` uint8 class ids at the model's size.
            source_hw: the source frame's ``(height, width)``, needed when there are
                source-size sinks.
            soft: the model's foreground weight (:attr:`~live_seg.base.frames.SegResult.soft`), when it gives
                one: source-size masks are then its bilinear resize thresholded (as MediaPipe's graph upsamples
                its probability), not the nearest resize of ``mask``.
        """
        for sink in self.model_size:
            sink.write(index, pts, mask)
        if self.source_size:
            if source_hw is None:
                raise ValueError("source_hw: needed for masks at the source's size")
            big = resize_mask(mask, *source_hw) if soft is None else upsample_threshold(soft, *source_hw)
            for sink in self.source_size:
                sink.write(index, pts, big)

    def close(self, complete: bool = True) -> list[Path]:
        """Close every sink (all of them, even when one fails); return what was written.

        Raises:
            OutputError: the first sink that failed to finish (after closing the others).
        """
        if self.closed:
            return []
        self.closed = True
        written: list[Path] = []
        first: OutputError | None = None
        for sink in self.model_size + self.source_size:
            try:
                path = sink.close(complete)
            except OutputError as exc:
                first = first or exc
                continue
            if path is not None:
                written.append(path)
        if first is not None:
            raise first
        return written

    def abort(self) -> None:
        """Drop what the sinks that can drop (temporary files) have written."""
        self.closed = True
        for sink in self.model_size + self.source_size:
            abort = getattr(sink, "abort", None)
            if abort is not None:
                abort()
            else:
                sink.close(False)
