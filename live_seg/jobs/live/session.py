"""The ``live`` job: a camera, stream or video file in; its segmentation on screen, live.

Three threads, and why the picture never falls behind:

* ``live_seg-capture`` reads the source as fast as it delivers. Each frame goes into a
  :class:`~live_seg.media.camera.LatestFrame` slot for the inference worker, which keeps only the
  newest: a frame the worker has not taken when the next one arrives is replaced and counted
  as dropped. The frame is also posted to the display as "the newest frame".
* ``live_seg-infer`` takes the newest frame, runs the model (:func:`~live_seg.pipeline.infer.infer_loop`,
  the inference step of every job) and posts "the newest mask". However slow the model, it
  always starts on a frame at most one frame interval old, so a mask is at most one inference
  (plus a frame interval) behind its capture.
* The main thread runs the view (:class:`~live_seg.jobs.live.view.LiveView`): the window (OpenCV's
  GUI must live there), the recorder and the keys. It repaints whenever a new frame arrives,
  so the window refreshes at the source's rate, painting the newest frame with the newest mask
  (``pairing="newest"``, the default) or only the frames masks were computed on
  (``pairing="matched"``), and also as soon as a new mask arrives (so a mask is shown the
  moment it is ready).

Latency, as shown in the HUD and summarised in the stats (:mod:`live_seg.jobs.live.stats`), is
measured per mask: from the capture of the frame the mask was computed on to the moment that
mask is first shown.

Analysis (``--smooth``, ``--masks``, ``--mask-video``, ``--coverage``): the inference worker's
results are in frame order already (it always takes the newest frame; frames it never saw
were dropped), so the smoother's state and the mask sinks live on that thread, right after
the forward pass (:mod:`live_seg.analysis.run`): one smoothing step and one mask-file entry
per *inferred* frame, timed by its capture. The coverage CSV is flushed every second.

Video files: with ``realtime`` they are paced at their timestamps and treated as a live
source (newest frame, drops); without it they are read as fast as the model takes frames
and nothing is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...analysis.run import AnalysisOptions, RunAnalysis
from ...base.errors import LiveSegError, OutputError
from ...base.frames import FramePacket, SegResult
from ...base.registry import DISPLAYS, PAIRINGS, VIEWS
from ...media.camera import DEFAULT_RECONNECT, CaptureSource, LatestFrame, open_live_source
from ...media.file_source import SourceInfo, VideoFileSource
from ...media.webview import PreviewServer
from ...media.window import PreviewWindow, display_problem
from ...pipeline.infer import infer_loop
from ...pipeline.threads import POLL_S, Control, Stage, Take, join_all, raise_user_error
from ...render.effects import EffectOptions
from ...render.renderer import DEFAULT_ALPHA, Renderer
from .stats import LiveMetrics
from .view import Board, LiveView, Recorder

if TYPE_CHECKING:
    from ...base.metrics import Stats
    from ...model.segmenter import Segmenter

log = logging.getLogger(__name__)

DEFAULT_SERVE_PORT = 8090
RECORD_FPS = 25.0
"""The recording's nominal rate when the source does not say its own."""


