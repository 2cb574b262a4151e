"""The whole benchmark: which configurations run here (:func:`plan`), the three measurements of
one configuration (:func:`bench_one`), one report row per configuration, and the report
(:func:`run_bench`, schema :data:`SCHEMA`).

For each device x backend x precision x model, three figures are measured side by side, on the same
frames, with the same :class:`~live_seg.model.segmenter.Segmenter` (built once per configuration):

* ``naive``: the original single-image scripts run once per frame, sequentially, as a newcomer
  would write the video loop (see :mod:`live_seg.jobs.bench.baselines`). Same device as the other two
  figures, and always fp32: the original scripts have no precision setting, so their loop is the
  baseline at every precision and backend (a pipeline row at bf16 or on OpenVINO is compared with
  that torch fp32 loop).
* ``model_only``: a preprocessed batch already on the device, forward + argmax only (the
  ceiling the pipeline can approach).
* ``pipeline``: the real ``video`` job (:func:`live_seg.jobs.video.process_video`: decode →
  preprocess → infer → render → encode through its threads), writing H.264 to a temporary file.

Timing: ``warmup`` frames are processed first and thrown away; then ``repeat`` timed runs of
``frames`` frames each. A run's fps is its frames divided by its wall time (for ``naive`` and
``pipeline`` opening and closing the files included); the figure reported is the median over the
runs, with min and max. Per-stage times are medians over every timed frame. On CUDA and MPS the
device is synchronised before a clock is read. The naive and model-only loops run on a worker
thread, as the pipeline's inference does, so that all three use torch from the same kind of thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ...base.errors import LiveSegError, one_line
from ...base.options import BenchOptions, ModelOptions, fold
from ...base.registry import AUTO, DEFAULT_WEIGHTS, RANDOM_WEIGHTS
from ...base.specs import SPECS, TFLITE
from ...media.file_source import VideoFileSource
from ...model.segmenter import DEFAULT_MODEL, Segmenter, torch_runtime
from ...model.select import segmenter_for
from ...pipeline.infer import plan_workers
from ...pipeline.threads import Control
from .baselines import agreement, model_only_runner, naive_run, pipeline_run
from .clips import SYNTHETIC, read_frames, resolve_source
from .machine import load_average, machine_info, torch_threads
from .measure import Timing, measure, off_main
from .plan import MEASURES, not_available, plan, plan_backends, result_row

log = logging.getLogger(__name__)

SCHEMA = "live_seg.jobs.bench/2"
"""``schema`` field of the JSON report; bumped when a field changes meaning or goes away."""

AGREEMENT_FRAMES = 2
"""Frames of the source on which a non-fp32 row is compared with fp32 (``vs_fp32``)."""

QUIET = {
    "live_seg.model.segmenter": logging.ERROR,
    "live_seg.model.weights": logging.ERROR,
    "live_seg.media.file_source": logging.WARNING,
    "live_seg.media.writer": logging.WARNING,
    "live_seg.jobs.video": logging.WARNING,
}
"""Loggers raised to at least these levels while measuring: their per-run lines are noise (and the
report says the weights are untrained: no need to warn for every model)."""


@contextlib.contextmanager
def quiet(names: dict[str, int]) -> Iterator[None]:
    """Raise loggers to at least the given levels while measuring, and give them back after."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg, level in zip(loggers, names.values(), strict=True):
        lg.setLevel(max(level, lg.getEffectiveLevel()))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def time_naive(seg: Segmenter, src: Path, out_dir: Path, timing: Timing, control: Control) -> dict[str, Any]:
    """The naive loop, timed on a worker thread."""
    run = functools.partial(naive_run, seg, src, out_dir=out_dir, control=control)
    return off_main(functools.partial(measure, run, *timing), control)


def _measure_model_only(
    seg: Segmenter, src: Path, batch: int, workers: int, timing: Timing, control: Control
) -> dict[str, Any]:
    """Read and preprocess one batch, then time the forward passes (on the calling thread)."""
    run = model_only_runner(seg, read_frames(src, batch), control, workers)
    return measure(run, *timing)


def time_model_only(
    seg: Segmenter, src: Path, batch: int, workers: int, timing: Timing, control: Control
) -> dict[str, Any]:
    """Forward + argmax only, timed on a worker thread."""
    return off_main(functools.partial(_measure_model_only, seg, src, batch, workers, timing, control), control)


def time_pipeline(
    seg: Segmenter, src: Path, out_dir: Path, batch: int, workers: int, timing: Timing, control: Control
) -> dict[str, Any]:
    """The ``video`` job, timed whole (it runs its own threads; it renders and encodes on this one)."""
    run = functools.partial(pipeline_run, seg, src, out_dir=out_dir, batch=batch, control=control, workers=workers)
    return measure(run, *timing)


