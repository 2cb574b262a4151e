"""The ``live`` job: a camera, stream or video file in; its segmentation on screen, live.

Three threads, and why the picture never falls behind:

* ``live_seg-capture`` reads the source as fast as it delivers. Each frame goes into a
  :class:`~live_seg.sources.LatestFrame` slot for the inference worker, which keeps only the
  newest: a frame the worker has not taken when the next one arrives is replaced and counted
  as dropped. The frame is also posted to the display as "the newest frame".
* ``live_seg-infer`` takes the newest frame, runs the model and posts "the newest mask".
  However slow the model, it always starts on a frame at most one frame interval old, so a
  mask is at most one inference (plus a frame interval) behind its capture.
* The main thread owns the window (OpenCV's GUI must live there), the recorder and the keys.
  It repaints whenever a new frame arrives, so the window refreshes at the source's rate,
  painting the newest frame with the newest mask (``pairing="newest"``, the default) or
  only the frames masks were computed on (``pairing="matched"``), and also as soon as a new
  mask arrives (so a mask is shown the moment it is ready).

Latency, as shown in the HUD and summarised in the stats, is measured per mask: from the
capture of the frame the mask was computed on to the moment that mask is first shown.

Video files: with ``realtime`` they are paced at their timestamps and treated as a live
source (newest frame, drops); without it they are read as fast as the model takes frames
and nothing is dropped.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from .errors import LiveSegError, OutputError, PipelineError
from .frames import Frame, FramePacket, SegResult
from .hud import HudInfo, draw_hud
from .metrics import RateMeter, Stats, spread_ms, thirds_ms
from .pipeline import POLL_S, Control, Stage, join_all
from .render import DEFAULT_ALPHA, Renderer, side_by_side
from .sinks import KEY_QUIT, PreviewServer, PreviewWindow, VideoWriter, check_output_path, display_problem
from .sources import DEFAULT_RECONNECT, CaptureSource, LatestFrame, VideoFileSource, open_live_source

if TYPE_CHECKING:
    from .model import Segmenter

log = logging.getLogger(__name__)

PAIRINGS = ("newest", "matched")
DISPLAYS = ("auto", "window", "browser", "none")
DEFAULT_SERVE_PORT = 8090
HUD_REFRESH_S = 0.5
"""Without new frames (paused, stalled source), the HUD is still redrawn this often."""
NORMAL_ENDS = frozenset({"duration", "quit", "window closed", "end of input"})
"""Stop reasons that are not an interruption."""


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
        palette, alpha: rendering (see :class:`live_seg.render.Renderer`).
        display: ``"auto"`` (a window if a display is available, else the browser view),
            ``"window"``, ``"browser"`` or ``"none"`` (record and/or stats only).
        host, port: where the browser view is served (``port`` 0: any free port).
        record: an ``.mp4`` to record the rendered view into, or ``None``.
        overwrite: replace an existing recording.
        duration: stop by itself after this many seconds (``None``: run until stopped).
        snapshot_dir: where key s saves PNG snapshots.
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
    display: str = "auto"
    host: str = "127.0.0.1"
    port: int | None = None
    record: str | os.PathLike[str] | None = None
    overwrite: bool = False
    duration: float | None = None
    snapshot_dir: str | os.PathLike[str] = "."

    def check(self) -> None:
        """Raise ``ValueError`` for settings that cannot work together."""
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing: expected one of {', '.join(PAIRINGS)}, got {self.pairing!r}")
        if self.display not in DISPLAYS:
            raise ValueError(f"display: expected one of {', '.join(DISPLAYS)}, got {self.display!r}")
        if self.view not in Renderer.MODES:
            raise ValueError(f"view: expected one of {', '.join(Renderer.MODES)}, got {self.view!r}")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration: expected > 0 seconds, got {self.duration}")
        if self.reconnect < 0:
            raise ValueError(f"reconnect: expected >= 0, got {self.reconnect}")


class _Board:
    """The newest frame and the newest mask, posted by the threads, read by the display."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.frame: FramePacket | None = None
        self.frame_seq = 0
        self.result: SegResult | None = None
        self.result_seq = 0

    def post_frame(self, packet: FramePacket) -> None:
        with self.cond:
            self.frame, self.frame_seq = packet, self.frame_seq + 1
            self.cond.notify_all()

    def post_result(self, result: SegResult) -> None:
        with self.cond:
            self.result, self.result_seq = result, self.result_seq + 1
            self.cond.notify_all()

    def wait(
        self, frame_seq: int, result_seq: int, timeout: float
    ) -> tuple[int, FramePacket | None, int, SegResult | None]:
        """Wait up to ``timeout`` for anything newer than the sequence numbers given."""
        with self.cond:
            if self.frame_seq == frame_seq and self.result_seq == result_seq:
                self.cond.wait(timeout)
            return self.frame_seq, self.frame, self.result_seq, self.result

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()