@dataclass
class LiveOptions:
    """Settings of a live run (the CLI's flags).

    Attributes:
        source: camera index (``"0"``), stream URL (RTSP, HTTP MJPEG…) or video file.
        realtime: for a file: play it at its own pace, like a camera (frames may be dropped).
        reconnect: for a camera or stream: reopen attempts after it is lost.
        pairing: ``"newest"`` (newest frame + newest mask) or ``"matched"`` (each mask on
            the frame it was computed on).
        view: first view mode: ``"overlay"``, ``"mask"`` or ``"side"`` (key m cycles).
        legend: show the legend of the classes present (key l toggles).
        hud: draw the HUD.
        palette, alpha, effect: rendering (:class:`~live_seg.render.renderer.Renderer`, :class:`EffectOptions`).
        display: ``"auto"`` (a window if a display is available, else the browser view),
            ``"window"``, ``"browser"`` or ``"none"`` (record and/or stats only).
        host, port: where the browser view is served (``port`` 0: any free port).
        record: an ``.mp4`` to record the rendered view into, or ``None``.
        overwrite: replace an existing recording.
        duration: stop by itself after this many seconds (``None``: run until stopped).
        snapshot_dir: where key s saves PNG snapshots.
        analysis: smoothing and per-frame mask outputs (see :mod:`live_seg.analysis.run`).
    """

    source: str = "0"
    realtime: bool = False
    reconnect: int = DEFAULT_RECONNECT
    pairing: str = "newest"
    view: str = "overlay"
    legend: bool = True
    hud: bool = True
    palette: str = "voc"
    alpha: float = DEFAULT_ALPHA
    effect: EffectOptions = field(default_factory=EffectOptions)
    display: str = "auto"
    host: str = "127.0.0.1"
    port: int | None = None
    record: str | os.PathLike[str] | None = None
    overwrite: bool = False
    duration: float | None = None
    snapshot_dir: str | os.PathLike[str] = "."
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)

    def check(self) -> None:
        """Raise ``ValueError`` for settings that cannot work together (``SourceError``: a bad background)."""
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing: expected one of {', '.join(PAIRINGS)}, got {self.pairing!r}")
        if self.display not in DISPLAYS:
            raise ValueError(f"display: expected one of {', '.join(DISPLAYS)}, got {self.display!r}")
        if self.view not in VIEWS:
            raise ValueError(f"view: expected one of {', '.join(VIEWS)}, got {self.view!r}")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration: expected > 0 seconds, got {self.duration}")
        if self.reconnect < 0:
            raise ValueError(f"reconnect: expected >= 0, got {self.reconnect}")
        self.analysis.check()
        self.effect.check()


@dataclass
class _Run:
    """What one run opened: released in :meth:`LiveSession._shut_down` whatever happened."""

    source: CaptureSource | VideoFileSource
    live: bool
    display: str
    recorder: Recorder | None
    analysis: RunAnalysis
    slot: LatestFrame = field(default_factory=LatestFrame)
    board: Board = field(default_factory=Board)
    stages: list[Stage] = field(default_factory=list)
    window: PreviewWindow | None = None
    server: PreviewServer | None = None
    setup_s: float = 0.0
    runtime: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


