"""The ``video`` job: a video file in, the same video with its segmentation blended in out.

The output is H.264/yuv420p MP4 with ``+faststart`` at the source's size (odd sizes padded by
one pixel; twice as wide for the side-by-side view), one output frame per input frame at the
input's timestamps, with the source's audio copied (or transcoded to AAC when MP4 cannot hold
it). The ``cutout`` effect writes WebM (VP9) or MOV (ProRes 4444) with alpha instead.
Torch's process-wide settings are the job's for the run and restored after it
(:func:`live_seg.model.select.job_runtime`; none to set for OpenVINO started from its cache).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..analysis.event_outputs import EventOutputs
from ..analysis.run import RunAnalysis
from ..base.errors import LiveSegError, OutputError
from ..base.metrics import Stats
from ..base.options import (
    AnalysisOptions,
    EncodeOptions,
    EventOptions,
    ModelOptions,
    PathLike,
    RenderOptions,
    RunOptions,
    fold,
    video_suffix,
)
from ..media.file_source import VideoFileSource
from ..media.formats import video_format
from ..media.writer import VideoWriter, check_output_path
from ..model.select import job_runtime, segmenter_for
from ..pipeline.file_run import run_file
from ..pipeline.infer import plan_batch, plan_workers
from ..pipeline.threads import Control
from ..render.effects import EffectOptions
from ..render.renderer import Renderer

if TYPE_CHECKING:
    from ..model.segmenter import Segmenter

log = logging.getLogger(__name__)


def _check_output(src: str | os.PathLike[str], dst: str | os.PathLike[str], overwrite: bool) -> Path:
    """``dst`` as a writable output path that is not the input file itself."""
    out = check_output_path(dst, overwrite)
    if out.exists() and Path(src).exists() and os.path.samefile(src, out):
        raise OutputError(f"output is the input file: {out}; write the result to another file")
    return out


def _run(
    source: VideoFileSource,
    seg: Segmenter,
    renderer: Renderer,
    writer: VideoWriter,
    analysis: RunAnalysis,
    *,
    batch: int | None,
    workers: int | None,
    control: Control,
    on_frame: Callable[[Stats], None] | None,
    on_start: Callable[[], None] | None,
    keep_partial: bool = True,
) -> tuple[Stats, dict[str, Any]]:
    """Plan batch and workers, then run the pipeline under the job's torch settings.

    Returns:
        The run's stats, and ``batch``, ``workers`` and the model's description with the torch
        threads the run used. On an error the outputs keep the frames done (``keep_partial``)
        or are discarded.
    """
    requests = getattr(seg, "requests", None)  # a runtime with its own threads (OpenVINO)
    if batch is None:
        batch = plan_batch(seg.device, requests)
    threads = seg.threads
    if workers is None:
        workers, threads = plan_workers(seg.device, threads, requests=requests)
    try:
        with job_runtime(seg, threads):
            details = {"batch": batch, "workers": workers, **seg.describe()}
            if on_start is not None:
                on_start()
            stats = run_file(
                source,
                analysis.model(seg),
                renderer.render,
                writer.write,
                batch=batch,
                workers=workers,
                control=control,
                on_frame=on_frame,
                steps=analysis.steps,
            )
    except BaseException:
        if keep_partial:
            writer.close(complete=False)
        else:
            writer.discard()
        with contextlib.suppress(LiveSegError):  # the run's own error is the one to report
            if keep_partial:
                analysis.close(complete=False)
            else:
                analysis.abort()
        raise
    return stats, details


def _finish(writer: VideoWriter, analysis: RunAnalysis, interrupted: bool, keep_partial: bool) -> Path | None:
    """Close the outputs of a run that ended; one cut short is kept, or discarded (``keep_partial``)."""
    discard = interrupted and not keep_partial
    try:
        return writer.discard() if discard else writer.close(complete=not interrupted)
    finally:
        if discard:
            analysis.abort()
        else:
            analysis.close(complete=not interrupted)


def _writer(
    out: Path, audio_from: PathLike | None, source: VideoFileSource, options: VideoOptions, control: Control
) -> VideoWriter:
    """The output writer at the source's size (twice as wide side by side), timing and audio."""
    info = source.info
    assert info is not None
    width = info.width * (2 if options.render.view == "side" else 1)
    return VideoWriter(out, width, info.height, fps=info.fps, time_base=info.time_base,
                       audio_from=audio_from, audio_offset=source.start_time,
                       overwrite=options.run.overwrite, encode=options.encode, stop=control.stopping,
                       alpha=options.alpha_output)  # fmt: skip


def _source_fields(source: VideoFileSource) -> dict[str, Any]:
    """What the summary says of the input as read."""
    info = source.info
    assert info is not None
    return {
        "width": info.width,
        "height": info.height,
        "source_fps": round(info.fps, 3),
        "skipped_packets": source.skipped_packets,
        "truncated_input": source.truncated,
    }


@dataclass(frozen=True)
class VideoHooks:
    """What a caller of :func:`process_video` hears and says while it runs.

    Attributes:
        control: stop/abort requests (signal handlers call ``control.stop()``); ``None``: the run's own.
        on_frame: called after each written frame, with the run's stats.
        on_open: called with the opened source (its ``info``: size, rate, frames).
        on_start: called once frames flow (the model is built).
    """

    control: Control | None = None
    on_frame: Callable[[Stats], None] | None = None
    on_open: Callable[[VideoFileSource], None] | None = None
    on_start: Callable[[], None] | None = None


