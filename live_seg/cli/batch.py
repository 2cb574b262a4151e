"""Command line of a ``video`` batch: ``live-seg video IN [IN …] -o OUTDIR/ [--ray]``.

Part of the command line (:mod:`live_seg.cli.main` hands a batch over to :func:`cmd_video_batch`):
it plans the batch, reports what is already done, runs the rest here or on Ray with one model
per process, and ends with one line per failure and the exit code (1 when a file failed).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from ..jobs.batch.manifest import STATUSES, BatchResult, Manifest
from ..jobs.batch.plan import is_video_file_name, prepare, run_local
from ..jobs.batch.progress import BatchProgress
from ..jobs.batch.video import VideoProcessFactory
from ..pipeline.threads import Control
from .args import effect_options

log = logging.getLogger(__name__)

EXIT_ERROR = 1
EXIT_USAGE = 2

VIDEO_OPTIONS = ("palette", "alpha", "legend", "view", "audio", "batch", "workers", "preset", "crf")
"""The ``video`` arguments passed to :func:`~live_seg.jobs.video.process_video` for every file."""


def usage_error(args: argparse.Namespace) -> str | None:
    """Why the batch's arguments cannot work (exit 2), or ``None``."""
    if not args.output:
        return "several inputs, a folder or a glob need an output folder: -o OUTDIR/"
    out = Path(args.output)
    if (out.exists() and not out.is_dir()) or is_video_file_name(args.output):
        folder = out.with_suffix("")
        return f"-o {args.output}: a batch writes into a folder; name one with a trailing /, e.g. -o {folder}/"
    return None


def _run(args: argparse.Namespace, todo: list[Any], manifest: Manifest, model_args: dict[str, Any]) -> tuple:
    """Run the jobs left; returns ``(records, signal number or None)``."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .main import SignalGate

    options = {k: getattr(args, k) for k in VIDEO_OPTIONS}
    factory = VideoProcessFactory(model_args, {**options, "effect": effect_options(args)})
    control = Control()
    # Until the first frames flow (model built, or Ray up with its actors) a signal stops at once;
    # then it asks for a clean stop (on Ray: the videos in flight are dropped, Ray shut down).
    gate = SignalGate(control, setup_interrupts=True)
    progress = BatchProgress(todo, enabled=not args.quiet and sys.stderr.isatty())
    try:
        with gate.installed(), logging_redirect_tqdm():
            if args.ray:
                from ..jobs.batch.ray_runner import run_on_ray

                level = logging.INFO if args.verbose else logging.WARNING
                records = run_on_ray(todo, factory, manifest, progress=progress, should_stop=control.stopping.is_set,
                                     cpus_per_actor=args.ray_actor_cpus, log_level=level,
                                     on_start=gate.start)  # fmt: skip
            else:
                make = lambda: factory(control=control, on_start=gate.start)  # noqa: E731
                records = run_local(todo, make, manifest, progress=progress, should_stop=control.stopping.is_set)
    except KeyboardInterrupt:
        if gate.signum is None:
            raise
        log.warning("interrupted before the first frame: nothing was written")
        records = []
    finally:
        progress.close()
    return records, gate.signum


def _write_stats(path: str, result: BatchResult) -> None:
    from .main import _write_json

    data: dict[str, Any] = {"inputs": result.total, **{s: result.count(s) for s in STATUSES}}
    data["files"] = [dataclasses.asdict(r) for r in result.records]
    _write_json(path, data)


def cmd_video_batch(args: argparse.Namespace, model_args: dict[str, Any], signal_exit: dict[int, int]) -> int:
    """Run a ``video`` batch from parsed arguments; returns the exit code.

    Raises:
        LiveSegError: the inputs cannot be expanded, outputs would collide, the manifest cannot be
            written, or ``--ray`` cannot be used (one line each).
    """
    problem = usage_error(args)
    if problem:
        log.error("error: %s", problem)
        return EXIT_USAGE
    if args.ray:
        from ..jobs.batch.ray_runner import import_ray

        import_ray()  # a missing extra is reported before anything else
    signum = None
    with Manifest.in_folder(args.output) as manifest:
        effect = args.effect if args.view == "overlay" else None  # a cutout's container holds alpha
        jobs, todo, records = prepare(args.input, args.output, manifest, overwrite=args.overwrite, effect=effect)
        if todo:
            ran, signum = _run(args, todo, manifest, model_args)
            records += ran
    result = BatchResult(records, len(jobs))
    if args.stats:
        _write_stats(args.stats, result)
    log.info("%s (manifest: %s)", result.summary_line(), manifest.path)
    for record in result.failed:
        log.error("failed: %s: %s", record.input, record.error)
    if signum is not None:
        log.warning("interrupted: run the same command again to finish the batch")
        return signal_exit[signum]
    return EXIT_ERROR if result.failed else 0
