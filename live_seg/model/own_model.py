"""Your own network: an ONNX file or an OpenVINO IR (``.xml`` + ``.bin``), run by OpenVINO on the CPU.

:func:`read_own_model` reads it, fixes its input to ``(1, 3, h, w)``, puts the spec's preprocessing in
front of it (uint8 NHWC BGR frames → channel order, scale, mean/std, NCHW) and checks that its output
has one score per label, so that it runs like a built-in model: the same heads (class ids, scores),
the same cache of compiled blobs, int8 with NNCF.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import openvino as ov
from openvino import opset13 as ops

from ..base.errors import ModelError, one_line
from ..base.specs import ModelSpec

SCORES_NAMES = ("out", "logits", "output")
"""Output names taken first when a network has several outputs (torchvision's exports call the main one ``out``)."""


def _pick_output(model: Any, spec: ModelSpec) -> Any:
    """The output with one score per label: the one named like :data:`SCORES_NAMES`, else the first."""
    outputs = list(model.outputs)
    for name in SCORES_NAMES:
        for out in outputs:
            if name in out.get_names():
                return out
    return outputs[0]


def _check_output(out: Any, spec: ModelSpec) -> None:
    """One line naming both shapes when the output does not hold ``len(labels)`` channels at the input size."""
    shape = out.get_partial_shape()
    h, w = spec.input_hw
    want = f"(1, {spec.num_classes}, {h}, {w})"
    dims = [d.get_length() if d.is_static else -1 for d in shape] if shape.rank.is_static else []
    if len(dims) != 4 or dims[1] != spec.num_classes or dims[2:] != [h, w]:
        got = "(" + ", ".join("?" if d < 0 else str(d) for d in dims) + ")" if dims else "of unknown rank"
        raise ModelError(
            f"{spec.name}: its output is {got}, but the labels file names {spec.num_classes} classes "
            f"and the input is {w}x{h}: expected {want}; check --labels and --size"
        )


def read_own_model(spec: ModelSpec) -> Any:
    """The user's network as an ``openvino.Model``: input ``frames`` ``(1, h, w, 3)`` uint8 BGR, output
    ``logits`` ``(1, C, h, w)`` f32.

    Raises:
        ModelError: a file OpenVINO cannot read, a network with other than one image input, an input size it
            cannot take, or an output that does not match the labels (one line naming both shapes).
    """
    try:
        model = ov.Core().read_model(str(spec.path))
    except Exception as exc:
        raise ModelError(f"OpenVINO could not read {spec.name} ({one_line(exc, limit=200)})") from exc
    if len(model.inputs) != 1:
        raise ModelError(f"{spec.name} has {len(model.inputs)} inputs; live_seg feeds one image input")
    h, w = spec.input_hw
    try:
        model.reshape({model.inputs[0].get_any_name(): ov.PartialShape([1, 3, h, w])})
    except Exception as exc:
        shape = model.inputs[0].get_partial_shape()
        raise ModelError(f"{spec.name} takes input {shape}, not (1, 3, {h}, {w}); pass --size to match it") from exc
    out = _pick_output(model, spec)
    _check_output(out, spec)

    frames = ops.parameter([1, h, w, 3], ov.Type.u8, name="frames")
    x = ops.convert(frames, ov.Type.f32)
    if spec.rgb:
        x = ops.gather(x, ops.constant(np.array([2, 1, 0], dtype=np.int64)), ops.constant(np.int64(3)))
    mean = np.array(spec.mean, dtype=np.float32) / np.float32(spec.scale)
    std = np.array(spec.std, dtype=np.float32) / np.float32(spec.scale)
    x = ops.divide(ops.subtract(x, ops.constant(mean)), ops.constant(std))
    x = ops.transpose(x, ops.constant(np.array([0, 3, 1, 2], dtype=np.int64)))
    old = model.inputs[0]
    for target in list(old.get_target_inputs()):
        target.replace_source_output(x.output(0))
    result = ops.result(out)
    network = ov.Model([result], [frames], "own")
    network.output(0).get_tensor().set_names({"logits"})
    return network
