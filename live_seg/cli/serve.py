"""Command line of ``live-seg serve``: start the page, print its URL with the token (to the terminal
only: the log and ``--stats`` never hold it), serve until Ctrl-C or ``--duration``, then write
``--stats`` and log one line per client.

Part of the command line (:mod:`live_seg.cli.main` dispatches here); the job itself is
:func:`live_seg.jobs.serve.run_serve`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ..base.errors import one_line
from ..base.files import written_beside
from ..base.options import AnalysisOptions, EventOptions, ModelOptions
from .args import effect_options, options_from
from .main import SIGNAL_EXIT, SignalGate

log = logging.getLogger(__name__)


def serve_options(args: argparse.Namespace) -> Any:
    """The :class:`~live_seg.jobs.serve.ServeOptions` of parsed ``serve`` arguments."""
    from ..jobs.serve import ServeOptions

    return options_from(
        ServeOptions,
        args,
        allowed_hosts=tuple(args.allow_host),
        effect=effect_options(args),
        analysis=options_from(AnalysisOptions, args),
        events=options_from(EventOptions, args),
    )


def _write_stats(path: str, stats: dict[str, Any]) -> None:
    try:
        with written_beside(Path(path)) as tmp:
            tmp.write_text(json.dumps(stats, indent=2) + "\n")
    except OSError as exc:
        log.error("cannot write stats to %s: %s", path, one_line(exc))


def cmd_serve(args: argparse.Namespace) -> int:
    """Run ``serve``; returns the exit code (0, or the signal's code after Ctrl-C / SIGTERM)."""
    from ..jobs.serve import run_serve
    from ..pipeline.threads import Control

    gate = SignalGate(Control())
    model = options_from(ModelOptions, args)

    def ready(url: str) -> None:
        print(f"serve: open {url}", flush=True)

    options = serve_options(args)
    summary: dict[str, Any] = {}
    try:
        with gate.installed():
            run_serve(options, control=gate.control, on_ready=ready, summary=summary, model=model)
    finally:
        if args.stats and summary:  # also when it failed while serving
            _write_stats(args.stats, {**summary, "interrupted": gate.signum is not None})
    for client in summary["clients"]:
        lat = client["latency_ms"]
        log.info(
            "%s: %d frames received, %d segmented, %d sent in %.1f s; latency p50 %s ms, p95 %s ms",
            client["name"],
            client["frames_received"],
            client["frames_processed"],
            client["frames_sent"],
            client["connected_s"],
            lat["p50"],
            lat["p95"],
        )
    log.info("served %d client(s) in %.1f s (%s)", len(summary["clients"]), summary["wall_s"], summary["stop_reason"])
    return SIGNAL_EXIT[gate.signum] if gate.signum is not None else 0
