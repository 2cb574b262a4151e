"""What identifies a segmenter without importing torch: its description, the key of its weights.

Both runtimes describe themselves through :func:`describe_model`; the OpenVINO runtime keys its
cache of converted networks with :func:`weights_key`, so that a network converted once is found
again before torch or torchvision are imported (they take seconds to load).
"""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..base.registry import DEFAULT_WEIGHTS, RANDOM_WEIGHTS
from ..base.specs import ModelSpec, get_spec

UNTRAINED_NOTE = "untrained weights: masks are meaningless, for benchmarks and tests"
"""What a run with ``--weights random`` logs as a warning, whichever runtime it uses."""

NETWORK_FORMAT = 2
"""Part of every key: raise it when the converted network changes for the same weights (the
preprocessing traced in front of it, the seeded random initialisation, the output heads)."""


def categories(model: str) -> tuple[str, ...]:
    """The class names (index = class id) a built-in model predicts, from its spec.

    Raises:
        ModelError: an unknown model.
    """
    return get_spec(model).categories


def describe_model(seg: Any) -> dict[str, Any]:
    """The fields every runtime's ``describe()`` starts with: model, weights, backend, device,
    precision, input size and what the spec says of the network."""
    spec: ModelSpec = seg.spec
    h, w = spec.input_hw
    return {
        "model": seg.name,
        "weights": seg.weights,
        "untrained": seg.untrained,
        "backend": seg.backend,
        "device": seg.device,
        "precision": seg.precision,
        "size": seg.size if h == w else f"{w}x{h}",
        "spec": spec.describe(),
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


def weights_key(spec: ModelSpec, weights: str) -> str | None:
    """A key that changes whenever ``spec``'s network with ``weights`` would, computed without torch.

    ``"default"``: the trained file's name and hash; ``"random"``: the seeded initialisation of the
    installed torch and torchvision; a path: the file's contents; your own model: its file's (and an
    IR's ``.bin``'s) contents. The spec's input size, colour order and normalisation are part of it (they
    are traced into the converted network; the resize runs before it, outside the network).

    Returns:
        A short hex key, or ``None`` for a file that cannot be read (building the network reports it).
    """
    if spec.custom:
        parts = [_file_digest(str(spec.path))]
        if spec.family == "openvino_ir":
            parts.append(_file_digest(str(spec.path)[: -len(".xml")] + ".bin"))
        if None in parts:
            return None
        what = "own:" + ":".join(str(p) for p in parts)
    elif weights == DEFAULT_WEIGHTS:
        source = spec.weights
        what = f"default:{source.file}:{source.sha256}" if source is not None else "default"
    elif weights == RANDOM_WEIGHTS:
        what = f"random:seed0:torch-{_package('torch')}:torchvision-{_package('torchvision')}"
    else:
        digest = _file_digest(weights)
        if digest is None:
            return None
        what = f"file:{digest}"
    h, w = spec.input_hw
    shape = f"{h}x{w}:{'rgb' if spec.rgb else 'bgr'}:{spec.scale}:{spec.mean}:{spec.std}"
    text = f"{NETWORK_FORMAT}|{spec.name}|{spec.output}|{shape}|{what}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
