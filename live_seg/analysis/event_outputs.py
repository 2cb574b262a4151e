"""Where a run's event records go: ``--events`` (JSON lines) and ``--mqtt``, each sink on its own thread.

:class:`EventOutputs` is built from :class:`~live_seg.base.options.EventOptions` before the model
loads (a bad path, URL or missing library is a one-line error then) and shared by every source
of a run. A source gets its feed with :meth:`EventOutputs.source` and gives it each processed
frame, in frame order, from whatever thread processes that source::

    outputs = EventOutputs(options.events, overwrite=True)
    feed = outputs.source("rtsp://user:pw@cam/live", categories)   # credentials redacted here
    feed.frame(index, pts, mask, key=True, frame_hw=(720, 1280))   # per frame, never waits
    feed.end()                                                     # the source ended
    outputs.close()                                                # drains (bounded), finishes
    outputs.summary()                                              # for --stats

:meth:`SourceEvents.frame` does the cheap part on the caller's thread (the class shares, the
appear/leave decision) and queues the record on each sink's :class:`~live_seg.pipeline.sinks.SinkThread`,
whose queue drops its oldest item when the sink falls behind; the JSON line and the masks'
run-length encoding are made on a sink's thread (:class:`~live_seg.analysis.events.FrameRecord`).
MQTT topics: ``PREFIX/<source>/frame`` (every ``--events-every``-th record of the source),
``PREFIX/<source>/event`` (``new``/``end``), ``PREFIX/available`` (see :mod:`live_seg.media.mqtt`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..base.errors import LiveSegError, UsageError
from ..base.frames import Mask
from ..base.options import EventOptions
from ..media.camera import redact_url
from ..media.jsonl import STDOUT, JsonLines
from ..media.mqtt import MqttPublisher, MqttTarget, topic_segment
from ..pipeline.sinks import SinkThread
from .events import FrameRecord, Presence, class_shares, coco_rle, frame_fields

log = logging.getLogger(__name__)

Message = tuple[str, "FrameRecord | bytes"]
"""What the MQTT sink publishes: a topic and a record (its payload made on the sink's thread) or bytes."""


def source_topic(name: str) -> str:
    """The topic level of a (redacted) source: a URL's text, a file path's file name, made safe."""
    if "://" not in name and ("/" in name or "\\" in name):
        name = Path(name).name
    return topic_segment(name)


class SourceEvents:
    """One source's feed into the event outputs (made by :meth:`EventOutputs.source`).

    Feed it from one thread at a time, in frame order.

    Attributes:
        name: the source, credentials redacted (the records' ``source``).
        topic: its MQTT topic level.
    """

    def __init__(self, outputs: EventOutputs, name: str, topic: str, categories: Sequence[str]) -> None:
        self.outputs = outputs
        self.name = name
        self.topic = topic
        self.categories = list(categories)
        self.presence = Presence(outputs.options.event_threshold, outputs.options.event_frames)
        self.frames = 0
        self.last: dict[str, Any] | None = None

    def frame(
        self, index: int, pts: float, mask: Mask, *, key: bool, frame_hw: tuple[int, int], wall: float | None = None
    ) -> None:
        """Record one processed frame; never waits for a sink.

        Args:
            index: the frame's index in its source (0-based, rising).
            pts: its time in seconds from the source's start.
            mask: ``(h, w)`` uint8 class ids (any size; the model's is fine); copied when masks
                are encoded (on a sink's thread), so the caller may reuse its buffer.
            key: the network ran on this frame (False: its mask was carried from a key frame).
            frame_hw: the source frame's ``(height, width)``.
            wall: its wall-clock time (``time.time()``; default: now).
        """
        out = self.outputs
        fields = frame_fields(self.name, index, pts, time.time() if wall is None else wall, key, frame_hw)
        fields["coverage"] = class_shares(mask, self.categories)
        record = FrameRecord(fields, mask.copy() if out.masks else None, self.categories)
        if out.lines is not None:
            out.lines.put(record)
        if out.mqtt is not None:
            if self.frames % out.options.events_every == 0:
                out.mqtt.put((out.topic(self.topic, "frame"), record))
            self._publish(self.presence.update(fields["coverage"]), fields)
        self.frames += 1
        self.last = fields

    def end(self) -> None:
        """The source ended: ``end`` events for the classes still present (MQTT)."""
        if self.last is not None:
            self._publish(self.presence.end(), self.last)

    def _publish(self, events: Sequence[Any], fields: dict[str, Any]) -> None:
        if self.outputs.mqtt is None:
            return
        for event in events:
            self.outputs.events += 1
            self.outputs.mqtt.put((self.outputs.topic(self.topic, "event"), event.payload(fields)))


class EventOutputs(contextlib.AbstractContextManager["EventOutputs"]):
    """The JSON-lines and MQTT sinks of one run (see the module).

    Args:
        options: what to produce (nothing when ``options.wanted`` is False).
        overwrite: replace an existing ``--events`` file.
        keep_partial: a run cut short keeps its lines (else the file is discarded).

    Raises:
        UsageError: an option out of range, or a bad ``--mqtt`` URL.
        OutputError: the file cannot be written, or a library the options need is missing.
    """

    def __init__(self, options: EventOptions, overwrite: bool = False, keep_partial: bool = True) -> None:
        try:
            options.check()
            target = MqttTarget.parse(options.mqtt) if options.mqtt is not None else None
        except ValueError as exc:
            raise UsageError(f"events: {exc}") from exc
        self.options = options
        self.keep_partial = keep_partial
        self.masks = options.events_masks == "rle"
        if self.masks:
            coco_rle()  # missing: an error now, not on the sink's thread
        self.events = 0
        self.closed = False
        self.path: Path | None = None
        self.writer: JsonLines | None = None
        self.lines: SinkThread[FrameRecord] | None = None
        self.publisher: MqttPublisher | None = None
        self.mqtt: SinkThread[Message] | None = None
        self._topics: set[str] = set()
        try:
            self._open(options, target, overwrite)
        except BaseException:
            self.abort()
            raise

    def _open(self, options: EventOptions, target: MqttTarget | None, overwrite: bool) -> None:
        if options.events is not None:
            stop = threading.Event()  # a write waiting on a stalled pipe gives up when the sink stops
            self.writer = JsonLines(options.events, overwrite=overwrite, stop=stop)
            self.lines = SinkThread("events", self._write, stop=stop)
        if target is not None:
            self.publisher = MqttPublisher(target)
            self.mqtt = SinkThread("mqtt", self._send)

    def __bool__(self) -> bool:
        return self.lines is not None or self.mqtt is not None

    def _write(self, record: FrameRecord) -> bool:
        assert self.writer is not None
        return self.writer.write(record.line())

    def _send(self, message: Message) -> bool:
        assert self.publisher is not None
        topic, payload = message
        if not self.publisher.connected:  # refused anyway: not worth making the JSON (a broker that is away)
            return False
        return self.publisher.publish(topic, payload if isinstance(payload, bytes) else payload.payload())

    def topic(self, *levels: str) -> str:
        """``PREFIX/levels...`` on the MQTT broker."""
        assert self.publisher is not None
        return self.publisher.target.topic(*levels)

    def source(self, name: str, categories: Sequence[str]) -> SourceEvents:
        """A feed for the source ``name`` (a path, URL or camera; credentials are redacted) whose
        masks hold ``categories`` (index = class id). Each source gets its own MQTT topic level."""
        shown = redact_url(name)
        base = topic = source_topic(shown)
        n = 1
        while topic in self._topics:
            n += 1
            topic = f"{base}-{n}"
        self._topics.add(topic)
        return SourceEvents(self, shown, topic, categories)

    def close(self, complete: bool = True) -> None:
        """Hand the queued records to the sinks (each for a bounded time), then finish the file
        and the connection. A run cut short (``complete`` False) keeps its lines unless it was
        built with ``keep_partial=False``. Safe to call again.

        Raises:
            LiveSegError: the first sink that failed (the others are finished).
        """
        if self.closed:
            return
        self.closed = True
        first: LiveSegError | None = None
        for sink in (self.lines, self.mqtt):
            try:
                if sink is not None:
                    sink.close()
            except LiveSegError as exc:
                first = first or exc
        if self.publisher is not None:
            self.publisher.close()
            log.info("MQTT: %d messages published, %d dropped", self.publisher.published, self.dropped_mqtt)
        if self.writer is not None:
            try:
                if complete or self.keep_partial:
                    self.path = self.writer.close(complete)
                else:
                    self.writer.abort()
            except LiveSegError as exc:
                first = first or exc
        if first is not None:
            raise first

    def abort(self) -> None:
        """End the sinks without waiting for their queues and drop the file (a failed run)."""
        if self.closed:
            return
        self.closed = True
        for sink in (self.lines, self.mqtt):
            if sink is not None:
                with contextlib.suppress(LiveSegError):  # the run's own error is the one to report
                    sink.close(0)
        if self.publisher is not None:
            self.publisher.close()
        if self.writer is not None:
            self.writer.abort()

    def __exit__(self, exc_type: object, *_rest: object) -> None:
        """A block that raised: close quietly (keeping the lines with ``keep_partial``), else close."""
        if exc_type is None:
            self.close()
        elif self.keep_partial:
            with contextlib.suppress(LiveSegError):
                self.close(complete=False)
        else:
            self.abort()

    @property
    def dropped_mqtt(self) -> int:
        """MQTT messages dropped: by the sink's queue or refused by the client (both counted by
        the sink), or handed to the client and lost."""
        assert self.mqtt is not None and self.publisher is not None
        return self.mqtt.dropped + self.publisher.lost

    def summary(self) -> dict[str, Any]:
        """``events`` for ``--stats``: the file's ``path`` (``-``, or ``None`` without lines),
        ``lines`` and ``dropped``; MQTT's ``url``, ``published``, ``dropped``, ``events``
        (appear/leave) and ``connections``. Empty when no event output was asked for."""
        out: dict[str, Any] = {}
        if self.lines is not None:
            assert self.writer is not None
            path = STDOUT if self.writer.path is None else (str(self.path) if self.path else None)
            out["jsonl"] = {"path": path, "lines": self.writer.lines, "dropped": self.lines.dropped}
        if self.mqtt is not None:
            assert self.publisher is not None
            stats = self.publisher.stats()
            out["mqtt"] = {**stats, "dropped": self.dropped_mqtt, "events": self.events}
        return {"events": out} if out else {}
