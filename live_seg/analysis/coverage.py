"""Class coverage over time: a CSV row per frame and a chart, both written streaming.

:class:`Coverage` is a mask sink (see :mod:`live_seg.analysis.masks`). For each output mask (at
the model's size: the model sees the frame stretched to a square, which keeps every region's
share of the picture) it computes the share of pixels of each class and

* appends a row ``index, pts, <one share per class>`` to ``NAME.partial.csv`` beside the
  output, flushed at least once a second, so a crash (or a kill) loses at most the last
  second of rows; that file has a column for every class of the model;
* on :meth:`Coverage.close` rewrites it, row by row, into the final CSV with only the classes
  *seen in the run* (a column of zeros for each of the 21 VOC classes tells nothing), then
  removes the partial file. Seen classes can only be known at the end of a stream, hence the
  rewrite; it reads one line at a time, so memory stays flat;
* keeps a bounded summary for the chart: at most :data:`PLOT_POINTS` time bins; when they
  are full, neighbouring bins are merged and each new bin covers twice as many frames. A run
  of hours keeps the same few hundred kB, and the chart still shows every class's share over
  the whole run (each point the mean of its bin).
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..base.errors import OutputError, one_line
from ..base.files import written_beside
from ..base.frames import Mask
from ..base.redact import redact_text
from ..render.renderer import voc_palette
from .masks import check_file_path

log = logging.getLogger(__name__)

FLUSH_S = 1.0
"""Rows are flushed to the partial file at least this often (a crash loses at most this much)."""

PLOT_POINTS = 1024
"""Time bins kept for the chart (each point the mean share over its bin)."""

MINOR_SHARE = 0.02
"""Classes whose share never reaches this are drawn thin and not listed one by one in the chart."""

SHARE_DIGITS = 6
"""Decimals of the shares in the CSV (a pixel of a 512x512 mask is 3.8e-6)."""


def column_names(categories: Sequence[str]) -> list[str]:
    """CSV column names of the classes: the categories, ``__background__`` shown as ``background``."""
    return [name.strip("_") or f"class_{i}" for i, name in enumerate(categories)]


def partial_path(path: Path) -> Path:
    """Where rows go while the run lasts: ``NAME.partial.csv`` beside ``NAME.csv``."""
    return path.with_name(f"{path.stem}.partial{path.suffix or '.csv'}")


def shares(mask: Mask, num_classes: int) -> np.ndarray:
    """``(num_classes,)`` float64 share of the mask's pixels per class id (sums to 1)."""
    counts = np.bincount(mask.ravel(), minlength=num_classes)[:num_classes]
    return counts / max(mask.size, 1)


class CoverageSeries:
    """Mean class shares over time in at most ``points`` bins (bounded memory, any run length).

    Args:
        num_classes: classes per row.
        points: bins kept; must be even.
    """

    def __init__(self, num_classes: int, points: int = PLOT_POINTS) -> None:
        self.points = points + points % 2
        self.width = 1  # frames per bin
        self.sums = np.zeros((self.points, num_classes))
        self.times = np.zeros(self.points)
        self.counts = np.zeros(self.points, dtype=np.int64)
        self.used = 0
        self.seen = np.zeros(num_classes, dtype=bool)

    def add(self, pts: float, row: np.ndarray) -> None:
        """Add one frame's shares ``row`` shown at ``pts`` seconds."""
        if self.used and self.counts[self.used - 1] < self.width:
            i = self.used - 1
        else:
            if self.used == self.points:
                self._halve()
            i = self.used
            self.used += 1
        self.sums[i] += row
        self.times[i] += pts
        self.counts[i] += 1
        self.seen |= row > 0

    def _halve(self) -> None:
        half = self.points // 2
        for arr in (self.sums, self.times, self.counts):
            arr[:half] = arr[0::2] + arr[1::2]
            arr[half:] = 0
        self.used = half
        self.width *= 2

    def means(self) -> tuple[np.ndarray, np.ndarray]:
        """``(times, shares)``: bin mean times ``(n,)`` in seconds and mean shares ``(n, C)``."""
        n = self.counts[: self.used].astype(np.float64)
        return self.times[: self.used] / n, self.sums[: self.used] / n[:, None]


