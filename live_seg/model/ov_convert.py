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

from .segmenter import MEAN, STD


class _FromFrames(nn.Module):
    """The network behind the preprocessing: uint8 NHWC BGR frames in, ``out`` logits out."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) * 255)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).flip(1).float()  # NHWC BGR uint8 -> NCHW RGB float
        return self.module((x - self.mean) / self.std)["out"]


def weights_digest(module: nn.Module) -> str:
    """A short hash of ``module``'s state (names, dtypes, shapes, values): the cache key of weights
    that were changed in memory, which no file or name identifies."""
    h = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().data)
    return h.hexdigest()


def convert(module: nn.Module, size: int) -> Any:
    """Convert ``module`` (eval mode, fp32, on the CPU) to an OpenVINO model.

    Returns:
        An ``openvino.Model``: input ``frames`` ``(1, size, size, 3)`` uint8 BGR, output ``logits``
        ``(1, C, size, size)`` f32.
    """
    example = torch.zeros((1, size, size, 3), dtype=torch.uint8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation notes, inside the converter
        model = ov.convert_model(
            _FromFrames(module).eval(), example_input=example, input=[(ov.PartialShape([1, size, size, 3]), ov.Type.u8)]
        )
    model.input(0).get_tensor().set_names({"frames"})
    model.output(0).get_tensor().set_names({"logits"})
    return model
