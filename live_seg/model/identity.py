"""What identifies a segmenter without importing torch: its description, the key of its weights.

Both runtimes describe themselves through :func:`describe_model`; the OpenVINO runtime keys its
cache of converted networks with :func:`weights_key`, so that a network converted once is found
again before torch or torchvision are imported (they take seconds to load).
"""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..base.errors import ModelError
from ..base.registry import DEFAULT_WEIGHTS, MODEL_NAMES, OFFICIAL_WEIGHTS_FILES, RANDOM_WEIGHTS, VOC_CLASSES

UNTRAINED_NOTE = "untrained weights: masks are meaningless, for benchmarks and tests"
"""What a run with ``--weights random`` logs as a warning, whichever runtime it uses."""

NETWORK_FORMAT = 1
"""Part of every key: raise it when the converted network changes for the same weights (the
preprocessing traced in front of it, the seeded random initialisation)."""


def categories(model: str) -> tuple[str, ...]:
    """The class names (index = class id) a registry model predicts: every model of the registry is
    trained on PASCAL VOC's 21 classes (torchvision's weights carry the same list in their metadata)."""
    if model not in MODEL_NAMES:
        raise ModelError(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    return VOC_CLASSES


def check_model(model: str, size: object) -> None:
    """Either runtime's checks of its arguments before any work: a registry model, an input size.

    Raises:
        ModelError: an unknown model name, or a size that is not an integer >= 32.
    """
    if model not in MODEL_NAMES:
        raise ModelError(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    if not isinstance(size, int) or size < 32:
        raise ModelError(f"model input size must be an integer >= 32, got {size!r}")


def describe_model(seg: Any) -> dict[str, Any]:
    """The fields every runtime's ``describe()`` starts with: model, weights, backend, device,
    precision and input size."""
    return {
        "model": seg.name,
        "weights": seg.weights,
        "untrained": seg.untrained,
        "backend": seg.backend,
        "device": seg.device,
        "precision": seg.precision,
        "size": seg.size,
    }


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "none"


def _file_digest(path: str) -> str | None:
    """A hash of the file's bytes, or ``None`` when it cannot be read (loading it will say why)."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def weights_key(model: str, weights: str) -> str | None:
    """A key that changes whenever ``model``'s network with ``weights`` would, computed without torch.

    ``"default"``: the official file's name (it carries its hash); ``"random"``: the seeded
    initialisation of the installed torch and torchvision; a path: the file's contents.

    Returns:
        A short hex key, or ``None`` for a file that cannot be read (building the network reports it).
    """
    if weights == DEFAULT_WEIGHTS:
        what = f"default:{OFFICIAL_WEIGHTS_FILES.get(model, model)}"
    elif weights == RANDOM_WEIGHTS:
        what = f"random:seed0:torch-{_package('torch')}:torchvision-{_package('torchvision')}"
    else:
        digest = _file_digest(weights)
        if digest is None:
            return None
        what = f"file:{digest}"
    return hashlib.blake2b(f"{NETWORK_FORMAT}|{model}|{what}".encode(), digest_size=8).hexdigest()
