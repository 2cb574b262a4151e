"""Your own network: an ONNX file or an OpenVINO IR (``.xml`` + ``.bin``), run by OpenVINO on the CPU.

:func:`read_own_model` reads it, fixes its input to ``(1, 3, h, w)``, puts the spec's preprocessing in
front of it (uint8 NHWC BGR frames → channel order, scale, mean/std, NCHW) and checks that its output
has one score per label, so that it runs like a built-in model: the same heads (class ids, scores),
the same cache of compiled blobs, int8 with NNCF.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import openvino as ov
from openvino import opset13 as ops
from openvino.preprocess import PrePostProcessor

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


def _read(spec: ModelSpec) -> Any:
    try:
        return ov.Core().read_model(str(spec.path))
    except Exception as exc:
        raise ModelError(f"OpenVINO could not read {spec.name} ({one_line(exc, limit=200)})") from exc


def _fixed_input_hw(model: Any) -> tuple[int, int] | None:
    """The ``(height, width)`` a network fixes for its image input, or ``None`` when it is dynamic."""
    shape = model.inputs[0].get_partial_shape()
    if shape.rank.is_static and len(shape) == 4 and shape[2].is_static and shape[3].is_static:
        return shape[2].get_length(), shape[3].get_length()
    return None


def read_own_model(spec: ModelSpec, sized: bool = True) -> tuple[Any, ModelSpec]:
    """The user's network as an ``openvino.Model``: input ``frames`` ``(1, h, w, 3)`` uint8 BGR, output
    ``logits`` ``(1, C, h, w)`` f32; and its spec.

    Args:
        spec: the network's spec (:func:`~live_seg.base.specs.custom_spec`).
        sized: the spec's input size was asked for (``--size``); else a size the file fixes replaces it.

    Raises:
        ModelError: a file OpenVINO cannot read, a network with other than one image input, an input size it
            cannot take, or an output that does not match the labels (one line naming both shapes).
    """
    model = _read(spec)
    if not sized:
        spec = dataclasses.replace(spec, input_hw=_fixed_input_hw(model) or spec.input_hw)
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

    if len(model.outputs) > 1:  # keep the scores alone (an auxiliary head is left out of the graph)
        model = ov.Model([ops.result(out)], model.get_parameters(), "own")
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_shape([1, h, w, 3])
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    steps = ppp.input().preprocess().convert_element_type(ov.Type.f32)
    if spec.rgb:  # frames come BGR; a gather rather than convert_color (see the OpenVINO runtime's docstring)
        flip = ops.constant(np.array([2, 1, 0], dtype=np.int64))
        steps.custom(lambda x: ops.gather(x, flip, ops.constant(np.int64(3))).output(0))
    steps.mean([m / spec.scale for m in spec.mean]).scale([s / spec.scale for s in spec.std])
    network = ppp.build()
    network.input(0).get_tensor().set_names({"frames"})
    network.output(0).get_tensor().set_names({"logits"})
    return network, spec
