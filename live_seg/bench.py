"""The ``bench`` job: how fast is segmentation on this machine, and where does the time go?

For each device x precision x model, three figures are measured side by side, on the same
frames, with the same :class:`~live_seg.model.Segmenter` (built once per configuration):

* ``naive``: the original single-image scripts run once per frame, sequentially, as a newcomer
  would write the video loop: ``cv2.VideoCapture`` read, ``cvtColor`` BGR→RGB, ``resize`` to
  the model input, torchvision ``ToTensor`` + ``Normalize`` on the CPU, forward, argmax,
  ``.cpu().numpy()``, a per-class colouring loop, ``cv2.addWeighted`` 0.6/0.4 at the frame's
  size, ``cv2.VideoWriter`` (mp4v). Same device as the other two figures, and always fp32:
  the original scripts have no precision setting, so their loop is the baseline at every
  precision (a pipeline row at bf16 or fp16 is compared with that fp32 loop).
* ``model_only``: a preprocessed batch already on the device, forward + argmax only (the
  ceiling the pipeline can approach).
* ``pipeline``: the real ``video`` job (:func:`live_seg.video.process_video`: decode →
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
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from .errors import LiveSegError, ModelError, OutputError, SourceError
from .metrics import STAGES, Stats, median_ms, spread_ms
from .model import (
    DEFAULT_MODEL,
    Segmenter,
    agreement,
    available_precisions,
    get_threads,
    resolve_device,
    resolve_precision,
    runtime_info,
    set_threads,
)
from .pipeline import POLL_S, Control, Stage, plan_workers
from .render import DEFAULT_ALPHA, voc_palette
from .sinks import VideoWriter
from .sources import VideoFileSource
from .video import process_video

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA = "live_seg.bench/1"
"""``schema`` field of the JSON report; bumped when a field changes meaning or goes away."""

MEASURES = ("naive", "model_only", "pipeline")
AGREEMENT_FRAMES = 2
"""Frames of the source on which a non-fp32 row is compared with fp32 (``vs_fp32``)."""
ALL_DEVICES = ("cpu", "cuda", "mps")
NOT_AVAILABLE = "not available"

QUIET = {
    "live_seg.model": logging.ERROR,
    "live_seg.sources": logging.WARNING,
    "live_seg.sinks": logging.WARNING,
    "live_seg.video": logging.WARNING,
}

SYNTHETIC = "synthetic"
SYNTHETIC_SIZE = (1280, 720)
SYNTHETIC_FPS = 25.0


@dataclass
class Sample:
    """One timed run of a measurement.

    Attributes:
        seconds: wall time of the whole run.
        frames: frames the run completed.
        stages: per-frame seconds by stage name.
        latency: per-frame seconds from capture to written (pipeline only).
    """

    seconds: float
    frames: int
    stages: dict[str, list[float]] = field(default_factory=dict)
    latency: list[float] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def summarize(samples: Sequence[Sample], warmup: int = 0) -> dict[str, Any]:
    """The JSON-ready summary of the timed runs of one measurement.

    Args:
        samples: the timed runs (warm-up excluded), at least one.
        warmup: frames processed before them, reported as is.

    Returns:
        ``fps`` (median over runs), ``fps_min``, ``fps_max``, ``fps_runs``, ``runs``, ``frames``
        (per run), ``warmup``, ``ms_per_frame`` (``1000 / fps``), ``stage_ms`` (median per
        frame, pooled over runs; ``None`` for a stage the measurement does not have) and
        ``latency_ms`` (``p50``, ``p95``, ``max``; ``None`` without latencies).
    """
    if not samples:
        raise ValueError("summarize: expected at least one timed run, got 0")
    runs = [s.fps for s in samples]
    fps = statistics.median(runs)
    pooled: dict[str, list[float]] = {k: [] for k in STAGES}
    for s in samples:
        for k, values in s.stages.items():
            pooled.setdefault(k, []).extend(values)
    lat = [x for s in samples for x in s.latency]
    return {
        "fps": round(fps, 4),
        "fps_min": round(min(runs), 4),
        "fps_max": round(max(runs), 4),
        "fps_runs": [round(x, 4) for x in runs],
        "runs": len(samples),
        "frames": [s.frames for s in samples],
        "warmup": warmup,
        "ms_per_frame": round(1000 / fps, 3) if fps > 0 else None,
        "stage_ms": {k: median_ms(v) for k, v in pooled.items()},
        "latency_ms": spread_ms(lat, digits=3) if lat else None,
    }


def measure(run: Callable[[int], Sample], frames: int, warmup: int, repeat: int) -> dict[str, Any]:
    """Warm up, then time ``repeat`` runs of ``frames`` frames and summarise them.

    Args:
        run: ``run(n)`` processes ``n`` frames and returns its :class:`Sample`.
        frames: frames per timed run, >= 1.
        warmup: frames processed once before the timed runs and not counted (0: none).
        repeat: timed runs, >= 1.
    """
    if frames < 1 or repeat < 1 or warmup < 0:
        raise ValueError(f"measure: need frames >= 1, repeat >= 1, warmup >= 0; got {frames}, {repeat}, {warmup}")
    if warmup:
        run(warmup)
    return summarize([run(frames) for _ in range(repeat)], warmup)


# --- the three measurements ---------------------------------------------------------------


def _decode_segmap(mask: np.ndarray, label_colors: np.ndarray) -> np.ndarray:
    """Colour a class mask one class at a time, as the original scripts did.

    Args:
        mask: ``(H, W)`` integer class ids.
        label_colors: ``(N, 3)`` uint8 colours, RGB.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    r = np.zeros_like(mask).astype(np.uint8)
    g = np.zeros_like(mask).astype(np.uint8)
    b = np.zeros_like(mask).astype(np.uint8)
    for label in range(len(label_colors)):
        idx = mask == label
        r[idx] = label_colors[label, 0]
        g[idx] = label_colors[label, 1]
        b[idx] = label_colors[label, 2]
    return np.stack([r, g, b], axis=2)


