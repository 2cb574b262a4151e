"""OpenVINO as the CPU inference runtime: the torchvision network converted in-process.

With :mod:`live_seg.model.ov_convert`, the only modules of the project that import ``openvino``.
:class:`OpenVinoSegmenter` offers what the pipeline, the jobs and the benchmark use of
:class:`live_seg.model.segmenter.Segmenter` (``preprocess`` → ``infer`` → uint8 masks, ``predict``,
``infer_scores``, ``describe``, ...), built from the same ``torch.nn.Module`` with the weights the
user chose. Torch is imported only to convert (:mod:`live_seg.model.ov_convert`): a start from the
cache runs without it.

What runs in the graph: the frame's uint8 NHWC **BGR** pixels at the model size go in; the
channel flip, ImageNet mean/std, the NCHW layout, the network and the per-pixel argmax run
inside OpenVINO; only ``(size, size)`` uint8 class ids come out. The resize to the model size
stays in OpenCV (``cv2.INTER_LINEAR``, as the torch path does), so both backends see the same
pixels. The preprocessing is traced from torch ops rather than OpenVINO's PrePostProcessor: its
``convert_color(BGR→RGB)`` step gave wrong results with these networks in OpenVINO 2026.4.1
(masks agreeing with torch on 72 % of pixels), the traced ops agree to 1e-6.

Converted networks (IR) and compiled blobs are cached under ``$XDG_CACHE_HOME/live_seg/openvino/``
(:mod:`live_seg.model.ov_cache`: entries written as one unit, checksummed, cleaned and pruned).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import ModelError, one_line
from ..base.frames import Frame, ids_and_soft
from ..base.options import ModelOptions, check_threshold
from ..base.registry import INT8
from ..base.registry import OPENVINO_MODES as MODES
from ..base.specs import PROBABILITY, ModelSpec
from . import ov_cache, quantize
from .identity import UNTRAINED_NOTE, describe_model
from .ov_heads import with_head
from .preprocess import resize_batch
from .quantize import Calibration

try:
    import openvino as ov
except ImportError as _exc:  # a regular dependency, but a broken install should say what to do
    ov = None
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": "f32", "bf16": "bf16", INT8: "f32"}
"""live_seg precision → OpenVINO ``INFERENCE_PRECISION_HINT`` (for int8: of the layers left in float)."""
FIX = "use --backend torch"


def require() -> None:
    """Raise a one-line :class:`ModelError` when ``openvino`` cannot be imported."""
    if ov is None:
        raise ModelError(
            f"OpenVINO is not installed or failed to load ({one_line(_IMPORT_ERROR or '')}); "
            f"pip install openvino, or {FIX}"
        )


@lru_cache(maxsize=1)
def _core() -> Any:
    """The process's one OpenVINO ``Core`` (it owns the CPU plugin and its thread pool)."""
    require()
    return ov.Core()


def native_bf16() -> bool:
    """True when OpenVINO's CPU plugin computes bf16 natively (AVX512-BF16 or AMX) on this CPU."""
    return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def resolve_precision(precision: str) -> str:
    """``"auto" | "fp32" | "bf16" | "int8"`` → a precision OpenVINO runs natively here.

    ``auto`` is bf16 where the CPU has it (the fastest; agreement with fp32 in the README), else fp32;
    never int8, which is opt-in (the README says why).

    Raises:
        ModelError: fp16, an unknown name, bf16 on a CPU without native bf16, int8 where the CPU
            plugin has no int8.
    """
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    if precision not in PRECISIONS:
        raise ModelError(
            f"OpenVINO on the CPU runs fp32, bf16 or int8, not {precision!r}; use --precision fp32, or {FIX}"
        )
    if precision == INT8 and "INT8" not in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise ModelError("OpenVINO cannot run int8 on this CPU; use --precision fp32")
    if precision == "bf16" and not native_bf16():
        raise ModelError("this CPU has no native bf16 for OpenVINO; use --precision fp32")
    return precision


