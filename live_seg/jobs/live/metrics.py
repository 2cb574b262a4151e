"""The live display's figures (:class:`LiveMetrics`): per-mask latency, what was shown, the HUD's rates,
and the summary fields they make with the engine's per-source counts.

Latency is measured per mask: from the capture of the frame the mask was computed on to the
moment that mask is first shown. Its part that is not the mask's own inference (waiting for
the worker, then for the display) is the *overhead*: what a queue would make grow.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...base.frames import SegResult
from ...base.metrics import RateMeter, Stats, job_summary, samples, spread_ms, thirds_ms

if TYPE_CHECKING:
    from ...pipeline.engine import Feed

MASK_KINDS = ("fresh", "carried", "held")
"""What mask a shown frame had: its own, an older one moved along the flow, an older one as it is."""
NORMAL_ENDS = frozenset({"duration", "quit", "window closed", "end of input"})
"""Stop reasons that are not an interruption."""


class LiveMetrics:
    """What the display of a live run (or of one of its sources) saw: per-mask latency and what was shown.

    Samples are kept in compact arrays (see :mod:`live_seg.base.metrics`): a run of hours keeps
    every sample in tens of MB.

    Attributes:
        stats: the display's timings (``render``, ``show``, ``carry``), ``frames_out`` (frames shown),
            wall time and stop reason; the summary adds the sources' ``decode``, ``preprocess``,
            ``infer`` and the recordings' ``encode``.
        latency_s: capture → first shown, per shown mask.
        shown_infer_s: preprocess + forward seconds of the masks that were shown (those ``latency_s`` is on).
        overhead_s: ``latency_s`` minus the mask's own inference time.
        masks_shown: shown frames by the mask over them: ``fresh`` (computed on that frame),
            ``carried`` (an older frame's, moved along the optical flow), ``held`` (an older frame's
            as it is).
        mask_age_s: per shown frame with a mask, its capture time minus that of the frame the mask
            was computed on (0 for a fresh mask).
    """

    def __init__(self) -> None:
        self.stats = Stats()
        self.latency_s = samples()
        self.shown_infer_s = samples()
        self.overhead_s = samples()
        self.masks_shown = dict.fromkeys(MASK_KINDS, 0)
        self.mask_age_s = samples()
        self._capture_rate, self._infer_rate = RateMeter(), RateMeter()

    def shown(self, result: SegResult, t_shown: float) -> None:
        """``result``'s mask was shown for the first time at ``t_shown`` (display thread)."""
        latency = t_shown - result.packet.t_capture
        own = result.preprocess_s + result.infer_s
        self.latency_s.append(latency)
        self.shown_infer_s.append(own)
        self.overhead_s.append(latency - own)

    def mask_shown(self, kind: str, age_s: float) -> None:
        """A new frame was shown with a mask of ``kind`` (see :data:`MASK_KINDS`) computed on a frame
        captured ``age_s`` seconds before it (display thread)."""
        self.masks_shown[kind] += 1
        self.mask_age_s.append(age_s)

    def rates(self, now: float, captured: int, processed: int) -> tuple[float, float]:
        """Recent ``(capture fps, infer fps)`` for the HUD, given the frames captured and processed so far."""
        return self._capture_rate.update(now, captured), self._infer_rate.update(now, processed)

    def summary(
        self, feeds: Sequence[Feed], *, recorded: int, encode_s: Sequence[float] = (), **job: Any
    ) -> dict[str, Any]:
        """The JSON-ready summary of the sources ``feeds`` (one, or all of a run), once every thread stopped.

        Args:
            feeds: the engine's sources this summary covers (their counts and decode/inference times).
            recorded: frames written to the recordings; ``encode_s``: their encoding seconds.
            **job: the job's own fields (input, output, display, model…), placed after
                :meth:`Stats.summary`'s and before the live figures.

        Returns:
            :func:`~live_seg.base.metrics.job_summary` with ``frames_in`` = captured, ``frames_out``
            = shown, ``fps`` = display fps, ``latency_ms`` per shown mask, then ``job``, then
            ``frames_captured`` / ``_inferred`` / ``_dropped`` / ``_shown`` / ``_recorded``,
            ``capture_fps`` (over the capture span), ``infer_fps``, ``display_fps``,
            ``infer_ms``, ``shown_infer_ms``, ``overhead_ms`` (p50/p95/max), ``masks_shown``
            (fresh / carried / held counts), ``mask_age_ms`` (p50/p95/max) and the medians
            of the run's thirds ``latency_thirds_ms``, ``infer_thirds_ms``, ``overhead_thirds_ms``.
        """
        stats = self.stats
        for stage in ("decode", "preprocess", "infer"):
            stats.stages[stage] = joined(f.stats.stages.get(stage, ()) for f in feeds)
        stats.stages["encode"] = array("d", encode_s)
        infer_s = joined(f.infer_s for f in feeds)
        captured = sum(f.frames_in for f in feeds)
        inferred = sum(f.slot.frames_processed for f in feeds)
        stats.frames_in = captured
        stats.latency = self.latency_s
        stats.interrupted = stats.stop_reason not in NORMAL_ENDS
        wall = stats.wall_s
        firsts = [f.first_capture for f in feeds if f.first_capture is not None]
        lasts = [f.last_capture for f in feeds if f.last_capture is not None]
        span = max(lasts) - min(firsts) if firsts else 0.0
        return job_summary(
            stats,
            **job,
            frames_captured=captured,
            frames_inferred=inferred,
            frames_dropped=sum(f.dropped for f in feeds),
            frames_shown=stats.frames_out,
            frames_recorded=recorded,
            capture_fps=round((captured - 1) / span, 3) if span > 0 else 0.0,
            infer_fps=round(inferred / wall, 3) if wall > 0 else 0.0,
            display_fps=round(stats.frames_out / wall, 3) if wall > 0 else 0.0,
            infer_ms=spread_ms(infer_s),
            shown_infer_ms=spread_ms(self.shown_infer_s),
            overhead_ms=spread_ms(self.overhead_s),
            masks_shown=dict(self.masks_shown),
            mask_age_ms=spread_ms(self.mask_age_s),
            latency_thirds_ms=thirds_ms(self.latency_s),
            infer_thirds_ms=thirds_ms(infer_s),
            overhead_thirds_ms=thirds_ms(self.overhead_s),
        )


def joined(parts: Any) -> array:
    out = samples()
    for part in parts:
        out.extend(part)
    return out