def _check(control: Control | None) -> None:
    if control is not None and control.stopping.is_set():
        raise KeyboardInterrupt(control.reason or "stopped")


def naive_run(seg: Segmenter, src: Path, frames: int, out_dir: Path, control: Control | None = None) -> Sample:
    """Process ``frames`` frames of ``src`` the naive way (see the module docstring).

    Returns:
        The run's :class:`Sample`, stages ``decode``, ``preprocess``, ``infer``, ``render``, ``encode``.

    Raises:
        KeyboardInterrupt: ``control`` asked to stop (checked before each frame).
    """
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    t_start = time.perf_counter()
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise SourceError(f"OpenCV cannot open {src} for the naive loop; try --source synthetic")
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS) or SYNTHETIC_FPS
    out_path = out_dir / "naive.mp4"
    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    done = 0
    try:
        if not writer.isOpened():
            raise OutputError(f"OpenCV cannot write {out_path} (mp4v) for the naive loop")
        while done < frames:
            _check(control)
            t0 = time.perf_counter()
            ok, frame = cap.read()
            if not ok:
                break
            t1 = time.perf_counter()
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            rgb = cv2.resize(rgb, (seg.size, seg.size))
            x = seg.naive_preprocess(rgb)
            seg.synchronize()
            t2 = time.perf_counter()
            mask = seg.naive_infer(x)
            t3 = time.perf_counter()
            colour = _decode_segmap(mask, voc_palette(seg.num_classes))
            colour = cv2.resize(cv2.cvtColor(colour, cv2.COLOR_RGB2BGR), (frame.shape[1], frame.shape[0]))
            blended = cv2.addWeighted(frame, 1 - DEFAULT_ALPHA, colour, DEFAULT_ALPHA, 0)
            t4 = time.perf_counter()
            writer.write(blended)
            t5 = time.perf_counter()
            for key, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                stages[key].append(seconds)
            done += 1
    finally:
        cap.release()
        writer.release()
    return Sample(time.perf_counter() - t_start, done, stages)


