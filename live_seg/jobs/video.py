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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..analysis.run import AnalysisOptions, RunAnalysis
from ..base.errors import LiveSegError, OutputError
from ..base.metrics import Stats
from ..media.file_source import VideoFileSource
from ..media.formats import video_format
from ..media.writer import VideoWriter, check_output_path
from ..model.select import build_segmenter, job_runtime
from ..pipeline.file_run import Steps, run_file
from ..pipeline.infer import plan_batch, plan_workers
from ..pipeline.threads import Control
from ..render.effects import EffectOptions
from ..render.renderer import DEFAULT_ALPHA, Renderer

if TYPE_CHECKING:
    from ..model.segmenter import Segmenter

log = logging.getLogger(__name__)


def default_output(src: str | os.PathLike[str], alpha: bool = False) -> Path:
    """``clip.mp4`` → ``clip.seg.mp4`` beside it (``clip.seg.webm`` for frames with alpha)."""
    p = Path(src)
    return p.with_name(p.stem + (".seg.webm" if alpha else ".seg.mp4"))


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
                steps=Steps(analysis.refine, analysis.feed, analysis.skip),
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
    out: Path,
    src: str | os.PathLike[str],
    source: VideoFileSource,
    view: str,
    audio: bool,
    overwrite: bool,
    preset: str,
    crf: int,
    control: Control,
    alpha: bool,
) -> VideoWriter:
    """The output writer at the source's size (twice as wide side by side), timing and audio."""
    info = source.info
    assert info is not None
    return VideoWriter(out, info.width * (2 if view == "side" else 1), info.height, fps=info.fps,
                       time_base=info.time_base, audio_from=src if audio else None,
                       audio_offset=source.start_time, overwrite=overwrite, preset=preset, crf=crf,
                       stop=control.stopping, alpha=alpha)  # fmt: skip


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


def process_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    segmenter: Segmenter | None = None,
    *,
    palette: str = "voc",
    alpha: float = DEFAULT_ALPHA,
    legend: bool = False,
    view: str = "overlay",
    effect: EffectOptions | str = "overlay",
    audio: bool = True,
    overwrite: bool = False,
    batch: int | None = None,
    workers: int | None = None,
    preset: str = "veryfast",
    crf: int = 20,
    realtime: bool = False,
    max_frames: int | None = None,
    control: Control | None = None,
    on_frame: Callable[[Stats], None] | None = None,
    on_open: Callable[[VideoFileSource], None] | None = None,
    on_start: Callable[[], None] | None = None,
    analysis: AnalysisOptions | None = None,
    keep_partial: bool = True,
    **model_args: Any,
) -> dict[str, Any]:
    """Segment every frame of ``src`` and write the rendered video to ``dst`` (see the module).

    Args:
        src, dst: input video file; output (temporary name, renamed when complete).
        segmenter: a ready :class:`Segmenter`; when ``None`` one is built from ``model_args``
            (``model``, ``weights``, ``device``, ``precision``, ``size``, ``threads``).
        palette, alpha, legend, view: rendering (see :class:`live_seg.render.renderer.Renderer`).
        effect: what the chosen classes get (:class:`live_seg.render.effects.EffectOptions` or an effect
            name); a ``cutout`` in the ``overlay`` view needs ``dst`` to be ``.webm`` or ``.mov``.
        audio, overwrite: keep the source's audio; replace an existing ``dst``.
        batch, workers: frames per forward pass (``None``: 2 on the CPU, 1 on a GPU); inference
            threads sharing the model (``None``: planned, see :func:`plan_workers`).
        preset, crf: libx264 settings.
        realtime, max_frames: read at the file's own pace, as a camera; stop after that many frames.
        control, on_frame, on_open, on_start: stop/abort requests (signal handlers call ``control.stop()``);
            called after each written frame, with the opened source, once frames flow.
        analysis: smoothing and per-frame mask outputs (:mod:`live_seg.analysis.run`), checked
            before the model loads. keep_partial: a run cut short keeps its frames under ``dst``.

    Returns:
        A JSON-ready dict: the run's stats summary plus model, input and output details,
        ``flicker`` and the analysis fields. Raises the user-facing (one-line) errors.
    """
    t_setup = time.perf_counter()
    options = EffectOptions.of(effect)
    video_format(dst, with_alpha := options.alpha_output and view == "overlay")  # a cutout to .mp4 fails here
    out = _check_output(src, dst, overwrite)
    control = control or Control()
    extra = RunAnalysis(analysis or AnalysisOptions(), overwrite=overwrite, title=Path(src).name)
    with contextlib.ExitStack() as stack:
        try:  # until the run starts, a failure leaves none of the analysis files behind
            fx = stack.enter_context(options.build_before_model(segmenter, palette, alpha))
            source = stack.enter_context(VideoFileSource(src, realtime=realtime, max_frames=max_frames))
            info = source.info
            assert info is not None
            if on_open is not None:
                on_open(source)
            calibration = model_args.pop("calibration", None) or src  # int8: calibrated on the input by default
            seg = segmenter or build_segmenter(**model_args, calibration=calibration, mode="throughput")
            renderer = Renderer(seg.categories, palette=palette, alpha=alpha, legend=legend, mode=view, effect=fx)
            audio = bool(audio and info.has_audio)
            writer = _writer(out, src, source, view, audio, overwrite, preset, crf, control, with_alpha)
        except BaseException:
            extra.abort()
            raise
        setup_s = time.perf_counter() - t_setup
        stats, details = _run(source, seg, renderer, writer, extra, batch=batch, workers=workers, control=control,
                              on_frame=on_frame, on_start=on_start, keep_partial=keep_partial)  # fmt: skip
        written = _finish(writer, extra, stats.interrupted, keep_partial)
    summary = stats.summary()
    summary.update(input=str(src), output=str(written) if written else None, **_source_fields(source))
    summary.update(audio=audio, setup_s=round(setup_s, 3), effect=options.name, **details, **extra.summary())
    return summary
