"""One run's per-frame analysis, wired the same way into the ``video`` and ``live`` jobs.

:class:`RunAnalysis` holds what a run asked for with :class:`AnalysisOptions`: the temporal
smoother (``--smooth``), the flicker meter (always on: it costs one mask comparison a frame)
and the mask sinks (``--masks``, ``--mask-video``, ``--coverage``, ``--coverage-plot``). Every
path is checked, and every file opened under its temporary name, when it is built: before
the model loads, so a bad path is a one-line error in a fraction of a second.

How a job uses it:

* the model it runs is :meth:`RunAnalysis.model` (with smoothing, the workers then give float16
  class probabilities instead of masks: see :mod:`live_seg.analysis.smoothing`);
* :meth:`RunAnalysis.refine` turns one result into its final mask, **in frame order** (file
  runs: on the thread that puts the workers' results back in order; live runs: on the
  inference thread, whose results are in order already);
* with key frames (``key_interval > 1``), :meth:`RunAnalysis.skip` tells the pipeline which frames
  the network leaves out; their results come with ``mask=None`` and ``refine`` carries the last
  key frame's mask to them (:mod:`live_seg.analysis.propagate`). Key frames' masks are the network's,
  identical to an every-frame run's (with smoothing, the average runs over key frames only).
  Key frames are 0, N, 2N, ... and, with ``cut_keys``, the first frame of each new scene: the
  pipeline shows :meth:`RunAnalysis.look` every frame in order before inference, and a
  :class:`~live_seg.analysis.smoothing.SceneCutDetector` on its grey thumbnail (0.4 ms for 720p)
  decides there, on the pixels, since a mask carried across a cut belongs to the old scene;
* :meth:`RunAnalysis.feed` gives each output frame's mask to the sinks, in frame order (file
  runs: the writer thread, after the frame was encoded, so the mask files hold exactly the
  frames of the video; live runs: :meth:`RunAnalysis.put`, the engine's sink protocol, one mask
  per processed frame). With ``threaded`` (live runs) each file output (``masks``, ``mask_video``,
  ``coverage``) runs on its own :class:`~live_seg.pipeline.sinks.SinkThread`: a slow disk drops
  that output's oldest masks (counted in :meth:`RunAnalysis.sink_stats`), never a frame of the run;
* :meth:`RunAnalysis.close` finishes the files (``complete=False`` after an interrupt keeps
  what was written, as the video does) and :meth:`RunAnalysis.summary` adds ``flicker`` and
  the analysis fields to the job's summary.

Frames without a timestamp (cameras) are timed from the first one fed (capture clock).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..base.errors import OutputError
from ..base.frames import Frame, FramePacket, SegResult
from ..base.metrics import median_ms, samples
from ..base.options import AnalysisOptions
from ..base.registry import VOC_CLASSES
from ..pipeline.infer import Steps
from ..pipeline.sinks import SinkThread
from .coverage import Coverage
from .event_outputs import EventOutputs
from .masks import MaskOutputs, MaskSink, MaskVideo, PngMasks
from .propagate import MaskPropagator
from .smoothing import FlickerMeter, SceneCutDetector, TemporalSmoother, pack_scores

PathLike = str | os.PathLike[str]

__all__ = ["AnalysisOptions", "RunAnalysis", "SmoothedModel", "model_for"]


class SmoothedModel:
    """A model whose per-frame output is packed class probabilities, for the pipeline.

    Wraps anything with ``preprocess(frames)`` and ``infer_scores(batch) -> (N, C, s, s)``
    (torch or another backend); the scores stay on the model's device, in float16.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def preprocess(self, frames: Sequence[Frame]) -> Any:
        return self.model.preprocess(frames)

    def infer(self, batch: Any) -> Any:
        """``(N, C, s, s)`` float16 class probabilities on the model's device (one row per frame)."""
        return pack_scores(self.model.infer_scores(batch))


def model_for(options: AnalysisOptions, segmenter: Any) -> Any:
    """The model a run with these options runs: ``segmenter`` itself, or its scores with smoothing (the
    same for every source of a run, whose smoothers then each take their own)."""
    return SmoothedModel(segmenter) if options.smooth == "ema" else segmenter