class Coverage:
    """Per-frame class shares into a CSV and/or a chart (a mask sink).

    Args:
        categories: class names, index = class id.
        csv_path: the final CSV, or ``None``.
        plot_path: the final PNG chart, or ``None`` (needs matplotlib: the ``plot`` extra).
        overwrite: replace existing files.
        title: the chart's title (the input's name, say).

    Raises:
        OutputError: a path cannot be written, or matplotlib is missing for a chart (checked
            here, before any frame).
    """

    def __init__(
        self,
        categories: Sequence[str],
        csv_path: str | os.PathLike[str] | None = None,
        plot_path: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        title: str = "",
    ) -> None:
        self.names = column_names(categories)
        self.num_classes = len(self.names)
        self.title = title
        self.csv_path = check_file_path(csv_path, overwrite, ".csv") if csv_path is not None else None
        self.plot_path = check_file_path(plot_path, overwrite, ".png") if plot_path is not None else None
        if self.plot_path is not None:
            _pyplot()  # fail now, not after the run
        self.series = CoverageSeries(self.num_classes)
        self.frames = 0
        self.file = None
        self.writer = None
        if self.csv_path is not None:
            self.partial = partial_path(self.csv_path)
            if self.partial.exists() and not overwrite:
                raise OutputError(
                    f"{self.partial} holds the rows of an earlier run that did not finish; move it or pass --overwrite"
                )
            try:
                self.file = open(self.partial, "w", newline="", encoding="utf-8")
            except OSError as exc:
                raise OutputError(f"cannot write {self.partial}: {one_line(exc)}") from exc
            self.writer = csv.writer(self.file)
            self.writer.writerow(["index", "pts", *self.names])
            self.file.flush()
        self.flushed_at = time.monotonic()
        self.closed = False

    def write(self, index: int, pts: float, mask: Mask) -> None:
        """Record the class shares of ``mask`` (model size) for frame ``index`` at ``pts`` seconds."""
        row = shares(mask, self.num_classes)
        self.series.add(pts, row)
        self.frames += 1
        if self.writer is None:
            return
        self.writer.writerow([index, f"{pts:.6f}", *(f"{v:.{SHARE_DIGITS}f}" for v in row)])
        now = time.monotonic()
        if now - self.flushed_at >= FLUSH_S:
            self.file.flush()
            self.flushed_at = now

    def close(self, complete: bool = True) -> Path | None:
        """Write the final CSV (seen classes only) and the chart; return the CSV's path (or the
        chart's when there is no CSV), ``None`` when no frame was recorded (nothing is left)."""
        if self.closed:
            return None
        self.closed = True
        if self.file is not None:
            self.file.close()
            if not self.frames:
                self.partial.unlink(missing_ok=True)
            else:
                _drop_unseen(self.partial, self.csv_path, self.series.seen)
                log.info("wrote %s (%d rows)", self.csv_path, self.frames)
        if self.frames and self.plot_path is not None:
            times, means = self.series.means()
            plot_coverage(self.plot_path, times, means, self.names, title=self.title)
            log.info("wrote %s", self.plot_path)
        if not self.frames:
            return None
        return self.csv_path or self.plot_path

    def abort(self) -> None:
        """Drop everything written so far."""
        self.closed = True
        if self.file is not None:
            self.file.close()
            self.partial.unlink(missing_ok=True)


def _drop_unseen(partial: Path, final: Path, seen: np.ndarray) -> None:
    """Copy ``partial`` to ``final`` keeping ``index``, ``pts`` and the seen classes' columns;
    through a temporary name, one line at a time; ``partial`` is removed."""
    keep = [0, 1, *(2 + int(i) for i in np.flatnonzero(seen))]
    try:
        with (
            written_beside(final) as tmp,
            open(partial, newline="", encoding="utf-8") as src,
            open(tmp, "w", newline="", encoding="utf-8") as dst,
        ):
            out = csv.writer(dst)
            for row in csv.reader(src):
                out.writerow([row[i] for i in keep])
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {one_line(exc)}; the rows are in {partial}") from exc
    partial.unlink(missing_ok=True)


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or an :class:`OutputError` naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise OutputError("the coverage chart needs matplotlib: pip install 'live-seg[plot]'") from exc
    return plt


def plot_coverage(path: Path, times: np.ndarray, means: np.ndarray, names: Sequence[str], title: str = "") -> Path:
    """Draw each seen class's share of the picture over time, in its VOC palette colour.

    Classes are listed in the legend by their mean share, largest first, with that mean;
    classes that never reach :data:`MINOR_SHARE` are drawn thin and summed up in one entry, so
    the legend stays short.

    Args:
        path: the PNG to write (through a temporary name).
        times: ``(n,)`` seconds.
        means: ``(n, C)`` shares in ``[0, 1]``.
        names: ``C`` class names.
        title: a title line (e.g. the input's name).
    """
    plt = _pyplot()
    palette = voc_palette(max(len(names), 1)).astype(np.float64) / 255
    overall = means.mean(axis=0)
    order = [int(i) for i in np.argsort(-overall) if means[:, i].max() > 0]
    major = [i for i in order if means[:, i].max() >= MINOR_SHARE]
    minor = [i for i in order if i not in major]
    fig, ax = plt.subplots(figsize=(10, max(4.2, 1.5 + 0.28 * (len(major) + 1))), dpi=120)
    try:
        for i in minor:
            ax.plot(times, means[:, i] * 100, color=palette[i], linewidth=0.8, alpha=0.6)
        for i in major:
            ax.plot(times, means[:, i] * 100, color=palette[i], linewidth=1.8,
                    label=f"{names[i]} ({overall[i] * 100:.1f} %)")  # fmt: skip
        if minor:
            ax.plot([], [], color="0.6", linewidth=0.8,
                    label=f"{len(minor)} more, under {MINOR_SHARE:.0%} each")  # fmt: skip
        ax.set_xlabel("time (s)")
        ax.set_ylabel("share of the picture (%)")
        ax.set_ylim(0, 100)
        ax.set_xlim(float(times[0]), float(times[-1]) if times[-1] > times[0] else float(times[0]) + 1)
        ax.grid(True, color="0.9")
        ax.set_title(f"Class coverage over time{' — ' + redact_text(title) if title else ''}", loc="left")
        ax.legend(title="class (mean share)", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        try:
            with written_beside(path, ".tmp.png") as tmp:
                fig.savefig(tmp, format="png")
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {one_line(exc)}") from exc
    finally:
        plt.close(fig)
    return path
