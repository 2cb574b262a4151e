"""Threads, queues and shutdown: capture → inference → render/encode.

The capture thread reads frames into a bounded queue, the inference worker turns batches
of frames into masks, and the calling (main) thread renders and writes. Every loop waits
with a timeout and re-checks the :class:`Control`, so every exit path (end of input, an
error in any stage, a stop request, an abort) ends all threads. A worker's exception is
handed to the main thread and raised there.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, Protocol

import numpy as np

from .errors import LiveSegError, PipelineError, one_line
from .frames import Frame, FramePacket, SegResult
from .metrics import Stats

log = logging.getLogger(__name__)

THREAD_PREFIX = "live_seg-"
"""Every pipeline thread's name starts with this (tests look for leftovers by it)."""

POLL_S = 0.05
JOIN_S = 10.0
WRITE_QUEUE = 4
"""Rendered frames waiting for the writer (each a copy of the frame: bounded memory)."""


class FrameSource(Protocol):
    """What the pipeline needs of a source."""

    def __iter__(self) -> Iterator[FramePacket]: ...

    def stop(self) -> None: ...


class MaskModel(Protocol):
    """What the pipeline needs of a model (see :class:`live_seg.model.Segmenter`)."""

    def preprocess(self, frames: Sequence[Frame]) -> Any: ...

    def infer(self, batch: Any) -> np.ndarray: ...


Take = Callable[[], FramePacket | None]
"""Where a worker gets its next frame: blocks until one is there; ``None`` at the end."""
Give = Callable[[SegResult], bool]
"""Where a worker hands a result: False when nobody takes it any more (stop the worker)."""


class Control:
    """Stop requests shared by all stages.

    ``stop()`` is graceful: capture ends, frames already read are still inferred, rendered
    and written. ``abort()`` ends every stage at once.
    """

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.aborted = threading.Event()
        self.reason: str | None = None

    def stop(self, reason: str = "stopped") -> None:
        """Ask for a graceful stop (first call's reason is kept)."""
        if self.reason is None:
            self.reason = reason
        self.stopping.set()

    def abort(self, reason: str = "aborted") -> None:
        """Ask every stage to end now."""
        self.stop(reason)
        self.aborted.set()


class _End:
    """Sentinel sent downstream when a stage ends."""


END = _End()


def put(q: queue.Queue, item: object, control: Control, give_up: threading.Event | None = None) -> bool:
    """Put ``item``, waiting for room until ``give_up`` is set (default: the run is aborted).

    Returns:
        False when it gave up without putting.
    """
    give_up = give_up or control.aborted
    while not give_up.is_set():
        try:
            q.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


def get(q: queue.Queue, control: Control) -> object:
    """Get the next item, or ``END`` when the run is aborted."""
    while not control.aborted.is_set():
        try:
            return q.get(timeout=POLL_S)
        except queue.Empty:
            continue
    return END


class Stage(threading.Thread):
    """A pipeline thread: runs ``body``, stores its exception, aborts the run on error,
    and always sends ``ends`` x ``END`` downstream (one per consumer)."""

    def __init__(
        self,
        name: str,
        body: Callable[[], None],
        control: Control,
        downstream: queue.Queue | None,
        ends: int = 1,
    ):
        super().__init__(name=THREAD_PREFIX + name, daemon=True)
        self.body = body
        self.control = control
        self.downstream = downstream
        self.ends = ends
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.body()
        except BaseException as exc:
            self.error = exc
            log.debug("stage %s failed", self.name, exc_info=True)
            self.control.abort(f"{self.name.removeprefix(THREAD_PREFIX)} failed")
        finally:
            if self.downstream is not None:
                # Waits for room while the consumers run; gives up once the run is aborted.
                for _ in range(self.ends):
                    put(self.downstream, END, self.control)


def join_all(stages: Sequence[Stage], timeout: float = JOIN_S) -> None:
    """Join stages; raise the first stage error as a user-facing error."""
    deadline = time.monotonic() + timeout
    for stage in stages:
        stage.join(max(0.0, deadline - time.monotonic()))
    if alive := [s.name for s in stages if s.is_alive()]:
        raise PipelineError(f"pipeline threads did not stop within {timeout:.0f} s: {', '.join(alive)}")
    for stage in stages:
        if stage.error is not None:
            raise_user_error(stage.error, stage.name.removeprefix(THREAD_PREFIX))


