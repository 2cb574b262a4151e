"""A spec's network as a torch module: what both runtimes run (OpenVINO converts it).

Every network built here takes the spec's normalised ``(N, 3, h, w)`` input in its channel order;
:func:`main_output` of what it returns is ``(N, C, h, w)`` logits, or ``(N, 1, h, w)`` probabilities for a
:data:`~live_seg.base.specs.PROBABILITY` model (torchvision's networks return a dict holding it).
Imports torch: only the runtimes load this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import WeightsEnum, get_model_builder, get_model_weights

from ..base.errors import ModelError, one_line
from ..base.registry import DEFAULT_WEIGHTS, RANDOM_WEIGHTS
from ..base.specs import MODEL_NAMES, SPECS, TFLITE, TORCHVISION, ModelSpec
from .weights import build_network

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TorchvisionModel:
    """A torchvision segmentation model: its builder and its weights enum."""

    builder: Callable[..., nn.Module]
    weights: type[WeightsEnum]


MODELS: dict[str, TorchvisionModel] = {
    name: TorchvisionModel(get_model_builder(name), get_model_weights(name))
    for name in MODEL_NAMES
    if SPECS[name].family == TORCHVISION
}
"""The registry's torchvision models with torchvision's builders and weights (a test checks their
categories and weights files against the specs)."""


def fold_batchnorm(module: nn.Module, name: str) -> nn.Module:
    """Fold every eval-mode BatchNorm into the convolution before it (one op instead of two).

    The same function up to rounding, and faster on the CPU, where BatchNorm passes are
    memory-bound (see the README). Uses torch.fx; a network it cannot trace is returned unchanged.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module)
    except Exception as exc:  # noqa: BLE001 - tracing limits differ between torch versions
        logger.debug("%s: BatchNorm folding skipped (%s)", name, one_line(exc, with_type=True, limit=200))
        return module



def main_output(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """A network's output tensor: torchvision's segmentation networks return ``{"out": ..., "aux": ...}``."""
    return out["out"] if isinstance(out, dict) else out


def _torchvision(spec: ModelSpec, weights: str) -> nn.Module:
    official = get_model_weights(spec.name).DEFAULT
    module = build_network(spec.name, get_model_builder(spec.name), official, weights, spec.num_classes)
    module.aux_classifier = None  # FCN / DeepLab skip it when None; LRASPP has none
    return module


def _tflite(spec: ModelSpec, weights: str) -> nn.Module:
    from .selfie import build_selfie  # the tflite reader loads with the model that needs it
    from .wheel_weights import fetch, local_file

    if weights == RANDOM_WEIGHTS:
        raise ModelError(
            f"{spec.name} has no untrained variant (its trained weights ship in a package); use --weights default"
        )
    if weights == DEFAULT_WEIGHTS:
        return build_selfie(fetch(spec.weights.wheel), spec.input_hw)
    local_file(weights, spec.input_hw)  # one line naming both sizes for a file of the other model
    return build_selfie(weights, spec.input_hw)


def build_module(spec: ModelSpec, weights: str) -> nn.Module:
    """``spec``'s network on the CPU in fp32, eval mode, with the weights ``weights`` names.

    Raises:
        ModelError: weights that cannot be had or do not fit; a network torch does not run (your own
            ``.onnx`` / ``.xml`` files run on OpenVINO).
    """
    if spec.family == TORCHVISION:
        module = _torchvision(spec, weights)
    elif spec.family == TFLITE:
        module = _tflite(spec, weights)
    else:
        raise ModelError(f"{spec.name} runs on OpenVINO only; use --device cpu --backend openvino")
    return module.eval()
