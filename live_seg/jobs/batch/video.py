"""The ``video`` job over many files: the process callable that segments one file of a batch
with a model loaded once per process, and :func:`process_batch`, the batch as a Python call.

The model (and torch) is loaded when the first input that opens needs it: a batch with nothing
left to do, or only damaged inputs, never loads it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...base.options import video_suffix
from ...pipeline.threads import Control
from ..video import VideoHooks, VideoOptions, process_video
from .manifest import BatchResult, Manifest
from .plan import Job, Process, prepare, run_local
from .progress import BatchProgress, FileHooks

log = logging.getLogger(__name__)


def check_input(path: Path) -> None:
    """Open ``path`` and decode its first frame, without torch.

    A damaged input then fails in a fraction of a second, before any model is built or even
    imported: a batch run again with only such inputs left stays quick.

    Raises:
        SourceError: the file cannot be read as a video.
    """
    from ...media.file_source import VideoFileSource

    with VideoFileSource(path):
        pass


@dataclass(frozen=True)
class VideoProcessFactory:
    """Builds the process callable of the ``video`` job: one model, :func:`process_video` per file.

    Picklable (Ray sends it to each actor). The model (and torch) is loaded when the first input
    that opens needs it, once per process: a batch with nothing left to do, or only damaged
    inputs, never loads it.

    Attributes:
        options: what every file gets (:class:`~live_seg.jobs.video.VideoOptions`); the batch
            decides ``overwrite`` (an existing output is skipped unless asked) and a file cut
            short is discarded.
    """

    options: VideoOptions = field(default_factory=VideoOptions)

    def __call__(
        self, cores: int | None = None, *, control: Any = None, on_start: Callable[[], None] | None = None
    ) -> Process:
        """The process callable.

        Args:
            cores: CPU cores this process may use (a Ray actor's share); ``None``: all of them.
            control: the batch's :class:`~live_seg.pipeline.threads.Control` (a first Ctrl-C stops the
                file in flight, which is then discarded).
            on_start: called as the first file's frames start to flow.
        """
        run = replace(self.options.run, overwrite=True, keep_partial=False)
        state = {"options": replace(self.options, run=run)}
        loaded: list[Any] = []

        def model() -> Any:
            if not loaded:
                from ...model.select import segmenter_for
                from ...pipeline.infer import plan_workers

                seg = segmenter_for(self.options.model, mode="throughput")
                torch_run = getattr(seg, "requests", None) is None  # OpenVINO plans its own threads
                if cores is not None and torch_run and run.workers is None:
                    workers, seg.threads = plan_workers(seg.device, seg.threads, cores)
                    state["options"] = replace(state["options"], run=replace(run, workers=workers))
                loaded.append(seg)
            return loaded[0]

        def process(job: Job, hooks: FileHooks | None) -> dict[str, Any]:
            check_input(job.input)
            seg = model()
            on_open = (lambda source: hooks.on_open(source.info.frames)) if hooks else None
            on_frame = (lambda _stats: hooks.on_frame()) if hooks else None
            said = VideoHooks(control, on_frame=on_frame, on_open=on_open, on_start=on_start)
            return process_video(job.input, job.output, seg, state["options"], hooks=said)

        return process


@dataclass
class BatchHooks:
    """What a caller of :func:`run_batch` hears and says while it runs.

    Attributes:
        control: a first ``control.stop()`` (Ctrl-C) ends the file in flight (discarded) and the
            batch; a signal that aborts before the first frame ends it with nothing run.
        on_start: called as the first file's frames start to flow (or Ray is up with its actors).
        progress: builds the progress bars from the jobs left, or ``None``.
        ray_log_level: the Ray actors' logging level.
    """

    control: Control | None = None
    on_start: Callable[[], None] | None = None
    progress: Callable[[list[Job]], BatchProgress] | None = None
    ray_log_level: int = logging.WARNING


def run_batch(
    inputs: Sequence[str],
    outdir: str | os.PathLike[str],
    options: VideoOptions,
    *,
    overwrite: bool = False,
    ray: bool = False,
    ray_actor_cpus: int | None = None,
    hooks: BatchHooks | None = None,
) -> BatchResult:
    """Plan the batch, record what is already done, and run the rest here or on Ray.

    The one orchestration behind ``live-seg video IN… -o OUTDIR/`` and :func:`process_batch`: the
    outputs are named (``.mp4``, or ``.webm`` for a cutout) from the same ``options`` every file
    is then processed with.

    Args:
        inputs: files, folders (searched recursively) and globs.
        outdir: the output folder (and its manifest, ``live_seg_manifest.jsonl``).
        options: what every file gets.
        overwrite: redo the outputs already there (else they are skipped).
        ray: run on Ray (``RAY_ADDRESS``, else a local Ray); ``ray_actor_cpus``: cores per CPU actor
            (default :data:`~live_seg.base.options.CPU_ACTOR_CORES`).
        hooks: stop requests, progress bars, start notice (:class:`BatchHooks`).

    Returns:
        This run's records (skipped included) and the manifest's path; a failed file does not raise.

    Raises:
        SourceError, OutputError, ClusterError: the batch cannot start (one line each).
    """
    hooks = hooks or BatchHooks()
    control = hooks.control or Control()
    factory = VideoProcessFactory(options)
    with Manifest.in_folder(outdir) as manifest:
        suffix = video_suffix(options.alpha_output)
        jobs, todo, records = prepare(inputs, manifest, overwrite=overwrite, suffix=suffix)
        progress = hooks.progress(todo) if hooks.progress is not None and todo else None
        try:
            if ray:
                from .ray_runner import run_on_ray

                records += run_on_ray(todo, factory, manifest, progress=progress, should_stop=control.stopping.is_set,
                                      cpus_per_actor=ray_actor_cpus, log_level=hooks.ray_log_level,
                                      on_start=hooks.on_start)  # fmt: skip
            else:
                make = lambda: factory(control=control, on_start=hooks.on_start)  # noqa: E731
                records += run_local(todo, make, manifest, progress=progress, should_stop=control.stopping.is_set)
        except KeyboardInterrupt:
            if not control.aborted.is_set():  # not a signal handled before the first frame
                raise
            log.warning("interrupted before the first frame: nothing was written")
        finally:
            if progress is not None:
                progress.close()
    return BatchResult(records, len(jobs), manifest.path)


def process_batch(
    inputs: Sequence[str],
    outdir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    ray: bool = False,
    ray_actor_cpus: int | None = None,
    **keywords: Any,
) -> BatchResult:
    """Segment every video of ``inputs`` into ``outdir`` (what ``live-seg video IN… -o OUTDIR/`` does).

    Args:
        inputs: files, folders (searched recursively) and globs.
        outdir: the output folder; each output at its input's path relative to the folder or
            glob given, and ``OUTDIR/live_seg_manifest.jsonl``.
        overwrite: redo the outputs already there (else they are skipped).
        ray: run on Ray (``RAY_ADDRESS``, else a local Ray); ``ray_actor_cpus``: cores per CPU actor.
        **keywords: :class:`~live_seg.jobs.video.VideoOptions` (``options=``), or its groups or
            fields (``model``, ``weights``, ``effect``, ``palette``, ``view``, ``audio``, ``preset``, ...).

    Returns:
        The batch's records (skipped, done, failed); a failed file does not raise.

    Raises:
        SourceError, OutputError, ClusterError: the batch cannot start (one line each).
    """
    options = VideoOptions.of(keywords.pop("options", None), **keywords)
    return run_batch(inputs, outdir, options, overwrite=overwrite, ray=ray, ray_actor_cpus=ray_actor_cpus)
