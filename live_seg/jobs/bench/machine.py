"""The machine and software a benchmark's figures come from, for its report."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch


def torch_threads() -> int:
    """Torch's CPU intra-op threads now (per inference call)."""
    return torch.get_num_threads()


def runtime_info() -> dict[str, Any]:
    """The torch runtime: versions, threads and accelerators.

    Returns:
        A JSON-ready dict: ``torch``, ``torchvision``, ``torch_threads``, ``cuda`` (the version
        torch was built with, or ``None``), ``cudnn`` (version number or ``None``),
        ``cuda_available``, ``gpus`` (device names), ``mps_available``.
    """
    import torchvision

    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_threads": torch_threads(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "mps_available": torch.backends.mps.is_available(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            )
            if out.stdout.strip():
                return out.stdout.strip()
    return platform.processor() or platform.machine() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def load_average() -> float | None:
    """The 1-minute load average, rounded to 0.01 (``None`` where the platform has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine_info() -> dict[str, Any]:
    """The machine and software the figures come from (JSON-ready)."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_avg_1m": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **runtime_info(),
        "opencv": cv2.__version__,
        "av": _version("av"),
        "openvino": _version("openvino"),
        "numpy": np.__version__,
    }
