"""The live view: the main thread's loop that paints each source's newest frame with its newest mask.

The capture and inference threads post to each source's :class:`~live_seg.pipeline.live_run.Board`
("the newest frame", "the newest mask"); :class:`LiveView` repaints a source's :class:`Tile` whenever
either is new, so each picture refreshes at its source's rate and a mask is shown the moment it is
ready. With one source the view is that source's picture; with several, a grid of tiles, each with
its own HUD line (name, state). The view goes to its outputs (:class:`~live_seg.pipeline.live_run.ViewOutput`:
window, browser page); each tile's own picture goes to its recording.

Keys act on every tile, or on the selected one: 1…9 select a tile, 0 selects all again, t cycles.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...analysis.propagate import MaskPropagator
from ...base.errors import one_line
from ...base.files import write_png
from ...base.frames import Frame, FramePacket, Mask, SegResult
from ...media.window import KEY_QUIT
from ...pipeline.live_run import Feed, ViewOutput
from ...pipeline.threads import POLL_S, Control
from ...render.hud import HudInfo, draw_hud
from ...render.renderer import Renderer, side_by_side
from .outputs import Recorder, WindowOutput, compose_grid, fit_view
from .stats import LiveMetrics

if TYPE_CHECKING:
    from ...model.segmenter import Segmenter

log = logging.getLogger(__name__)

HUD_REFRESH_S = 0.5
"""Without new frames (paused, stalled source), the HUD is still redrawn this often."""
STALE_S = 1.0
"""A source that delivered nothing for this long is called out in the HUD."""
TILE_KEYS = frozenset(ord(k) for k in " mels")
"""Keys that act on the selected tile (or on every tile)."""


@dataclass
class ViewSettings:
    """How the view paints (see :class:`live_seg.jobs.live.options.LiveOptions`)."""

    pairing: str = "newest"
    hud: bool = True
    snapshot_dir: str | os.PathLike[str] = "."
    snapshots: list[str] = field(default_factory=list)


class Tile:
    """One source in the view: what it shows, its renderer (view mode, legend, effect), pause,
    figures and recording.

    Args:
        feed: the source's threads, board and counters.
        renderer: how its frame and mask become its picture.
        metrics: its own figures; ``total``: the run's (the same object with one source).
        recorder: where its picture is recorded, or ``None``.
        label: the HUD's source line (``None`` with one source: the HUD is today's).
        propagator: carries the newest mask to a newer frame along the optical flow (``flow``), or
            holds it (``hold``); ``None``: the mask is shown as it is (``matched`` pairing).
    """

    def __init__(
        self,
        feed: Feed,
        renderer: Renderer,
        metrics: LiveMetrics,
        total: LiveMetrics,
        recorder: Recorder | None = None,
        label: str | None = None,
        propagator: MaskPropagator | None = None,
    ) -> None:
        self.feed, self.renderer, self.metrics, self.total = feed, renderer, metrics, total
        self.recorder, self.label, self.propagator = recorder, label, propagator
        self._keyed: SegResult | None = None  # the result the propagator holds as its key
        self._carried: tuple[FramePacket, SegResult, Mask] | None = None  # the last carried mask
        self.paused = False
        self.dirty = self.snapshot_due = False
        self.view: Frame | None = None
        self.version = 0  # counts repaints of view (which may be the renderer's same buffer)
        self.seen = (0, 0)
        self._shown: FramePacket | None = None  # the frame on screen
        self._shown_result: SegResult | None = None  # the mask on screen
        self._last_counted = -1  # index of the newest frame counted as shown (and recorded)
        self._last_paint = 0.0
        self._latency_ms: float | None = None
        self._fresh: FramePacket | None = None
        self._fresh_mask: tuple[str, float] | None = None  # its mask: fresh/carried/held, age in s
        self._first: SegResult | None = None
        self._fitted: tuple[FramePacket | None, Frame | None] = (None, None)  # a frame, scaled for the view
        self.headless = False  # no one looks (no window, page or recording): count and time, never paint

    @property
    def name(self) -> str:
        return self.feed.name

    def settled(self) -> bool:
        return self.feed.board.settled(*self.seen)

    def key(self, key: int) -> None:
        """space pause, m next view mode, e next effect, l legend, s snapshot."""
        renderer = self.renderer
        if key == ord(" "):
            self.paused, self.dirty = not self.paused, True
        elif key == ord("m"):
            modes = Renderer.MODES
            renderer.mode, self.dirty = modes[(modes.index(renderer.mode) + 1) % len(modes)], True
        elif key == ord("e") and renderer.effect is not None:
            log.info("%s effect: %s", self.name, renderer.effect.cycle())
            self.dirty = True
        elif key == ord("l"):
            renderer.legend, self.dirty = not renderer.legend, True
        elif key == ord("s"):
            self.snapshot_due = True  # of the view as it is after this round's keys

    def update(self, settings: ViewSettings, segmenter: Segmenter, now: float) -> bool:
        """Repaint if there is something new (or the HUD is due); True when :attr:`view` changed."""
        frame_seq, frame, result_seq, result = self.feed.board.read()
        self.seen = (frame_seq, result_seq)
        if self.paused:
            packet, mask_result = self._shown, self._shown_result
        elif settings.pairing == "matched" and result is not None:
            packet, mask_result = result.packet, result
        else:
            packet, mask_result = frame, result
        first_show = mask_result is not None and mask_result is not self._shown_result
        fresh = not self.paused and (packet is not self._shown or first_show)
        self._fresh = self._first = None
        if packet is None:
            if self.label is not None and (self.view is None or now - self._last_paint >= HUD_REFRESH_S):
                self.view, self._last_paint = self._placeholder(now), now
                self.version += 1
                return True
            return False
        if not (fresh or self.dirty or now - self._last_paint >= HUD_REFRESH_S):
            return False
        status = None
        if mask_result is None:
            status = "waiting for the first mask"
        elif frame is not None and now - frame.t_capture > STALE_S:
            status = f"no new frame for {now - frame.t_capture:.0f} s"
        if self.headless and self.recorder is None and not self.snapshot_due:  # --display none: nothing to paint
            kind = "fresh" if mask_result is not None and packet is mask_result.packet else "held"
            if first_show:
                self._latency_ms = (time.perf_counter() - mask_result.packet.t_capture) * 1000
        else:
            mask, kind = self._mask_for(packet, mask_result)
            self.view = self._paint(packet, mask_result, mask, first_show, status, settings, segmenter)
        self.version += 1
        # A new frame on screen counts as shown (and is recorded) once, in capture order;
        # with matched pairing, only frames that carry their own mask do.
        if fresh and packet.index > self._last_counted and (mask_result is not None or settings.pairing == "newest"):
            self._last_counted = packet.index
            self._fresh = packet
            if mask_result is not None:
                self._fresh_mask = (kind, packet.t_capture - mask_result.packet.t_capture)
        self._first = mask_result if first_show else None
        self._shown, self._shown_result = packet, mask_result
        self._last_paint, self.dirty = now, False
        return True

    def shown(self, t_shown: float) -> None:
        """The repainted view is on screen: count it, time its mask, record it."""
        if self._first is not None:
            self.metrics.shown(self._first, t_shown)
            if self.total is not self.metrics:
                self.total.shown(self._first, t_shown)
        packet = self._fresh
        if packet is None or (self.view is None and not self.headless):
            return
        for metrics in {id(m): m for m in (self.metrics, self.total)}.values():
            metrics.stats.frames_out += 1
            if self._fresh_mask is not None:
                metrics.mask_shown(*self._fresh_mask)
        self._fresh_mask = None
        if self.recorder is not None:
            self.recorder.write(self.view, packet.t_capture)
            self.total.stats.add("encode", time.perf_counter() - t_shown)

    def _hud_status(self, status: str | None) -> str | None:
        if self.label is None:
            return status
        line = f"{self.label}: {self.feed.state}"
        return f"{line} - {status}" if status else line

    def _placeholder(self, now: float) -> Frame:
        """A source without a frame yet (connecting, failed): a dark picture with its HUD."""
        view = np.zeros((360, 640, 3), np.uint8)
        draw_hud(view, self._hud(now, self._hud_status(None), None, "newest"))
        return view

    def _hud(self, now: float, status: str | None, segmenter: Segmenter | None, pairing: str) -> HudInfo:
        slot = self.feed.slot
        capture_fps, infer_fps = self.metrics.rates(now, slot.frames_in)
        return HudInfo(
            capture_fps=capture_fps,
            infer_fps=infer_fps,
            latency_ms=self._latency_ms,
            dropped=slot.dropped,
            model=segmenter.name if segmenter is not None else "",
            device=segmenter.device if segmenter is not None else "",
            precision=segmenter.precision if segmenter is not None else "",
            untrained=bool(segmenter is not None and segmenter.untrained),
            pairing=pairing,
            paused=self.paused,
            status=status,
            effect=self.renderer.effect.name if self.renderer.effect is not None else None,
        )

    def _mask_for(self, packet: FramePacket, result: SegResult | None) -> tuple[Mask | None, str]:
        """The mask to show over ``packet``: ``result``'s own (``fresh``: computed on this frame),
        carried to it along the optical flow (``carried``), or held as it is (``held``)."""
        if result is None:
            return None, "none"
        if packet is result.packet:
            return result.mask, "fresh"
        prop = self.propagator
        if prop is None or prop.mode != "flow" or packet.index < result.packet.index:  # (a restarted source)
            return result.mask, "held"
        if self._carried is not None and self._carried[0] is packet and self._carried[1] is result:
            return self._carried[2], "carried"
        t0 = time.perf_counter()
        if self._keyed is not result:
            prop.key(result.packet.image, result.mask)
            self._keyed = result
        mask = prop.carry(packet.image)
        self._carried = (packet, result, mask)
        self.total.stats.add("carry", time.perf_counter() - t0)
        return mask, "carried"

    def _paint(
        self,
        packet: FramePacket,
        result: SegResult | None,
        mask: Mask | None,
        first_show: bool,
        status: str | None,
        settings: ViewSettings,
        segmenter: Segmenter,
    ) -> Frame:
        """Render ``packet`` with ``mask`` (``result``'s, or carried from it) and draw the HUD over it."""
        t0 = time.perf_counter()
        if first_show:
            assert result is not None
            self._latency_ms = (t0 - result.packet.t_capture) * 1000
        soft = result.soft if result is not None and mask is result.mask else None  # not for a carried mask
        view = self._render(packet, mask, soft)
        if settings.hud:
            draw_hud(view, self._hud(t0, self._hud_status(status), segmenter, settings.pairing))
        self.total.stats.add("render", time.perf_counter() - t0)
        return view

    def _render(self, packet: FramePacket, mask: Mask | None, soft: np.ndarray | None = None) -> Frame:
        """The view of ``packet`` (scaled down to :data:`~.outputs.VIEW_MAX_PIXELS`) with ``mask`` (and a
        probability model's ``soft`` map), or the bare frame before the first mask."""
        renderer = self.renderer
        if self._fitted[0] is not packet:
            self._fitted = (packet, fit_view(packet.image))
        image = self._fitted[1]
        assert image is not None
        if mask is not None:
            return renderer.render(image, mask, soft=soft)
        if renderer.mode == "side":
            return side_by_side(image, image.copy())
        if renderer.mode == "mask":
            return np.zeros_like(image)
        return image.copy()


class LiveView:
    """Shows what the threads post until a stop: paints, handles keys, records, snapshots.

    Args:
        tiles: one per source, in ``--source`` order.
        segmenter: the model (its name, device and precision go into the HUD).
        total: the run's figures (the display's timings go there).
        control: stop requests (q / Esc, the duration, a closed window, the end of input).
        keys: keys pressed elsewhere (:meth:`LiveSession.handle_key`), acted on each round.
        settings: pairing, HUD, snapshots.
        outputs: where the view goes (window, browser page).
    """

    def __init__(
        self,
        tiles: Sequence[Tile],
        segmenter: Segmenter,
        total: LiveMetrics,
        control: Control,
        keys: queue.SimpleQueue[int],
        settings: ViewSettings,
        outputs: Sequence[ViewOutput] = (),
    ) -> None:
        self.tiles, self.segmenter, self.total = list(tiles), segmenter, total
        self.control, self.keys, self.settings, self.outputs = control, keys, settings, list(outputs)
        self.selected: int | None = None  # None: keys act on every tile
        for tile in self.tiles:
            tile.headless = not self.outputs
        self._grid_dirty = False
        self._cells: dict[int, tuple[int, Frame]] = {}  # each tile's view scaled into its cell, by version

    @property
    def paused(self) -> bool:
        return all(tile.paused for tile in self.tiles)

    def run(self, finished: Callable[[], bool], deadline: float | None = None) -> None:
        """Repaint on every new frame or mask until a stop; handle keys; record what is shown.

        Args:
            finished: True once every source ended and every frame read was processed; the view
                stops when, besides, everything posted is shown.
            deadline: ``time.perf_counter()`` at which to stop (``None``: no limit).
        """
        control = self.control
        cond = self.tiles[0].feed.board.cond
        wait_s = 0.01 if any(isinstance(o, WindowOutput) for o in self.outputs) else POLL_S
        while not control.stopping.is_set():
            if deadline is not None and time.perf_counter() >= deadline:
                control.stop("duration")
                break
            with cond:
                if all(tile.settled() for tile in self.tiles):
                    cond.wait(wait_s)
            for key in self._pressed():
                self.handle_key(key)
            if control.stopping.is_set():
                break
            if any(output.closed for output in self.outputs):
                control.stop("window closed")
                break
            ended = finished()
            self._update()
            if ended and all(tile.settled() for tile in self.tiles):
                control.stop("end of input")
                break

    def handle_key(self, key: int) -> None:
        """Act on one key: q / Esc quit, space pause, m next view mode, e next effect, l legend,
        s snapshot (on the selected tile, or every tile); 1…9 select a tile, 0 all, t the next.

        Call it from the thread that runs the view; other threads queue keys in ``keys``.
        """
        n = len(self.tiles)
        if key in KEY_QUIT:
            self.control.stop("quit")
        elif key in TILE_KEYS:
            for tile in self.tiles if self.selected is None else [self.tiles[self.selected]]:
                tile.key(key)
        elif n > 1 and ord("0") <= key <= ord("9") and key - ord("0") <= n:
            self.selected = None if key == ord("0") else key - ord("1")
            self._grid_dirty = True
        elif n > 1 and key == ord("t"):
            self.selected = 0 if self.selected is None else None if self.selected == n - 1 else self.selected + 1
            self._grid_dirty = True

    def _pressed(self) -> Iterator[int]:
        """Keys pressed since the last round: in the window, on the page, or queued."""
        for output in self.outputs:
            yield from output.keys()
        while True:
            try:
                yield self.keys.get_nowait()
            except queue.Empty:
                return

    def _update(self) -> None:
        """Repaint the tiles with news, show the view, count and record what is new."""
        now = time.perf_counter()
        changed = [tile.update(self.settings, self.segmenter, now) for tile in self.tiles]
        if any(changed) or self._grid_dirty:
            self._grid_dirty = False
            if len(self.tiles) == 1:
                view = self.tiles[0].view
            elif self.outputs:  # the grid only when someone looks (--display none: recordings only)
                tiles = self.tiles
                view = compose_grid([t.view for t in tiles], self.selected, self._cells, [t.version for t in tiles])
            else:
                view = None
            t_shown = self._show(view, now) if view is not None else time.perf_counter()
            for tile, done in zip(self.tiles, changed, strict=True):
                if done:
                    tile.shown(t_shown)
        for tile in self.tiles:
            if tile.snapshot_due and tile.view is not None:
                self._snapshot(tile)
            tile.snapshot_due = False

    def _show(self, view: Frame, now: float) -> float:
        """Put ``view`` on the outputs; returns when it was shown."""
        t_painted = time.perf_counter()
        packets = [t._shown for t in self.tiles if t._shown is not None]
        t_capture = max((p.t_capture for p in packets), default=now)
        for output in self.outputs:
            output.show(view, t_capture)
        t_shown = time.perf_counter()
        self.total.stats.add("show", t_shown - t_painted)
        return t_shown

    def _snapshot(self, tile: Tile) -> None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
        name = "live_seg" if len(self.tiles) == 1 else f"live_seg-{tile.name}"
        path = Path(self.settings.snapshot_dir) / f"{name}-{stamp}.png"
        assert tile.view is not None
        try:
            write_png(path, tile.view)
        except OSError as exc:
            log.error("cannot save the snapshot %s: %s", path, one_line(exc))
            return
        self.settings.snapshots.append(str(path))
        log.info("saved %s", path)
