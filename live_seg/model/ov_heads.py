"""What a compiled OpenVINO network returns: its output with a head appended in the graph.

The heads run inside OpenVINO, so that only what a caller uses leaves the runtime: uint8 class ids for
masks, float probabilities for temporal smoothing, or the raw output for numerical comparisons.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..base.specs import PROBABILITY

HEADS = ("ids", "scores", "logits")
"""What a compiled model returns: uint8 class ids, class probabilities, or the network's raw output."""


def with_head(model: Any, head: str, output: str = "logits", threshold: float = 0.5) -> Any:
    """``model`` (the network's output out) with ``head`` appended.

    For logits: ``ids`` → ``(1, h, w)`` u8 argmax over classes, ``scores`` → ``(1, C, h, w)`` f32 softmax.
    For a probability ``p`` (``output="probability"``): ``ids`` → ``p > threshold`` as u8 class 1 / 0,
    ``scores`` → ``(1, 2, h, w)`` f32 ``(1 - p, p)``. ``logits`` → the network's output, unchanged.
    """
    if head not in HEADS:
        raise ValueError(f"head: expected one of {HEADS}, got {head!r}")
    if head == "logits":
        return model
    from openvino import opset13 as ops  # the runtime checked that OpenVINO loads
    from openvino.preprocess import PrePostProcessor

    model = model.clone()
    ppp = PrePostProcessor(model)
    channel = ops.constant(np.array([1], dtype=np.int64))

    def argmax(out: Any) -> Any:
        top = ops.topk(out, ops.constant(np.int64(1)), axis=1, mode="max", sort="none", index_element_type="i32")
        return ops.convert(ops.squeeze(top.output(1), channel), "u8").output(0)

    def softmax(out: Any) -> Any:
        return ops.softmax(out, 1).output(0)

    def above(out: Any) -> Any:
        fore = ops.greater(ops.squeeze(out, channel), ops.constant(np.float32(threshold)))
        return ops.convert(fore, "u8").output(0)

    def both(out: Any) -> Any:
        return ops.concat([ops.subtract(ops.constant(np.float32(1.0)), out), out], 1).output(0)

    probability = output == PROBABILITY
    step = {"ids": above if probability else argmax, "scores": both if probability else softmax}[head]
    ppp.output().postprocess().custom(step)
    return ppp.build()
