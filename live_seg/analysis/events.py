"""What a run says about each frame, as data: event records and classes that appear or leave.

One :class:`FrameRecord` per source and processed frame becomes one JSON object (a line of
``--events``, the payload of ``--mqtt``'s ``PREFIX/<source>/frame``)::

    {"source": "front.mp4", "frame": 12, "pts": 0.48, "time": "2026-12-06T10:15:02.123Z",
     "key": true, "width": 1280, "height": 720, "coverage": {"background": 0.81, "person": 0.19},
     "masks": {"person": {"size": [720, 1280], "counts": "..."}, ...}}

``coverage`` holds the share of the mask's pixels of each class present (at the mask's own
size, as ``--coverage`` counts them; the shares sum to 1); ``key`` is False for a frame whose
mask was carried from a key frame; ``masks`` (``--events-masks rle``) holds each class present
in the mask resized to the source's size (nearest, as ``--masks-size source`` writes it) in
COCO's run-length encoding, which ``pycocotools.mask.decode`` reads back.

:class:`Presence` turns one source's coverage over time into appear/leave events (Frigate's
``new`` and ``end``): a class appears once its share is above the threshold for N frames in a
row, and leaves once it is at or below it for N frames in a row.

Torch-free; pycocotools is imported only when masks are encoded (the ``events`` extra).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..base.errors import OutputError
from ..base.frames import Mask
from ..render.renderer import resize_mask
from .coverage import shares

SHARE_DIGITS = 6
"""Decimals of a class share in a record."""


def utc_time(seconds: float) -> str:
    """A ``time.time()`` value as ISO 8601 UTC with milliseconds: ``2026-12-06T10:15:02.123Z``."""
    stamp = datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def class_shares(mask: Mask, categories: Sequence[str]) -> dict[str, float]:
    """The share of ``mask``'s pixels of each class present, by name (summing to 1 up to rounding).

    Args:
        mask: ``(H, W)`` uint8 class ids.
        categories: class names, index = class id.
    """
    row = shares(mask, len(categories))
    return {categories[i]: round(float(row[i]), SHARE_DIGITS) for i in np.flatnonzero(row)}


def coco_rle() -> Any:
    """``pycocotools.mask``.

    Raises:
        OutputError: pycocotools is not installed.
    """
    try:
        from pycocotools import mask as coco_mask
    except ImportError as exc:
        raise OutputError("--events-masks rle needs pycocotools: pip install 'live-seg[events]'") from exc
    return coco_mask


def rle_masks(mask: Mask, categories: Sequence[str], height: int, width: int) -> dict[str, dict[str, Any]]:
    """Each class present in ``mask`` resized to ``height x width`` (nearest), as COCO RLE.

    Returns:
        Class name → ``{"size": [height, width], "counts": str}`` (``counts`` decoded from
        pycocotools' bytes, so that the value is JSON; ``encode`` wants the bytes back).
    """
    coco = coco_rle()
    big = resize_mask(mask, height, width)
    counts = np.bincount(big.ravel(), minlength=len(categories))[: len(categories)]
    out: dict[str, dict[str, Any]] = {}
    for i in np.flatnonzero(counts):
        rle = coco.encode(np.asfortranarray(big == i, dtype=np.uint8))
        out[categories[i]] = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return out


class FrameRecord:
    """One source's processed frame as the JSON object the sinks send (see the module).

    The JSON line, and the masks' run-length encoding with it, is made once, on the first sink
    thread that asks for it (:meth:`line`), not on the thread that feeds the record.

    Args:
        fields: the record's fields but ``masks``.
        mask: ``(h, w)`` uint8 class ids to encode at ``fields``' ``height x width``, or ``None``
            for no ``masks`` field; the record keeps it until the line is made (not a copy).
        categories: class names, index = class id.
    """

    __slots__ = ("_categories", "_line", "_lock", "_mask", "fields")

    def __init__(self, fields: dict[str, Any], mask: Mask | None = None, categories: Sequence[str] = ()) -> None:
        self.fields = fields
        self._mask = mask
        self._categories = categories
        self._line: bytes | None = None
        self._lock = threading.Lock()

    def line(self) -> bytes:
        """The record as one line of compact JSON, ending in ``\\n``."""
        with self._lock:
            if self._line is None:
                fields = self.fields
                if self._mask is not None:
                    size = (fields["height"], fields["width"])
                    fields = {**fields, "masks": rle_masks(self._mask, self._categories, *size)}
                    self._mask = None
                self._line = json.dumps(fields, separators=(",", ":")).encode() + b"\n"
            return self._line

    def payload(self) -> bytes:
        """The record as JSON without the newline (an MQTT message)."""
        return self.line()[:-1]


def frame_fields(
    source: str, index: int, pts: float, wall: float, key: bool, frame_hw: tuple[int, int]
) -> dict[str, Any]:
    """A record's fields but ``coverage`` and ``masks``, in their order (see the module)."""
    height, width = (int(v) for v in frame_hw)
    return {"source": source, "frame": int(index), "pts": round(float(pts), 6), "time": utc_time(wall),
            "key": bool(key), "width": width, "height": height}  # fmt: skip


@dataclass(frozen=True)
class ClassEvent:
    """A class that appeared (``new``) or left (``end``) a source.

    Attributes:
        type: ``"new"`` or ``"end"``.
        label: the class name.
        coverage: its share in the frame that decided it.
        reason: ``"appeared"``, ``"left"``, or ``"ended"`` (the source ended while it was present).
    """

    type: str
    label: str
    coverage: float
    reason: str

    def payload(self, frame: Mapping[str, Any]) -> bytes:
        """The event as an MQTT message (Frigate's ``type`` and ``label``), with the
        ``source``, ``frame``, ``pts`` and ``time`` of the record ``frame`` that decided it."""
        fields = {"type": self.type, "label": self.label, "reason": self.reason, "coverage": self.coverage}
        fields.update((k, frame[k]) for k in ("source", "frame", "pts", "time"))
        return json.dumps(fields, separators=(",", ":")).encode()


class Presence:
    """Which classes one source shows, decided over consecutive frames (see the module).

    Args:
        threshold: a class is seen in a frame when its share is above this, ``0 <= T < 1``.
        frames: frames in a row that it takes to appear or to leave, ``>= 1``.

    Attributes:
        present: the classes that appeared and have not left.
    """

    def __init__(self, threshold: float, frames: int) -> None:
        self.threshold = threshold
        self.frames = frames
        self.present: set[str] = set()
        self._against: dict[str, int] = {}  # frames in a row that contradict a class's state
        self._last: Mapping[str, float] = {}

    def update(self, coverage: Mapping[str, float]) -> list[ClassEvent]:
        """Take one frame's class shares (in frame order); the events it decides."""
        events = []
        self._last = coverage
        for label in sorted(set(coverage) | self.present | set(self._against)):
            share = coverage.get(label, 0.0)
            present = label in self.present
            if (share > self.threshold) == present:
                self._against.pop(label, None)
                continue
            count = self._against.get(label, 0) + 1
            if count < self.frames:
                self._against[label] = count
                continue
            self._against.pop(label, None)
            if present:
                self.present.discard(label)
                events.append(ClassEvent("end", label, share, "left"))
            else:
                self.present.add(label)
                events.append(ClassEvent("new", label, share, "appeared"))
        return events

    def end(self) -> list[ClassEvent]:
        """The source ended: an ``end`` event for each class still present (with its last share)."""
        events = [ClassEvent("end", label, self._last.get(label, 0.0), "ended") for label in sorted(self.present)]
        self.present.clear()
        self._against.clear()
        return events