class RunAnalysis:
    """The smoother, flicker meter and mask sinks of one run (see the module docstring).

    Args:
        options: what to produce.
        overwrite: replace existing files (and, in the masks folder, masks of an earlier run).
        title: the coverage chart's title (the input's name).
        categories: class names, index = class id.
        events: the run's event outputs (``--events``, ``--mqtt``), fed each output frame as
            the source ``source`` (default: ``title``); shared by the sources of a run, closed by its owner.
        threaded: each file output on its own sink thread (live runs; see the module docstring).

    Raises:
        ValueError: an option out of range.
        OutputError: a path cannot be written (nothing is left behind then).
    """

    def __init__(
        self,
        options: AnalysisOptions,
        overwrite: bool = False,
        title: str = "",
        categories: Sequence[str] = VOC_CLASSES,
        events: EventOutputs | None = None,
        source: str | None = None,
        threaded: bool = False,
    ) -> None:
        options.check()
        self.events = events.source(source or title, categories) if events else None
        self.options = options
        self.smoother = TemporalSmoother(options.smooth_strength) if options.smooth == "ema" else None
        self.flicker = FlickerMeter()
        self.smooth_s = samples()
        self.interval = options.key_interval
        self.propagator = MaskPropagator(options.propagate) if options.key_interval > 1 else None
        self.cuts = SceneCutDetector() if self.propagator is not None and options.cut_keys else None
        self.cut_keys: set[int] = set()  # frames made key frames by a cut (written by look(), read by skip())
        self.carry_s = samples()
        self.key_frames = 0
        self.write_s = samples()
        self.t_first: float | None = None
        self.frames = 0
        self.paths: dict[str, str | None] = {}
        self.outputs = MaskOutputs([self.flicker])
        self.threads: dict[str, tuple[SinkThread[Any], MaskOutputs]] = {}
        try:
            self._open_sinks(options, overwrite, title, categories, threaded)
        except BaseException:
            self.abort()
            raise

    def _open_sinks(
        self, options: AnalysisOptions, overwrite: bool, title: str, categories: Sequence[str], threaded: bool
    ) -> None:
        sinks: list[tuple[str, MaskSink, bool]] = []  # name, sink, at the source's size
        source_size = options.masks_size == "source"
        if options.coverage or options.coverage_plot:
            cov = Coverage(categories, options.coverage, options.coverage_plot, overwrite=overwrite, title=title)
            sinks.append(("coverage", cov, False))
        if options.mask_video:
            sinks.append(("mask_video", MaskVideo(options.mask_video, overwrite=overwrite), source_size))
        if options.masks:
            sinks.append(("masks", PngMasks(options.masks, len(categories), overwrite=overwrite), source_size))
        for name, sink, big in sinks:
            outputs = MaskOutputs([], [sink]) if big else MaskOutputs([sink])
            if threaded:
                self.threads[name] = (SinkThread(name, lambda item, o=outputs: self._write(o, *item)), outputs)
            else:
                (self.outputs.source_size if big else self.outputs.model_size).append(sink)

    def _write(self, outputs: MaskOutputs, *item: Any) -> None:
        t0 = time.perf_counter()
        outputs.write(*item)
        self.write_s.append(time.perf_counter() - t0)

    def model(self, segmenter: Any) -> Any:
        """The model the pipeline should run (:func:`model_for` its options)."""
        return model_for(self.options, segmenter)

    @property
    def steps(self) -> Steps:
        """Its steps around the model, for the file run and the stream engine: ``refine``, ``feed``
        (``on_result``), ``skip``, ``look``."""
        return Steps(self.refine, self.feed, self.skip, self.look)

    @property
    def refine(self) -> Any:
        """The in-order step for the pipeline (``None`` without smoothing or key frames)."""
        if self.propagator is not None:
            return self.key_or_carry
        return None if self.smoother is None else self.smooth

    @property
    def skip(self) -> Any:
        """For the pipeline: ``skip(packet)`` is True for a frame the network leaves out (between
        key frames); ``None`` when every frame is a key frame."""
        return None if self.propagator is None else self.between_keys

    @property
    def look(self) -> Any:
        """For the pipeline: ``look(packet)`` for every frame in order, before ``skip`` is asked
        about it (scene cuts); ``None`` without key frames or cut detection."""
        return None if self.cuts is None else self.look_for_cut

    def look_for_cut(self, packet: FramePacket) -> None:
        """Make ``packet`` a key frame when it starts a new scene (and is not one already). Call in
        frame order."""
        assert self.cuts is not None
        if self.cuts.is_cut(packet.image) and packet.index % self.interval != 0:
            self.cut_keys.add(packet.index)

    def between_keys(self, packet: FramePacket) -> bool:
        """True when ``packet`` is not a key frame: its index is not a multiple of the key interval,
        and it does not start a new scene (:meth:`look_for_cut`, which has seen it by then)."""
        return packet.index % self.interval != 0 and packet.index not in self.cut_keys

    def key_or_carry(self, result: SegResult) -> SegResult:
        """A key frame's result (smoothed if asked) becomes the propagator's key; a skipped frame's
        (``mask is None``) gets the key mask carried to it. Call in frame order."""
        assert self.propagator is not None
        if result.mask is None:
            t0 = time.perf_counter()
            mask = self.propagator.carry(result.packet.image)
            self.carry_s.append(time.perf_counter() - t0)
            return dataclasses.replace(result, mask=mask, soft=None)
        if self.smoother is not None:
            result = self.smooth(result)
        self.propagator.key(result.packet.image, result.mask)
        self.key_frames += 1
        return result

    def smooth(self, result: SegResult) -> SegResult:
        """Average ``result``'s scores into the running state; the result with its smoothed mask.
        Call in frame order."""
        assert self.smoother is not None
        t0 = time.perf_counter()
        mask = self.smoother.step(result.mask, result.packet.image)
        self.smooth_s.append(time.perf_counter() - t0)
        return dataclasses.replace(result, mask=mask, soft=None)

    def feed(self, result: SegResult) -> None:
        """Give an output frame's mask (model size) to every sink. Call in frame order."""
        packet = result.packet
        pts = packet.pts
        if pts is None:
            if self.t_first is None:
                self.t_first = packet.t_capture
            pts = packet.t_capture - self.t_first
        hw = packet.image.shape[:2]
        self._write(self.outputs, packet.index, pts, result.mask, hw, result.soft)
        if self.threads:
            item = (packet.index, pts, result.mask.copy(), hw, None if result.soft is None else result.soft.copy())
            for thread, _ in self.threads.values():
                thread.put(item)
        if self.events is not None:
            key = self.propagator is None or not self.between_keys(packet)
            self.events.frame(packet.index, pts, result.mask, key=key, frame_hw=packet.image.shape[:2])
        self.frames += 1

    put = feed
    """The engine's sink protocol (:class:`~live_seg.pipeline.engine.Sink`): :meth:`feed`."""

    def sink_stats(self) -> dict[str, dict[str, int]]:
        """Per file output on its own thread: masks ``handled`` and ``dropped`` (it fell behind)."""
        return {name: thread.stats() for name, (thread, _) in self.threads.items()}

    def close(self, complete: bool = True) -> None:
        """Finish every file (what was written is kept when ``complete`` is False).

        Raises:
            OutputError: a file could not be finished (the others are).
        """
        if self.events is not None:
            self.events.end()
        first: BaseException | None = None
        for thread, outputs in self.threads.values():  # each drains its queue (bounded), then finishes its file
            try:
                thread.close()
            except Exception as exc:  # noqa: BLE001 - the other files are still finished
                first = first or exc
            try:
                outputs.close(complete)
            except OutputError as exc:
                first = first or exc
        self.outputs.close(complete)
        if first is not None:
            raise first
        for key, value in self.options.files.items():  # a run without frames leaves no file
            self.paths[key] = str(Path(value)) if self.frames else None

    def abort(self) -> None:
        """Drop the files written so far (a run that failed before its first frame)."""
        for thread, outputs in self.threads.values():
            thread.stop.set()
            with contextlib.suppress(Exception):
                thread.close(0.0)
            outputs.abort()
        self.outputs.abort()

    def summary(self) -> dict[str, Any]:
        """``flicker`` (mean share of pixels whose class changed between consecutive output
        masks; ``None`` before two), the smoothing settings and cost, the files written."""
        value = self.flicker.value
        fields: dict[str, Any] = {"flicker": None if value is None else round(value, 6)}
        fields["smooth"] = self.options.smooth
        fields["key_interval"] = self.interval
        if self.propagator is not None:
            fields.update(
                propagate=self.propagator.mode,
                key_frames=self.key_frames,
                cut_key_frames=len(self.cut_keys) if self.cuts is not None else None,
                carried_frames=len(self.carry_s),
                propagate_ms=median_ms(self.carry_s),
            )
        if self.smoother is not None:
            cuts = self.smoother.cuts.cuts if self.smoother.cuts is not None else 0
            fields.update(smooth_strength=self.smoother.strength, scene_cuts=cuts, smooth_ms=median_ms(self.smooth_s))
        if self.paths:
            fields["masks_ms"] = median_ms(self.write_s)  # the mask files' time per frame (each output's write)
        fields.update(self.paths)
        return fields