@dataclass(frozen=True)
class VideoOptions:
    """Everything the ``video`` job is told, as values (each group owns its defaults).

    Attributes:
        model: the model built when no segmenter is given.
        render: palette, mask weight, legend, view.
        effect: what the chosen classes get.
        encode: libx264 preset and crf, the source's audio.
        run: batch, workers, pacing, overwrite, partial outputs.
        analysis: smoothing and per-frame mask outputs.
        events: per-frame event records (``--events``, ``--mqtt``).
    """

    model: ModelOptions = field(default_factory=ModelOptions)
    render: RenderOptions = field(default_factory=RenderOptions)
    effect: EffectOptions = field(default_factory=EffectOptions)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    run: RunOptions = field(default_factory=RunOptions)
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    events: EventOptions = field(default_factory=EventOptions)

    @classmethod
    def of(cls, options: VideoOptions | None = None, **keywords: Any) -> VideoOptions:
        """``options`` (default: every default) with ``keywords`` folded in.

        A keyword is a whole group (``render=RenderOptions(...)``, ``analysis=AnalysisOptions(...)``;
        ``effect`` also takes an effect name, ``analysis`` also ``None``) or one field of a group
        (``legend=True``, ``model="lraspp_mobilenet_v3_large"``, ``crf=18``, ``workers=1``).

        Raises:
            TypeError: a keyword that is neither.
        """
        options = options or cls()
        whole: dict[str, Any] = {}
        if "effect" in keywords:
            whole["effect"] = EffectOptions.of(keywords.pop("effect"))
        if "analysis" in keywords:
            whole["analysis"] = keywords.pop("analysis") or AnalysisOptions()
        groups = {f.name: getattr(options, f.name) for f in fields(cls) if f.name not in ("effect", "analysis")}
        for name, group in groups.items():
            if isinstance(keywords.get(name), type(group)):
                whole[name] = keywords.pop(name)
        groups.update((k, v) for k, v in whole.items() if k in groups)
        return replace(options, **{**whole, **fold(groups, keywords)})

    @property
    def alpha_output(self) -> bool:
        """The output keeps an alpha channel (a ``.webm`` or ``.mov`` is needed)."""
        return self.render.keeps_alpha(self.effect.alpha_output)


def default_output(src: str | os.PathLike[str], alpha: bool = False) -> Path:
    """``clip.mp4`` → ``clip.seg.mp4`` beside it (``clip.seg.webm`` for frames with alpha)."""
    p = Path(src)
    return p.with_name(p.stem + ".seg" + video_suffix(alpha))


def process_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    segmenter: Segmenter | None = None,
    options: VideoOptions | None = None,
    *,
    hooks: VideoHooks | None = None,
    **keywords: Any,
) -> dict[str, Any]:
    """Segment every frame of ``src`` and write the rendered video to ``dst`` (see the module).

    Args:
        src, dst: input video file; output (temporary name, renamed when complete); a ``cutout``
            effect in the ``overlay`` view needs ``dst`` to be ``.webm`` or ``.mov``.
        segmenter: a ready :class:`Segmenter`; when ``None`` one is built from ``options.model``.
        options: what to do (:class:`VideoOptions`); ``analysis`` is checked before the model loads.
        hooks: stop requests and progress callbacks (:class:`VideoHooks`).
        **keywords: :class:`VideoOptions` groups or fields (``legend=True``, ``effect=...``,
            ``analysis=...``, ``model=...``, ``overwrite=True``) and :class:`VideoHooks` fields
            (``on_frame=...``), folded into ``options`` and ``hooks``.

    Returns:
        A JSON-ready dict: the run's stats summary plus model, input and output details,
        ``flicker`` and the analysis fields. Raises the user-facing (one-line) errors.
    """
    t_setup = time.perf_counter()
    said = {f.name: keywords.pop(f.name) for f in fields(VideoHooks) if f.name in keywords}
    hooks = replace(hooks or VideoHooks(), **said)
    options = VideoOptions.of(options, **keywords)
    run, render = options.run, options.render
    video_format(dst, options.alpha_output)  # a cutout to .mp4 fails here
    out = _check_output(src, dst, run.overwrite)
    control = hooks.control or Control()
    with contextlib.ExitStack() as stack:
        events = stack.enter_context(EventOutputs(options.events, run.overwrite, keep_partial=run.keep_partial))
        extra = RunAnalysis(options.analysis, run.overwrite, Path(src).name, events=events, source=str(src))
        try:  # until the run starts, a failure leaves none of the analysis files behind
            fx = stack.enter_context(
                options.effect.build_before_model(segmenter, options.model, render.palette, render.alpha)
            )
            source = stack.enter_context(VideoFileSource(src, realtime=run.realtime, max_frames=run.max_frames))
            info = source.info
            assert info is not None
            if hooks.on_open is not None:
                hooks.on_open(source)
            model = options.model  # int8: calibrated on the input unless told otherwise
            seg = segmenter or segmenter_for(replace(model, calibration=model.calibration or src), mode="throughput")
            renderer = Renderer(seg.categories, palette=render.palette, alpha=render.alpha, legend=render.legend,
                                mode=render.view, effect=fx)  # fmt: skip
            audio = bool(options.encode.audio and info.has_audio)
            writer = _writer(out, src if audio else None, source, options, control)
        except BaseException:
            extra.abort()
            raise
        setup_s = time.perf_counter() - t_setup
        stats, details = _run(source, seg, renderer, writer, extra, batch=run.batch, workers=run.workers,
                              control=control, on_frame=hooks.on_frame, on_start=hooks.on_start,
                              keep_partial=run.keep_partial)  # fmt: skip
        written = _finish(writer, extra, stats.interrupted, run.keep_partial)
        events.close(complete=not stats.interrupted)
    summary = stats.summary()
    summary.update(input=str(src), output=str(written) if written else None, **_source_fields(source))
    summary.update(audio=audio, setup_s=round(setup_s, 3), effect=options.effect.name)
    summary.update(**details, **extra.summary(), **events.summary())
    return summary
