"""The live run's figures: counts, per-mask timings, the HUD's rates and the run's summary.

Each figure has one writer: the engine counts and times each source's frames read and masks computed
(:class:`~live_seg.pipeline.engine.Feed`), the display times what it shows (:meth:`LiveMetrics.shown`),
each recording its encoding. The summary (:func:`run_summary`, from a :class:`RunFacts`) is read once
every thread has stopped.

Latency is measured per mask: from the capture of the frame the mask was computed on to the
moment that mask is first shown. Its part that is not the mask's own inference (waiting for
the worker, then for the display) is the *overhead*: what a queue would make grow.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...base.frames import SegResult
from ...base.metrics import RateMeter, Stats, job_summary, samples, spread_ms, thirds_ms
from ...base.redact import redact_url

if TYPE_CHECKING:
    from ...pipeline.engine import Feed
    from .sources import Source

log = logging.getLogger(__name__)

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
            stats.stages[stage] = _joined(f.stats.stages.get(stage, ()) for f in feeds)
        stats.stages["encode"] = array("d", encode_s)
        infer_s = _joined(f.infer_s for f in feeds)
        captured = sum(f.slot.frames_in for f in feeds)
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
            frames_dropped=sum(f.slot.dropped for f in feeds),
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


def _joined(parts: Any) -> array:
    out = samples()
    for part in parts:
        out.extend(part)
    return out


@dataclass(frozen=True)
class RunFacts:
    """What a live run's summary is made of, gathered once every thread stopped (see :func:`run_summary`).

    Attributes:
        sources: the run's sources (reader, engine feed, recording, analysis, display figures).
        metrics: the run's display figures (the first source's own with one source).
        batches, batched_frames: the inference thread's steps and the frames they ran.
        setup_s: seconds from the start to the first inference step (sources opened, model loaded).
        live: a source is live (a camera or stream, or a file played in real time).
        pairing, propagate: how masks were paired with frames (``propagate``: ``None`` with matched pairing).
        display: ``window``, ``browser`` or ``none``; ``url``: the browser view's address, without its token.
        snapshots: the PNGs key s saved.
        model: the model's description (name, device, precision...).
        events: the event outputs' figures (``events``, ``mqtt``...).
    """

    sources: Sequence[Source]
    metrics: LiveMetrics
    batches: int
    batched_frames: int
    setup_s: float
    live: bool
    pairing: str
    propagate: str | None
    display: str
    url: str | None
    snapshots: Sequence[str]
    model: dict[str, Any]
    events: dict[str, Any]


def source_entry(src: Source) -> dict[str, Any]:
    """One source's figures for the summary's ``sources`` list."""
    feed, info, recorder = src.feed, src.reader.info, src.recorder
    slot = feed.slot if feed is not None else None
    entry: dict[str, Any] = {
        "source": redact_url(getattr(src.reader, "name", src.spec)),
        "name": src.name,
        "state": feed.state if feed is not None else "failed",
        "frames_in": slot.frames_in if slot is not None else 0,
        "frames_processed": slot.frames_processed if slot is not None else 0,
        "dropped": slot.dropped if slot is not None else 0,
        "skipped_loading": slot.skipped_loading if slot is not None else 0,
        "reconnects": feed.reconnects if feed is not None else 0,
        "reconnect_attempts": feed.reconnect_attempts if feed is not None else 0,
        "latency_ms": {k: v for k, v in spread_ms(src.metrics.latency_s).items() if k != "max"},
        "frames_shown": src.metrics.stats.frames_out,
        "frames_recorded": recorder.frames if recorder is not None else 0,
        "output": str(recorder.output) if recorder is not None and recorder.output else None,
        "width": info.width if info is not None else None,
        "height": info.height if info is not None else None,
        "sinks": src.sink_stats(),
    }
    if feed is not None and feed.carried:
        entry.update(frames_carried=feed.carried, carry_dropped=feed.carry_dropped)
    if feed is not None and feed.error is not None:
        entry["error"] = str(feed.error)
    return entry


def run_summary(facts: RunFacts) -> dict[str, Any]:
    """The summary of a live run: :meth:`LiveMetrics.summary` with the run's fields, then ``sources``.

    One source: the fields are its own (``input``, ``output``, ``width``…, ``reconnects``, ``sinks``).
    Several: ``input`` names them all, ``output`` lists the recordings, counts and rates are totals,
    and the analysis fields and sinks are in each source's entry.
    """
    sources = facts.sources
    first = sources[0]
    info = first.reader.info
    multi = len(sources) > 1
    feeds = [s.feed for s in sources if s.feed is not None]
    recorders = [s.recorder for s in sources if s.recorder is not None]
    own: dict[str, Any] = {}
    if multi:
        outputs = [str(r.output) for r in recorders if r.output]
        names = (redact_url(getattr(s.reader, "name", s.spec)) for s in sources)
        own.update(input=" + ".join(names), output=outputs or None)
    else:
        output = first.recorder.output if first.recorder is not None else None
        own.update(
            input=redact_url(info.name if info is not None else first.spec),
            output=str(output) if output else None,
            width=info.width if info is not None else None,
            height=info.height if info is not None else None,
            source_fps=round(info.fps, 3) if info is not None else 0.0,
            audio=False,
            skipped_packets=getattr(first.reader, "skipped_packets", 0),
            truncated_input=getattr(first.reader, "truncated", False),
        )
    fields = dict(
        own,
        setup_s=round(facts.setup_s, 3),
        batch=round(facts.batched_frames / facts.batches, 3) if multi and facts.batches else 1,
        live=facts.live,
        pairing=facts.pairing,
        propagate=facts.propagate,
        display=facts.display,
        url=facts.url,
        reconnects=sum(f.reconnects for f in feeds),
        reconnect_attempts=sum(f.reconnect_attempts for f in feeds),
        frames_skipped_loading=sum(f.slot.skipped_loading for f in feeds),
        snapshots=list(facts.snapshots),
    )
    fields |= facts.model
    if not multi:  # its analysis (the same propagate mode for key frames and the view) and sinks
        fields |= first.analysis.summary() | {"sinks": first.sink_stats()}
    fields |= facts.events
    recorded, encode_s = sum(r.frames for r in recorders), _joined(r.encode_s for r in recorders)
    summary = facts.metrics.summary(feeds, recorded=recorded, encode_s=encode_s, **fields)
    summary["sources"] = [source_entry(s) | ({"analysis": s.analysis.summary()} if multi else {}) for s in sources]
    return summary


def log_sources(summary: dict[str, Any]) -> None:
    """Log one line per source of a run of several (nothing for one source): state, counts, latency, recording."""
    if len(summary["sources"]) < 2:
        return
    for e in summary["sources"]:
        log.info("  %s: %s%s", e["name"], source_line(e), f", recorded {e['output']}" if e["output"] else "")


def source_line(e: dict[str, Any]) -> str:
    """One source's state, counts, reconnections and latency, in words (a summary's ``sources`` entry)."""
    tries = f"{e['reconnects']} reconnects ({e['reconnect_attempts']} attempts)"
    if not e["frames_in"]:
        return f"{e['state']}, never delivered a frame, {tries}"
    lat = e["latency_ms"]
    shown = f"latency p50 {lat['p50']} ms, p95 {lat['p95']} ms" if lat["p50"] is not None else "no mask shown"
    return (
        f"{e['state']}, {e['frames_in']} in, {e['frames_processed']} processed, {e['dropped']} dropped"
        f"{_loading(e['skipped_loading'])}, {tries}, {shown}"
    )


def _loading(skipped: int) -> str:
    return f" (+{skipped} while the model loaded)" if skipped else ""
