"""The ``video`` job over many files: the process callable that segments one file of a batch
with a model loaded once per process, and :func:`process_batch`, the batch as a Python call.

The model (and torch) is loaded when the first input that opens needs it: a batch with nothing
left to do, or only damaged inputs, never loads it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .manifest import BatchResult, Manifest
from .plan import Job, Process, prepare, run_local
from .progress import FileHooks

log = logging.getLogger(__name__)

MODEL_ARGS = ("model", "weights", "device", "precision", "size", "threads", "backend")
"""The keyword arguments of :func:`process_batch` that build the model; the others go to
:func:`~live_seg.jobs.video.process_video`."""


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
        model_args: :func:`~live_seg.model.select.build_segmenter` arguments (model, weights, device,
            backend, ...).
        options: :func:`~live_seg.jobs.video.process_video` options (palette, view, audio, batch,
            workers, preset, crf, ...).
    """

    model_args: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)

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
        options = dict(self.options)
        loaded: list[Any] = []

        def model() -> Any:
            if not loaded:
                from ...model.select import build_segmenter
                from ...pipeline.infer import plan_workers

                seg = build_segmenter(**self.model_args, mode="throughput")
                torch_run = getattr(seg, "requests", None) is None  # OpenVINO plans its own threads
                if cores is not None and torch_run and options.get("workers") is None:
                    options["workers"], seg.threads = plan_workers(seg.device, seg.threads, cores)
                loaded.append(seg)
            return loaded[0]

        def process(job: Job, hooks: FileHooks | None) -> dict[str, Any]:
            check_input(job.input)
            seg = model()
            from ..video import process_video

            return process_video(
                job.input,
                job.output,
                seg,
                overwrite=True,  # the batch decided: an existing output is skipped unless --overwrite
                keep_partial=False,
                control=control,
                on_open=(lambda source: hooks.on_open(source.info.frames)) if hooks else None,
                on_frame=(lambda _stats: hooks.on_frame()) if hooks else None,
                on_start=on_start,
                **options,
            )

        return process


def process_batch(
    inputs: Sequence[str],
    outdir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    ray: bool = False,
    ray_actor_cpus: int | None = None,
    **kwargs: Any,
) -> BatchResult:
    """Segment every video of ``inputs`` into ``outdir`` (what ``live-seg video IN… -o OUTDIR/`` does).

    Args:
        inputs: files, folders (searched recursively) and globs.
        outdir: the output folder; each output at its input's path relative to the folder or
            glob given, and ``OUTDIR/live_seg_manifest.jsonl``.
        overwrite: redo the outputs already there (else they are skipped).
        ray: run on Ray (``RAY_ADDRESS``, else a local Ray); ``ray_actor_cpus``: cores per CPU actor.
        **kwargs: model arguments (:data:`MODEL_ARGS`) and :func:`~live_seg.jobs.video.process_video`
            options (``palette``, ``view``, ``audio``, ``preset``, ...).

    Returns:
        The batch's records (skipped, done, failed); a failed file does not raise.

    Raises:
        SourceError, OutputError, ClusterError: the batch cannot start (one line each).
    """
    model_args = {k: kwargs.pop(k) for k in MODEL_ARGS if k in kwargs}
    factory = VideoProcessFactory(model_args, kwargs)
    with Manifest.in_folder(outdir) as manifest:
        jobs, todo, records = prepare(inputs, outdir, manifest, overwrite=overwrite)
        if ray:
            from .ray_runner import run_on_ray

            records += run_on_ray(todo, factory, manifest, cpus_per_actor=ray_actor_cpus)
        else:
            records += run_local(todo, factory, manifest)
    return BatchResult(records, len(jobs))
