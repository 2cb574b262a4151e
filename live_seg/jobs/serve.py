"""``live-seg serve``: browsers send their camera over WebRTC, this machine segments it and sends it back.

One model serves every client: each client's frames go into its own newest-frame slot of a
:class:`~live_seg.pipeline.multiplex.Multiplexer`, which batches the clients whose frames wait;
each client renders its results with its own settings (effect, classes, view, legend), changed
from its page. Nothing queues: a frame the model had no time for is replaced by the next one, so
latency stays flat however slow the model is. With ``--smooth ema`` each client has its own smoother
(the model then gives class probabilities; :mod:`live_seg.analysis.run`), stepped on the inference
thread in the client's frame order.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..analysis.run import RunAnalysis
from ..base.errors import LiveSegError, PipelineError, UsageError, one_line
from ..base.frames import Frame, FramePacket, SegResult
from ..base.options import AnalysisOptions, ModelOptions, model_options
from ..base.registry import DEFAULT_ALPHA, EFFECTS, VIEWS, VOC_CLASSES
from ..media.serve_page import serve_page
from ..media.web_security import WebPolicy, resolve_token
from ..media.webrtc import MAX_SIDE, WebRTCServer, require
from ..media.webrtc_client import WebClient
from ..pipeline.multiplex import Multiplexer, Slot
from ..pipeline.threads import Control
from ..render.effects import Effect, EffectOptions
from ..render.renderer import Renderer

log = logging.getLogger(__name__)

DEFAULT_PORT = 8443
MAX_FINISHED = 1000
"""Clients that left whose summaries the run keeps for ``--stats`` (the newest ones)."""


@dataclass
class ServeOptions:
    """Settings of a ``serve`` run (the CLI's flags).

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
        analysis: temporal smoothing (``smooth``, ``smooth_strength``), per client; no files.
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
        smoothing = AnalysisOptions(smooth=self.analysis.smooth, smooth_strength=self.analysis.smooth_strength)
        if self.analysis != smoothing:
            raise UsageError("serve takes the smoothing of the analysis options only (no mask files, no key frames)")


def classes_text(effect: EffectOptions) -> str:
    """The effect's classes as the page's text field shows them (empty: the default)."""
    classes = effect.classes
    return (classes if isinstance(classes, str) else ",".join(classes)) if classes else ""


class ClientView:
    """One client's side of the job: its slot in the multiplexer and its own renderer.

    Args:
        client: the transport's client (counts, results).
        slot: the client's newest-frame slot.
        categories: the model's class names.
        options: the run's first settings.
        on_close: called once when the client leaves.
    """

    def __init__(
        self, client: WebClient, slot: Slot, categories: list[str], options: ServeOptions, on_close: Callable[[], None]
    ) -> None:
        self.client, self.slot, self.categories, self.options = client, slot, categories, options
        self._on_close = on_close
        self._lock = threading.Lock()
        self._effect_options = options.effect
        self._renderer = Renderer(categories, options.palette, options.alpha, options.legend, options.view,
                                  self._build(options.effect))  # fmt: skip
        self._closed = False

    def _build(self, effect: EffectOptions) -> Effect:
        return effect.build(self.categories, self.options.palette, self.options.alpha, flat=True)

    def offer(self, packet: FramePacket) -> None:
        self.slot.offer(packet)

    def render(self, result: SegResult) -> Frame:
        with self._lock:
            return self._renderer.render(result.packet.image, result.mask, soft=result.soft)

    def settings(self) -> dict[str, Any]:
        """The client's rendering settings now."""
        r, fx = self._renderer, self._effect_options
        return {"effect": fx.name, "view": r.mode, "legend": r.legend, "classes": classes_text(fx)}

    def control(self, message: dict[str, Any]) -> dict[str, Any]:
        """Apply the page's settings (``effect``, ``classes``, ``view``, ``legend``); a bad one is
        refused with ``error`` and changes nothing."""
        try:
            view = message.get("view", self._renderer.mode)
            if view not in VIEWS:
                raise ValueError(f"unknown view {view!r}")
            classes = message.get("classes", self._effect_options.classes)
            wanted = dataclasses.replace(
                self._effect_options,
                name=message.get("effect", self._effect_options.name),
                classes=str(classes).strip() or None if classes is not None else None,
            )
            effect = self._build(wanted) if wanted != self._effect_options else None
        except (ValueError, LiveSegError) as exc:  # UsageError: an unknown class name
            return {**self.settings(), "error": one_line(exc)}
        with self._lock:
            r = self._renderer
            r.mode, r.legend = view, bool(message.get("legend", r.legend))
            if effect is not None:
                old, r.effect, self._effect_options = r.effect, effect, wanted
                if old is not None:
                    old.close()
        return self.settings()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_close()
        with self._lock:
            if self._renderer.effect is not None:
                self._renderer.effect.close()

    def summary(self) -> dict[str, Any]:
        return {**self.client.summary(), "dropped": self.slot.dropped}


class ServeJob:
    """One ``serve`` run (see :func:`run_serve`).

    Attributes:
        views: the clients connected now (a client that leaves is removed: its renderer is freed).
        finished: the summaries of the last :data:`MAX_FINISHED` clients that left.
    """

    def __init__(self, options: ServeOptions, segmenter: Any, control: Control) -> None:
        self.options, self.segmenter, self.control = options, segmenter, control
        self.views: list[ClientView] = []
        self.finished: deque[dict[str, Any]] = deque(maxlen=MAX_FINISHED)
        model = RunAnalysis(options.analysis, categories=segmenter.categories).model(segmenter)  # scores to smooth
        self.mux = Multiplexer(model, control, max_batch=options.max_batch)
        page = serve_page("live_seg serve", EFFECTS, VIEWS, effect=options.effect.name, view=options.view,
                          legend=options.legend, classes=classes_text(options.effect))  # fmt: skip
        token = resolve_token(options.token, options.token_file)  # a per-run one when none is given
        policy = WebPolicy.for_bind(options.host, token, options.allowed_hosts, tls=options.cert is not None,
                                    max_clients=options.max_clients)  # fmt: skip
        self.server = WebRTCServer(policy, page, self.connect, port=options.port, cert=options.cert,
                                   key=options.key, max_side=options.max_side)  # fmt: skip

    def connect(self, client: WebClient) -> ClientView:
        """A new client: a slot in the multiplexer and a renderer of its own."""
        refine = RunAnalysis(self.options.analysis, categories=self.segmenter.categories).refine  # its own smoother
        slot = self.mux.add(client.name, client.deliver if refine is None else lambda r: client.deliver(refine(r)))

        def closed() -> None:
            self.mux.remove(client.name)
            self.views.remove(view)
            self.finished.append(view.summary())

        view = ClientView(client, slot, list(self.segmenter.categories), self.options, closed)
        self.views.append(view)
        return view

    def wait(self, t_start: float) -> None:
        """Until stopped, the duration is over, or the web server's thread ended."""
        duration = self.options.duration
        while not self.control.stopping.wait(0.1):
            if duration is not None and time.perf_counter() - t_start >= duration:
                self.control.stop("duration reached")
            if not self.server.alive:
                raise PipelineError("the web server stopped unexpectedly")

    def summary(self, t_start: float) -> dict[str, Any]:
        mux = self.mux
        return {
            "url": self.server.policy.url("/", with_token=False),
            "https": self.server.policy.tls,
            "token": self.server.policy.token is not None,
            "clients": [*self.finished, *(v.summary() for v in self.views)],
            "clients_served": self.server.served,
            "batches": mux.batches,
            "mean_batch": round(mux.batched_frames / mux.batches, 3) if mux.batches else None,
            "wall_s": round(time.perf_counter() - t_start, 3),
            "stop_reason": self.control.reason,
            "smooth": self.options.analysis.smooth,
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
    # the token file is read now: a bad one fails before the model loads
    options = dataclasses.replace(options, token=resolve_token(options.token, options.token_file), token_file=None)
    control = control or Control()
    seg = segmenter or segmenter_for(model, mode="latency")
    summary = {} if summary is None else summary
    with job_runtime(seg):
        job = ServeJob(options, seg, control)
        job.mux.start()
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
                job.mux.close()
            finally:
                if t_start is not None:
                    summary.update(job.summary(t_start))
    return summary
