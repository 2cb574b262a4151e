"""The live view: the main thread's loop that paints the newest frame with the newest mask.

The capture and inference threads post to a :class:`Board` ("the newest frame", "the newest
mask"); :class:`LiveView` repaints whenever either is new, so the picture refreshes at the
source's rate and a mask is shown the moment it is ready. It owns what must live on the main
thread: the window (OpenCV's GUI), the browser view's frames, the recording and the keys.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ...base.errors import one_line
from ...base.files import write_png
from ...base.frames import Frame, FramePacket, SegResult
from ...media.camera import LatestFrame
from ...media.webview import PreviewServer
from ...media.window import KEY_QUIT, PreviewWindow
from ...media.writer import VideoWriter, check_output_path
from ...pipeline.threads import POLL_S, Control, Stage
from ...render.hud import HudInfo, draw_hud
from ...render.renderer import Renderer, side_by_side
from .stats import LiveMetrics

if TYPE_CHECKING:
    from ...model.segmenter import Segmenter

log = logging.getLogger(__name__)

HUD_REFRESH_S = 0.5
"""Without new frames (paused, stalled source), the HUD is still redrawn this often."""
STALE_S = 1.0
"""A source that delivered nothing for this long is called out in the HUD."""


class Board:
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

    def settled(self, frame_seq: int, result_seq: int) -> bool:
        """Nothing was posted after the sequence numbers given."""
        with self.cond:
            return frame_seq == self.frame_seq and result_seq == self.result_seq

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()


class Recorder:
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
            view = letterbox(view, size)
        self.writer.write(view, t_capture - self.t0)
        self.frames += 1

    def close(self) -> Path | None:
        return self.writer.close() if self.writer is not None else None


def letterbox(image: Frame, size: tuple[int, int]) -> Frame:
    """Scale ``image`` to fit ``size`` (width, height), centred on black."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    nw, nh = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class LiveView:
    """Shows what the threads post until a stop: paints, handles keys, records, snapshots.

    Args:
        board: where the newest frame and mask are posted.
        slot: the inference worker's newest-frame slot (its counts go into the HUD).
        renderer: how a frame and its mask become the view (key m and l change it).
        segmenter: the model (its name, device and precision go into the HUD).
        metrics: where the display's figures go.
        control: stop requests (q / Esc, the duration, a closed window, the end of input).
        keys: keys pressed elsewhere (:meth:`LiveSession.handle_key`), acted on each round.
        pairing: ``"newest"`` or ``"matched"`` (see :class:`live_seg.jobs.live.session.LiveOptions`).
        hud: draw the HUD.
        snapshot_dir: where key s saves PNGs; their paths go into ``snapshots``.
        window, server, recorder: where the view goes (each optional).
    """

    def __init__(
        self,
        board: Board,
        slot: LatestFrame,
        renderer: Renderer,
        segmenter: Segmenter,
        metrics: LiveMetrics,
        control: Control,
        keys: queue.SimpleQueue[int],
        *,
        pairing: str,
        hud: bool,
        snapshot_dir: str | os.PathLike[str],
        snapshots: list[str],
        window: PreviewWindow | None = None,
        server: PreviewServer | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.board, self.slot, self.renderer, self.segmenter = board, slot, renderer, segmenter
        self.metrics, self.control, self.keys = metrics, control, keys
        self.pairing, self.hud, self.snapshot_dir, self.snapshots = pairing, hud, snapshot_dir, snapshots
        self.window, self.server, self.recorder = window, server, recorder
        self.paused = False
        self._dirty = self._snapshot_due = False
        self._shown: FramePacket | None = None  # the frame on screen
        self._shown_result: SegResult | None = None  # the mask on screen
        self._last_counted = -1  # index of the newest frame counted as shown (and recorded)
        self._last_paint = 0.0
        self._view: Frame | None = None
        self._hud_latency_ms: float | None = None

    def run(self, stages: Sequence[Stage], deadline: float | None = None) -> None:
        """Repaint on every new frame or mask until a stop; handle keys; record what is shown.

        Args:
            stages: the capture and inference threads: once none is alive and everything
                they posted is shown, the input has ended.
            deadline: ``time.perf_counter()`` at which to stop (``None``: no limit).
        """
        control, board = self.control, self.board
        seen_frame = seen_result = 0
        wait_s = 0.01 if self.window is not None else POLL_S
        while not control.stopping.is_set():
            if deadline is not None and time.perf_counter() >= deadline:
                control.stop("duration")
                break
            frame_seq, frame, result_seq, result = board.wait(seen_frame, seen_result, wait_s)
            for key in self._pressed():
                self.handle_key(key)
            if control.stopping.is_set():
                break
            if self.window is not None and self.window.closed_by_user:
                control.stop("window closed")
                break
            ended = not any(stage.is_alive() for stage in stages)
            seen_frame, seen_result = frame_seq, result_seq
            self._update(frame, result)
            if self._snapshot_due and self._view is not None:
                self._snapshot(self._view)
                self._snapshot_due = False
            if ended and board.settled(frame_seq, result_seq):
                control.stop("end of input")
                break

    def handle_key(self, key: int) -> None:
        """Act on one key: q / Esc quit, space pause, m next view mode, e next effect, l legend, s snapshot.

        Call it from the thread that runs the view; other threads queue keys in ``keys``.
        """
        if key in KEY_QUIT:
            self.control.stop("quit")
        elif key == ord(" "):
            self.paused, self._dirty = not self.paused, True
        elif key == ord("m"):
            modes = Renderer.MODES
            self.renderer.mode, self._dirty = modes[(modes.index(self.renderer.mode) + 1) % len(modes)], True
        elif key == ord("e") and self.renderer.effect is not None:
            log.info("effect: %s", self.renderer.effect.cycle())
            self._dirty = True
        elif key == ord("l"):
            self.renderer.legend, self._dirty = not self.renderer.legend, True
        elif key == ord("s"):
            self._snapshot_due = True  # of the view as it is after this round's keys

    def _pressed(self) -> Iterator[int]:
        """Keys pressed since the last round: in the window, on the page, or queued."""
        if self.window is not None:
            key = self.window.poll(1)
            if key is not None:
                yield key
        if self.server is not None:
            yield from (ord(k) for k in self.server.keys())
        while True:
            try:
                yield self.keys.get_nowait()
            except queue.Empty:
                return

    def _update(self, frame: FramePacket | None, result: SegResult | None) -> None:
        """Repaint if there is something new (or the HUD is due); count and record new frames."""
        if self.paused:
            packet, mask_result = self._shown, self._shown_result
        elif self.pairing == "matched" and result is not None:
            packet, mask_result = result.packet, result
        else:
            packet, mask_result = frame, result
        now = time.perf_counter()
        first_show = mask_result is not None and mask_result is not self._shown_result
        fresh = not self.paused and (packet is not self._shown or first_show)
        if packet is None or not (fresh or self._dirty or now - self._last_paint >= HUD_REFRESH_S):
            return
        status = None
        if mask_result is None:
            status = "waiting for the first mask"
        elif frame is not None and now - frame.t_capture > STALE_S:
            status = f"no new frame for {now - frame.t_capture:.0f} s"
        view = self._view = self._paint(packet, mask_result, first_show, status)
        t_shown = self._show(view, mask_result if first_show else None)
        # A new frame on screen counts as shown (and is recorded) once, in capture order;
        # with matched pairing, only frames that carry their own mask do.
        if fresh and packet.index > self._last_counted and (mask_result is not None or self.pairing == "newest"):
            self._last_counted = packet.index
            self.metrics.stats.frames_out += 1
            if self.recorder is not None:
                self.recorder.write(view, packet.t_capture)
                self.metrics.stats.add("encode", time.perf_counter() - t_shown)
        self._shown, self._shown_result = packet, mask_result
        self._last_paint, self._dirty = now, False

    def _show(self, view: Frame, first_result: SegResult | None) -> float:
        """Put ``view`` on screen (window and/or page); returns when it was shown."""
        t_painted = time.perf_counter()
        if self.window is not None:
            self.window.show(view)
        if self.server is not None:
            self.server.publish(view)
        t_shown = time.perf_counter()
        self.metrics.stats.add("show", t_shown - t_painted)
        if first_result is not None:
            self.metrics.shown(first_result, t_shown)
        return t_shown

    def _paint(self, packet: FramePacket, result: SegResult | None, first_show: bool, status: str | None) -> Frame:
        """Render ``packet`` with ``result``'s mask and draw the HUD over it."""
        t0 = time.perf_counter()
        if first_show:
            assert result is not None
            self._hud_latency_ms = (t0 - result.packet.t_capture) * 1000
        view = self._render(packet, result)
        if self.hud:
            seg, slot = self.segmenter, self.slot
            capture_fps, infer_fps = self.metrics.rates(t0, slot.put_count)
            info = HudInfo(
                capture_fps=capture_fps,
                infer_fps=infer_fps,
                latency_ms=self._hud_latency_ms,
                dropped=slot.dropped,
                model=seg.name,
                device=seg.device,
                precision=seg.precision,
                untrained=seg.untrained,
                pairing=self.pairing,
                paused=self.paused,
                status=status,
                effect=self.renderer.effect.name if self.renderer.effect is not None else None,
            )
            draw_hud(view, info)
        self.metrics.stats.add("render", time.perf_counter() - t0)
        return view

    def _render(self, packet: FramePacket, result: SegResult | None) -> Frame:
        """The view of ``packet`` with ``result``'s mask, or the bare frame before the first mask."""
        renderer = self.renderer
        if result is not None:
            return renderer.render(packet.image, result.mask)
        if renderer.mode == "side":
            return side_by_side(packet.image, packet.image.copy())
        if renderer.mode == "mask":
            return np.zeros_like(packet.image)
        return packet.image.copy()

    def _snapshot(self, view: Frame) -> None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
        path = Path(self.snapshot_dir) / f"live_seg-{stamp}.png"
        try:
            write_png(path, view)
        except OSError as exc:
            log.error("cannot save the snapshot %s: %s", path, one_line(exc))
            return
        self.snapshots.append(str(path))
        log.info("saved %s", path)