class LiveSession:
    """One live run: open the source, start capture and inference, display until stopped.

    Args:
        options: what to run (see :class:`LiveOptions`).
        segmenter: a ready model; when ``None`` one is built from ``model_args``
            (``model``, ``weights``, ``device``, ``precision``, ``size``, ``threads``).
        control: stop requests (the CLI's signal handlers call ``control.stop()``).
        on_serve: called with the page's URL once the browser view is up.
        **model_args: passed to :class:`~live_seg.model.segmenter.Segmenter`.

    Attributes:
        summary: the run's statistics (see :meth:`run`), set on every exit path once the
            source was opened, also when :meth:`run` raises.
        url: the browser view's address, when it is served.
        metrics: the run's counts and timings (see :class:`~live_seg.jobs.live.stats.LiveMetrics`).
        slot: the inference worker's newest-frame slot (its counts: captured, dropped).
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
        **model_args: Any,
    ) -> None:
        options.check()
        self.options = options
        self.segmenter = segmenter
        self.model_args = model_args
        self.control = control or Control()
        self.on_serve = on_serve
        self.summary: dict[str, Any] | None = None
        self.url: str | None = None
        self.snapshots: list[str] = []
        self.metrics = LiveMetrics()
        self.slot: LatestFrame | None = None
        self.t_start = 0.0
        self._keys: queue.SimpleQueue[int] = queue.SimpleQueue()

    @property
    def stats(self) -> Stats:
        """The run's per-stage timings and counts (``frames_out``: frames shown so far)."""
        return self.metrics.stats

    @property
    def latency_s(self) -> array:
        """Capture → first shown, in seconds, per shown mask."""
        return self.metrics.latency_s

    def handle_key(self, key: int | str) -> None:
        """Act on a key as if it was pressed in the window (q / Esc, space, m, e, l, s).

        Safe from any thread: the view acts on it in its next round (within a frame interval).
        """
        self._keys.put(ord(key) if isinstance(key, str) else key)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run until q / Esc, the duration, a stop request, the end of a file, or a lost source.

        Returns:
            A JSON-ready summary (see :meth:`~live_seg.jobs.live.stats.LiveMetrics.summary`): the
            ``video`` job's fields (``frames_in`` = captured, ``frames_out`` = shown, ``fps`` =
            display fps, ``latency_ms``…), the source's and the run's (``input``, ``output``,
            ``live``, ``pairing``, ``display``, ``url``, ``reconnects``, ``snapshots``, the
            model's description), then the live figures (``frames_captured``, ``_inferred``,
            ``_dropped`` = captured − inferred, ``_shown``, ``_recorded``, rates, inference,
            overhead and their thirds).

        Raises:
            SourceError: the source cannot be opened, or was lost and did not come back.
            ModelError, OutputError, PipelineError: one-line, user-facing; raised after every
                thread has stopped and the recording is closed.
        """
        opts, control = self.options, self.control
        t_setup = time.perf_counter()
        recorder = Recorder(opts.record, opts.overwrite, RECORD_FPS) if opts.record else None
        analysis = RunAnalysis(opts.analysis, overwrite=opts.overwrite, title=opts.source)
        try:
            display, reason = self._pick_display()
            # The source first: a wrong camera index or URL is reported before seconds of model loading.
            source = open_live_source(opts.source, realtime=opts.realtime, reconnect=opts.reconnect)
        except BaseException:
            analysis.abort()
            raise
        with source:
            info = source.info
            assert info is not None
            run = _Run(source, info.live or opts.realtime, display, recorder, analysis)
            self.slot = run.slot
            run.stages.append(Stage("capture", lambda: self._capture(run), control, None))
            if info.live:
                # A camera or stream is read (and dropped) from now on, so no backlog of stale
                # frames builds up in its buffers while the model loads.
                run.stages[0].start()
            if display == "window":
                run.window = PreviewWindow(f"live_seg: {info.name}")
            main_error: BaseException | None = None
            try:
                self._set_up(run, info, reason, t_setup)
                self._view(run).run(run.stages, None if opts.duration is None else self.t_start + opts.duration)
            except BaseException as exc:  # noqa: BLE001 - stop the threads first, raise below
                main_error = exc
                control.abort("display failed" if self.t_start else "setup failed")
            finally:
                main_error = self._shut_down(run, info, main_error)
        if main_error is not None:
            raise_user_error(main_error, "display" if self.t_start else "setup")
        assert self.summary is not None
        return self.summary

    def _pick_display(self) -> tuple[str, str | None]:
        """The display to use and, when a window was wanted but cannot open, why not."""
        display, reason = self.options.display, None
        if display in ("auto", "window"):
            reason = display_problem()
            if reason is not None and display == "window":
                raise OutputError(f"cannot open a preview window: {reason}; use --serve PORT to watch in a browser")
            display = "window" if reason is None else "browser"
        return display, reason

    def _set_up(self, run: _Run, info: SourceInfo, reason: str | None, t_setup: float) -> None:
        """Load the model, open the browser view, start the inference worker (and capture)."""
        from ...model.select import build_segmenter, job_runtime  # the model loads here, after the source opened

        if self.segmenter is None:
            self.segmenter = build_segmenter(**self.model_args, mode="latency")
        run.runtime.enter_context(job_runtime(self.segmenter))
        if run.recorder is not None and info.fps:
            run.recorder.fps = info.fps
        if run.display == "browser":
            run.server = self._serve(info.name, reason)
        if run.window is not None:
            log.info("keys in the window: q/Esc quit, space pause, m view, e effect, l legend, s snapshot")
        run.setup_s = time.perf_counter() - t_setup
        run.stages.append(Stage("infer", lambda: self._infer(run), self.control, None))
        self.t_start = time.perf_counter()
        for stage in run.stages:
            if stage.ident is None:
                stage.start()
        duration = self.options.duration
        log.info("live: started%s", f", stopping after {duration:g} s" if duration else "; Ctrl-C to stop")

    def _view(self, run: _Run) -> LiveView:
        opts, seg = self.options, self.segmenter
        assert seg is not None
        effect = run.runtime.enter_context(opts.effect.build(seg.categories, opts.palette, opts.alpha, flat=True))
        renderer = Renderer(seg.categories, opts.palette, opts.alpha, opts.legend, opts.view, effect)
        return LiveView(
            run.board,
            run.slot,
            renderer,
            seg,
            self.metrics,
            self.control,
            self._keys,
            pairing=opts.pairing,
            hud=opts.hud,
            snapshot_dir=opts.snapshot_dir,
            snapshots=self.snapshots,
            window=run.window,
            server=run.server,
            recorder=run.recorder,
        )

    def _shut_down(self, run: _Run, info: SourceInfo, main_error: BaseException | None) -> BaseException | None:
        """Stop every thread, close the outputs and write the summary; returns the error to raise."""
        control = self.control
        control.stop("stopped")
        run.source.stop()
        run.slot.close(discard=True)  # a frame still waiting is dropped (and counted)
        self.stats.wall_s = time.perf_counter() - self.t_start if self.t_start else 0.0
        self.stats.stop_reason = control.reason
        try:
            join_all([stage for stage in run.stages if stage.ident is not None])
        except LiveSegError as exc:
            main_error = main_error or exc
        if run.window is not None:
            run.window.close()
        if run.server is not None:
            run.server.close()
        output = None
        if run.recorder is not None:
            try:
                output = run.recorder.close()
            except LiveSegError as exc:
                log.error("recording: %s", exc)
        try:
            run.analysis.close()
        except LiveSegError as exc:
            log.error("analysis: %s", exc)
        self.summary = self._summarise(run, info, output)
        run.runtime.close()  # torch's thread settings back as they were, after the summary read them
        return main_error

    def _serve(self, title: str, reason: str | None) -> PreviewServer:
        """Start the browser view and announce its URL."""
        opts = self.options
        port = DEFAULT_SERVE_PORT if opts.port is None else opts.port
        server = PreviewServer(opts.host, port, f"live_seg: {title}", any_port_if_busy=opts.port is None)
        server.start()
        self.url = server.url
        if reason:
            log.warning("no preview window (%s): serving the live view in the browser instead", reason)
        log.info("live view at %s", self.url)
        if self.on_serve is not None:
            self.on_serve(self.url)
        return server

    # -- the threads ----------------------------------------------------------------------------

    def _capture(self, run: _Run) -> None:
        """Capture thread: every frame into the slot (newest only when live) and to the display."""
        control, slot, board = self.control, run.slot, run.board
        try:
            for packet in run.source:
                if control.stopping.is_set():
                    break
                self.metrics.captured(packet)
                if not slot.put(packet, wait=not run.live):
                    break
                board.post_frame(packet)
        except LiveSegError:
            control.abort("source lost")
            raise
        finally:
            slot.close()  # end of input: the worker finishes what is in the slot
            board.wake()

    def _infer(self, run: _Run) -> None:
        """Inference thread: the newest frame in, the newest mask out (smoothed and fed to the
        mask files here, in order)."""
        assert self.segmenter is not None
        analysis = run.analysis
        refine = analysis.refine

        def give(result: SegResult) -> bool:
            if refine is not None:
                result = refine(result)
            analysis.feed(result)
            self.metrics.inferred_one(result)
            run.board.post_result(result)
            return True

        infer_loop(analysis.model(self.segmenter), _newest(run.slot, self.control), give, self.control)

    # -- the summary ----------------------------------------------------------------------------

    def _summarise(self, run: _Run, info: SourceInfo, output: Path | None) -> dict[str, Any]:
        source, slot = run.source, run.slot
        return self.metrics.summary(
            captured=slot.put_count,
            dropped=slot.dropped,
            recorded=run.recorder.frames if run.recorder else 0,
            input=info.name,
            output=str(output) if output else None,
            width=info.width,
            height=info.height,
            source_fps=round(info.fps, 3),
            audio=False,
            skipped_packets=getattr(source, "skipped_packets", 0),
            truncated_input=getattr(source, "truncated", False),
            setup_s=round(run.setup_s, 3),
            batch=1,
            live=run.live,
            pairing=self.options.pairing,
            display=run.display,
            url=self.url,
            reconnects=getattr(source, "reconnects", 0),
            snapshots=list(self.snapshots),
            **(self.segmenter.describe() if self.segmenter is not None else {}),
            **run.analysis.summary(),
        )


def _newest(slot: LatestFrame, control: Control) -> Take:
    """A :data:`~live_seg.pipeline.threads.Take` from the newest-frame slot: waits for a frame; ``None``
    once the slot is closed and empty, or the run is aborted."""

    def take() -> FramePacket | None:
        while True:
            packet = slot.take(timeout=POLL_S)
            if packet is not None:
                return packet
            if slot.finished or control.aborted.is_set():
                return None

    return take


def run_live(options: LiveOptions, segmenter: Segmenter | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run a live session and return its summary (see :meth:`LiveSession.run`)."""
    return LiveSession(options, segmenter, **kwargs).run()