class _Recorder:
    """The rendered view into an MP4 (the ``video`` job's writer), timed by capture wall-clock.

    Opened on the first frame at that frame's size; a view of another size (key m to
    side-by-side) is scaled into that size with black bars.
    """

    def __init__(self, path: str | os.PathLike[str], overwrite: bool, fps: float) -> None:
        self.path = check_output_path(path, overwrite)
        self.overwrite = overwrite
        self.fps = fps
        self.writer: VideoWriter | None = None
        self.t0 = 0.0
        self.frames = 0

    def write(self, view: Frame, t_capture: float) -> None:
        if self.writer is None:
            h, w = view.shape[:2]
            self.writer = VideoWriter(self.path, w, h, fps=self.fps, overwrite=self.overwrite)
            self.t0 = t_capture
        size = (self.writer.width, self.writer.height)
        if (view.shape[1], view.shape[0]) != size:
            view = _letterbox(view, size)
        self.writer.write(view, t_capture - self.t0)
        self.frames += 1

    def close(self) -> Path | None:
        return self.writer.close() if self.writer is not None else None


def _letterbox(image: Frame, size: tuple[int, int]) -> Frame:
    """Scale ``image`` to fit ``size`` (width, height), centred on black."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    nw, nh = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class LiveSession:
    """One live run: open the source, start capture and inference, display until stopped.

    Args:
        options: what to run (see :class:`LiveOptions`).
        segmenter: a ready model; when ``None`` one is built from ``model_args``
            (``model``, ``weights``, ``device``, ``precision``, ``size``, ``threads``).
        control: stop requests (the CLI's signal handlers call ``control.stop()``).
        on_serve: called with the page's URL once the browser view is up.
        **model_args: passed to :class:`~live_seg.model.Segmenter`.

    Attributes:
        summary: the run's statistics (see :meth:`run`), set on every exit path once the
            source was opened, also when :meth:`run` raises.
        url: the browser view's address, when it is served.
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
        self.inferred = 0
        # Compact arrays: a live run of hours keeps every sample in tens of MB.
        self.infer_s = array("d")
        self.latency_s = array("d")
        self.overhead_s = array("d")
        self.shown_infer_s = array("d")
        self._hud_latency_ms: float | None = None
        self._capture_rate, self._infer_rate = RateMeter(), RateMeter()
        self._first_capture: float | None = None
        self._last_capture = 0.0
        self.stats = Stats()
        self.slot: LatestFrame | None = None
        self.t_start = 0.0

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run until q / Esc, the duration, a stop request, the end of a file, or a lost source.

        Returns:
            A JSON-ready summary: the ``video`` job's fields (``frames_in`` = captured,
            ``frames_out`` = shown, ``fps`` = display fps, ``latency_ms`` p50/p95/max per mask
            from capture to first shown, ``stage_ms``…) plus ``frames_captured``,
            ``frames_inferred``, ``frames_dropped`` (= captured − inferred), ``frames_shown``,
            ``frames_recorded``, ``capture_fps`` (over the capture span), ``infer_fps``,
            ``display_fps``, ``infer_ms`` (p50/p95/max of preprocess + forward + argmax per
            frame), ``shown_infer_ms`` (the same, over the masks that were shown: those
            ``latency_ms`` is measured on), ``overhead_ms`` (latency minus the mask's own
            inference time: waiting for the worker plus waiting to be shown),
            ``latency_thirds_ms`` / ``infer_thirds_ms`` /
            ``overhead_thirds_ms`` (medians of the first, middle and last third of the run),
            ``reconnects``,
            ``display``, ``url``, ``pairing`` and the model's description.

        Raises:
            SourceError: the source cannot be opened, or was lost and did not come back.
            ModelError, OutputError, PipelineError: one-line, user-facing; raised after every
                thread has stopped and the recording is closed.
        """
        opts, control = self.options, self.control
        t_setup = time.perf_counter()
        recorder = _Recorder(opts.record, opts.overwrite, 25.0) if opts.record else None
        display, reason = opts.display, None
        if display in ("auto", "window"):
            reason = display_problem()
            if reason is not None and display == "window":
                raise OutputError(f"cannot open a preview window: {reason}; use --serve PORT to watch in a browser")
            display = "window" if reason is None else "browser"
        # The source first: a wrong camera index or URL is reported before seconds of model loading.
        source = open_live_source(opts.source, realtime=opts.realtime, reconnect=opts.reconnect)
        with source:
            info = source.info
            assert info is not None
            live = info.live or opts.realtime
            slot = self.slot = LatestFrame()
            board = _Board()
            stages = [Stage("capture", lambda: self._capture(source, slot, board, live), control, None)]
            if info.live:
                # A camera or stream is read (and dropped) from now on, so no backlog of stale
                # frames builds up in its buffers while the model loads.
                stages[0].start()
            window = PreviewWindow(f"live_seg: {info.name}") if display == "window" else None
            server = None
            setup_s = 0.0
            main_error: BaseException | None = None
            try:
                if self.segmenter is None:
                    from .model import Segmenter  # torch loads here, after the source opened

                    self.segmenter = Segmenter(**self.model_args)
                if recorder is not None and info.fps:
                    recorder.fps = info.fps
                if display == "browser":
                    server = self._serve(info.name, reason)
                if window is not None:
                    log.info("keys in the window: q/Esc quit, space pause, m view, l legend, s snapshot")
                setup_s = time.perf_counter() - t_setup
                stages.append(Stage("infer", lambda: self._infer(slot, board), control, None))
                self.t_start = time.perf_counter()
                for stage in stages:
                    if stage.ident is None:
                        stage.start()
                duration = opts.duration
                log.info("live: started%s", f", stopping after {duration:g} s" if duration else "; Ctrl-C to stop")
                self._display(board, stages, window, server, recorder)
            except BaseException as exc:  # noqa: BLE001 - stop the threads first, raise below
                main_error = exc
                control.abort("display failed" if self.t_start else "setup failed")
            finally:
                control.stop("stopped")
                source.stop()
                slot.close(discard=True)  # a frame still waiting is dropped (and counted)
                self.stats.wall_s = time.perf_counter() - self.t_start if self.t_start else 0.0
                self.stats.stop_reason = control.reason
                try:
                    join_all([stage for stage in stages if stage.ident is not None])
                except LiveSegError as exc:
                    main_error = main_error or exc
                if window is not None:
                    window.close()
                if server is not None:
                    server.close()
                output = None
                if recorder is not None:
                    try:
                        output = recorder.close()
                    except LiveSegError as exc:
                        log.error("recording: %s", exc)
                self.summary = self._summarise(source, info, display, output, recorder, setup_s, live)
        if main_error is not None:
            if isinstance(main_error, LiveSegError | KeyboardInterrupt):
                raise main_error
            stage = "display" if self.t_start else "setup"
            raise PipelineError(f"{stage} failed: {type(main_error).__name__}: {main_error}") from main_error
        return self.summary

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

    def _capture(self, source: CaptureSource | VideoFileSource, slot: LatestFrame, board: _Board, live: bool) -> None:
        """Capture thread: every frame into the slot (newest only when ``live``) and to the display."""
        control = self.control
        try:
            for packet in source:
                if control.stopping.is_set():
                    break
                self.stats.add("decode", packet.decode_s)
                if self._first_capture is None:
                    self._first_capture = packet.t_capture
                self._last_capture = packet.t_capture
                if not slot.put(packet, wait=not live):
                    break
                board.post_frame(packet)
        except LiveSegError:
            control.abort("source lost")
            raise
        finally:
            slot.close()  # end of input: the worker finishes what is in the slot
            board.wake()

    def _infer(self, slot: LatestFrame, board: _Board) -> None:
        """Inference thread: the newest frame in, the newest mask out."""
        seg, control = self.segmenter, self.control
        assert seg is not None
        while True:
            packet = slot.take(timeout=POLL_S)
            if packet is None:
                if slot.finished or control.aborted.is_set():
                    return
                continue
            t0 = time.perf_counter()
            batch = seg.preprocess([packet.image])
            t1 = time.perf_counter()
            mask = seg.infer(batch)[0]
            t2 = time.perf_counter()
            self.stats.add("preprocess", t1 - t0)
            self.stats.add("infer", t2 - t1)
            self.infer_s.append(t2 - t0)
            self.inferred += 1
            board.post_result(SegResult(packet, mask, preprocess_s=t1 - t0, infer_s=t2 - t1, t_done=t2))

    # -- the main-thread loop ---------------------------------------------------------------------

    def _display(
        self,
        board: _Board,
        stages: Sequence[Stage],
        window: PreviewWindow | None,
        server: PreviewServer | None,
        recorder: _Recorder | None,
    ) -> None:
        """Repaint on every new frame or mask until a stop; handle keys; record what is shown."""
        opts, control = self.options, self.control
        renderer = Renderer(
            self.segmenter.categories, palette=opts.palette, alpha=opts.alpha, legend=opts.legend, mode=opts.view
        )
        deadline = None if opts.duration is None else self.t_start + opts.duration
        seen_frame = seen_result = 0
        shown: FramePacket | None = None  # the frame on screen
        shown_result: SegResult | None = None  # the mask on screen
        last_counted = -1  # index of the newest frame counted as shown (and recorded)
        paused = dirty = snapshot = False
        last_paint = 0.0
        view: Frame | None = None
        wait_s = 0.01 if window is not None else POLL_S
        while not control.stopping.is_set():
            if deadline is not None and time.perf_counter() >= deadline:
                control.stop("duration")
                break
            frame_seq, frame, result_seq, result = board.wait(seen_frame, seen_result, wait_s)
            for key in self._keys(window, server):
                if key in KEY_QUIT:
                    control.stop("quit")
                elif key == ord(" "):
                    paused, dirty = not paused, True
                elif key == ord("m"):
                    modes = Renderer.MODES
                    renderer.mode, dirty = modes[(modes.index(renderer.mode) + 1) % len(modes)], True
                elif key == ord("l"):
                    renderer.legend, dirty = not renderer.legend, True
                elif key == ord("s"):
                    snapshot = True  # of the view as it is after this round's keys
            if control.stopping.is_set():
                break
            if window is not None and window.closed_by_user:
                control.stop("window closed")
                break
            ended = not any(stage.is_alive() for stage in stages)
            seen_frame, seen_result = frame_seq, result_seq
            if paused:
                packet, mask_result = shown, shown_result
            elif opts.pairing == "matched" and result is not None:
                packet, mask_result = result.packet, result
            else:
                packet, mask_result = frame, result
            now = time.perf_counter()
            first_show = mask_result is not None and mask_result is not shown_result
            fresh = not paused and (packet is not shown or first_show)
            if packet is not None and (fresh or dirty or now - last_paint >= HUD_REFRESH_S):
                status = None
                if mask_result is None:
                    status = "waiting for the first mask"
                elif frame is not None and now - frame.t_capture > 1.0:
                    status = f"no new frame for {now - frame.t_capture:.0f} s"
                view = self._paint(renderer, packet, mask_result, first_show, paused, status)
                t_painted = time.perf_counter()
                if window is not None:
                    window.show(view)
                if server is not None:
                    server.publish(view)
                t_shown = time.perf_counter()
                self.stats.add("show", t_shown - t_painted)
                if first_show:
                    assert mask_result is not None
                    latency = t_shown - mask_result.packet.t_capture
                    self.latency_s.append(latency)
                    self.shown_infer_s.append(mask_result.preprocess_s + mask_result.infer_s)
                    self.overhead_s.append(latency - self.shown_infer_s[-1])
                # A new frame on screen counts as shown (and is recorded) once, in capture order;
                # with matched pairing, only frames that carry their own mask do.
                if fresh and packet.index > last_counted and (mask_result is not None or opts.pairing == "newest"):
                    last_counted = packet.index
                    self.stats.frames_out += 1
                    if recorder is not None:
                        recorder.write(view, packet.t_capture)
                        self.stats.add("encode", time.perf_counter() - t_shown)
                shown, shown_result = packet, mask_result
                last_paint, dirty = now, False
            if snapshot and view is not None:
                self._snapshot(view)
                snapshot = False
            if ended and frame_seq == board.frame_seq and result_seq == board.result_seq:
                control.stop("end of input")
                break

    def _paint(
        self,
        renderer: Renderer,
        packet: FramePacket,
        result: SegResult | None,
        first_show: bool,
        paused: bool,
        status: str | None,
    ) -> Frame:
        """Render ``packet`` with ``result``'s mask and draw the HUD over it."""
        t0 = time.perf_counter()
        if first_show:
            assert result is not None
            self._hud_latency_ms = (t0 - result.packet.t_capture) * 1000
        view = self._render(renderer, packet, result)
        if self.options.hud:
            seg, slot = self.segmenter, self.slot
            assert seg is not None and slot is not None
            info = HudInfo(
                capture_fps=self._capture_rate.update(t0, slot.put_count),
                infer_fps=self._infer_rate.update(t0, self.inferred),
                latency_ms=self._hud_latency_ms,
                dropped=slot.dropped,
                model=seg.name,
                device=seg.device,
                precision=seg.precision,
                untrained=seg.untrained,
                pairing=self.options.pairing,
                paused=paused,
                status=status,
            )
            draw_hud(view, info)
        self.stats.add("render", time.perf_counter() - t0)
        return view

    def _keys(self, window: PreviewWindow | None, server: PreviewServer | None) -> list[int]:
        keys = []
        if window is not None:
            key = window.poll(1)
            if key is not None:
                keys.append(key)
        if server is not None:
            keys.extend(ord(k) for k in server.keys())
        return keys

    def _render(self, renderer: Renderer, packet: FramePacket, result: SegResult | None) -> Frame:
        """The view of ``packet`` with ``result``'s mask, or the bare frame before the first mask."""
        if result is not None:
            return renderer.render(packet.image, result.mask)
        if renderer.mode == "side":
            return side_by_side(packet.image, packet.image.copy())
        if renderer.mode == "mask":
            return np.zeros_like(packet.image)
        return packet.image.copy()

    def _snapshot(self, view: Frame) -> None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
        path = Path(self.options.snapshot_dir) / f"live_seg-{stamp}.png"
        ok, buf = cv2.imencode(".png", view)
        try:
            if not ok:
                raise OSError("PNG encoding failed")
            path.write_bytes(buf.tobytes())
        except OSError as exc:
            log.error("cannot save the snapshot %s: %s", path, getattr(exc, "strerror", None) or exc)
            return
        self.snapshots.append(str(path))
        log.info("saved %s", path)

    # -- the summary ------------------------------------------------------------------------------

    def _summarise(
        self,
        source: CaptureSource | VideoFileSource,
        info: Any,
        display: str,
        output: Path | None,
        recorder: _Recorder | None,
        setup_s: float,
        live: bool,
    ) -> dict[str, Any]:
        slot = self.slot
        stats = self.stats
        captured = slot.put_count if slot else 0
        dropped = slot.dropped if slot else 0
        stats.frames_in = captured
        stats.latency = self.latency_s
        stats.interrupted = stats.stop_reason not in NORMAL_ENDS
        wall = stats.wall_s
        summary = stats.summary()
        span = self._last_capture - (self._first_capture or self._last_capture)
        summary.update(
            {
                "input": info.name,
                "output": str(output) if output else None,
                "width": info.width,
                "height": info.height,
                "source_fps": round(info.fps, 3),
                "audio": False,
                "skipped_packets": getattr(source, "skipped_packets", 0),
                "truncated_input": getattr(source, "truncated", False),
                "setup_s": round(setup_s, 3),
                "batch": 1,
                "live": live,
                "pairing": self.options.pairing,
                "display": display,
                "url": self.url,
                "frames_captured": captured,
                "frames_inferred": self.inferred,
                "frames_dropped": dropped,
                "frames_shown": stats.frames_out,
                "frames_recorded": recorder.frames if recorder else 0,
                "capture_fps": round((captured - 1) / span, 3) if span > 0 else 0.0,
                "infer_fps": round(self.inferred / wall, 3) if wall > 0 else 0.0,
                "display_fps": round(stats.frames_out / wall, 3) if wall > 0 else 0.0,
                "infer_ms": spread_ms(self.infer_s),
                "shown_infer_ms": spread_ms(self.shown_infer_s),
                "overhead_ms": spread_ms(self.overhead_s),
                "latency_thirds_ms": thirds_ms(self.latency_s),
                "infer_thirds_ms": thirds_ms(self.infer_s),
                "overhead_thirds_ms": thirds_ms(self.overhead_s),
                "reconnects": getattr(source, "reconnects", 0),
                "snapshots": list(self.snapshots),
                **(self.segmenter.describe() if self.segmenter is not None else {}),
            }
        )
        return summary


def run_live(options: LiveOptions, segmenter: Segmenter | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run a live session and return its summary (see :meth:`LiveSession.run`)."""
    return LiveSession(options, segmenter, **kwargs).run()
