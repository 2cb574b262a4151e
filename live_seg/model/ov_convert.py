"""Converting a torchvision network for OpenVINO: the part of the OpenVINO runtime that needs torch.

:mod:`live_seg.model.ov_runtime` imports this module only when its cache has no converted network for
the model and weights, so a start from the cache never loads torch.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import openvino as ov
import torch
from torch import nn

from ..base.specs import ModelSpec
from .networks import main_output


class _FromFrames(nn.Module):
    """The network behind its spec's preprocessing: uint8 NHWC BGR frames in, the network's output out."""

    def __init__(self, module: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.module = module
        self.rgb = spec.rgb
        # (x * scale - mean) / std  ==  (x - mean / scale) / (std / scale)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1) / spec.scale)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1) / spec.scale)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2)  # NHWC -> NCHW
        if self.rgb:
            x = x.flip(1)  # BGR -> RGB
        return main_output(self.module((x.float() - self.mean) / self.std))


def weights_digest(module: nn.Module) -> str:
    """A short hash of ``module``'s state (names, dtypes, shapes, values): the cache key of weights
    that were changed in memory, which no file or name identifies."""
    h = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().data)
    return h.hexdigest()


def convert(module: nn.Module, spec: ModelSpec) -> Any:
    """Convert ``module`` (eval mode, fp32, on the CPU; ``spec``'s network) to an OpenVINO model.

    Returns:
        An ``openvino.Model``: input ``frames`` ``(1, h, w, 3)`` uint8 BGR, output ``logits``
        ``(1, C, h, w)`` f32 (``(1, 1, h, w)`` probabilities for a probability model).
    """
    h, w = spec.input_hw
    example = torch.zeros((1, h, w, 3), dtype=torch.uint8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation notes, inside the converter
        model = ov.convert_model(
            _FromFrames(module, spec).eval(),
            example_input=example,
            input=[(ov.PartialShape([1, h, w, 3]), ov.Type.u8)],
        )
    model.input(0).get_tensor().set_names({"frames"})
    model.output(0).get_tensor().set_names({"logits"})
    return model
