"""Command line of a ``video`` batch: ``live-seg video IN [IN …] -o OUTDIR/ [--ray]``.

Part of the command line (:mod:`live_seg.cli.main` hands a batch over to :func:`cmd_video_batch`):
it checks the arguments and runs :func:`~live_seg.jobs.batch.video.run_batch` (the orchestration
:func:`~live_seg.process_batch` runs too) under the signal gate, with progress bars, and ends with
one line per failure and the exit code (1 when a file failed).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from ..jobs.batch.manifest import STATUSES, BatchResult
from ..jobs.batch.plan import is_video_file_name
from ..jobs.batch.progress import BatchProgress
from ..jobs.batch.video import BatchHooks, run_batch
from ..pipeline.threads import Control
from .args import video_options

log = logging.getLogger(__name__)

EXIT_ERROR = 1
EXIT_USAGE = 2


def usage_error(args: argparse.Namespace) -> str | None:
    """Why the batch's arguments cannot work (exit 2), or ``None``."""
    if not args.output:
        return "several inputs, a folder or a glob need an output folder: -o OUTDIR/"
    if args.events is not None or args.mqtt is not None:
        return "--events and --mqtt take one input video (a batch writes OUTDIR/live_seg_manifest.jsonl)"
    out = Path(args.output)
    if (out.exists() and not out.is_dir()) or is_video_file_name(args.output):
        folder = out.with_suffix("")
        return f"-o {args.output}: a batch writes into a folder; name one with a trailing /, e.g. -o {folder}/"
    return None


def _write_stats(path: str, result: BatchResult) -> None:
    from .main import write_stats

    data: dict[str, Any] = {"inputs": result.total, **{s: result.count(s) for s in STATUSES}}
    data["files"] = [dataclasses.asdict(r) for r in result.records]
    write_stats(path, data)


def cmd_video_batch(args: argparse.Namespace, signal_exit: dict[int, int]) -> int:
    """Run a ``video`` batch from parsed arguments; returns the exit code.

    Raises:
        LiveSegError: the inputs cannot be expanded, outputs would collide, the manifest cannot be
            written, or ``--ray`` cannot be used (one line each).
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .main import SignalGate

    problem = usage_error(args)
    if problem:
        log.error("error: %s", problem)
        return EXIT_USAGE
    if args.ray:
        from ..jobs.batch.ray_runner import import_ray

        import_ray()  # a missing extra is reported before anything else
    control = Control()
    # Until the first frames flow (model built, or Ray up with its actors) a signal stops at once;
    # then it asks for a clean stop (on Ray: the videos in flight are dropped, Ray shut down).
    gate = SignalGate(control, setup_interrupts=True)
    bars = not args.quiet and sys.stderr.isatty()
    hooks = BatchHooks(
        control,
        on_start=gate.start,
        progress=lambda todo: BatchProgress(todo, enabled=bars),
        ray_log_level=logging.INFO if args.verbose else logging.WARNING,
    )
    try:
        with gate.installed(), logging_redirect_tqdm():
            result = run_batch(args.input, args.output, video_options(args), overwrite=args.overwrite, ray=args.ray,
                               ray_actor_cpus=args.ray_actor_cpus, hooks=hooks)  # fmt: skip
    except KeyboardInterrupt:
        if gate.signum is None:
            raise
        log.warning("interrupted while planning the batch: nothing was run")  # SIGTERM exits 143, not 130
        return signal_exit[gate.signum]
    if args.stats:
        _write_stats(args.stats, result)
    log.info("%s (manifest: %s)", result.summary_line(), result.manifest)
    for record in result.failed:
        log.error("failed: %s: %s", record.input, record.error)
    if gate.signum is not None:
        log.warning("interrupted: run the same command again to finish the batch")
        return signal_exit[gate.signum]
    return EXIT_ERROR if result.failed else 0
