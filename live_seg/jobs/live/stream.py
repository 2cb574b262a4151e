"""``live_seg.stream``: a generator over one or many live sources, for people who build their own app.

It runs the stream engine of the ``live`` job (:class:`~live_seg.pipeline.engine.Engine`: a capture thread
and newest-frame slot per source, one batched inference thread) with one sink per source, the queue this
generator reads, and yields each source's results as they are ready, without a view::

    for r in live_seg.stream(["rtsp://cam1/h264", "rtsp://cam2/h264"], model="lraspp_mobilenet_v3_large"):
        print(r.source, r.index, r.latency_s, (r.mask == 15).mean())   # share of "person" pixels
        if done:
            break                                   # stops and joins every thread

Unlike the job's other sinks, this one waits: a consumer slower than the model holds back the inference
thread (the results queue is bounded),
so live sources drop their older frames in their slots, as in the ``live`` job, and files (read
as fast as the model goes) lose nothing. Leaving the loop (``break``, an exception, ``close()``)
stops every source and thread; so does the end of every source. Errors (a single source lost for
good, the model's) are raised from the loop after every thread stopped.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...analysis.run import RunAnalysis
from ...base.frames import Frame, FramePacket, Mask, SegResult
from ...base.options import ModelOptions, model_options
from ...base.redact import redact_url
from ...base.specs import resolve_spec
from ...media.file_source import VideoFileSource
from ...pipeline.engine import Engine
from ...pipeline.threads import POLL_S, Control, put
from .options import LiveOptions
from .outputs import unique_names

if TYPE_CHECKING:
    from ...model.segmenter import Segmenter


@dataclass(frozen=True, slots=True)
class StreamResult:
    """One frame of one source with its mask.

    Attributes:
        source: the source as given (``"0"``, a URL, a file path).
        index: the frame's position in that source (capture order; frames the model skipped are missing).
        frame: ``(H, W, 3)`` uint8 BGR, as read.
        mask: ``(size, size)`` uint8 class ids at the model's input size (resize it to the frame
            with nearest neighbour: ``cv2.resize(mask, (W, H), interpolation=cv2.INTER_NEAREST)``).
        t_capture: ``time.perf_counter()`` when the frame was read.
        t_done: ``time.perf_counter()`` when its mask was ready.
        key: the network ran on this frame (False: with ``key_interval`` in the options' analysis, its
            mask was carried from the key frame before it).
    """

    source: str
    index: int
    frame: Frame
    mask: Mask
    t_capture: float
    t_done: float
    key: bool = True

    @property
    def latency_s(self) -> float:
        """Capture → mask ready, in seconds."""
        return self.t_done - self.t_capture


def stream(
    sources: str | int | Sequence[str | int],
    segmenter: Segmenter | None = None,
    *,
    options: LiveOptions | None = None,
    control: Control | None = None,
    model: ModelOptions | str | None = None,
) -> Iterator[StreamResult]:
    """Segment one or many live sources; yield each result as it is ready.

    Args:
        sources: a camera index, stream URL or video file, or a list of them.
        segmenter: a ready model; when ``None`` one is built from ``model`` after the sources opened.
        options: the source settings of :class:`LiveOptions` (``realtime``, ``reconnect``,
            ``rtsp_transport``, ``read_timeout``, ``max_batch``) and its ``analysis`` (smoothing, key
            frames, mask files: per source, as in the ``live`` job); the view's are not used.
        control: stop requests from elsewhere (``control.stop()`` ends the loop).
        model: the model to build: a :class:`~live_seg.base.options.ModelOptions`, or a model's name.

    Yields:
        :class:`StreamResult` s, each source's in its frame order.

    Raises:
        SourceError: one source that cannot be opened or is lost for good (with several: every
            source lost); ModelError, PipelineError: as the ``live`` job.
    """
    specs = [str(sources)] if isinstance(sources, str | int) else [str(s) for s in sources]
    if not specs:
        raise ValueError("stream: expected at least one source")
    opts = options or LiveOptions()
    model = model_options(model)
    opts.check(segmenter.categories if segmenter is not None else model.spec().categories)
    control = control or Control()
    multi = len(specs) > 1
    results: queue.Queue[StreamResult] = queue.Queue(maxsize=2 * len(specs))
    closing = threading.Event()
    categories = segmenter.categories if segmenter is not None else resolve_spec(model).categories
    names = unique_names(specs)
    with contextlib.ExitStack() as stack:
        analyses = []  # each source's smoother, key frames and files, checked before anything opens
        for spec, name in zip(specs, names, strict=True):
            analysis_options = opts.analysis.for_source(name) if multi else opts.analysis
            analyses.append(RunAnalysis(analysis_options, opts.overwrite, redact_url(spec), categories, threaded=True))
            stack.push(_closer(analyses[-1], control))
        readers = [opts.open_source(spec, control.stopping) for spec in specs]
        for reader in readers:
            stack.callback(reader.close)
            if not multi or isinstance(reader, VideoFileSource):
                reader.open()
        if control.stopping.is_set():  # stopped while a source was opening
            return
        if segmenter is None:
            from ...model.select import segmenter_for

            segmenter = segmenter_for(model, mode="throughput" if multi else "latency")
        from ...model.select import job_runtime

        stack.enter_context(job_runtime(segmenter))
        engine = Engine(control, keep_going=multi, max_batch=opts.max_batch, model=analyses[0].model(segmenter))
        for spec, name, reader, analysis in zip(specs, names, readers, analyses, strict=True):
            engine.add(
                name,
                reader,
                wait=isinstance(reader, VideoFileSource) and not opts.realtime,
                steps=analysis.steps,
                sinks=(_QueueSink(spec, results, control, closing, analysis.skip),),
            )
        try:
            engine.start()
            yield from _drain(results, engine, control)
        finally:
            closing.set()
            engine.close()


@dataclass(frozen=True)
class _QueueSink:
    """One source's results into the generator's queue: waits for room (until the generator is closed)."""

    spec: str
    results: queue.Queue[StreamResult]
    control: Control
    closing: threading.Event
    skip: Callable[[FramePacket], bool] | None = None

    def put(self, result: SegResult) -> bool:
        p = result.packet
        key = self.skip is None or not self.skip(p)
        item = StreamResult(self.spec, p.index, p.image, result.mask, p.t_capture, time.perf_counter(), key)
        return put(self.results, item, self.control, self.closing)


def _closer(analysis: RunAnalysis, control: Control) -> Callable[..., None]:
    """An exit callback: the source's analysis files finished (kept as they are after an interruption)."""

    def close(exc_type: object, *_rest: object) -> None:
        if exc_type is not None and control.reason is None:
            analysis.abort()  # failed before a frame was processed
        else:
            analysis.close(complete=exc_type is None)

    return close


def _drain(results: queue.Queue[StreamResult], run: Engine, control: Control) -> Iterator[StreamResult]:
    """Yield results until every source ended (and all were yielded), a stop, or an error."""
    while not control.stopping.is_set():
        try:
            yield results.get(timeout=POLL_S)
        except queue.Empty:
            if run.finished and results.empty():
                return
