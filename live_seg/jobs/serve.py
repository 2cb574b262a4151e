"""``live-seg serve``: browsers send their camera over WebRTC, this machine segments it and sends it back.

A front-end over the stream engine (:class:`~live_seg.pipeline.engine.Engine`), as ``live`` is: each
client is a pushed source of the engine (its frames go into its own newest-frame slot; one inference
thread batches the clients whose frames wait) and gets the same per-source view as a camera's tile
(:class:`~live_seg.jobs.live.tile.Tile`: its own renderer, changed from its page). Nothing queues: a
frame the model had no time for is replaced by the next one, so latency stays flat however slow the
model is.

The analysis options work per client, as per camera in ``live``: ``--smooth ema`` (its own smoother;
the model then gives class probabilities), ``--key-interval N`` with ``--cut-keys`` (the network on
every N-th frame and on the first frame of a new scene, the masks carried along the optical flow in
between, so every frame the browser sends comes back painted), ``--coverage``, ``--masks``,
``--mask-video`` (``FILE-client-N.csv``, ``DIR/client-N/``...) and ``--events``/``--mqtt`` (one record
per client and processed frame; the source is the client's name). Each of those outputs is a sink on a
thread of its own: a slow disk or broker never slows the model or the other clients.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.event_outputs import EventOutputs
from ..analysis.run import RunAnalysis, model_for
from ..base.errors import LiveSegError, OutputError, PipelineError, UsageError
from ..base.options import AnalysisOptions, EventOptions, ModelOptions, model_options
from ..base.registry import DEFAULT_ALPHA, EFFECTS, VIEWS, VOC_CLASSES
from ..media.serve_page import serve_page
from ..media.web_security import WebPolicy, resolve_token
from ..media.webrtc import MAX_SIDE, WebRTCServer, require
from ..media.webrtc_client import WebClient
from ..pipeline.engine import Engine, Feed
from ..pipeline.sinks import SinkThread
from ..pipeline.threads import Control
from ..render.effects import EffectOptions
from .live.tile import Look, Tile, classes_text

log = logging.getLogger(__name__)

DEFAULT_PORT = 8443
MAX_FINISHED = 1000
"""Clients that left whose summaries the run keeps for ``--stats`` (the newest ones)."""
CLOSE_S = 30.0
"""At the end, how long the clients' files may take to be finished."""


@dataclass(frozen=True)
class ServeOptions:
    """Settings of a ``serve`` run (the CLI's flags): a frozen value, built once.

    Attributes:
        host: address to bind (beyond loopback: HTTPS and a token).
        port: TCP port (0: any free one).
        token: the token clients must show (``None``: from ``token_file``, ``$LIVE_SEG_TOKEN``, or
            generated for the run).
        token_file: a file holding the token (kept out of the process list, unlike ``token``).
        cert, key: HTTPS certificate and key files (``None``: a cached self-signed pair when needed).
        allowed_hosts: extra host names the server answers to (e.g. the machine's DNS name).
        max_clients: clients served at once.
        max_side: received frames are scaled down to this longer side.
        duration: stop by itself after this many seconds (``None``: until stopped).
        view, legend, palette, alpha, effect: every client's first rendering settings.
        max_batch: most clients' frames in one forward pass.
        analysis: smoothing, key frames and mask files, per client (files named after the client).
        events: per-frame event records (``--events``, ``--mqtt``), one feed per client.
        overwrite: replace existing analysis and event files.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    token_file: str | None = None
    cert: str | None = None
    key: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_clients: int = 4
    max_side: int = MAX_SIDE
    duration: float | None = None
    view: str = VIEWS[0]
    legend: bool = True
    palette: str = "voc"
    alpha: float = DEFAULT_ALPHA
    effect: EffectOptions = field(default_factory=EffectOptions)
    max_batch: int = 8
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    events: EventOptions = field(default_factory=EventOptions)
    overwrite: bool = False

    def check(self, categories: Sequence[str] = VOC_CLASSES) -> None:
        """Raise ``ValueError`` (``UsageError``) for settings that cannot work."""
        if (self.cert is None) != (self.key is None):
            raise UsageError("--cert and --key go together")
        if self.token is not None and self.token_file is not None:
            raise UsageError("--token and --token-file go one at a time")
        if self.view not in VIEWS:
            raise ValueError(f"view: expected one of {', '.join(VIEWS)}, got {self.view!r}")
        for name, value in (("max_clients", self.max_clients), ("max_side", self.max_side)):
            if value < 1:
                raise ValueError(f"{name}: expected >= 1, got {value}")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration: expected > 0 seconds, got {self.duration}")
        self.effect.check(categories)
        self.analysis.check()
        self.events.check()
        for key, value in self.analysis.files.items():  # DIR/client-N/, FILE-client-N.csv: beside what was given
            if not Path(value).parent.is_dir():
                raise OutputError(f"--{key.replace('_', '-')} {value}: the folder {Path(value).parent} does not exist")


@dataclass(eq=False)
class ServedClient:
    """One browser client: the transport's client (counts), its engine feed, its view and its analysis."""

    client: WebClient
    feed: Feed
    tile: Tile
    analysis: RunAnalysis
    entry: dict[str, Any] = field(default_factory=dict)
    """Its summary as last taken (kept up to date: at connect, when it left, when its files were finished)."""

    def summary(self) -> dict[str, Any]:
        """Its entry in ``--stats``: the transport's counts, the frames the model never took, its sinks
        and analysis (key frames carried, files written)."""
        return {
            **self.client.summary(),
            "dropped": self.feed.dropped,
            "frames_carried": self.feed.carried,
            "sinks": self.analysis.sink_stats(),
            "analysis": self.analysis.summary(),
        }


