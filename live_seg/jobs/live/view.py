"""The live view: the main thread's loop that paints each source's newest frame with its newest mask.

The capture and inference threads post to each source's :class:`~live_seg.pipeline.engine.Board`
("the newest frame", "the newest mask"); :class:`LiveView` repaints a source's :class:`Tile` whenever
either is new, so each picture refreshes at its source's rate and a mask is shown the moment it is
ready. With one source the view is that source's picture; with several, a grid of tiles, each with
its own HUD line (name, state). The view goes to its outputs (:class:`~live_seg.jobs.live.outputs.ViewOutput`:
window, browser page); each tile's own picture goes to its recording's sink thread.

Keys act on every tile, or on the selected one: 1…9 select a tile, 0 selects all again, t cycles.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ...base.errors import one_line
from ...base.files import write_png
from ...base.frames import Frame
from ...media.window import KEY_QUIT
from ...pipeline.threads import POLL_S, Control
from .metrics import LiveMetrics
from .outputs import ViewOutput, compose_grid
from .tile import Tile, ViewSettings

if TYPE_CHECKING:
    from ...model.segmenter import Segmenter

log = logging.getLogger(__name__)

TILE_KEYS = frozenset(ord(k) for k in " mels")
"""Keys that act on the selected tile (or on every tile)."""


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
        wait_s = min([POLL_S] + [getattr(o, "wait_s", POLL_S) for o in self.outputs])
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