def read_frames(src: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``src`` (BGR uint8), the last repeated when the file is shorter."""
    with VideoFileSource(src, max_frames=count) as source:
        frames = [packet.image for packet in source]
    return [frames[min(i, len(frames) - 1)] for i in range(count)]


def model_only_runner(
    seg: Segmenter, frames: Sequence[np.ndarray], control: Control | None = None, workers: int = 1
) -> Callable[[int], Sample]:
    """A ``run(n)`` that times forward + argmax of ``ceil(n / len(frames))`` passes over one batch.

    The batch is preprocessed once, before any timing; the device is synchronised before
    every clock read. ``workers`` threads share the passes, as the pipeline's inference
    workers do (with the same torch threads each), so the ceiling is measured the same way.
    """
    batch = len(frames)
    x = seg.preprocess(frames)
    seg.synchronize()

    def run(n: int) -> Sample:
        per_frame: list[float] = []
        passes = max(1, math.ceil(n / batch))
        todo = iter(range(passes))
        lock = threading.Lock()

        def loop() -> None:
            while True:
                _check(control)
                with lock:
                    if next(todo, None) is None:
                        return
                t0 = time.perf_counter()
                seg.infer(x)
                seg.synchronize()
                with lock:
                    per_frame.extend([(time.perf_counter() - t0) / batch] * batch)

        seg.synchronize()
        t_start = time.perf_counter()
        if workers == 1:
            loop()
        else:
            threads = [threading.Thread(target=loop, name=f"live_seg-bench-{i}") for i in range(workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return Sample(time.perf_counter() - t_start, passes * batch, {"infer": per_frame})

    return run


def pipeline_run(
    seg: Segmenter,
    src: Path,
    frames: int,
    out_dir: Path,
    batch: int = 1,
    control: Control | None = None,
    workers: int | None = None,
) -> Sample:
    """Run the ``video`` job on the first ``frames`` frames of ``src``; time it whole.

    Returns:
        The run's :class:`Sample` with the pipeline's own per-frame stage times and latencies.

    Raises:
        KeyboardInterrupt: the run was stopped (Ctrl-C or ``control``) before its last frame.
    """
    _check(control)
    seen: list[Stats] = []

    def on_frame(stats: Stats) -> None:
        if not seen:
            seen.append(stats)

    t_start = time.perf_counter()
    summary = process_video(
        src,
        out_dir / "pipeline.mp4",
        seg,
        audio=False,
        overwrite=True,
        batch=batch,
        workers=workers,
        max_frames=frames,
        control=control,
        on_frame=on_frame,
    )
    seconds = time.perf_counter() - t_start
    if summary["interrupted"]:
        raise KeyboardInterrupt(summary["stop_reason"] or "interrupted")
    stats = seen[0] if seen else Stats()
    return Sample(seconds, summary["frames_out"], {k: list(v) for k, v in stats.stages.items()}, list(stats.latency))


# --- sources, plan, machine -------------------------------------------------------------------


def default_source() -> Path | None:
    """``samples/sample.mp4`` in the current folder or beside the package, if there is one."""
    for path in (Path("samples", "sample.mp4"), Path(__file__).resolve().parent.parent / "samples" / "sample.mp4"):
        if path.is_file():
            return path
    return None


def make_synthetic_clip(
    path: str | os.PathLike[str],
    frames: int,
    width: int = SYNTHETIC_SIZE[0],
    height: int = SYNTHETIC_SIZE[1],
    fps: float = SYNTHETIC_FPS,
) -> Path:
    """Write a generated clip (moving shapes over a textured gradient) as H.264 MP4.

    Deterministic: a fixed seed for the texture. Returns ``path``.
    """
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 48, size=(height, width, 1), dtype=np.uint8)
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None]
    base = np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8)
    with VideoWriter(path, width, height, fps=fps, overwrite=True) as writer:
        for i in range(frames):
            image = base + np.roll(texture, 3 * i, axis=1)
            for k, colour in enumerate(((40, 40, 220), (220, 120, 40), (60, 200, 60))):
                cx = int((0.2 + 0.3 * k) * width + 0.1 * width * math.sin(0.15 * i + k))
                cy = int(height / 2 + 0.25 * height * math.cos(0.1 * i + 2 * k))
                cv2.circle(image, (cx, cy), height // (5 + k), colour, -1, cv2.LINE_AA)
            writer.write(image, i / fps)
    return Path(path)


def resolve_source(source: str | None, workdir: Path, frames: int) -> tuple[Path, str]:
    """The clip to measure on and its kind (``"file"`` or ``"synthetic"``).

    Args:
        source: a file path, ``"synthetic"``, or ``None`` for the sample clip (synthetic without one).
        workdir: where a synthetic clip is written.
        frames: frames the synthetic clip must hold.

    Raises:
        SourceError: a file that does not exist.
    """
    if source is None:
        found = default_source()
        if found is not None:
            return found, "file"
        log.info("samples/sample.mp4 not found: measuring on a synthetic 720p clip")
    elif source != SYNTHETIC:
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"benchmark source not found: {path}; pass a video file or --source synthetic")
        return path, "file"
    return make_synthetic_clip(workdir / "synthetic.mp4", frames), SYNTHETIC


def plan(devices: Sequence[str], precisions: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """Expand device and precision requests into ``(device, precision, reason)`` rows.

    ``"all"`` devices means cpu, cuda and mps; ``"all"`` precisions means every precision the
    device runs; ``"auto"`` resolves as the other commands do. ``reason`` is ``None`` for a
    configuration that runs here, else why it is not available.
    """
    wanted: list[str] = []
    for name in devices:
        for d in ALL_DEVICES if name == "all" else (name,):
            if d == "auto":
                d = resolve_device("auto")
            if d not in wanted:
                wanted.append(d)
    rows: list[tuple[str, str, str | None]] = []
    for device in wanted:
        try:
            resolve_device(device)
        except ModelError as exc:
            rows.extend((device, p, str(exc)) for p in dict.fromkeys(precisions))
            continue
        done: list[str] = []
        for name in precisions:
            for p in available_precisions(device) if name == "all" else (name,):
                try:
                    p = resolve_precision(p, device)
                except ModelError as exc:
                    rows.append((device, p, str(exc)))
                    continue
                if p not in done:
                    done.append(p)
                    rows.append((device, p, None))
    return rows


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            )
            if out.stdout.strip():
                return out.stdout.strip()
    return platform.processor() or platform.machine() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """The machine and software the figures come from (JSON-ready)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_avg_1m": round(load, 2) if load is not None else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        **runtime_info(),
        "opencv": cv2.__version__,
        "av": _version("av"),
        "numpy": np.__version__,
    }