def cache_name(spec: ModelSpec) -> str:
    """The start of a cache entry's folder name: the model's name, or ``own-<file stem>`` for your own
    file (its contents are in the key)."""
    if spec.custom:
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(str(spec.path)).stem)[:40]
        return f"own-{stem}"
    return spec.name


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/live_seg/openvino`` (``~/.cache/live_seg/openvino`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "live_seg" / "openvino"


def save_ir(model: Any, xml: Path) -> None:
    """Write ``model`` as ``xml`` + ``.bin`` (fp32 weights) into a cache entry's temporary folder."""
    ov.save_model(model, xml, compress_to_fp16=False)


class _Compiled:
    """One compiled head and its pool of infer requests, shared by every calling thread.

    ``run`` starts one request per frame and waits for its own: several worker threads keep
    several streams busy, and one caller with a batch does too. A caller that holds requests and
    finds the pool empty harvests its own oldest request first, so callers never wait on each other
    in a cycle.
    """

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.requests):
            self._pool.put(compiled.create_infer_request())

    def run(self, batch: np.ndarray) -> np.ndarray:
        """``batch``: ``(N, s, s, 3)`` uint8 BGR → the head's output for each frame, stacked on axis 0."""
        out: list[np.ndarray | None] = [None] * len(batch)
        flight: deque[tuple[int, Any]] = deque()

        def harvest() -> None:
            i, request = flight.popleft()
            try:
                request.wait()
                out[i] = request.get_output_tensor(0).data[0].copy()
            finally:
                self._pool.put(request)

        try:
            for i in range(len(batch)):
                while True:
                    try:
                        request = self._pool.get_nowait() if flight else self._pool.get()
                        break
                    except queue.Empty:
                        harvest()
                flight.append((i, request))
                request.start_async({0: batch[i : i + 1]}, share_inputs=True)
            while flight:
                harvest()
        finally:
            while flight:  # an error above: wait for what is still running before its input goes away
                _, request = flight.popleft()
                try:
                    request.wait()
                finally:
                    self._pool.put(request)
        return np.stack(out)  # type: ignore[arg-type]


class OpenVinoSegmenter:
    """A segmentation network run by OpenVINO on the CPU: BGR frames → class masks.

    The same interface as :class:`live_seg.model.segmenter.Segmenter` where callers use it.

    Attributes:
        spec: what the network is (:class:`~live_seg.base.specs.ModelSpec`).
        name: the model's name.
        weights: the weights argument as given (``"default"``, ``"random"`` or a path).
        untrained: ``True`` for random weights.
        backend: ``"openvino"``.
        device: ``"cpu"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"int8"``; ``calibration``: int8's calibration source.
        mode: ``"throughput"`` or ``"latency"``.
        size: the input's longer side, in pixels; ``input_hw``: ``(h, w)``.
        categories: class names, index = class id; ``num_classes`` their count.
        threshold: for a probability model, the foreground threshold.
        setup_s: seconds to convert / load and compile; ``converted``: whether the network was
            converted this time; ``cache_hit``: whether the compiled model came from the cache.
        requests: infer requests that run at once (OpenVINO's optimal number for ``mode``).
    """

    backend = "openvino"
    device = "cpu"
    threads = 1
    """Torch threads while it runs: OpenVINO owns the inference threads, torch's team stays small."""

    def __init__(
        self,
        module: nn.Module | None = None,
        *,
        spec: ModelSpec,
        weights: str = "default",
        build: Callable[[], nn.Module] | None = None,
        network: Any = None,
        weights_key: str | None = None,
        precision: str = "auto",
        mode: str = "throughput",
        cache_dir: str | os.PathLike[str] | None = None,
        calibration: Calibration | None = None,
        threshold: float = ModelOptions.threshold,
    ) -> None:
        """Load the network from the cache (no torch involved), or convert it; then compile it.

        Args:
            module: the network with its weights loaded, eval mode, fp32, on the CPU; its forward
                takes the spec's normalised ``(N, 3, h, w)`` input and returns its output tensor.
            spec: what the network is (name, categories, input size, normalisation, output kind).
            weights: the weights argument as given, for reports; ``"random"`` marks it untrained.
            build: instead of ``module``, a function that builds it, called only when the cache has
                no converted network (with ``weights_key``).
            network: instead of either, a ready ``openvino.Model`` (uint8 NHWC BGR ``frames`` in, the
                output out): the user's own network file, read by :mod:`live_seg.model.own_model`.
            weights_key: what identifies the weights (:func:`live_seg.model.identity.weights_key`); ``None``:
                a hash of ``module``'s tensors.
            precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"int8"``.
            mode: ``"throughput"`` (file runs) or ``"latency"`` (live).
            cache_dir: cache root (default :func:`cache_root`); ``""`` disables the cache.
            calibration: int8's calibration frames (default: the bundled sample clip).
            threshold: for a probability model, the probability above which a pixel is class 1.

        Raises:
            ModelError: OpenVINO missing, a precision it cannot run, or a network it cannot convert or
                compile; the message names ``--backend torch``. ``build``'s own errors (weights that
                cannot be had) pass through.
        """
        require()
        if mode not in MODES:
            raise ModelError(f"unknown OpenVINO mode {mode!r}; choose one of {', '.join(MODES)}")
        if sum(x is not None for x in (module, build, network)) != 1 or (build is not None and weights_key is None):
            raise ValueError("pass module, network, or build with weights_key")
        t0 = time.perf_counter()
        self.spec, self.name, self.weights, self.mode = spec, spec.name, weights, mode
        self.input_hw, self.size = spec.input_hw, spec.size
        self.threshold = check_threshold(threshold)
        self.untrained = weights == "random"
        self.categories = list(spec.categories)
        self.num_classes = len(self.categories)
        self.precision = resolve_precision(precision)
        self._root = cache_root() if cache_dir is None else (Path(cache_dir) if cache_dir != "" else None)
        self.cache: Path | None = self._entry(module, weights_key)
        self.converted = False
        self._model = network if network is not None else self._load_or_convert(module if build is None else build)
        self.compiled_dir = None if self.cache is None else self.cache / f"compiled-{self.precision}"
        self.calibration: str | None = None
        if self.precision == INT8:
            self._quantize(calibration or quantize.calibration(None))
        if self.untrained and build is not None and not self.converted:
            log.warning(UNTRAINED_NOTE)  # building the network says it otherwise
        self._heads: dict[str, _Compiled] = {}
        self._lock = threading.Lock()
        self._ids = self._head("ids")
        self.cache_hit = bool(self._ids.compiled.get_property("LOADED_FROM_CACHE")) if self.cache else False
        self.requests = self._ids.requests
        self.setup_s = time.perf_counter() - t0
        how = "compiled model from the cache" if self.cache_hit else "converted and compiled" if self.converted else ""
        log.info(
            "model %s (%s weights) on OpenVINO %s, %s, %s mode (%d requests), input %dx%d; setup %.1f s (%s)",
            *(spec.name, weights, ov.__version__.split("-")[0], self.precision, mode, self.requests),
            *(spec.input_hw[1], spec.input_hw[0]),
            *(self.setup_s, how or "compiled"),
        )

    def _entry(self, module: nn.Module | None, weights_key: str | None) -> Path | None:
        """The cache entry of this network (``None``: no cache), keyed by ``weights_key`` or ``module``'s tensors."""
        if self._root is None:
            return None
        if weights_key is None and module is not None:
            from .ov_convert import weights_digest

            weights_key = weights_digest(module)
        if weights_key is None:
            return None
        h, w = self.spec.input_hw
        return ov_cache.network_entry(self._root, cache_name(self.spec), f"{h}x{w}", weights_key)

    def _quantize(self, calib: Calibration) -> None:
        """Make the network int8: NNCF on ``calib``'s frames, or the int8 network cached for them."""
        self.calibration = calib.source
        folder = None if self.cache is None else ov_cache.int8_entry(self.cache, calib.cache_name())
        self.compiled_dir = None if folder is None else folder / "compiled"
        self._model, _ = quantize.load_or_quantize(self._model, calib, self.spec, folder, _core().read_model, save_ir)

    def _load_or_convert(self, network: nn.Module | Callable[[], nn.Module]) -> Any:
        """The network as an OpenVINO model: read from the cache, or converted (and cached).

        ``network`` is the module, or the function that builds it (called only here, on a miss).
        """
        if self.cache is not None and (cached := ov_cache.load(self.cache, _core().read_model)) is not None:
            return cached
        from torch import nn

        from .ov_convert import convert  # torch and torchvision load here, and only here

        module = network if isinstance(network, nn.Module) else network()
        try:
            model = convert(module, self.spec)
        except Exception as exc:
            raise ModelError(
                f"OpenVINO could not convert {self.name} ({one_line(exc, with_type=True, limit=200)}); {FIX}"
            ) from exc
        self.converted = True
        if self.cache is not None:
            try:
                ov_cache.store(self.cache, lambda folder: save_ir(model, folder / "model.xml"))
                return _core().read_model(self.cache / "model.xml")  # as later starts read it: same compiled key
            except OSError as exc:
                log.warning("could not cache the converted %s in %s (%s)", self.name, self.cache, one_line(exc))
        return model

    def _head(self, head: str) -> _Compiled:
        """The compiled ``head`` (built on first use; thread-safe)."""
        with self._lock:
            if head not in self._heads:
                config = {
                    "INFERENCE_PRECISION_HINT": PRECISIONS[self.precision],
                    "PERFORMANCE_HINT": self.mode.upper(),
                }
                blobs = None  # one folder per head and mode: its newest blob is the one in use
                if self.compiled_dir is not None:
                    blobs = self.compiled_dir.with_name(f"{self.compiled_dir.name}-{self.mode}-{head}")
                    config["CACHE_DIR"] = str(blobs)
                try:
                    model = with_head(self._model, head, self.spec.output, self.threshold)
                    compiled = _core().compile_model(model, "CPU", config)
                except Exception as exc:
                    raise ModelError(
                        f"OpenVINO could not compile {self.name} for the CPU ({one_line(exc, limit=200)}); {FIX}"
                    ) from exc
                if blobs is not None:
                    ov_cache.prune_compiled(blobs, self._root)
                self._heads[head] = _Compiled(compiled)
            return self._heads[head]

    def describe(self) -> dict:
        """What runs, for logs and benchmark reports."""
        return {
            **describe_model(self),
            "openvino": ov.__version__.split("-")[0],
            "mode": self.mode,
            "requests": self.requests,
            "model_setup_s": round(self.setup_s, 3),
            "cache_hit": self.cache_hit,
            **({"calibration": self.calibration} if self.calibration else {}),
        }

    def preprocess(self, frames: Sequence[Frame]) -> np.ndarray:
        """Resize frames to the model input as the spec says (:func:`live_seg.model.preprocess.resize_batch`,
        the same pixels as the torch backend's).

        Args:
            frames: ``(H, W, 3)`` uint8 BGR images; their sizes may differ.

        Returns:
            ``(N, h, w, 3)`` uint8 BGR; the rest of the preprocessing runs in the graph.

        Raises:
            ValueError: a frame that is not ``(H, W, 3)`` uint8, or no frames at all.
        """
        return resize_batch(frames, self.spec)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Class ids of each pixel (argmax of the logits, or ``probability > threshold``).

        Args:
            batch: the output of :meth:`preprocess`, ``(N, h, w, 3)`` uint8 BGR.

        Returns:
            ``(N, h, w)`` uint8 class ids.
        """
        return self._ids.run(batch)

    @property
    def soft_output(self) -> bool:
        """Whether :meth:`infer_soft` gives a soft foreground map (a probability model)."""
        return self.spec.output == PROBABILITY

    def infer_soft(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For a probability model: the class ids and the soft foreground map
        (:attr:`~live_seg.base.frames.SegResult.soft`), both ``(N, h, w)`` uint8; ids == (soft >= 128)."""
        return ids_and_soft(self._head("logits").run(batch)[:, 0], self.threshold)

    def infer_scores(self, batch: np.ndarray) -> torch.Tensor:
        """Class probabilities of each pixel (softmax over classes, or ``(1 - p, p)``), for temporal smoothing.

        Args:
            batch: the output of :meth:`preprocess`, ``(N, h, w, 3)`` uint8 BGR.

        Returns:
            ``(N, num_classes, h, w)`` float32 CPU tensor; sums to 1 over dim 1.
        """
        import torch  # smoothing computes on torch tensors: it loads torch, a plain run does not

        return torch.from_numpy(self._head("scores").run(batch))

    def predict(self, frames: Sequence[Frame]) -> list[np.ndarray]:
        """Segment frames: one ``(h, w)`` uint8 mask of class ids per ``(H, W, 3)`` uint8 BGR frame."""
        return list(self.infer(self.preprocess(frames)))

    def logits(self, frames: Sequence[Frame]) -> torch.Tensor:
        """The network's raw output for numerical comparisons: ``(N, C, h, w)`` float32 CPU tensor."""
        import torch

        return torch.from_numpy(self._head("logits").run(self.preprocess(frames)))

    def synchronize(self) -> None:
        """A no-op: :meth:`infer` returns when its requests are done."""

    def naive_preprocess(self, image_rgb: np.ndarray) -> np.ndarray:
        """One frame as a first OpenVINO script would feed it: ``(size, size, 3)`` uint8 RGB → ``(1, s, s, 3)`` BGR."""
        return np.ascontiguousarray(image_rgb[None, :, :, ::-1])

    def naive_infer(self, x: np.ndarray) -> np.ndarray:
        """The output of the runtime, argmax (or threshold) in NumPy (a first script's way): ``(h, w)`` int64 ids."""
        out = self._head("logits").run(x)[0]
        return (out[0] > self.threshold).astype(np.int64) if self.spec.output == PROBABILITY else out.argmax(0)
