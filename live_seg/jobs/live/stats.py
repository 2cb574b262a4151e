"""The live run's summary (``--stats``) and its per-source lines in the log.

Each figure has one writer: the engine counts and times each source's frames read and masks computed
(:class:`~live_seg.pipeline.engine.Feed`), the display times what it shows
(:class:`~live_seg.jobs.live.metrics.LiveMetrics`), each recording its encoding, each sink its items. The
summary (:func:`run_summary`, from a :class:`RunFacts`) is read once every thread has stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...base.metrics import spread_ms
from ...base.redact import redact_url
from .metrics import NORMAL_ENDS, LiveMetrics, joined
from .sources import Source

__all__ = ["NORMAL_ENDS", "LiveMetrics", "RunFacts", "log_sources", "run_summary", "source_entry"]

log = logging.getLogger(__name__)


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
        "frames_in": feed.frames_in if feed is not None else 0,
        "frames_processed": feed.delivered if feed is not None else 0,
        "dropped": feed.dropped if feed is not None else 0,
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
    recorded, encode_s = sum(r.frames for r in recorders), joined(r.encode_s for r in recorders)
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
