"""The inference step every job shares: how many workers and frames per pass, and the loop that
turns frames into :class:`~live_seg.base.frames.SegResult` s."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.frames import FramePacket, SegResult
from .threads import END, Control, Give, MaskModel, Take, get, put

MAX_CPU_WORKERS = 4
CPU_BATCH = 2
"""Frames per forward pass on the CPU when not given: two frames a pass keep the cores busier
than one (the README has the measurements)."""


@dataclass(frozen=True)
class Steps:
    """A run's steps around the model, each optional (the file run's, and each source's in the stream engine).

    Attributes:
        refine: in frame order, a result to its final mask (smoothing; key frames: the mask carried
            to a frame the model left out).
        on_result: in frame order, each written result (mask files, coverage).
        skip: ``skip(packet)`` True: the model leaves the frame out, and ``refine`` gets its result with
            ``mask=None`` to fill (key frames); such frames count in neither ``preprocess`` nor ``infer``.
            Called on any inference worker, in any order, and again on the write thread (file runs), or
            on the source's own thread (the engine): it must give the same answer each time.
        look: called with each frame on its capture thread, in frame order, before it is queued
            (before ``skip`` is asked about it): a decision that depends on the frame before
            (a scene cut that makes a key frame).
    """

    refine: Callable[[SegResult], SegResult] | None = None
    on_result: Callable[[SegResult], None] | None = None
    skip: Callable[[FramePacket], bool] | None = None
    look: Callable[[FramePacket], None] | None = None


def plan_batch(device: str, requests: int | None = None) -> int:
    """Frames per forward pass for a file run when the user did not say: 2 on the CPU with torch,
    1 on a GPU or with a runtime that runs ``requests`` frames at once (OpenVINO)."""
    return CPU_BATCH if device == "cpu" and not requests else 1


def plan_workers(
    device: str, threads: int | None = None, cores: int | None = None, requests: int | None = None
) -> tuple[int, int | None]:
    """How many inference workers, with how many torch threads each, for a file run.

    On the CPU, several single-threaded (or few-threaded) workers keep every core busy while
    decode, render and encode take turns on them; one worker with all cores as intra-op
    threads stalls at every layer while those stages hold a core (the README has the
    measurements). A GPU runs one worker.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"mps"``.
        threads: torch threads per worker the user asked for (``None``: decide).
        cores: CPU cores (default ``os.cpu_count()``).
        requests: frames a runtime with its own threads runs at once (OpenVINO's infer requests):
            one worker per request, each with one torch thread (torch computes nothing then).

    Returns:
        ``(workers, threads)``; ``threads`` is ``None`` off the CPU (leave torch's setting).
    """
    if requests:
        return requests, 1
    if device != "cpu":
        return 1, threads
    cores = cores or os.cpu_count() or 1
    if threads:
        return max(1, cores // threads), threads
    workers = max(1, min(cores, MAX_CPU_WORKERS))
    return workers, max(1, cores // workers)


def from_queue(q: queue.Queue, control: Control) -> Take:
    """A :data:`Take` over a queue whose producer ends with ``END`` (an abort ends it too)."""

    def take() -> FramePacket | None:
        item = get(q, control)
        return None if item is END else item  # type: ignore[return-value]

    return take


def to_queue(q: queue.Queue, control: Control) -> Give:
    """A :data:`Give` into a bounded queue (waits for room; gives up at an abort)."""
    return lambda result: put(q, result, control)


def infer_masks(model: MaskModel, batch: Any) -> tuple[Sequence[np.ndarray], Sequence[np.ndarray | None]]:
    """The masks of a preprocessed ``batch``, and for a probability model (``soft_output``) its soft maps
    (:attr:`~live_seg.base.frames.SegResult.soft`; ``None`` for each frame of other models)."""
    if getattr(model, "soft_output", False):
        return model.infer_soft(batch)
    masks = model.infer(batch)
    return masks, [None] * len(masks)


def segment(model: MaskModel, packets: Sequence[FramePacket]) -> list[SegResult]:
    """One forward pass over ``packets`` (one batch): a result per packet, in order, each charged its
    share of the batch's preprocess and forward time."""
    t0 = time.perf_counter()
    tensor = model.preprocess([p.image for p in packets])
    t1 = time.perf_counter()
    n = len(packets)
    masks, softs = infer_masks(model, tensor)
    t2 = time.perf_counter()
    return [
        SegResult(packet, mask, preprocess_s=(t1 - t0) / n, infer_s=(t2 - t1) / n, soft=soft)
        for packet, mask, soft in zip(packets, masks, softs, strict=True)
    ]


def infer_loop(
    model: MaskModel,
    take: Take,
    give: Give,
    control: Control,
    batch: int = 1,
    skip: Callable[[FramePacket], bool] | None = None,
) -> None:
    """Turn frames into :class:`SegResult` s: batches of up to ``batch`` frames from ``take``,
    one result per frame to ``give``, in the order taken.

    The one inference step of every job: file runs feed it from a queue (:func:`from_queue`),
    the live view from its newest-frame slot. Frames already taken are still processed after a
    graceful stop; an abort ends at once. Each result carries its share of the batch's
    preprocess and forward time.

    A frame for which ``skip(packet)`` is True does not go through the model: its result has
    ``mask=None`` (and no time), given at once, for an in-order step to fill (key frames, see
    :mod:`live_seg.analysis.propagate`). Results then leave in a different order than taken.
    """
    ended = False
    while not ended and not control.aborted.is_set():
        packets: list[FramePacket] = []
        while len(packets) < batch:
            packet = take()
            if packet is None:
                ended = True
                break
            if skip is not None and skip(packet):
                if not give(SegResult(packet, None)):  # type: ignore[arg-type]  # filled in order later
                    return
                continue
            packets.append(packet)
        if not packets:
            return
        for result in segment(model, packets):
            if not give(result):
                return
