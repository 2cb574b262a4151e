"""The live run's figures: counts, per-mask timings, the HUD's rates and the run's summary.

Each figure has one writer: the capture thread counts frames read (:meth:`LiveMetrics.captured`),
the inference worker counts masks (:meth:`LiveMetrics.inferred_one`), the display times what
it shows (:meth:`LiveMetrics.shown`). The summary is read once every thread has stopped.

Latency is measured per mask: from the capture of the frame the mask was computed on to the
moment that mask is first shown. Its part that is not the mask's own inference (waiting for
the worker, then for the display) is the *overhead*: what a queue would make grow.
"""

from __future__ import annotations

import logging
from typing import Any

from ...base.frames import FramePacket, SegResult
from ...base.metrics import RateMeter, Stats, job_summary, samples, spread_ms, thirds_ms
from ...base.redact import redact_url

log = logging.getLogger(__name__)

MASK_KINDS = ("fresh", "carried", "held")
"""What mask a shown frame had: its own, an older one moved along the flow, an older one as it is."""
NORMAL_ENDS = frozenset({"duration", "quit", "window closed", "end of input"})
"""Stop reasons that are not an interruption."""


class LiveMetrics:
    """Counts and timings of one live run.

    Samples are kept in compact arrays (see :mod:`live_seg.base.metrics`): a run of hours keeps
    every sample in tens of MB.

    Attributes:
        stats: per-stage timings (``decode``, ``preprocess``, ``infer``, ``render``, ``show``,
            ``encode``), ``frames_out`` (frames shown), wall time and stop reason.
        inferred: masks computed.
        infer_s: preprocess + forward + argmax seconds per mask, in order.
        latency_s: capture → first shown, per shown mask.
        shown_infer_s: ``infer_s`` of the masks that were shown (those ``latency_s`` is on).
        overhead_s: ``latency_s`` minus the mask's own inference time.
        masks_shown: shown frames by the mask over them: ``fresh`` (computed on that frame),
            ``carried`` (an older frame's, moved along the optical flow), ``held`` (an older frame's
            as it is).
        mask_age_s: per shown frame with a mask, its capture time minus that of the frame the mask
            was computed on (0 for a fresh mask).
    """

    def __init__(self) -> None:
        self.stats = Stats()
        self.inferred = 0
        self.infer_s = samples()
        self.latency_s = samples()
        self.shown_infer_s = samples()
        self.overhead_s = samples()
        self.masks_shown = dict.fromkeys(MASK_KINDS, 0)
        self.mask_age_s = samples()
        self._capture_rate, self._infer_rate = RateMeter(), RateMeter()
        self._first_capture: float | None = None
        self._last_capture = 0.0

    def captured(self, packet: FramePacket) -> None:
        """A frame was read (capture thread)."""
        self.stats.add("decode", packet.decode_s)
        if self._first_capture is None:
            self._first_capture = packet.t_capture
        self._last_capture = packet.t_capture

    def inferred_one(self, result: SegResult) -> None:
        """A mask was computed (inference thread)."""
        self.stats.add("preprocess", result.preprocess_s)
        self.stats.add("infer", result.infer_s)
        self.infer_s.append(result.preprocess_s + result.infer_s)
        self.inferred += 1

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

    def rates(self, now: float, captured: int) -> tuple[float, float]:
        """Recent ``(capture fps, infer fps)`` for the HUD, given the frames captured so far."""
        return self._capture_rate.update(now, captured), self._infer_rate.update(now, self.inferred)

    def summary(self, *, captured: int, dropped: int, recorded: int, **job: Any) -> dict[str, Any]:
        """The run's JSON-ready summary, once every thread has stopped.

        Args:
            captured: frames read from the source.
            dropped: frames the worker never took (replaced by a newer one, or left at the end).
            recorded: frames written to the recording.
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
        stats.frames_in = captured
        stats.latency = self.latency_s
        stats.interrupted = stats.stop_reason not in NORMAL_ENDS
        wall = stats.wall_s
        span = self._last_capture - (self._first_capture or self._last_capture)
        return job_summary(
            stats,
            **job,
            frames_captured=captured,
            frames_inferred=self.inferred,
            frames_dropped=dropped,
            frames_shown=stats.frames_out,
            frames_recorded=recorded,
            capture_fps=round((captured - 1) / span, 3) if span > 0 else 0.0,
            infer_fps=round(self.inferred / wall, 3) if wall > 0 else 0.0,
            display_fps=round(stats.frames_out / wall, 3) if wall > 0 else 0.0,
            infer_ms=spread_ms(self.infer_s),
            shown_infer_ms=spread_ms(self.shown_infer_s),
            overhead_ms=spread_ms(self.overhead_s),
            masks_shown=dict(self.masks_shown),
            mask_age_ms=spread_ms(self.mask_age_s),
            latency_thirds_ms=thirds_ms(self.latency_s),
            infer_thirds_ms=thirds_ms(self.infer_s),
            overhead_thirds_ms=thirds_ms(self.overhead_s),
        )


def source_entry(src: Any) -> dict[str, Any]:
    """One source's figures for the summary's ``sources`` list (a :class:`~live_seg.jobs.live.session.Source`)."""
    feed, info = src.feed, src.reader.info
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
        "frames_recorded": src.recorder.frames if src.recorder is not None else 0,
        "output": str(src.recorder.output) if src.recorder is not None and src.recorder.output else None,
        "width": info.width if info is not None else None,
        "height": info.height if info is not None else None,
    }
    if feed is not None and feed.error is not None:
        entry["error"] = str(feed.error)
    return entry


def run_summary(session: Any, run: Any) -> dict[str, Any]:
    """The summary of a live run (a :class:`~live_seg.jobs.live.session.LiveSession` and its run):
    :meth:`LiveMetrics.summary` with the run's fields, then ``sources``.

    One source: the fields are its own (``input``, ``output``, ``width``…, ``reconnects``). Several:
    ``input`` names them all, ``output`` lists the recordings, counts and rates are totals, and the
    analysis fields are in each source's entry.
    """
    sources, mux = run.sources, run.threads.mux
    first = sources[0]
    info = first.reader.info
    multi = len(sources) > 1
    own: dict[str, Any] = {}
    if multi:
        outputs = [str(s.recorder.output) for s in sources if s.recorder is not None and s.recorder.output]
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
    seg = session.segmenter
    summary = session.metrics.summary(
        captured=sum(s.feed.slot.frames_in for s in sources if s.feed is not None),
        dropped=sum(s.feed.slot.dropped for s in sources if s.feed is not None),
        recorded=sum(s.recorder.frames for s in sources if s.recorder is not None),
        **own,
        setup_s=round(run.setup_s, 3),
        batch=round(mux.batched_frames / mux.batches, 3) if multi and mux.batches else 1,
        live=any(s.reader.info is None or s.reader.info.live for s in sources) or session.options.realtime,
        pairing=session.options.pairing,
        propagate=session.options.analysis.propagate if session.options.pairing == "newest" else None,
        display=run.display,
        url=session.url,
        reconnects=sum(s.feed.reconnects for s in sources if s.feed is not None),
        reconnect_attempts=sum(s.feed.reconnect_attempts for s in sources if s.feed is not None),
        frames_skipped_loading=sum(s.feed.slot.skipped_loading for s in sources if s.feed is not None),
        snapshots=list(session.snapshots),
        **(seg.describe() if seg is not None else {}),
        **({} if multi else first.analysis.summary()),
        **(session.events.summary() if session.events is not None else {}),
    )
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