class ServeJob:
    """One ``serve`` run (see :func:`run_serve`).

    Args:
        options: what to serve.
        segmenter: the model every client shares.
        control: stop requests.
        events: the run's event outputs (built before the model loads; closed by the job).

    Attributes:
        engine: the stream engine; each client is a pushed source of it.
        clients: the clients connected now (a client that leaves is removed: its renderer is freed,
            its files finished on the job's closing thread).
        finished: the summaries of the last :data:`MAX_FINISHED` clients that left.
    """

    def __init__(
        self, options: ServeOptions, segmenter: Any, control: Control, events: EventOutputs | None = None
    ) -> None:
        self.options, self.segmenter, self.control = options, segmenter, control
        self.events = events or EventOutputs(options.events, options.overwrite)
        self.clients: list[ServedClient] = []
        self.finished: deque[dict[str, Any]] = deque(maxlen=MAX_FINISHED)
        self.engine = Engine(control, keep_going=True, max_batch=options.max_batch)
        self.look = Look(tuple(segmenter.categories), options.palette, options.alpha, options.view, options.legend,
                         options.effect)  # fmt: skip
        masks = options.analysis.masks
        if masks is not None:
            Path(masks).mkdir(exist_ok=True)  # DIR/client-N/ per client
        self._closer: SinkThread[Callable[[], None]] | None = None
        page = serve_page("live_seg serve", EFFECTS, VIEWS, effect=options.effect.name, view=options.view,
                          legend=options.legend, classes=classes_text(options.effect))  # fmt: skip
        token = resolve_token(options.token, options.token_file)  # a per-run one when none is given
        policy = WebPolicy.for_bind(options.host, token, options.allowed_hosts, tls=options.cert is not None,
                                    max_clients=options.max_clients)  # fmt: skip
        self.server = WebRTCServer(policy, page, self.connect, port=options.port, cert=options.cert,
                                   key=options.key, max_side=options.max_side)  # fmt: skip

    @property
    def views(self) -> list[Tile]:
        """The connected clients' views."""
        return [c.tile for c in self.clients]

    def start(self) -> None:
        """Start the inference thread (with smoothing, the model gives its class probabilities)."""
        self.engine.start(model_for(self.options.analysis, self.segmenter))

    def connect(self, client: WebClient) -> Tile:
        """A new client: its analysis (files named after it), a pushed source of the engine, its view.

        Raises:
            OutputError: one of its files cannot be written (the client is refused).
        """
        name = client.name
        analysis_options = self.options.analysis.for_source(name)
        categories = self.segmenter.categories
        analysis = RunAnalysis(analysis_options, self.options.overwrite, name, categories, self.events, name,
                               threaded=True)  # fmt: skip
        feed = self.engine.add(name, steps=analysis.steps, sinks=(client,))
        served: ServedClient

        def closed() -> None:
            self.engine.remove(feed)
            self.clients.remove(served)
            self.finished.append(served.entry)
            if self._closer is None:  # a client's files are finished off the event loop, one client after the other
                self._closer = SinkThread("serve-close", lambda done: done(), size=MAX_FINISHED)
            self._closer.put(lambda: self._finish(served))

        try:
            tile = Tile(feed, self.look, on_close=closed)
        except BaseException:
            self.engine.remove(feed)
            analysis.abort()
            raise
        served = ServedClient(client, feed, tile, analysis)
        served.entry.update(served.summary())
        self.clients.append(served)
        return tile

    def _finish(self, served: ServedClient) -> None:
        """A client that left: finish its files (on the closing thread), then its final summary."""
        try:
            served.analysis.close()
        except LiveSegError as exc:
            log.error("%s: %s", served.client.name, exc)
        served.entry.update(served.summary())

    def wait(self, t_start: float) -> None:
        """Until stopped, the duration is over, or the web server's thread ended."""
        duration = self.options.duration
        while not self.control.stopping.wait(0.1):
            if duration is not None and time.perf_counter() - t_start >= duration:
                self.control.stop("duration reached")
            if not self.server.alive:
                raise PipelineError("the web server stopped unexpectedly")

    def close(self) -> None:
        """Stop the engine, finish every client's files and the event outputs (the web server first:
        every client leaves as it would on its own)."""
        try:
            self.engine.close()
        finally:
            for served in list(self.clients):
                self._finish(served)
            try:
                if self._closer is not None:
                    self._closer.close(CLOSE_S)
            finally:
                self.events.close(complete=True)

    def summary(self, t_start: float) -> dict[str, Any]:
        mux = self.engine.mux
        for served in self.clients:
            served.entry.update(served.summary())
        return {
            "url": self.server.policy.url("/", with_token=False),
            "https": self.server.policy.tls,
            "token": self.server.policy.token is not None,
            "clients": [*self.finished, *(c.entry for c in self.clients)],
            "clients_served": self.server.served,
            "batches": mux.batches,
            "mean_batch": round(mux.batched_frames / mux.batches, 3) if mux.batches else None,
            "wall_s": round(time.perf_counter() - t_start, 3),
            "stop_reason": self.control.reason,
            "smooth": self.options.analysis.smooth,
            "key_interval": self.options.analysis.key_interval,
            **self.events.summary(),
            **self.segmenter.describe(),
        }


