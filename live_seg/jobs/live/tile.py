"""One source's view, the same type for a camera's tile in the ``live`` window or page and for a
browser client of ``serve``: its renderer (view mode, legend, effect; changed by keys or by the
page's settings), what it shows, its figures and its recording.

* ``live``: :class:`~live_seg.jobs.live.view.LiveView` calls :meth:`Tile.update` each round (the
  source's newest frame with its newest mask, fresh, carried along the optical flow or held, and
  the HUD) and :meth:`Tile.shown` once it is on screen; the picture goes to the recording's sink
  thread, never encoded on the view's thread.
* ``serve``: the tile is the client's :class:`~live_seg.media.webrtc_client.ClientHooks`: frames
  from the browser go into its engine feed (:meth:`Tile.offer`), each result is rendered for the
  outgoing track (:meth:`Tile.render`), and the page's settings arrive in :meth:`Tile.control`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ...analysis.propagate import MaskPropagator
from ...base.errors import LiveSegError, one_line
from ...base.frames import Frame, FramePacket, Mask, SegResult
from ...base.registry import DEFAULT_ALPHA, VIEWS
from ...pipeline.engine import Feed
from ...render.effects import Effect, EffectOptions
from ...render.hud import HudInfo, draw_hud
from ...render.renderer import Renderer, side_by_side
from .metrics import LiveMetrics
from .outputs import fit_view

if TYPE_CHECKING:
    from ...model.segmenter import Segmenter

log = logging.getLogger(__name__)

HUD_REFRESH_S = 0.5
"""Without new frames (paused, stalled source), the HUD is still redrawn this often."""
STALE_S = 1.0
"""A source that delivered nothing for this long is called out in the HUD."""


@dataclass
class ViewSettings:
    """How the view paints (see :class:`live_seg.jobs.live.options.LiveOptions`)."""

    pairing: str = "newest"
    hud: bool = True
    snapshot_dir: str | os.PathLike[str] = "."
    snapshots: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Look:
    """How a run paints its sources: the model's classes, the palette, the overlay's alpha, and every
    tile's first view mode, legend and effect (each tile then changes its own)."""

    categories: tuple[str, ...]
    palette: str = "voc"
    alpha: float = DEFAULT_ALPHA
    view: str = VIEWS[0]
    legend: bool = True
    effect: EffectOptions = field(default_factory=EffectOptions)

    def build_effect(self, options: EffectOptions) -> Effect:
        """The effect of ``options`` for these classes (raises for an unknown class or a bad background)."""
        return options.build(self.categories, self.palette, self.alpha, flat=True)


def classes_text(effect: EffectOptions) -> str:
    """The effect's classes as the page's text field shows them (empty: the default)."""
    classes = effect.classes
    return (classes if isinstance(classes, str) else ",".join(classes)) if classes else ""


class Tile:
    """One source's view (see the module): its renderer, what it shows, pause, figures and recording.

    Args:
        feed: the source's engine feed (board and counters).
        look: the run's classes, palette and first settings (the effect is built now: a bad class
            or background raises here).
        metrics: its own figures; ``total``: the run's (the same object with one source; default: its own).
        recording: where its picture is recorded (a sink that never blocks: ``put((view, t_capture))``), or ``None``.
        label: the HUD's source line (``None`` with one source: the HUD is today's).
        propagator: carries the newest mask to a newer frame along the optical flow (``flow``), or
            holds it (``hold``); ``None``: the mask is shown as it is (``matched`` pairing).
        on_close: called once when the tile is closed (a browser client that left).
    """

    def __init__(
        self,
        feed: Feed,
        look: Look,
        metrics: LiveMetrics | None = None,
        total: LiveMetrics | None = None,
        recording: Any = None,
        label: str | None = None,
        propagator: MaskPropagator | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.feed, self.look = feed, look
        self.metrics = metrics or LiveMetrics()
        self.total = total or self.metrics
        self.recording, self.label, self.propagator = recording, label, propagator
        self.renderer = Renderer(look.categories, look.palette, look.alpha, look.legend, look.view,
                                 look.build_effect(look.effect))  # fmt: skip
        self._effect_options = look.effect
        self._lock = threading.Lock()  # settings changed on the page while a frame is rendered
        self._on_close = on_close
        self._closed = False
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
        if self.headless and self.recording is None and not self.snapshot_due:  # --display none: nothing to paint
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
        if self.recording is not None and self.view is not None:
            self.recording.put((self.view.copy(), packet.t_capture))  # the renderer paints into the same buffer

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
        capture_fps, infer_fps = self.metrics.rates(now, self.feed.frames_in, slot.frames_processed)
        return HudInfo(
            capture_fps=capture_fps,
            infer_fps=infer_fps,
            latency_ms=self._latency_ms,
            dropped=self.feed.dropped,
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
            with self._lock:
                return renderer.render(image, mask, soft=soft)
        if renderer.mode == "side":
            return side_by_side(image, image.copy())
        if renderer.mode == "mask":
            return np.zeros_like(image)
        return image.copy()

    # -- a browser client's hooks (serve) --------------------------------------------------------

    def offer(self, packet: FramePacket) -> None:
        """A frame from the browser (on the transport's event loop: never blocks)."""
        self.feed.offer(packet)

    def render(self, result: SegResult) -> Frame:
        """The picture to send for ``result`` (the frame it was computed on, with its mask)."""
        with self._lock:
            return self.renderer.render(result.packet.image, result.mask, soft=result.soft)

    def settings(self) -> dict[str, Any]:
        """The rendering settings now (what the page shows)."""
        r, fx = self.renderer, self._effect_options
        return {"effect": fx.name, "view": r.mode, "legend": r.legend, "classes": classes_text(fx)}

    def control(self, message: dict[str, Any]) -> dict[str, Any]:
        """Apply the page's settings (``effect``, ``classes``, ``view``, ``legend``); a bad one is
        refused with ``error`` and changes nothing."""
        try:
            view = message.get("view", self.renderer.mode)
            if view not in VIEWS:
                raise ValueError(f"unknown view {view!r}")
            classes = message.get("classes", self._effect_options.classes)
            wanted = dataclasses.replace(
                self._effect_options,
                name=message.get("effect", self._effect_options.name),
                classes=str(classes).strip() or None if classes is not None else None,
            )
            effect = self.look.build_effect(wanted) if wanted != self._effect_options else None
        except (ValueError, LiveSegError) as exc:  # UsageError: an unknown class name
            return {**self.settings(), "error": one_line(exc)}
        with self._lock:
            r = self.renderer
            r.mode, r.legend = view, bool(message.get("legend", r.legend))
            if effect is not None:
                old, r.effect, self._effect_options = r.effect, effect, wanted
                if old is not None:
                    old.close()
        self.dirty = True
        return self.settings()

    def close(self) -> None:
        """Free what the tile holds (its effect's background reader); ``on_close`` once. Safe twice."""
        if self._closed:
            return
        self._closed = True
        if self._on_close is not None:
            self._on_close()
        with self._lock:
            if self.renderer.effect is not None:
                self.renderer.effect.close()