def bench_one(
    seg: Segmenter,
    naive_seg: Segmenter,
    src: Path,
    out_dir: Path,
    *,
    frames: int,
    warmup: int,
    repeat: int,
    batch: int,
    threads: int | None = None,
    control: Control | None = None,
    naive: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The three measurements of one configuration.

    ``seg`` (the configuration's precision) serves model-only and pipeline; ``naive_seg`` is the
    same model and weights in fp32, as the original scripts ran it, with the run's torch threads.
    Model-only and pipeline use the pipeline's worker plan
    (:func:`live_seg.pipeline.infer.plan_workers`): the same workers, each with the same threads.

    The naive loop is one frame at a time whatever ``batch`` is: pass its result as ``naive`` to
    reuse it for another batch size of the same configuration.

    Returns:
        ``{"naive": ..., "model_only": ..., "pipeline": ...}``, each a :func:`summarize` dict,
        and the ``workers`` and ``worker_threads`` they ran with.
    """
    control = control or Control()
    timing = Timing(frames, warmup, repeat)
    label = f"{seg.device} {seg.backend} {seg.precision} {seg.name} batch {batch}"
    workers, worker_threads = plan_workers(seg.device, threads, requests=getattr(seg, "requests", None))
    default_threads = torch_threads()
    results: dict[str, Any] = {"naive": naive or time_naive(naive_seg, src, out_dir, timing, control)}
    with torch_runtime(worker_threads, seg.device):
        results["model_only"] = time_model_only(seg, src, batch, workers, timing, control)
        results["pipeline"] = time_pipeline(seg, src, out_dir, batch, workers, timing, control)
    for name in MEASURES:
        r = results[name]
        log.info(
            "%s: %-10s %8.3f fps (median of %d runs x %d frames, %.3f-%.3f)",
            label,
            name,
            r["fps"],
            r["runs"],
            frames,
            r["fps_min"],
            r["fps_max"],
        )
    results["workers"] = workers
    results["worker_threads"] = worker_threads if worker_threads is not None else default_threads
    return results


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def bench_weights(model: str, weights: str) -> str:
    """``bench``'s weights for ``model``: ``"random"`` (speed does not depend on the weights) becomes
    ``"default"`` for a model that has no untrained variant (the selfie models, whose network is read
    from their trained file), and says so."""
    if weights == RANDOM_WEIGHTS and model in SPECS and SPECS[model].family == TFLITE:
        log.info("%s has no untrained variant: benchmarking its trained weights", model)
        return DEFAULT_WEIGHTS
    return weights


def bench_config(
    device: str,
    precision: str,
    model: str,
    src: Path,
    workdir: Path,
    *,
    size: int,
    weights: str,
    threads: int | None,
    batches: Sequence[int],
    timing: Timing,
    control: Control,
    backend: str = "torch",
) -> list[dict[str, Any]]:
    """The report rows of one configuration that runs here, one per batch size: build its models
    once, measure, compare.

    The naive loop (one frame at a time, measured once) and the agreement reference are torch
    fp32 on the same device. A :class:`~live_seg.base.errors.LiveSegError` (weights that cannot be
    had, a clip OpenCV cannot read, OpenVINO unable to compile, ...) makes ``"error"`` rows
    rather than ending the benchmark.
    """
    rows = []
    try:
        with torch_runtime(threads, device):
            with quiet(QUIET):
                weights = bench_weights(model, weights)
                options = ModelOptions(model, weights, device, precision, backend, size, threads, calibration=src)
                seg = segmenter_for(options, mode="throughput")
                naive_seg = (
                    seg
                    if seg.precision == "fp32" and seg.backend == "torch"
                    else Segmenter(weights=weights, device=device, precision="fp32", spec=seg.spec)
                )
                naive = None
                for batch in batches:
                    row = result_row(device, precision, model, "ok", backend=backend, batch=batch)
                    row.update(
                        bench_one(
                            seg,
                            naive_seg,
                            src,
                            workdir,
                            **timing._asdict(),
                            batch=batch,
                            threads=threads,
                            control=control,
                            naive=naive,
                        )
                    )
                    naive = row["naive"]
                    rows.append(row)
            if seg is not naive_seg:
                # What the precision or runtime costs: logits and masks against torch fp32 on the source.
                vs_fp32 = agreement(seg, naive_seg, read_frames(src, AGREEMENT_FRAMES))
                for row in rows:
                    row["vs_fp32"] = vs_fp32
    except LiveSegError as exc:
        log.error("%s %s %s %s failed: %s", device, backend, precision, model, exc)
        return [result_row(device, precision, model, "error", one_line(exc), backend, b) for b in batches]
    for row in rows:
        row["pipeline_vs_naive"] = _ratio(row["pipeline"]["fps"], row["naive"]["fps"])
        row["pipeline_vs_model_only"] = _ratio(row["pipeline"]["fps"], row["model_only"]["fps"])
    return rows


def _warn_if_busy(load: float | None) -> None:
    cores = os.cpu_count() or 1
    if load is not None and load >= cores:
        log.warning(
            "the machine is busy (load %.1f on %d cores): figures will be noisy; "
            "compare only figures measured side by side in one run",
            load,
            cores,
        )


def _settings(
    src: Path, kind: str, timing: Timing, *, batches: Sequence[int], size: int, weights: str
) -> dict[str, Any]:
    """The report's ``settings`` (the clip as read, timing, batch, input size, weights), logged once."""
    with VideoFileSource(src) as probe:
        info = probe.info
    assert info is not None
    settings = {
        "source": str(src) if kind == "file" else SYNTHETIC,
        "source_kind": kind,
        "width": info.width,
        "height": info.height,
        "source_fps": round(info.fps, 3),
        **timing._asdict(),
        "batch": list(batches),
        "size": size,
        "weights": weights,
        "untrained": weights == RANDOM_WEIGHTS,
    }
    log.info(
        "benchmark on %s (%dx%d): %d timed runs x %d frames after %d warm-up frame(s), batch %s, input %d",
        settings["source"],
        info.width,
        info.height,
        timing.repeat,
        timing.frames,
        timing.warmup,
        ", ".join(map(str, batches)),
        size,
    )
    return settings


def run_bench(
    devices: Sequence[str] = ("auto",),
    precisions: Sequence[str] = ("auto",),
    models: Sequence[str] = (DEFAULT_MODEL,),
    *,
    backends: Sequence[str] = (AUTO,),
    options: BenchOptions | None = None,
    command: str | None = None,
    control: Control | None = None,
    **given: Any,
) -> dict[str, Any]:
    """Measure naive, model-only and pipeline speed for every device x precision x model.

    Args:
        devices: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or ``"all"``.
        precisions: ``"auto"``, ``"fp32"``, ``"fp16"``, ``"bf16"``, ``"int8"`` (OpenVINO, calibrated on
            the source) or ``"all"``.
        models: registry names (see :data:`live_seg.model.segmenter.MODELS`).
        backends: ``"auto"``, ``"torch"``, ``"openvino"`` or ``"all"`` (each runtime that runs the device).
        options: the source, input size, timing, batch sizes, weights and threads
            (:class:`~live_seg.base.options.BenchOptions`). ``source``: a video file, ``"synthetic"``
            (a generated 720p clip), or ``None`` for ``samples/sample.mp4`` (synthetic when it is
            missing). ``batch``: frames per forward pass (model-only and pipeline; naive is one by
            one), or several: one row per batch size, the naive loop measured once.
        command: the command line, recorded.
        control: ``control.stop()`` (e.g. from a signal handler) ends the benchmark early.
        **given: :class:`~live_seg.base.options.BenchOptions` fields (``frames=20``, ``size=256``),
            folded into ``options``.

    Returns:
        The JSON-ready report (schema :data:`SCHEMA`, documented in the README): ``schema``,
        ``date``, ``command``, ``elapsed_s``, ``machine``, ``settings`` and one ``results``
        row per configuration.

    Raises:
        SourceError: the source cannot be found or read.
        ValueError: frames, repeat or batch below 1, warmup below 0.
        KeyboardInterrupt: Ctrl-C, or ``control`` asked to stop.
    """
    opts: BenchOptions = fold({"bench": options or BenchOptions()}, given)["bench"]
    frames, warmup, repeat, batch = opts.frames, opts.warmup, opts.repeat, opts.batch
    size, weights = opts.size, opts.weights
    batches = [batch] if isinstance(batch, int) else list(dict.fromkeys(batch))
    if frames < 1 or repeat < 1 or not batches or min(batches) < 1 or warmup < 0:
        raise ValueError(f"need frames, repeat, batch >= 1 and warmup >= 0; got {frames}, {repeat}, {batch}, {warmup}")
    control = control or Control()
    timing = Timing(frames, warmup, repeat)
    t0 = time.perf_counter()
    date = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    load = load_average()
    _warn_if_busy(load)
    with tempfile.TemporaryDirectory(prefix="live_seg-bench-") as tmp:
        workdir = Path(tmp)
        src, kind = resolve_source(opts.source, workdir, max(frames, warmup, *batches, 2))
        settings = _settings(src, kind, timing, batches=batches, size=size, weights=weights)
        shared = {"size": size, "weights": weights, "threads": opts.threads, "batches": batches}
        results = [
            row
            for d, p, reason in plan(devices, precisions)
            for b, why in (plan_backends(d, backends, p) if reason is None else [("torch", None)])
            for m in models
            for row in (
                bench_config(d, p, m, src, workdir, **shared, timing=timing, control=control, backend=b)
                if reason is None and why is None
                else not_available(d, p, m, reason or why or "", b, batches)
            )
        ]
    machine = machine_info()
    machine["load_avg_1m_at_start"] = load
    return {
        "schema": SCHEMA,
        "date": date,
        "command": command,
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "machine": machine,
        "settings": settings,
        "results": results,
    }
