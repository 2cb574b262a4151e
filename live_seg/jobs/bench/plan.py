"""Which configurations a benchmark runs (:func:`plan`, :func:`plan_backends`) and the report
row every configuration gets, measured or not (:func:`result_row`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ...base.errors import ModelError
from ...base.registry import ALL, AUTO, BACKENDS, INT8, OPENVINO_DEVICES
from ...model.segmenter import available_precisions, resolve_device, resolve_precision
from ...model.select import resolve_backend

log = logging.getLogger(__name__)

MEASURES = ("naive", "model_only", "pipeline")
ALL_DEVICES = ("cpu", "cuda", "mps")
NOT_AVAILABLE = "not available"
INT8_ONLY = "int8 runs on the OpenVINO runtime only; use --backend openvino"


def _wanted_devices(devices: Sequence[str]) -> list[str]:
    """Device requests with ``"all"`` and ``"auto"`` expanded, in order, each once."""
    wanted: list[str] = []
    for name in devices:
        for d in ALL_DEVICES if name == "all" else (name,):
            if d == "auto":
                d = resolve_device("auto")
            if d not in wanted:
                wanted.append(d)
    return wanted


def plan(devices: Sequence[str], precisions: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """Expand device and precision requests into ``(device, precision, reason)`` rows.

    ``"all"`` devices means cpu, cuda and mps; ``"all"`` precisions means every precision the
    device runs; ``"auto"`` resolves as the other commands do. ``reason`` is ``None`` for a
    configuration that runs here, else why it is not available.
    """
    rows: list[tuple[str, str, str | None]] = []
    for device in _wanted_devices(devices):
        try:
            resolve_device(device)
        except ModelError as exc:
            rows.extend((device, p, str(exc)) for p in dict.fromkeys(precisions))
            continue
        done: list[str] = []
        for name in precisions:
            for p in available_precisions(device) if name == "all" else (name,):
                try:
                    p = p if p == INT8 and device in OPENVINO_DEVICES else resolve_precision(p, device)
                except ModelError as exc:
                    rows.append((device, p, str(exc)))
                    continue
                if p not in done:
                    done.append(p)
                    rows.append((device, p, None))
    return rows


def plan_backends(device: str, backends: Sequence[str], precision: str | None = None) -> list[tuple[str, str | None]]:
    """Expand backend requests for a device into ``(backend, reason)``: ``"all"`` is every runtime
    that runs ``device``, ``"auto"`` resolves as the other commands do; ``reason`` says why one
    does not run there (``None`` when it does), or does not run ``precision`` (int8: OpenVINO only)."""
    rows: dict[str, str | None] = {}
    for name in backends:
        for b in [x for x in BACKENDS if x != AUTO] if name == ALL else (name,):
            try:
                b = resolve_backend(b, device)
            except ModelError as exc:
                if name != ALL:
                    rows.setdefault(b, str(exc))
                continue
            rows.setdefault(b, INT8_ONLY if precision == INT8 and b != "openvino" else None)
    return list(rows.items())


def result_row(
    device: str,
    precision: str,
    model: str,
    status: str,
    reason: str | None = None,
    backend: str = "torch",
    batch: int = 1,
) -> dict[str, Any]:
    """A report row with every key of the schema; measurements and ratios ``None`` until filled."""
    return {
        "device": device,
        "backend": backend,
        "precision": precision,
        "model": model,
        "batch": batch,
        "status": status,
        "reason": reason,
        **dict.fromkeys(MEASURES),
        "pipeline_vs_naive": None,
        "pipeline_vs_model_only": None,
        "vs_fp32": None,
        "workers": None,
        "worker_threads": None,
    }


def not_available(
    device: str, precision: str, model: str, reason: str, backend: str, batches: Sequence[int]
) -> list[dict[str, Any]]:
    log.info("%s %s %s %s: %s (%s)", device, backend, precision, model, NOT_AVAILABLE, reason)
    return [result_row(device, precision, model, NOT_AVAILABLE, reason, backend, b) for b in batches]
