"""The ``live`` job: cameras, streams or video files in; their segmentation on screen, live.

The threads are the stream engine's (:class:`~live_seg.pipeline.engine.Engine`): one capture thread per
source, each into its newest-frame slot, one inference thread that batches the newest frame of every
source (:class:`~live_seg.pipeline.multiplex.Multiplexer`), each source's board, and each source's sinks
on threads of their own (mask files, mask video, coverage, events, recording). This module wires the
real sources, model, window, browser page and recordings to them; the main thread runs the view
(:class:`~live_seg.jobs.live.view.LiveView`, one :class:`~live_seg.jobs.live.tile.Tile` per source).

Why the picture never falls behind: a source is read as fast as it delivers; the model always
starts on a source's newest frame (a frame it has not taken when the next one arrives is replaced
and counted as dropped), so a mask is at most one inference (plus a frame interval) behind its
capture. The view repaints whenever a new frame arrives (``pairing="newest"``, the default) or
only the frames masks were computed on (``pairing="matched"``), and as soon as a new mask arrives.

Latency, as shown in the HUD and summarised in the stats (:mod:`live_seg.jobs.live.stats`), is
measured per mask: from the capture of the frame the mask was computed on to the moment that
mask is first shown.

Analysis (``--smooth``, ``--masks``, ``--mask-video``, ``--coverage``, ``--events``): the engine's results
for one source are in that source's frame order, so each source's smoother runs right after the forward
pass (:mod:`live_seg.analysis.run`), and each mask output gets one entry per *processed* frame, timed by
its capture, on its own sink thread: a slow disk drops (and counts) that output's oldest masks, it
never slows inference.

With several sources (``sources``), the view is a grid of tiles; a source that is lost and does
not come back is reported (state ``failed``) and the others go on; a stream offline at start is
tried again in its own thread (its tile says ``connecting``) without holding back the others; a
source that comes back at another size keeps its tile (each tile scales its picture into its
cell) and its recording (scaled, with black bars, into the size of its first frame).

Video files: with ``realtime`` they are paced at their timestamps and treated as a live
source (newest frame, drops); without it they are read as fast as the model takes frames
and nothing is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...analysis.event_outputs import EventOutputs
from ...analysis.propagate import MaskPropagator
from ...analysis.run import RunAnalysis
from ...base.errors import LiveSegError, OutputError
from ...base.options import ModelOptions, model_options
from ...base.redact import redact_text, redact_url
from ...base.specs import resolve_spec
from ...media.camera import CaptureSource
from ...media.file_source import VideoFileSource
from ...media.webview import PreviewServer
from ...media.window import PreviewWindow, display_problem
from ...pipeline.engine import Engine
from ...pipeline.threads import Control, raise_user_error
from .options import LiveOptions, record_is_folder
from .outputs import Recorder, browser_output, serve_view, source_slug, unique_names, window_output
from .sources import Source
from .stats import NORMAL_ENDS, LiveMetrics, RunFacts, run_summary
from .tile import Look, Tile, ViewSettings
from .view import LiveView

if TYPE_CHECKING:
    from ...base.metrics import Stats
    from ...model.segmenter import Segmenter

__all__ = ["LiveOptions", "LiveSession", "run_live"]

log = logging.getLogger(__name__)

RECORD_FPS = 25.0
"""The recording's nominal rate when the source does not say its own."""
RECORD_DRAIN_S = 30.0
"""At the end, how long a recording's queued views may take to be encoded (a few frames: well under it)."""


@dataclass
class _Run:
    """What one run opened: released in :meth:`LiveSession._shut_down` whatever happened."""

    sources: list[Source]
    engine: Engine
    display: str
    window: PreviewWindow | None = None
    server: PreviewServer | None = None
    setup_s: float = 0.0
    runtime: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


