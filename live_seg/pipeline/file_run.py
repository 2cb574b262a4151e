"""The file run: capture thread → inference worker(s) → results in frame order on the main thread
(render) → write thread. Every frame of the input is processed; queues are bounded."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

import numpy as np

from ..base.frames import Frame, SegResult
from ..base.metrics import Stats
from .infer import Steps, from_queue, infer_loop, to_queue
from .threads import END, Control, FrameSource, MaskModel, Stage, get, join_all, put, raise_user_error

WRITE_QUEUE = 4
"""Rendered frames waiting for the writer (each a copy of the frame: bounded memory)."""


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
    steps: Steps | None = None,
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
        steps: what runs on each result in frame order, and which frames the model leaves out
            (:class:`Steps`).

    Returns:
        The run's :class:`Stats`; ``interrupted`` is True when a stop or abort ended it early.

    Raises:
        LiveSegError: a stage failed (raised after every thread has stopped).
    """
    control = control or Control()
    if workers < 1 or batch < 1:
        raise ValueError(f"workers and batch must be >= 1, got {workers} and {batch}")
    size = queue_size or workers * (2 * batch + 1) + 1
    steps = steps or Steps()
    run = _FileRun(source, model, write, control, batch, size, write_thread, on_frame, steps)
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
        _consume(run.results_q, control, render, run.deliver, workers, steps.refine or (lambda r: r))
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
        steps: Steps,
    ) -> None:
        self.source, self.model, self.write, self.control = source, model, write, control
        self.batch, self.on_frame, self.skip, self.look = batch, on_frame, steps.skip, steps.look
        self.on_result = steps.on_result or (lambda _result: None)
        self.frames_q: queue.Queue = queue.Queue(maxsize=queue_size)
        self.results_q: queue.Queue = queue.Queue(maxsize=queue_size)
        self.write_q: queue.Queue | None = queue.Queue(maxsize=WRITE_QUEUE) if write_thread else None
        self.stats = Stats()

    def capture(self) -> None:
        control = self.control
        for packet in self.source:
            if control.stopping.is_set():
                break
            if self.look is not None:
                self.look(packet)
            if not put(self.frames_q, packet, control, give_up=control.stopping):
                break  # read but never queued: not counted
            self.stats.frames_in += 1
            self.stats.add("decode", packet.decode_s)

    def infer(self) -> None:
        take, give = from_queue(self.frames_q, self.control), to_queue(self.results_q, self.control)
        infer_loop(self.model, take, give, self.control, self.batch, self.skip)

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
        if self.skip is None or not self.skip(result.packet):
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
    if result.soft is None:
        image = render(result.packet.image, result.mask)
    else:  # a probability model's soft edges (a renderer takes ``soft=``)
        image = render(result.packet.image, result.mask, soft=result.soft)  # type: ignore[call-arg]
    deliver(result, image, time.perf_counter() - t0)
