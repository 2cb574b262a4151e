"""MediaPipe's selfie segmentation as a torch module, its weights read from the .tflite file.

The .tflite graph (:mod:`live_seg.model.tflite_graph`) is turned into a list of small torch modules, one per
operator, run in the file's order: a little interpreter whose weights are ordinary parameters, so
``.to(device, dtype)`` moves and casts them (fp16 and bf16 too), and whose forward pass is plain tensor code
that ``torch.jit.trace`` and ``openvino.convert_model`` follow.

Activations stay NCHW from end to end (TFLite's are NHWC): a per-pixel model takes ``(N, 3, H, W)`` float RGB
in ``[0, 1]`` and gives ``(N, 1, H, W)`` (for the selfie models, the person probability: their last operator
is a sigmoid). The selfie models take 256x256 (the landscape one 144 high, 256 wide), stretched, not
letterboxed. Shapes are those the file was made for: a different input size is refused.

TFLite's semantics kept here: "SAME" padding puts the odd pixel of padding after (stride 2 on an even size
pads only the bottom and right), and MediaPipe's custom ``Convolution2DTransposeBias`` is a transposed
convolution plus a bias (with a 2x2 kernel and stride 2, each input pixel writes its own 2x2 block).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..base.errors import ModelError
from .tflite_graph import TRANSPOSE_CONV_BIAS, OpInfo, TfliteGraph
from .wheel_weights import local_file

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}
_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "NONE": None,
    "RELU": F.relu,
    "RELU6": F.relu6,
    "RELU_N1_TO_1": partial(F.hardtanh, min_val=-1.0, max_val=1.0),
    "TANH": torch.tanh,
}
"""TFLite's fused activations."""
_ELEMENTWISE: dict[str, Callable[[], nn.Module]] = {
    "RELU": nn.ReLU,
    "RELU6": nn.ReLU6,
    "HARD_SWISH": nn.Hardswish,
    "LOGISTIC": nn.Sigmoid,
}


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF "SAME" padding of one dimension: ``(before, after)``, the odd pixel after.

    The output has ``ceil(size / stride)`` pixels; e.g. a 3-wide kernel at stride 2 over 256 pixels pads
    ``(0, 1)``, at stride 1 ``(1, 1)``.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _activation(op: OpInfo, source: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    name = op.options.get("fused_activation_function", "NONE")
    if name not in _ACTIVATIONS:
        raise ModelError(f"{source}: {op.kind} has the fused activation {name}, which is not supported")
    return _ACTIVATIONS[name]


def _constant(values: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)), requires_grad=False)


