"""Weights: where a model's parameters come from, and how they are loaded safely.

Three sources, named by the ``--weights`` argument:

- ``"default"``: the official PASCAL VOC weights, downloaded once by torchvision with its hash
  checked, then read from the torch cache (``TORCH_HOME/hub/checkpoints``);
- ``"random"``: untrained, seeded, for benchmarks and tests (speed does not depend on values);
- a file path: a ``state_dict`` read with ``weights_only=True``, so a file cannot run code.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import WeightsEnum
from torchvision.models.resnet import Bottleneck

from ..base.errors import ModelError, one_line
from ..base.registry import DEFAULT_WEIGHTS, RANDOM_WEIGHTS

logger = logging.getLogger(__name__)

_ALTERNATIVES = "or use --weights PATH (a state_dict file) or --weights random (untrained)"


def cache_path(weights: WeightsEnum) -> str:
    """Where torchvision's download of ``weights`` lives (TORCH_HOME/hub/checkpoints/<file>)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))


def _reason(exc: BaseException) -> str:
    return one_line(exc, with_type=True, limit=200)


def download_official(model: str, weights: WeightsEnum) -> Mapping[str, torch.Tensor]:
    """Official state dict: hash-checked download with a progress bar, or the cached file.

    Raises:
        ModelError: the download failed (offline, hash mismatch) or the cached file is unreadable;
            the message names the URL, the cache folder and the alternatives.
    """
    path = cache_path(weights)
    cached = os.path.exists(path)
    size = weights.meta.get("_file_size", float("nan"))
    if not cached:
        logger.info("downloading %s weights (%.1f MB) from %s to %s", model, size, weights.url, path)
    try:
        return weights.get_state_dict(progress=True, check_hash=True, map_location="cpu", weights_only=True)
    except Exception as exc:  # URLError, OSError, RuntimeError (hash), a corrupt cached file...
        if cached:
            msg = f"cached weights file {path} could not be loaded ({_reason(exc)}); delete it to retry,"
            msg += f" {_ALTERNATIVES}"
        else:
            msg = (
                f"could not download the {model} weights {os.path.basename(path)} ({size:.1f} MB) from "
                f"{weights.url} ({_reason(exc)}); download it by hand into {os.path.dirname(path)}, {_ALTERNATIVES}"
            )
        raise ModelError(msg) from exc


def _refusal(path: str, exc: BaseException) -> ModelError:
    """The error for a file ``torch.load(weights_only=True)`` refused or could not read."""
    text = str(exc)
    if "Weights only load failed" in text:
        detail = next((ln.strip() for ln in text.splitlines() if "nsupported" in ln), "")
        if "Unsupported operand" not in detail:  # a pickle naming functions or classes: code
            code = re.search(r"\bGLOBAL ([\w.]+)", detail)
            return ModelError(
                f"weights file {path} is not a plain tensor file: loading it would run code"
                f"{f' ({code.group(1)})' if code else ''}, so it was not loaded"
            )
        return ModelError(
            f"weights file {path} is not a readable torch file (torch.load(weights_only=True) refused it: {detail})"
        )
    reason = _reason(exc).split(". ")[0]
    return ModelError(f"weights file {path} is not a readable torch file; truncated or corrupt? ({reason})")


def read_file(path: str) -> Mapping[str, torch.Tensor]:
    """Load a state dict from ``path`` with ``weights_only=True`` (no code is run).

    Checkpoints that wrap it (``{"model": ...}``, ``{"state_dict": ...}``) and keys saved from
    DataParallel / DDP (``module.`` prefix) are unwrapped.

    Raises:
        ModelError: missing, unreadable, code-carrying, or not a mapping of names to tensors.
    """
    if not os.path.isfile(path):
        raise ModelError(
            f"weights file not found: {path} (--weights takes {DEFAULT_WEIGHTS!r}, {RANDOM_WEIGHTS!r} or a file path)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. notes on the pickle protocol: the error below says enough
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a bad file
        raise _refusal(path, exc) from exc
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"weights file {path} does not hold a state_dict (a mapping of names to tensors)")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], model: str, source: str) -> None:
    """Load ``state`` strictly into ``module``, ignoring ``aux_classifier.*`` (unused at inference).

    Raises:
        ModelError: missing or unexpected keys, or shapes that differ, counted with examples.
    """
    state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = [
        f"{len(keys)} {what} (e.g. {', '.join(keys[:2])})"
        for keys, what in ((missing, "missing keys"), (unexpected, "unexpected keys"), (shapes, "shape mismatches"))
        if keys
    ]
    if problems:
        raise ModelError(
            f"weights file {source} does not fit {model}: {', '.join(problems)}; "
            "pass --model NAME for the model it was made for"
        )
    module.load_state_dict(state, strict=True)


def tame_random_init(module: nn.Module) -> None:
    """Keep an untrained ResNet's activations in fp16 range.

    With torchvision's init (and eval-mode BatchNorm at identity), each residual block adds a
    branch as large as its input, so the stream grows over ResNet-101's 23-block stage past
    fp16's range (max 65504) and overflows to inf/NaN. Halving the gain of each branch's last
    BatchNorm keeps activations small; speed does not depend on the values.
    """
    for block in module.modules():
        if isinstance(block, Bottleneck):
            nn.init.constant_(block.bn3.weight, 0.5)


def build_network(
    model: str,
    builder: Callable[..., nn.Module],
    official: WeightsEnum,
    weights: str,
    num_classes: int,
) -> nn.Module:
    """Build ``model`` on the CPU in fp32 with the weights ``weights`` names.

    Args:
        model: registry name, for messages.
        builder: the torchvision builder (called with ``weights=None``: weights are loaded here).
        official: the official weights entry (``"default"`` downloads it).
        weights: ``"default"``, ``"random"`` or a state_dict file path.
        num_classes: output classes of the head.

    Returns:
        The network in training mode, with ``aux_classifier.*`` not yet removed. Random weights are
        the same on every run (seed 0) and leave the global RNG untouched.

    Raises:
        ModelError: weights that cannot be had or do not fit the model.
    """
    state = None
    if weights == DEFAULT_WEIGHTS:
        state = download_official(model, official)
    elif weights != RANDOM_WEIGHTS:
        state = read_file(weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = builder(weights=None, weights_backbone=None, num_classes=num_classes)
        if state is None:
            tame_random_init(module)
    if state is not None:
        load_state(module, state, model, cache_path(official) if weights == DEFAULT_WEIGHTS else weights)
    return module
