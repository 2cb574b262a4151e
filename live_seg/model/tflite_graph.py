"""A TensorFlow Lite model as plain data: tensors, constants, operators and their options.

Read with the ``tflite`` package (the flatbuffer schema's generated parser; nothing runs), into a
torch-free description that an interpreter (:mod:`live_seg.model.selfie`) walks. Half-precision
weights come out as float32: the ``DEQUANTIZE`` operators that widen them are folded into constants
and dropped from the operator list, and a float16 constant read directly is widened the same way.

Only the operators in :data:`SUPPORTED_OPS` are accepted (those of MediaPipe's selfie segmentation
models); any other is refused when the file is read, with a one-line :class:`ModelError`.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tflite
from tflite.utils import BUILTIN_OPCODE2NAME

from ..base.errors import ModelError, one_line

TRANSPOSE_CONV_BIAS = "Convolution2DTransposeBias"
"""MediaPipe's custom operator: a transposed convolution plus a bias (its options: padding, stride)."""

SUPPORTED_OPS = frozenset(
    {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "HARD_SWISH",
        "RELU",
        "RELU6",
        "LOGISTIC",
        "ADD",
        "MUL",
        "AVERAGE_POOL_2D",
        "MEAN",
        "RESIZE_BILINEAR",
        TRANSPOSE_CONV_BIAS,
    }
)
"""Operator names (builtin, or the custom code) that :mod:`live_seg.model.selfie` runs; ``DEQUANTIZE`` of
a constant is folded away when the file is read."""

_DTYPES = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.INT64: np.int64,
    tflite.TensorType.UINT8: np.uint8,
    tflite.TensorType.INT8: np.int8,
}
_TYPE_NAMES = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
_PADDING = {v: k for k, v in vars(tflite.Padding).items() if not k.startswith("_")}
_ACTIVATION = {v: k for k, v in vars(tflite.ActivationFunctionType).items() if not k.startswith("_")}
_OPTION_CLASSES = {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}
_OPTION_FIELDS = (
    "Padding",
    "StrideH",
    "StrideW",
    "DilationHFactor",
    "DilationWFactor",
    "DepthMultiplier",
    "FilterHeight",
    "FilterWidth",
    "FusedActivationFunction",
    "AlignCorners",
    "HalfPixelCenters",
    "KeepDims",
)
"""Option accessors read from any operator's builtin options, where its options table has them."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the graph.

    Attributes:
        index: its position in the subgraph's tensor list (what operators refer to).
        name: its name in the file.
        shape: the static shape, NHWC for images.
        dtype: the type name as stored (``"FLOAT32"``, ``"FLOAT16"``, ``"INT32"``, ...).
        data: the constant's values (float constants widened to float32), or ``None`` for an activation.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class OpInfo:
    """One operator, in execution order.

    Attributes:
        kind: the builtin operator's name (``"CONV_2D"``) or a custom operator's code.
        inputs: tensor indices (-1 for an omitted optional input).
        outputs: tensor indices.
        options: snake-case option names to values: ``padding`` (``"SAME"``/``"VALID"``), ``stride_h``,
            ``stride_w``, ``dilation_h_factor``, ``fused_activation_function`` (``"NONE"``, ``"RELU"``...),
            ``filter_height``, ``align_corners``, ``half_pixel_centers``, ``keep_dims``, ... as the operator has them.
    """

    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TfliteGraph:
    """The single subgraph of a .tflite model.

    Attributes:
        source: where it was read from (for messages).
        tensors: every tensor, by index.
        operators: the operators to run, in order (``DEQUANTIZE`` of constants folded away).
        inputs: the graph's input tensor indices.
        outputs: the graph's output tensor indices.
    """

    source: str
    tensors: tuple[TensorInfo, ...]
    operators: tuple[OpInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def constant(self, index: int) -> np.ndarray:
        """The values of constant tensor ``index``.

        Raises:
            ModelError: the tensor is computed at run time (an operator needs it constant).
        """
        data = self.tensors[index].data
        if data is None:
            raise ModelError(f"{self.source}: tensor {self.tensors[index].name!r} must be a constant and is not")
        return data


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _builtin_options(op: tflite.Operator) -> dict[str, Any]:
    cls_name = _OPTION_CLASSES.get(op.BuiltinOptionsType())
    table = op.BuiltinOptions()
    if not cls_name or cls_name == "NONE" or table is None:
        return {}
    options = getattr(tflite, cls_name)()
    options.Init(table.Bytes, table.Pos)
    found: dict[str, Any] = {}
    for accessor in _OPTION_FIELDS:
        if hasattr(options, accessor):
            value = getattr(options, accessor)()
            if accessor == "Padding":
                value = _PADDING.get(value, str(value))
            elif accessor == "FusedActivationFunction":
                value = _ACTIVATION.get(value, str(value))
            found[_snake(accessor)] = value
    return found


def _transpose_conv_options(op: tflite.Operator, source: str) -> dict[str, Any]:
    """MediaPipe's ``TfLiteTransposeConvParams`` for its custom op: three int32 (padding, stride w, stride h)."""
    raw = bytes(op.CustomOptionsAsNumpy()) if not op.CustomOptionsIsNone() else b""
    if len(raw) < 12:
        raise ModelError(f"{source}: {TRANSPOSE_CONV_BIAS} has {len(raw)} bytes of options, expected 12")
    padding, stride_w, stride_h = struct.unpack("<3i", raw[:12])
    names = {1: "SAME", 2: "VALID"}  # TfLitePadding: 0 unknown, 1 same, 2 valid
    if padding not in names:
        raise ModelError(f"{source}: {TRANSPOSE_CONV_BIAS} has an unknown padding code {padding}")
    return {"padding": names[padding], "stride_h": stride_h, "stride_w": stride_w}