class LiveSession:
    """One live run: open the sources, start capture and inference, display until stopped.

    Args:
        options: what to run (see :class:`LiveOptions`).
        segmenter: a ready model; when ``None`` one is built from ``model``.
        control: stop requests (the CLI's signal handlers call ``control.stop()``).
        on_serve: called with the page's URL (with the run's token: print it, do not log it) once the
            browser view is up.
        model: the model to build: a :class:`~live_seg.base.options.ModelOptions`, or a model's name.

    Attributes:
        summary: the run's statistics (see :meth:`run`), set on every exit path once the
            sources were opened, also when :meth:`run` raises.
        url: the browser view's address without the token, when it is served.
        metrics: the display's figures (see :class:`~live_seg.jobs.live.metrics.LiveMetrics`); the engine's
            per-source counts and timings are in its feeds, the summary has both.
        slot: the first source's newest-frame slot (its counts: ``frames_in``, ``dropped``).
        snapshots: paths of the PNGs key s saved.
        t_start: ``time.perf_counter()`` when capture and inference were both running.
    """

    def __init__(
        self,
        options: LiveOptions,
        segmenter: Segmenter | None = None,
        *,
        control: Control | None = None,
        on_serve: Callable[[str], None] | None = None,
        model: ModelOptions | str | None = None,
    ) -> None:
        self.model_options = model_options(model)
        options.check(segmenter.categories if segmenter is not None else self.model_options.spec().categories)
        self.options = options
        self.segmenter = segmenter
        self.control = control or Control()
        self.on_serve = on_serve
        self.summary: dict[str, Any] | None = None
        self.url: str | None = None
        self.snapshots: list[str] = []
        self.metrics = LiveMetrics()
        self.slot: Any = None
        self.t_start = 0.0
        self.events: EventOutputs | None = None
        self._keys: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._run: _Run | None = None

    @property
    def stats(self) -> Stats:
        """The display's timings and counts (``frames_out``: frames shown so far); the summary has them all."""
        return self.metrics.stats

    @property
    def processed(self) -> int:
        """Frames the model has processed so far, over every source (0 before the engine runs)."""
        run = self._run
        return sum(f.slot.frames_processed for f in run.engine.feeds) if run is not None else 0

    @property
    def latency_s(self) -> array:
        """Capture → first shown, in seconds, per shown mask."""
        return self.metrics.latency_s

    def handle_key(self, key: int | str) -> None:
        """Act on a key as if it was pressed in the window (q / Esc, space, m, e, l, s; 0…9, t).

        Safe from any thread: the view acts on it in its next round (within a frame interval).
        """
        self._keys.put(ord(key) if isinstance(key, str) else key)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run until q / Esc, the duration, a stop request, the end of the input, or a lost source.

        Returns:
            A JSON-ready summary (see :func:`~live_seg.jobs.live.stats.run_summary`): the ``video``
            job's fields (``frames_in`` = captured, ``frames_out`` = shown, ``fps`` = display fps,
            ``latency_ms``…), the run's (``input``, ``output``, ``live``, ``pairing``, ``display``,
            ``url``, ``reconnects``, ``snapshots``, the model's description), the live figures
            (``frames_captured``, ``_inferred``, ``_dropped``, ``_shown``, ``_recorded``, rates,
            inference, overhead and their thirds), and ``sources``: one entry per source.

        Raises:
            SourceError: a source cannot be opened, or was lost and did not come back (with
                several sources: every source was lost).
            ModelError, OutputError, PipelineError: one-line, user-facing; raised after every
                thread has stopped and the recordings are closed.
        """
        opts, control = self.options, self.control
        t_setup = time.perf_counter()
        sources = self._prepare()
        multi = len(sources) > 1
        try:
            display, reason = self._pick_display()
            with contextlib.ExitStack() as opened, self._opening_deadline():
                for src in sources:
                    # One source (and every file) opens now: a wrong camera index or URL is reported
                    # before seconds of model loading. With several, streams open in their own thread.
                    # A stop (Ctrl-C, or --duration running out while a stream is still opening) ends
                    # the opening at once, and the run ends without loading the model.
                    if not multi or isinstance(src.reader, VideoFileSource):
                        opened.enter_context(src.reader)
                run = self._start(sources, display)
                self._run = run
                opened.pop_all()
        except BaseException:
            for src in sources:
                src.reader.close()
                src.analysis.abort()
            assert self.events is not None
            self.events.abort()
            raise
        main_error: BaseException | None = None
        try:
            if not control.stopping.is_set():
                if display == "window":
                    run.window = PreviewWindow(f"live_seg: {_title(sources)}")
                self._set_up(run, reason, t_setup)
                view = self._view(run)
                deadline = None if opts.duration is None else self.t_start + opts.duration
                view.run(lambda: run.engine.finished, deadline)
        except BaseException as exc:  # noqa: BLE001 - stop the threads first, raise below
            main_error = exc
            control.abort("display failed" if self.t_start else "setup failed")
        finally:
            main_error = self._shut_down(run, main_error)
        if main_error is not None:
            raise_user_error(main_error, "display" if self.t_start else "setup")
        assert self.summary is not None
        return self.summary

    @contextlib.contextmanager
    def _opening_deadline(self) -> Iterator[None]:
        """While the sources open: ``--duration`` seconds later the run stops (a stream that never
        answers does not keep the run going past its duration)."""
        duration = self.options.duration
        if duration is None:
            yield
            return
        timer = threading.Timer(duration, self.control.stop, args=("duration",))
        timer.name, timer.daemon = "live_seg-deadline", True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            timer.join()

    def _prepare(self) -> list[Source]:
        """Every source's reader, analysis files and recording, checked before anything opens."""
        opts = self.options
        specs = opts.source_list
        multi = len(specs) > 1
        names = unique_names(specs) if multi else [source_slug(specs[0])]
        made: list[Source] = []
        if opts.record is not None and record_is_folder(opts.record):
            Path(opts.record).mkdir(parents=True, exist_ok=True)  # --record DIR/: one file per source in it
        masks = opts.analysis.masks
        if multi and masks is not None and Path(masks).parent.is_dir():
            Path(masks).mkdir(
                exist_ok=True
            )  # --masks DIR: DIR/NAME/ per source (a missing parent: one-line error below)
        # One event output for the run (a bad path or URL fails here, before the model loads), one feed per source.
        seg = self.segmenter
        categories = seg.categories if seg is not None else resolve_spec(self.model_options).categories
        self.events = EventOutputs(opts.events, opts.overwrite)
        try:
            for spec, name in zip(specs, names, strict=True):
                analysis_opts = opts.analysis.for_source(name) if multi else opts.analysis
                analysis = RunAnalysis(
                    analysis_opts, opts.overwrite, redact_url(spec), categories, self.events, spec, threaded=True
                )
                src = Source(spec, name, opts.open_source(spec, self.control.stopping), analysis, None,
                             self.metrics if not multi else LiveMetrics())  # fmt: skip
                made.append(src)
                path = opts.recording(name)
                if path is not None:
                    src.recorder = Recorder(path, opts.overwrite, RECORD_FPS, source_fps=_fps_of(src.reader))
                    src.recording = src.recorder.sink(name)
        except BaseException:
            for src in made:
                src.analysis.abort()
                if src.recording is not None:
                    src.recording.close(0.0)
            self.events.abort()
            raise
        return made

    def _start(self, sources: list[Source], display: str) -> _Run:
        """The run's engine; live sources are read from now on, so no backlog of stale frames
        builds up in their buffers while the model loads."""
        multi = len(sources) > 1
        engine = Engine(self.control, keep_going=multi, max_batch=self.options.max_batch)
        for src in sources:
            src.feed = engine.add(
                src.name,
                src.reader,
                wait=isinstance(src.reader, VideoFileSource) and not self.options.realtime,
                steps=src.analysis.steps,
            )
        self.slot = sources[0].feed.slot if sources[0].feed else None
        engine.start_capture([s.feed for s in sources if s.feed is not None and isinstance(s.reader, CaptureSource)])
        return _Run(sources, engine, display)

    def _pick_display(self) -> tuple[str, str | None]:
        """The display to use and, when a window was wanted but cannot open, why not."""
        display, reason = self.options.display, None
        if display in ("auto", "window"):
            reason = display_problem()
            if reason is not None and display == "window":
                raise OutputError(f"cannot open a preview window: {reason}; use --serve PORT to watch in a browser")
            display = "window" if reason is None else "browser"
        return display, reason

    def _set_up(self, run: _Run, reason: str | None, t_setup: float) -> None:
        """Load the model, open the browser view, start the inference thread (and the captures)."""
        from ...model.select import job_runtime, segmenter_for  # the model loads here, after the sources

        if self.segmenter is None:
            # OpenVINO: one source runs one frame at a time (latency mode); several run N frames a step,
            # fastest over throughput mode's infer requests (scripts/ov_batching.py; README).
            mode = "latency" if len(run.sources) == 1 else "throughput"
            self.segmenter = segmenter_for(self.model_options, mode=mode)
        run.runtime.enter_context(job_runtime(self.segmenter))
        if run.display == "browser":
            run.server = serve_view(self.options, _title(run.sources), reason)
            self.url = run.server.public_url  # logs and --stats: never the token
            if self.on_serve is not None:
                self.on_serve(run.server.url)  # with the token, for the terminal only
        if run.window is not None:
            log.info("keys in the window: q/Esc quit, space pause, m view, e effect, l legend, s snapshot")
        run.setup_s = time.perf_counter() - t_setup
        self.t_start = time.perf_counter()
        run.engine.start(run.sources[0].analysis.model(self.segmenter))  # with smoothing: its scores
        duration = self.options.duration
        log.info("live: started%s", f", stopping after {duration:g} s" if duration else "; Ctrl-C to stop")

    def _view(self, run: _Run) -> LiveView:
        opts, seg = self.options, self.segmenter
        assert seg is not None
        multi = len(run.sources) > 1
        look = Look(tuple(seg.categories), opts.palette, opts.alpha, opts.view, opts.legend, opts.effect)
        tiles = []
        for src in run.sources:
            assert src.feed is not None
            label = src.name if multi else None
            # newest pairing: the newest mask is carried (or held) to the newest frame under it
            prop = MaskPropagator(opts.analysis.propagate) if opts.pairing == "newest" else None
            tile = Tile(src.feed, look, src.metrics, self.metrics, src.recording, label, prop)
            run.runtime.callback(tile.close)
            tiles.append(tile)
        outputs: list[Any] = []
        if run.window is not None:
            outputs.append(window_output(run.window))
        if run.server is not None:
            outputs.append(browser_output(run.server))
        settings = ViewSettings(opts.pairing, opts.hud, opts.snapshot_dir, self.snapshots)
        return LiveView(tiles, seg, self.metrics, self.control, self._keys, settings, outputs)

    def _shut_down(self, run: _Run, main_error: BaseException | None) -> BaseException | None:
        """Stop every thread, close the outputs and write the summary; returns the error to raise."""
        control = self.control
        control.stop("stopped")
        self.stats.wall_s = time.perf_counter() - self.t_start if self.t_start else 0.0
        for src in run.sources:
            src.metrics.stats.wall_s = self.stats.wall_s
        self.stats.stop_reason = control.reason
        try:
            run.engine.close()
        except LiveSegError as exc:
            main_error = main_error or exc
        except BaseException as exc:  # noqa: BLE001 - every output is still closed below
            main_error = main_error or exc
        if run.window is not None:
            run.window.close()
        if run.server is not None:
            run.server.close()
        for src in run.sources:
            self._close_source(src)
        self._close_events(control.reason)
        self.summary = run_summary(self._facts(run))
        run.runtime.close()  # torch's thread settings back as they were, after the summary read them
        return main_error

    def _facts(self, run: _Run) -> RunFacts:
        sources, mux, opts, seg = run.sources, run.engine.mux, self.options, self.segmenter
        return RunFacts(
            sources=sources,
            metrics=self.metrics,
            batches=mux.batches,
            batched_frames=mux.batched_frames,
            setup_s=run.setup_s,
            live=any(s.reader.info is None or s.reader.info.live for s in sources) or opts.realtime,
            pairing=opts.pairing,
            propagate=opts.analysis.propagate if opts.pairing == "newest" else None,
            display=run.display,
            url=self.url,
            snapshots=tuple(self.snapshots),
            model=seg.describe() if seg is not None else {},
            events=self.events.summary() if self.events is not None else {},
        )

    def _close_source(self, src: Source) -> None:
        src.reader.close()
        if src.recorder is not None:
            try:
                try:
                    if src.recording is not None:
                        src.recording.close(RECORD_DRAIN_S)  # the views still queued are encoded first
                finally:
                    src.recorder.close()
            except LiveSegError as exc:
                log.error("recording %s: %s", src.name, exc)
        try:
            src.analysis.close()
        except LiveSegError as exc:
            log.error("analysis of %s: %s", src.name, exc)

    def _close_events(self, reason: str | None) -> None:
        """Finish the event outputs once every source ended (their ``end`` events are queued)."""
        assert self.events is not None
        try:
            self.events.close(complete=reason in NORMAL_ENDS)
        except LiveSegError as exc:
            log.error("events: %s", exc)


def _title(sources: list[Source]) -> str:
    """The window's and the page's title: the source's name, or the sources' short names."""
    info = sources[0].reader.info
    if len(sources) == 1 and info is not None:
        return redact_text(info.name)
    return redact_text(" + ".join(s.name for s in sources))


def _fps_of(reader: CaptureSource | VideoFileSource) -> Callable[[], float | None]:
    """The source's own rate once it is open (the recording's rate when it says one)."""
    return lambda: reader.info.fps if reader.info is not None else None


def run_live(options: LiveOptions, segmenter: Segmenter | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run a live session and return its summary (see :meth:`LiveSession.run`)."""
    return LiveSession(options, segmenter, **kwargs).run()