class _Conv(nn.Module):
    """A convolution (plain, depthwise or transposed) with TF padding and a fused activation.

    Symmetric padding is the convolution's own; uneven padding (TF "SAME" at stride 2 on an even size) is a
    zero pad of the bottom and right first. A transposed convolution's ``padding`` crops its output.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, pads: Sequence[tuple[int, int]], **conv: object) -> None:
        super().__init__()
        self.weight, self.bias = _constant(weight), _constant(bias)
        (top, bottom), (left, right) = pads
        even = top == bottom and left == right
        self.pad = None if even else (left, right, top, bottom)
        self.activation = conv.pop("activation", None)
        self.transposed = bool(conv.pop("transposed", False))
        self.conv = {**conv, "padding": (top, left) if even else (0, 0)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        conv = F.conv_transpose2d if self.transposed else F.conv2d
        y = conv(x, self.weight, self.bias, **self.conv)
        return y if self.activation is None else self.activation(y)


def _conv(graph: TfliteGraph, op: OpInfo) -> nn.Module:
    """CONV_2D (weights OHWI) and DEPTHWISE_CONV_2D (weights 1HWC) with TF padding and a fused activation."""
    x, w = graph.tensors[op.inputs[0]], graph.constant(op.inputs[1])
    depthwise = op.kind == "DEPTHWISE_CONV_2D"
    weight = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)  # -> (out, in / groups, kh, kw)
    stride = (op.options["stride_h"], op.options["stride_w"])
    dilation = (op.options.get("dilation_h_factor", 1), op.options.get("dilation_w_factor", 1))
    pads = [(0, 0), (0, 0)]
    if op.options["padding"] == "SAME":
        pads = [same_padding(x.shape[1 + d], weight.shape[2 + d], stride[d], dilation[d]) for d in (0, 1)]
    bias = graph.constant(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else np.zeros(weight.shape[0])
    return _Conv(
        weight,
        bias,
        pads,
        stride=stride,
        dilation=dilation,
        groups=x.shape[3] if depthwise else 1,
        activation=_activation(op, graph.source),
    )


def _transpose_conv_bias(graph: TfliteGraph, op: OpInfo) -> nn.Module:
    """MediaPipe's Convolution2DTransposeBias: weights OHWI, TF padding, a bias per output channel.

    ``out[s*y + ky, s*x + kx, o] += x[y, x, i] * W[o, ky, kx, i]`` over every input pixel, then the bias; "SAME"
    keeps ``in * stride`` pixels of the full result (the same number cut from both ends).
    """
    x, w, bias = graph.tensors[op.inputs[0]], graph.constant(op.inputs[1]), graph.constant(op.inputs[2])
    stride = (op.options["stride_h"], op.options["stride_w"])
    kernel = w.shape[1:3]
    crops = []
    for d in (0, 1):
        full = (x.shape[1 + d] - 1) * stride[d] + kernel[d]
        want = x.shape[1 + d] * stride[d] if op.options["padding"] == "SAME" else full
        crops.append(full - want)
    if any(c < 0 or c % 2 for c in crops):
        raise ModelError(
            f"{graph.source}: {op.kind} with kernel {list(kernel)} and stride {list(stride)} is not supported"
        )
    pads = [(c // 2, c // 2) for c in crops]
    return _Conv(w.transpose(3, 0, 1, 2), bias.reshape(-1), pads, stride=stride, transposed=True)  # (in, out, kh, kw)


class _AveragePool(nn.Module):
    """AVERAGE_POOL_2D (padding left out of the average, as TFLite does) and a fused activation."""

    def __init__(self, activation: Callable[[torch.Tensor], torch.Tensor] | None, **pool: object) -> None:
        super().__init__()
        self.activation, self.pool = activation, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(x, **self.pool, count_include_pad=False)
        return y if self.activation is None else self.activation(y)


def _average_pool(graph: TfliteGraph, op: OpInfo) -> nn.Module:
    x = graph.tensors[op.inputs[0]]
    kernel = (op.options["filter_height"], op.options["filter_width"])
    stride = (op.options["stride_h"], op.options["stride_w"])
    pads = [(0, 0), (0, 0)]
    if op.options["padding"] == "SAME":
        pads = [same_padding(x.shape[1 + d], kernel[d], stride[d]) for d in (0, 1)]
    if any(a != b for a, b in pads):
        raise ModelError(f"{graph.source}: AVERAGE_POOL_2D with uneven SAME padding is not supported")
    padding = (pads[0][0], pads[1][0])
    return _AveragePool(_activation(op, graph.source), kernel_size=kernel, stride=stride, padding=padding)


class _Mean(nn.Module):
    """MEAN over NHWC axes, applied to NCHW tensors."""

    def __init__(self, dims: tuple[int, ...], keepdim: bool) -> None:
        super().__init__()
        self.dims, self.keepdim = dims, keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mean(x, dim=self.dims, keepdim=self.keepdim)


class _Binary(nn.Module):
    """ADD or MUL of two activations (broadcasting as TFLite does) and a fused activation."""

    def __init__(self, multiply: bool, activation: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        super().__init__()
        self.multiply, self.activation = multiply, activation

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = a * b if self.multiply else a + b
        return y if self.activation is None else self.activation(y)


def _layer(graph: TfliteGraph, op: OpInfo) -> tuple[nn.Module, tuple[int, ...]]:
    """The module for ``op`` and the activation tensors it takes (constants are baked into the module)."""
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return _conv(graph, op), op.inputs[:1]
    if op.kind == TRANSPOSE_CONV_BIAS:
        return _transpose_conv_bias(graph, op), op.inputs[:1]
    if op.kind == "AVERAGE_POOL_2D":
        return _average_pool(graph, op), op.inputs[:1]
    if op.kind in _ELEMENTWISE:
        return _ELEMENTWISE[op.kind](), op.inputs[:1]
    if op.kind in ("ADD", "MUL"):
        if any(graph.tensors[i].data is not None for i in op.inputs):
            raise ModelError(f"{graph.source}: {op.kind} with a constant operand is not supported")
        return _Binary(op.kind == "MUL", _activation(op, graph.source)), op.inputs
    if op.kind == "MEAN":
        axes = graph.constant(op.inputs[1]).reshape(-1)
        dims = tuple(sorted(_NHWC_TO_NCHW_AXIS[int(a) % 4] for a in axes))
        return _Mean(dims, bool(op.options.get("keep_dims", False))), op.inputs[:1]
    if op.kind == "RESIZE_BILINEAR":
        size = tuple(int(v) for v in graph.constant(op.inputs[1]).reshape(-1))
        if op.options.get("align_corners"):
            return nn.Upsample(size=size, mode="bilinear", align_corners=True), op.inputs[:1]
        if op.options.get("half_pixel_centers"):
            return nn.Upsample(size=size, mode="bilinear", align_corners=False), op.inputs[:1]
        raise ModelError(
            f"{graph.source}: RESIZE_BILINEAR without half_pixel_centers or align_corners is not supported"
        )
    raise ModelError(f"{graph.source}: the operator {op.kind} is not supported")


class TfliteNet(nn.Module):
    """A .tflite graph with one image in and one image out, run by torch on NCHW tensors.

    For the selfie models: ``(N, 3, H, W)`` float RGB in [0, 1] -> ``(N, 1, H, W)`` person probability.

    Args:
        graph: the parsed model: one 4-D input (NHWC in the file) and one 4-D output.

    Attributes:
        input_hw: ``(H, W)``, the only input size the graph runs at.
        source: the file it came from.

    Raises:
        ModelError: another number of inputs or outputs, or an operator used in a way not supported.
    """

    def __init__(self, graph: TfliteGraph) -> None:
        super().__init__()
        shapes = [graph.tensors[i].shape for i in (*graph.inputs, *graph.outputs)]
        if len(graph.inputs) != 1 or len(graph.outputs) != 1 or any(len(s) != 4 for s in shapes):
            raise ModelError(f"{graph.source}: expected one 4-D input and one 4-D output, found {shapes}")
        self.input_hw: tuple[int, int] = (shapes[0][1], shapes[0][2])
        self.source = graph.source
        built = [_layer(graph, op) for op in graph.operators]
        self.layers = nn.ModuleList(module for module, _ in built)
        self.wiring = [(inputs, op.outputs[0]) for (_, inputs), op in zip(built, graph.operators, strict=True)]
        self.graph_input, self.graph_output = graph.inputs[0], graph.outputs[0]
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph on ``x``, ``(N, C, H, W)`` (the selfie models: RGB in [0, 1]), cast to the weights' dtype."""
        if not torch.jit.is_tracing() and tuple(x.shape[-2:]) != self.input_hw:
            raise ModelError(f"{self.source} takes {self.input_hw[0]}x{self.input_hw[1]} input, got {list(x.shape)}")
        values: dict[int, torch.Tensor] = {self.graph_input: x.to(next(iter(self.parameters()), x).dtype)}
        for layer, (inputs, output) in zip(self.layers, self.wiring, strict=True):
            values[output] = layer(*(values[i] for i in inputs))
        return values[self.graph_output]


def build_selfie(path: str | os.PathLike[str], expected_hw: tuple[int, int] | None = None) -> TfliteNet:
    """The selfie segmentation model in ``path`` as a torch module: CPU, float32, eval mode.

    Args:
        path: a .tflite file (``selfie_segmentation.tflite`` or ``selfie_segmentation_landscape.tflite``:
            :func:`live_seg.model.wheel_weights.fetch` gives it, or the user's ``--weights PATH``).
        expected_hw: the ``(H, W)`` input the caller was promised (256x256, or 144x256 for landscape);
            a file made for another size is refused.

    Returns:
        The module; its ``input_hw`` is the input size read from the file.

    Raises:
        ModelError: missing, unreadable, not a tflite model, an unsupported operator, or the wrong shape.
    """
    return TfliteNet(local_file(path, expected_hw)).eval()