def run_serve(
    options: ServeOptions,
    segmenter: Any = None,
    *,
    control: Control | None = None,
    on_ready: Callable[[str], None] | None = None,
    summary: dict[str, Any] | None = None,
    model: ModelOptions | str | None = None,
) -> dict[str, Any]:
    """Serve until stopped (``control.stop()``, e.g. by Ctrl-C) or ``options.duration`` is over.

    Args:
        options: what to serve (see :class:`ServeOptions`).
        segmenter: a ready model; ``None``: built from ``model``.
        control: stop requests.
        on_ready: called with the page's URL (with the token) once it is served.
        summary: filled with the run's summary on every exit path once it served, also when it
            raises (for ``--stats``).
        model: the model to build: a :class:`~live_seg.base.options.ModelOptions`, or a model's name.

    Returns:
        The run's summary: ``clients`` (one entry per client: ``frames_received``,
        ``frames_processed``, ``frames_sent``, ``dropped``, ``latency_ms`` ``p50``/``p95``; the last
        :data:`MAX_FINISHED` that left and those still connected), ``clients_served``,
        ``batches``, ``mean_batch``, ``wall_s``, ``url``, the model's description.

    Raises:
        LiveSegError: the model, the address or the certificate; an inference failure.
    """
    from ..model.select import job_runtime, segmenter_for

    model = model_options(model)
    options.check(segmenter.categories if segmenter is not None else model.spec().categories)
    require()
    # the token file is read now, the events file and broker URL checked: a bad one fails before the model loads
    options = dataclasses.replace(options, token=resolve_token(options.token, options.token_file), token_file=None)
    events = EventOutputs(options.events, options.overwrite)
    control = control or Control()
    summary = {} if summary is None else summary
    try:
        seg = segmenter or segmenter_for(model, mode="latency")
    except BaseException:
        events.abort()
        raise
    with job_runtime(seg):
        try:
            job = ServeJob(options, seg, control, events)
        except BaseException:
            events.abort()
            raise
        job.start()
        t_start: float | None = None
        try:
            job.server.start()
            t_start = time.perf_counter()
            log.info("serving on %s", job.server.policy.url("/", with_token=False))  # the token: on_ready only
            if on_ready is not None:
                on_ready(job.server.url)
            job.wait(t_start)
        finally:
            try:
                job.server.close()
                job.close()
            finally:
                if t_start is not None:
                    summary.update(job.summary(t_start))
    return summary