def _op_name(model: tflite.Model, index: int) -> str:
    code = model.OperatorCodes(index)
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == tflite.BuiltinOperator.CUSTOM:
        return (code.CustomCode() or b"").decode("utf-8", "replace") or "CUSTOM"
    return BUILTIN_OPCODE2NAME.get(builtin, f"builtin operator {builtin}")


def _buffer_bytes(data: bytes, model: tflite.Model, index: int) -> bytes:
    buffer = model.Buffers(index)
    if buffer is None:
        return b""
    if buffer.Offset() > 1:  # large models keep constants after the flatbuffer
        return data[buffer.Offset() : buffer.Offset() + buffer.Size()]
    return b"" if buffer.DataIsNone() else buffer.DataAsNumpy().tobytes()


def _tensor(data: bytes, model: tflite.Model, graph: tflite.SubGraph, index: int, source: str) -> TensorInfo:
    t = graph.Tensors(index)
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if not t.ShapeIsNone() else ()
    type_name = _TYPE_NAMES.get(t.Type(), str(t.Type()))
    raw = _buffer_bytes(data, model, t.Buffer())
    values = None
    if raw:
        if t.Type() not in _DTYPES:
            raise ModelError(f"{source}: constant {t.Name().decode()!r} has type {type_name}, which is not supported")
        values = np.frombuffer(raw, dtype=_DTYPES[t.Type()]).reshape(shape)
        values = values.astype(np.float32) if values.dtype.kind == "f" else values.copy()
    return TensorInfo(index, t.Name().decode("utf-8", "replace"), shape, type_name, values)


def _fold_dequantize(tensors: list[TensorInfo], op: OpInfo, source: str) -> None:
    """Turn ``DEQUANTIZE(fp16 constant)`` into a float32 constant on its output tensor."""
    src = tensors[op.inputs[0]]
    if src.data is None or src.dtype != "FLOAT16":
        raise ModelError(
            f"{source}: DEQUANTIZE of {src.dtype} {'activations' if src.data is None else 'constants'} "
            "is not supported (only float16 weights)"
        )
    out = tensors[op.outputs[0]]
    tensors[op.outputs[0]] = TensorInfo(out.index, out.name, out.shape, "FLOAT32", src.data.reshape(out.shape))


def parse_graph(data: bytes, source: str) -> TfliteGraph:
    """Describe the .tflite model held in ``data``.

    Args:
        data: the file's bytes.
        source: where they came from, for messages.

    Raises:
        ModelError: not a TensorFlow Lite model, more than one subgraph, or an operator or constant type
            that is not supported.
    """
    if len(data) < 8 or not tflite.Model.ModelBufferHasIdentifier(data, 0):
        raise ModelError(f"{source} is not a TensorFlow Lite model (no 'TFL3' identifier); expected a .tflite file")
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() != 1:
            raise ModelError(
                f"{source} has {model.SubgraphsLength()} subgraphs; only single-graph models are supported"
            )
        graph = model.Subgraphs(0)
        tensors = [_tensor(data, model, graph, i, source) for i in range(graph.TensorsLength())]
        operators: list[OpInfo] = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            kind = _op_name(model, op.OpcodeIndex())
            info = OpInfo(
                kind,
                tuple(int(j) for j in op.InputsAsNumpy()) if not op.InputsIsNone() else (),
                tuple(int(j) for j in op.OutputsAsNumpy()) if not op.OutputsIsNone() else (),
                _transpose_conv_options(op, source) if kind == TRANSPOSE_CONV_BIAS else _builtin_options(op),
            )
            if kind == "DEQUANTIZE":
                _fold_dequantize(tensors, info, source)
            elif kind not in SUPPORTED_OPS:
                raise ModelError(
                    f"{source} uses the operator {kind}, which is not supported "
                    f"(supported: {', '.join(sorted(SUPPORTED_OPS))})"
                )
            else:
                operators.append(info)
        inputs = tuple(int(j) for j in graph.InputsAsNumpy())
        outputs = tuple(int(j) for j in graph.OutputsAsNumpy())
    except ModelError:
        raise
    except Exception as exc:  # a damaged flatbuffer fails anywhere inside the generated accessors
        raise ModelError(
            f"{source} is not a readable TensorFlow Lite model ({one_line(exc, with_type=True, limit=120)})"
        ) from exc
    return TfliteGraph(source, tuple(tensors), tuple(operators), inputs, outputs)


def read_graph(path: str | os.PathLike[str]) -> TfliteGraph:
    """Read and describe the .tflite file at ``path`` (see :func:`parse_graph`).

    Raises:
        ModelError: the file is missing or unreadable, or :func:`parse_graph` refuses it.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ModelError(f"could not read the model file {path} ({one_line(exc)})") from exc
    return parse_graph(data, str(path))


def image_io(graph: TfliteGraph) -> tuple[int, int]:
    """The ``(height, width)`` of a per-pixel model: one float32 ``[1, H, W, 3]`` input, one ``[1, H, W, 1]`` output.

    Raises:
        ModelError: the graph has another shape (names both shapes).
    """
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelError(
            f"{graph.source} has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; expected one of each"
        )
    src, dst = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    ok = (
        src.dtype == "FLOAT32"
        and len(src.shape) == 4
        and src.shape[0] == 1
        and src.shape[3] == 3
        and dst.shape == (1, src.shape[1], src.shape[2], 1)
    )
    if not ok:
        raise ModelError(
            f"{graph.source} takes {src.dtype} {list(src.shape)} and gives {list(dst.shape)}; "
            "expected float32 [1, H, W, 3] (RGB) in and [1, H, W, 1] (one probability per pixel) out"
        )
    return src.shape[1], src.shape[2]