def raise_user_error(exc: BaseException, stage: str) -> NoReturn:
    """Raise a stage's error as the user sees it.

    User-facing errors (:class:`LiveSegError`) and Ctrl-C go up as they are; anything else is
    a bug or an unexpected failure, wrapped in a one-line :class:`PipelineError` that names
    the stage and chains the original.

    Args:
        exc: what the stage raised.
        stage: the stage's name (``"capture"``, ``"infer"``, ``"display"``…).
    """
    if isinstance(exc, LiveSegError | KeyboardInterrupt):
        raise exc
    raise PipelineError(f"{stage} failed: {one_line(exc, with_type=True)}") from exc


MAX_CPU_WORKERS = 4
CPU_BATCH = 2
"""Frames per forward pass on the CPU when not given: two frames a pass keep the cores busier
than one (the README has the measurements)."""


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


def infer_loop(model: MaskModel, take: Take, give: Give, control: Control, batch: int = 1) -> None:
    """Turn frames into :class:`SegResult` s: batches of up to ``batch`` frames from ``take``,
    one result per frame to ``give``, in the order taken.

    The one inference step of every job: file runs feed it from a queue (:func:`from_queue`),
    the live view from its newest-frame slot. Frames already taken are still processed after a
    graceful stop; an abort ends at once. Each result carries its share of the batch's
    preprocess and forward time.
    """
    ended = False
    while not ended and not control.aborted.is_set():
        packet = take()
        if packet is None:
            return
        packets = [packet]
        while len(packets) < batch:
            packet = take()
            if packet is None:
                ended = True
                break
            packets.append(packet)
        t0 = time.perf_counter()
        tensor = model.preprocess([p.image for p in packets])
        t1 = time.perf_counter()
        masks = model.infer(tensor)
        t2 = time.perf_counter()
        n = len(packets)
        for packet, mask in zip(packets, masks, strict=True):
            if not give(SegResult(packet, mask, preprocess_s=(t1 - t0) / n, infer_s=(t2 - t1) / n)):
                return


def run_file(
    source: FrameSource,
    model: MaskModel,
    render: Callable[[Frame, np.ndarray], Frame],
    write: Callable[[Frame, float | None], None],
    *,
    batch: int = 1,
    workers: int = 1,
    write_thread: bool = True,
    queue_size: int | None = None,
    control: Control | None = None,
    on_frame: Callable[[Stats], None] | None = None,
    refine: Callable[[SegResult], SegResult] | None = None,
    on_result: Callable[[SegResult], None] | None = None,
) -> Stats:
    """Run every frame of ``source`` through ``model``, ``render`` and ``write``, in order.

    No frame is dropped; memory is bounded by the queues. Rendering happens on the calling
    thread; writing on a ``write`` thread of its own (encoding was the calling thread's
    bottleneck), or on the calling thread with ``write_thread=False``.

    Args:
        source: iterable of :class:`FramePacket` with a thread-safe ``stop()``.
        model: ``preprocess(frames) -> batch`` and ``infer(batch) -> (N, s, s) uint8`` (or scores).
        render: ``(frame, mask) -> image`` (BGR uint8; the buffer may be reused by the next call).
        write: ``(image, pts_seconds) -> None``; always called from one thread.
        batch: frames per forward pass.
        workers: inference threads sharing the model (each takes the next batch); results are
            put back in order before rendering.
        write_thread: write from a thread of its own.
        queue_size: capacity of the frame and result queues (default ``workers * (2 * batch + 1) + 1``).
        control: shared stop/abort requests (a new one when ``None``).
        on_frame: called after each written frame with the running stats (from the writing thread).
        refine, on_result: in frame order: scores to mask (smoothing); each written result (mask sinks).

    Returns:
        The run's :class:`Stats`; ``interrupted`` is True when a stop or abort ended it early.

    Raises:
        LiveSegError: a stage failed (raised after every thread has stopped).
    """
    control = control or Control()
    if workers < 1 or batch < 1:
        raise ValueError(f"workers and batch must be >= 1, got {workers} and {batch}")
    size = queue_size or workers * (2 * batch + 1) + 1
    run = _FileRun(source, model, write, control, batch, size, write_thread, on_frame, on_result)
    stages = [Stage("capture", run.capture, control, run.frames_q, ends=workers)]
    stages += [
        Stage("infer" if workers == 1 else f"infer-{i}", run.infer, control, run.results_q) for i in range(workers)
    ]
    if run.write_q is not None:
        stages.append(Stage("write", run.writer, control, None))
    t_start = time.perf_counter()
    for stage in stages:
        stage.start()
    main_error: BaseException | None = None
    try:
        _consume(run.results_q, control, render, run.deliver, workers, refine or (lambda r: r))
    except BaseException as exc:  # noqa: BLE001 - stop the threads first, raise below
        main_error = exc
        control.abort("render/write failed")
    if run.write_q is not None:
        put(run.write_q, END, control)
        stages[-1].join()  # the write thread ends with the last queued frame, or at an abort
    source.stop()
    stats = run.stats
    stats.wall_s = time.perf_counter() - t_start
    stats.stop_reason = control.reason
    stats.interrupted = control.reason is not None
    join_all(stages)
    if main_error is not None:
        raise_user_error(main_error, "render/write")
    return stats


