"""Choosing the inference runtime: torch (every device) or OpenVINO (the CPU).

:func:`build_segmenter` is what the jobs call: it resolves ``backend="auto"`` (OpenVINO on the
CPU, torch on CUDA and MPS, see :data:`live_seg.base.registry.AUTO_BACKEND`) and returns an object with
:class:`live_seg.model.segmenter.Segmenter`'s interface. ``Segmenter(...)`` itself stays the torch runtime.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..base.errors import ModelError
from ..base.options import ModelOptions, check_threshold
from ..base.registry import (
    AUTO,
    AUTO_BACKEND,
    BACKENDS,
    DEVICES,
    INT8,
    OPENVINO_DEVICES,
    OPENVINO_MODES,
)
from ..base.specs import ModelSpec
from .identity import weights_key

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


GPU_DEVICE_FILES = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")
"""What a Linux machine has when torch could see a GPU: the NVIDIA driver, ROCm's, WSL's GPU."""


def gpu_possible() -> bool:
    """False only when torch certainly sees no GPU: on Linux, without any GPU driver's device files."""
    return not sys.platform.startswith("linux") or any(os.path.exists(p) for p in GPU_DEVICE_FILES)


def resolve_device(name: str = AUTO) -> str:
    """:func:`live_seg.model.segmenter.resolve_device`, without importing torch when the answer is the CPU
    anyway (``"cpu"``, or ``"auto"`` on a machine without a GPU driver).

    Raises:
        ModelError: an unknown name, or a device that this machine does not have.
    """
    if name == "cpu" or (name == AUTO and not gpu_possible()):
        return "cpu"
    if name not in DEVICES:  # refused here too, so that a typo does not load torch first
        raise ModelError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    from .segmenter import resolve_device as ask_torch

    return ask_torch(name)


def job_runtime(seg: Any, threads: int | None = None) -> contextlib.AbstractContextManager[None]:
    """Torch's process-wide settings for a job on ``seg`` (:func:`live_seg.model.segmenter.torch_runtime`).

    Args:
        seg: the job's segmenter (either runtime).
        threads: torch threads for the job (``None``: the segmenter's own ``threads``).

    Returns:
        The context to run the job in; a no-op for OpenVINO when torch was never loaded (a start
        from its cache), where torch has no threads to set.
    """
    if seg.backend != "torch" and "torch" not in sys.modules:
        return contextlib.nullcontext()
    from .segmenter import torch_runtime

    return torch_runtime(seg.threads if threads is None else threads, seg.device)


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
    model: str = ModelOptions.model,
    weights: str = ModelOptions.weights,
    device: str = ModelOptions.device,
    precision: str = ModelOptions.precision,
    size: int | None = ModelOptions.size,
    *,
    backend: str = ModelOptions.backend,
    threads: int | None = ModelOptions.threads,
    mode: str = "throughput",
    cache_dir: str | None = None,
    calibration: str | os.PathLike[str] | Any | None = None,
    **spec_options: Any,
) -> Any:
    """A segmenter on the chosen runtime, with :class:`live_seg.model.segmenter.Segmenter`'s interface.

    The arguments are :class:`~live_seg.base.options.ModelOptions`' fields (``spec_options``: ``labels``,
    ``mean``, ``std``, ``rgb``, ``threshold``), plus ``mode`` and ``cache_dir``; jobs call
    :func:`segmenter_for` with the options value itself. ``model`` to ``size`` may come by position,
    the rest by keyword.

    Args:
        model, weights, device, precision, size: as for :class:`~live_seg.model.segmenter.Segmenter`.
        backend: a :data:`~live_seg.base.registry.BACKENDS` name.
        threads: torch CPU threads, as for :class:`~live_seg.model.segmenter.Segmenter` (ignored by
            OpenVINO, which runs its own threads).
        mode: ``"throughput"`` (file runs) or ``"latency"`` (live, one image); OpenVINO only.
        cache_dir: OpenVINO's cache root (default ``$XDG_CACHE_HOME/live_seg/openvino``; ``""``: none).
        calibration: for ``precision="int8"``: a video or a folder of images to calibrate on (``None``:
            the bundled sample clip), or a :class:`~live_seg.model.quantize.Calibration`; ignored at
            other precisions.

    Returns:
        A :class:`~live_seg.model.segmenter.Segmenter` (torch) or a
        :class:`~live_seg.model.ov_runtime.OpenVinoSegmenter`.

    Raises:
        ModelError: a bad name, weights that cannot be had, OpenVINO missing or unable to compile
            (one line naming ``--backend torch``).
    """
    options = ModelOptions(
        model=model, weights=weights, device=device, precision=precision, size=size, threads=threads,
        backend=backend, calibration=calibration, **spec_options,
    )  # fmt: skip
    return segmenter_for(options, mode=mode, cache_dir=cache_dir)


def segmenter_for(options: ModelOptions, mode: str = "throughput", cache_dir: str | None = None) -> Any:
    """The segmenter a job's :class:`~live_seg.base.options.ModelOptions` ask for (see :func:`build_segmenter`).

    Raises:
        ModelError: as :func:`build_segmenter`.
    """
    spec = options.spec()
    check_threshold(options.threshold)
    device = resolve_device(options.device)
    backend = options.backend
    if spec.custom and backend == AUTO:
        backend = "openvino"  # your own files run on OpenVINO; asking for another device says so below
    concrete = resolve_backend(backend, device)
    if concrete not in spec.runtimes:
        fix = "--device cpu --backend openvino" if "openvino" in spec.runtimes else "--backend torch"
        raise ModelError(f"{spec.name} runs on {' or '.join(spec.runtimes)} only, not {concrete}; use {fix}")
    if concrete == "torch":
        from .segmenter import Segmenter

        return Segmenter(
            weights=options.weights,
            device=device,  # the concrete device, resolved above
            precision=options.precision,
            threads=options.threads,
            threshold=options.threshold,
            spec=spec,
        )
    if mode not in OPENVINO_MODES:
        raise ModelError(f"unknown mode {mode!r}; choose one of {', '.join(OPENVINO_MODES)}")
    from . import ov_runtime as ov_backend  # imports openvino: only when it runs

    ov_backend.require()
    precision = options.precision
    if precision == AUTO and spec.cpu_precision is not None:
        precision = spec.cpu_precision
    precision = ov_backend.resolve_precision(precision)
    calib = None
    if precision == INT8:  # a bad path fails here, before the network is built
        q = ov_backend.quantize
        calibration = options.calibration
        calib = calibration if isinstance(calibration, q.Calibration) else q.calibration(calibration)
    common = {
        "spec": spec, "weights": options.weights, "precision": precision, "mode": mode, "cache_dir": cache_dir,
        "calibration": calib, "threshold": options.threshold,
    }  # fmt: skip
    if spec.custom:
        from .own_model import read_own_model

        network, spec = read_own_model(spec, sized=options.size is not None)  # else the file's fixed size
        common["spec"] = spec
        return ov_backend.OpenVinoSegmenter(network=network, weights_key=weights_key(spec, options.weights), **common)
    key = weights_key(spec, options.weights)
    network = _reference_network(spec, options.weights)
    module = network() if key is None else None  # a weights file it cannot read: loading it says why
    return ov_backend.OpenVinoSegmenter(module, build=None if key is None else network, weights_key=key, **common)


def _reference_network(spec: ModelSpec, weights: str) -> Callable[[], nn.Module]:
    """What OpenVINO converts when its cache has no network for these weights: torch's fp32 network."""

    def build() -> nn.Module:
        from .networks import build_module  # torch and torchvision load here

        return build_module(spec, weights)

    return build
