"""Choosing the inference runtime: torch (every device) or OpenVINO (the CPU).

:func:`build_segmenter` is what the jobs call: it resolves ``backend="auto"`` (OpenVINO on the
CPU, torch on CUDA and MPS, see :data:`live_seg.registry.AUTO_BACKEND`) and returns an object with
:class:`live_seg.model.Segmenter`'s interface. ``Segmenter(...)`` itself stays the torch runtime.
"""

from __future__ import annotations

import logging
from typing import Any

from .errors import ModelError
from .model import Segmenter, resolve_device
from .registry import (
    AUTO,
    AUTO_BACKEND,
    BACKENDS,
    DEFAULT_MODEL,
    DEFAULT_WEIGHTS,
    OPENVINO_DEVICES,
    OPENVINO_MODES,
)

log = logging.getLogger(__name__)


def resolve_backend(backend: str, device: str) -> str:
    """``"auto" | "torch" | "openvino"`` → the runtime for the concrete ``device``.

    Raises:
        ModelError: an unknown name, or OpenVINO asked for a device it does not run here.
    """
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == AUTO:
        return AUTO_BACKEND[device]
    if backend == "openvino" and device not in OPENVINO_DEVICES:
        raise ModelError(f"the openvino backend runs on the CPU, not {device}; use --device cpu or --backend torch")
    return backend


def build_segmenter(
    model: str = DEFAULT_MODEL,
    weights: str = DEFAULT_WEIGHTS,
    device: str = AUTO,
    precision: str = AUTO,
    size: int = 512,
    threads: int | None = None,
    backend: str = AUTO,
    mode: str = "throughput",
    cache_dir: str | None = None,
) -> Any:
    """A segmenter on the chosen runtime, with :class:`live_seg.model.Segmenter`'s interface.

    Args:
        model, weights, device, precision, size, threads: as for :class:`~live_seg.model.Segmenter`
            (``threads`` is ignored by OpenVINO, which runs its own threads).
        backend: a :data:`~live_seg.registry.BACKENDS` name.
        mode: ``"throughput"`` (file runs) or ``"latency"`` (live, one image); OpenVINO only.
        cache_dir: OpenVINO's cache root (default ``$XDG_CACHE_HOME/live_seg/openvino``; ``""``: none).

    Returns:
        A :class:`~live_seg.model.Segmenter` (torch) or a
        :class:`~live_seg.ov_backend.OpenVinoSegmenter`.

    Raises:
        ModelError: a bad name, weights that cannot be had, OpenVINO missing or unable to compile
            (one line naming ``--backend torch``).
    """
    concrete = resolve_backend(backend, resolve_device(device))
    if concrete == "torch":
        return Segmenter(model, weights=weights, device=device, precision=precision, size=size, threads=threads)
    if mode not in OPENVINO_MODES:
        raise ModelError(f"unknown mode {mode!r}; choose one of {', '.join(OPENVINO_MODES)}")
    from . import ov_backend  # imports openvino: only when it runs

    ov_backend.require()
    precision = ov_backend.resolve_precision(precision)
    reference = Segmenter(model, weights=weights, device="cpu", precision="fp32", size=size)
    return ov_backend.OpenVinoSegmenter(
        reference.module,
        name=model,
        categories=reference.categories,
        weights=weights,
        size=size,
        precision=precision,
        mode=mode,
        cache_dir=cache_dir,
    )