# --- the whole benchmark ----------------------------------------------------------------------


@contextlib.contextmanager
def _quiet(**names: int) -> Iterator[None]:
    """Raise loggers to at least the given levels while measuring (their per-run lines are noise)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg, level in zip(loggers, names.values(), strict=True):
        lg.setLevel(max(level, lg.getEffectiveLevel()))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _row(device: str, precision: str, model: str, status: str, reason: str | None = None) -> dict[str, Any]:
    return {
        "device": device,
        "precision": precision,
        "model": model,
        "status": status,
        "reason": reason,
        **dict.fromkeys(MEASURES),
        "pipeline_vs_naive": None,
        "pipeline_vs_model_only": None,
        "vs_fp32": None,
        "workers": None,
        "worker_threads": None,
    }


def off_main(fn: Callable[[], T], control: Control) -> T:
    """Run ``fn`` on a ``live_seg-bench`` thread and return its result (its exception is re-raised).

    The naive and model-only measurements run this way so that their torch calls run on a
    worker thread, as the pipeline's inference does: on a busy machine, torch's OpenMP team
    on the main thread was seen to run small models many times slower than on a worker.
    Ctrl-C on the main thread asks ``fn`` to stop (through ``control``) and waits for it.
    """
    out: list[T] = []
    stage = Stage("bench", lambda: out.append(fn()), control, None)
    stage.start()
    try:
        while stage.is_alive():
            stage.join(POLL_S * 4)
    except KeyboardInterrupt:
        control.abort("interrupted")
        stage.join()
        raise
    if stage.error is not None:
        raise stage.error
    return out[0]


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
) -> dict[str, dict[str, Any]]:
    """The three measurements of one configuration.

    ``seg`` (the configuration's precision) serves model-only and pipeline; ``naive_seg`` is the
    same model and weights in fp32, as the original scripts ran it, with torch's default
    threads. Model-only and pipeline use the pipeline's worker plan
    (:func:`live_seg.pipeline.plan_workers`): the same workers, each with the same threads.

    Returns:
        ``{"naive": ..., "model_only": ..., "pipeline": ...}``, each a :func:`summarize` dict.
    """
    control = control or Control()
    label = f"{seg.device} {seg.precision} {seg.name}"
    workers, worker_threads = plan_workers(seg.device, threads)
    default_threads = get_threads()

    def planned(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if worker_threads is not None:
            set_threads(worker_threads)
        try:
            return fn()
        finally:
            set_threads(default_threads)

    measures: dict[str, Callable[[], dict[str, Any]]] = {
        "naive": lambda: off_main(
            lambda: measure(lambda n: naive_run(naive_seg, src, n, out_dir, control), frames, warmup, repeat),
            control,
        ),
        "model_only": lambda: planned(
            lambda: off_main(
                lambda: measure(
                    model_only_runner(seg, read_frames(src, batch), control, workers), frames, warmup, repeat
                ),
                control,
            )
        ),
        # process_video runs its own threads; it renders and encodes on the calling thread.
        "pipeline": lambda: planned(
            lambda: measure(
                lambda n: pipeline_run(seg, src, n, out_dir, batch, control, workers), frames, warmup, repeat
            )
        ),
    }
    results: dict[str, dict[str, Any]] = {}
    for name, run in measures.items():
        r = results[name] = run()
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
    results["workers"] = workers  # type: ignore[assignment]
    results["worker_threads"] = worker_threads if worker_threads is not None else default_threads  # type: ignore[assignment]
    return results


def run_bench(
    devices: Sequence[str] = ("auto",),
    precisions: Sequence[str] = ("auto",),
    models: Sequence[str] = (DEFAULT_MODEL,),
    *,
    source: str | None = None,
    size: int = 512,
    frames: int = 10,
    warmup: int = 1,
    repeat: int = 3,
    batch: int = 1,
    weights: str = "random",
    threads: int | None = None,
    command: str | None = None,
    control: Control | None = None,
) -> dict[str, Any]:
    """Measure naive, model-only and pipeline speed for every device x precision x model.

    Args:
        devices: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or ``"all"``.
        precisions: ``"auto"``, ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"all"``.
        models: registry names (see :data:`live_seg.model.MODELS`).
        source: a video file, ``"synthetic"`` (a generated 720p clip), or ``None`` for
            ``samples/sample.mp4`` (synthetic when it is missing).
        size: model input side.
        frames: frames per timed run; warmup: frames processed first and not timed;
            repeat: timed runs per measurement.
        batch: frames per forward pass (model-only and pipeline; naive is one by one).
        weights: ``"random"`` (speed does not depend on weights), ``"default"`` or a file.
        threads: torch CPU threads (``None``: torch's default).
        command: the command line, recorded in the report.
        control: ``control.stop()`` (e.g. from a signal handler) ends the benchmark early.

    Returns:
        The JSON-ready report (schema :data:`SCHEMA`, documented in the README): ``schema``,
        ``date``, ``command``, ``elapsed_s``, ``machine``, ``settings`` and one ``results``
        row per configuration.

    Raises:
        SourceError: the source cannot be found or read.
        ValueError: frames, repeat or batch below 1, warmup below 0.
        KeyboardInterrupt: Ctrl-C, or ``control`` asked to stop.
    """
    if frames < 1 or repeat < 1 or batch < 1 or warmup < 0:
        raise ValueError(f"need frames, repeat, batch >= 1 and warmup >= 0; got {frames}, {repeat}, {batch}, {warmup}")
    control = control or Control()
    t0 = time.perf_counter()
    date = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    load = machine_info()["load_avg_1m"]
    cores = os.cpu_count() or 1
    if load is not None and load >= cores:
        log.warning(
            "the machine is busy (load %.1f on %d cores): figures will be noisy; "
            "compare only figures measured side by side in one run",
            load,
            cores,
        )
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="live_seg-bench-") as tmp:
        workdir = Path(tmp)
        src, kind = resolve_source(source, workdir, max(frames, warmup, batch, 2))
        with VideoFileSource(src) as probe:
            info = probe.info
        assert info is not None
        settings = {
            "source": str(src) if kind == "file" else SYNTHETIC,
            "source_kind": kind,
            "width": info.width,
            "height": info.height,
            "source_fps": round(info.fps, 3),
            "frames": frames,
            "warmup": warmup,
            "repeat": repeat,
            "batch": batch,
            "size": size,
            "weights": weights,
            "untrained": weights == "random",
        }
        log.info(
            "benchmark on %s (%dx%d): %d timed runs x %d frames after %d warm-up frame(s), batch %d, input %d",
            settings["source"],
            info.width,
            info.height,
            repeat,
            frames,
            warmup,
            batch,
            size,
        )
        for device, precision, reason in plan(devices, precisions):
            for model in models:
                if reason is not None:
                    log.info("%s %s %s: %s (%s)", device, precision, model, NOT_AVAILABLE, reason)
                    results.append(_row(device, precision, model, NOT_AVAILABLE, reason))
                    continue
                row = _row(device, precision, model, "ok")
                try:
                    # The report says the weights are untrained: no need to warn for every model.
                    with _quiet(**QUIET):
                        seg = Segmenter(
                            model, weights=weights, device=device, precision=precision, size=size, threads=threads
                        )
                        naive_seg = (
                            seg
                            if seg.precision == "fp32"
                            else Segmenter(model, weights=weights, device=device, precision="fp32", size=size)
                        )
                        row.update(
                            bench_one(
                                seg,
                                naive_seg,
                                src,
                                workdir,
                                frames=frames,
                                warmup=warmup,
                                repeat=repeat,
                                batch=batch,
                                threads=threads,
                                control=control,
                            )
                        )
                except LiveSegError as exc:
                    log.error("%s %s %s failed: %s", device, precision, model, exc)
                    row.update(status="error", reason=str(exc))
                else:
                    p = row["pipeline"]["fps"]
                    row["pipeline_vs_naive"] = round(p / row["naive"]["fps"], 3) if row["naive"]["fps"] else None
                    mo = row["model_only"]["fps"]
                    row["pipeline_vs_model_only"] = round(p / mo, 3) if mo else None
                    if seg.precision != "fp32":
                        # What the faster precision costs: logits and masks against fp32 on the source.
                        row["vs_fp32"] = agreement(seg, naive_seg, read_frames(src, AGREEMENT_FRAMES))
                finally:
                    seg = naive_seg = None  # free the models before the next configuration
                results.append(row)
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


# --- reports ------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _config(row: dict[str, Any]) -> str:
    return f"{row['device']} {row['precision']} {row['model']}"


def _summary_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        if r["status"] != "ok":
            rows.append([r["device"], r["precision"], r["model"], r["status"], "", "", "", "", "", "", ""])
            continue
        lat = r["pipeline"]["latency_ms"] or {}
        vs = r["vs_fp32"]
        vs_text = f"{vs['mask_agreement'] * 100:.2f}% / {vs['logit_rel_err'] * 100:.2f}%" if vs else "-"
        rows.append(
            [
                r["device"],
                r["precision"],
                r["model"],
                _fmt(r["naive"]["fps"]),
                _fmt(r["model_only"]["fps"]),
                _fmt(r["pipeline"]["fps"]),
                _fmt(r["pipeline_vs_naive"]) + "x",
                _fmt(r["pipeline_vs_model_only"]) + "x",
                _fmt(lat.get("p50"), 0),
                _fmt(lat.get("p95"), 0),
                vs_text,
            ]
        )
    return rows


SUMMARY_HEADER = [
    "device",
    "precision",
    "model",
    "naive fps",
    "model-only fps",
    "pipeline fps",
    "pipeline/naive",
    "pipeline/model-only",
    "p50 ms",
    "p95 ms",
    "vs fp32: masks same / logit err",
]
STAGE_HEADER = ["configuration", "measure", "fps", *STAGES]


def _stage_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        if r["status"] != "ok":
            continue
        for m in MEASURES:
            s = r[m]
            rows.append(
                [_config(r), m.replace("_", "-"), _fmt(s["fps"]), *(_fmt(s["stage_ms"].get(k), 1) for k in STAGES)]
            )
    return rows


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    numeric = [i >= 3 for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric, strict=True))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    gpu = ", ".join(m["gpus"]) if m["gpus"] else "no GPU"
    cuda = f"CUDA {m['cuda']}, cuDNN {m['cudnn']}" if m["cuda_available"] else "CUDA not available"
    return (
        f"{m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch threads), {gpu}; "
        f"torch {m['torch']}, {cuda}; load {m['load_avg_1m_at_start']} at start"
    )


def _method_line(report: dict[str, Any]) -> str:
    s = report["settings"]
    weights = "untrained (random) weights" if s["untrained"] else f"weights {s['weights']}"
    return (
        f"fps: median of {s['repeat']} run(s) x {s['frames']} frame(s) after {s['warmup']} warm-up frame(s); "
        f"source {s['source']} ({s['width']}x{s['height']}); input {s['size']}x{s['size']}, batch {s['batch']}; "
        f"{weights}; {report['elapsed_s']:.0f} s in all"
    )


def _reasons(report: dict[str, Any]) -> list[str]:
    seen = dict.fromkeys(f"{r['device']} {r['precision']}: {r['reason']}" for r in report["results"] if r["reason"])
    return list(seen)


def format_table(report: dict[str, Any]) -> str:
    """The report as plain-text tables for the terminal."""
    parts = [
        _text_table(SUMMARY_HEADER, _summary_rows(report)),
        "",
        "median ms per frame, by stage:",
        _text_table(STAGE_HEADER, _stage_rows(report)) if _stage_rows(report) else "(nothing ran)",
        "",
        _method_line(report),
        "machine: " + _machine_line(report),
    ]
    parts += [f"  {line}" for line in _reasons(report)]
    return "\n".join(parts)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if i >= 3 else "---" for i in range(len(header))) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def format_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: summary table, stage table, method, machine, command and date."""
    stage_header = ["configuration", "measure", "fps", *(f"{k} ms" for k in STAGES)]
    stage_rows = [[r[0], r[1], r[2], *r[3:]] for r in _stage_rows(report)]
    # the stage table's first three columns are text, the rest numbers
    stage_md = _md_table(stage_header, stage_rows).splitlines()
    stage_md[1] = "|---|---|" + "|".join("---:" for _ in stage_header[2:]) + "|"
    lines = [
        _md_table(SUMMARY_HEADER, _summary_rows(report)),
        "",
        "\n".join(stage_md),
        "",
        f"- {_method_line(report)}",
        f"- machine: {_machine_line(report)}",
        f"- command: `{report['command'] or 'run_bench(...)'}`",
        f"- date: {report['date']}",
    ]
    lines += [f"- {NOT_AVAILABLE} / error: {line}" for line in _reasons(report)]
    return "\n".join(lines) + "\n"


def check_plot_available() -> None:
    """Raise :class:`OutputError` when matplotlib (the ``plot`` extra) is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise OutputError("--plot needs matplotlib: pip install 'live-seg[plot]' (or drop --plot)") from exc


def write_plot(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Save a bar chart of fps (naive, model-only, pipeline) per configuration as an image.

    Raises:
        OutputError: matplotlib is missing or the file cannot be written.
    """
    check_plot_available()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = [r for r in report["results"] if r["status"] == "ok"]
    labels = [_config(r).replace(" ", "\n", 2) for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(rows) + 2), 4.5), layout="constrained")
    width = 0.27
    for i, m in enumerate(MEASURES):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        values = [r[m]["fps"] for r in rows]
        bars = ax.bar(xs, values, width, label=m.replace("_", "-"))
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8, padding=2)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("frames per second (median)")
    s = report["settings"]
    ax.set_title(
        f"live_seg bench: {s['width']}x{s['height']} source, input {s['size']}, {report['date'][:10]}", fontsize=10
    )
    ax.legend(fontsize=8)
    out = Path(path)
    try:
        fig.savefig(out, dpi=120)
    except OSError as exc:
        raise OutputError(f"cannot write the plot {out}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
    return out