class _FileRun:
    """The stages' bodies of one :func:`run_file`, the queues between them and the stats."""

    def __init__(
        self,
        source: FrameSource,
        model: MaskModel,
        write: Callable[[Frame, float | None], None],
        control: Control,
        batch: int,
        queue_size: int,
        write_thread: bool,
        on_frame: Callable[[Stats], None] | None,
        on_result: Callable[[SegResult], None] | None,
    ) -> None:
        self.source, self.model, self.write, self.control = source, model, write, control
        self.batch, self.on_frame = batch, on_frame
        self.on_result = on_result or (lambda _result: None)
        self.frames_q: queue.Queue = queue.Queue(maxsize=queue_size)
        self.results_q: queue.Queue = queue.Queue(maxsize=queue_size)
        self.write_q: queue.Queue | None = queue.Queue(maxsize=WRITE_QUEUE) if write_thread else None
        self.stats = Stats()

    def capture(self) -> None:
        control = self.control
        for packet in self.source:
            if control.stopping.is_set():
                break
            if not put(self.frames_q, packet, control, give_up=control.stopping):
                break  # read but never queued: not counted
            self.stats.frames_in += 1
            self.stats.add("decode", packet.decode_s)

    def infer(self) -> None:
        take, give = from_queue(self.frames_q, self.control), to_queue(self.results_q, self.control)
        infer_loop(self.model, take, give, self.control, self.batch)

    def deliver(self, result: SegResult, image: Frame, render_s: float) -> None:
        """A rendered frame to the writer (on this thread, or queued for the write thread)."""
        if self.write_q is None:
            self.write_one(result, image, render_s)
        else:  # the renderer reuses its buffer: the writer gets a copy
            put(self.write_q, (result, image.copy(), render_s), self.control)

    def writer(self) -> None:
        assert self.write_q is not None
        while (item := get(self.write_q, self.control)) is not END:
            self.write_one(*item)  # type: ignore[misc]

    def write_one(self, result: SegResult, image: Frame, render_s: float) -> None:
        stats = self.stats
        t0 = time.perf_counter()
        self.write(image, result.packet.pts)
        t1 = time.perf_counter()
        stats.add("preprocess", result.preprocess_s)
        stats.add("infer", result.infer_s)
        stats.add("render", render_s)
        stats.add("encode", t1 - t0)
        self.on_result(result)
        stats.latency.append(t1 - result.packet.t_capture)
        stats.frames_out += 1
        if self.on_frame is not None:
            self.on_frame(stats)


def _consume(
    results_q: queue.Queue,
    control: Control,
    render: Callable[[Frame, np.ndarray], Frame],
    deliver: Callable[[SegResult, Frame, float], None],
    workers: int = 1,
    refine: Callable[[SegResult], SegResult] = lambda r: r,
) -> None:
    """Main-thread loop: results in frame order, refined, rendered, to ``deliver``, until all ``END`` s."""
    pending: dict[int, SegResult] = {}  # results that overtook an earlier frame (several workers)
    next_index = ended = 0
    while ended < workers:
        try:
            item = get(results_q, control)
        except KeyboardInterrupt:
            # Without the CLI's signal handlers: first Ctrl-C stops gracefully, second aborts.
            if control.stopping.is_set():
                control.abort("interrupted")
            else:
                control.stop("interrupted")
            continue
        if item is END:
            if control.aborted.is_set():
                return
            ended += 1
            continue
        result: SegResult = item  # type: ignore[assignment]
        pending[result.packet.index] = result
        while next_index in pending:
            _emit(refine(pending.pop(next_index)), render, deliver)
            next_index += 1
    for index in sorted(pending):  # a source whose indices skip (none of ours do)
        _emit(refine(pending.pop(index)), render, deliver)


def _emit(
    result: SegResult,
    render: Callable[[Frame, np.ndarray], Frame],
    deliver: Callable[[SegResult, Frame, float], None],
) -> None:
    """Render one result and deliver it with its render time."""
    t0 = time.perf_counter()
    image = render(result.packet.image, result.mask)
    deliver(result, image, time.perf_counter() - t0)
