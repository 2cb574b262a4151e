"""What the benchmark measures besides the pipeline itself: the naive per-frame loop of the
original scripts, the model-only ceiling, the ``video`` job timed whole, and how far a faster
precision's output is from fp32.

The naive loop is kept as the original author wrote it (``cv2.resize``, torchvision
``ToTensor`` + ``Normalize``, ``["out"].argmax``, a per-class colouring loop, ``cv2.VideoWriter``):
it is the baseline the pipeline is compared with, so it must not borrow the pipeline's fast paths.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from ...base.errors import OutputError, SourceError
from ...base.metrics import STAGES, Stats
from ...base.options import EncodeOptions, RunOptions
from ...base.specs import PROBABILITY
from ...model.segmenter import Segmenter
from ...pipeline.threads import Control
from ...render.renderer import DEFAULT_ALPHA, voc_palette
from ..video import VideoHooks, VideoOptions, process_video
from .clips import SYNTHETIC_FPS
from .measure import Sample, check_stop


def naive_preprocess(seg: Segmenter, image_rgb: np.ndarray) -> torch.Tensor:
    """One frame prepared as the original single-image scripts did.

    torchvision's ``ToTensor`` and ``Normalize`` on the CPU, a batch of one, then moved to the
    device and cast like the weights (``.half()`` for fp16). :meth:`Segmenter.preprocess` is the
    fast path.

    Args:
        seg: the segmenter whose device and weights' dtype the input follows.
        image_rgb: ``(size, size, 3)`` uint8 **RGB** image, already resized.

    Returns:
        ``(1, 3, size, size)`` tensor on ``seg.device``.
    """
    from torchvision import transforms

    spec = seg.spec
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=spec.mean, std=spec.std)])
    x = transform(image_rgb).unsqueeze(0).to(seg.device)
    dtype = next(seg.module.parameters()).dtype
    return x if dtype == torch.float32 else x.to(dtype)


def naive_infer(seg: Segmenter, x: torch.Tensor) -> np.ndarray:
    """Forward, argmax (or a probability's threshold) and ``.cpu().numpy()`` as the original scripts did.

    Args:
        seg: the segmenter whose network runs.
        x: the output of :func:`naive_preprocess`, ``(1, 3, size, size)``.

    Returns:
        ``(size, size)`` int64 class ids.
    """
    with torch.no_grad():
        out = seg.module(x)
        out = out["out"] if isinstance(out, dict) else out
    if seg.spec.output == PROBABILITY:
        return (out[0, 0] > seg.threshold).long().cpu().numpy()
    return torch.argmax(out.squeeze(0), dim=0).cpu().numpy()


def decode_segmap(mask: np.ndarray, label_colors: np.ndarray) -> np.ndarray:
    """Colour a class mask one class at a time, as the original scripts did.

    Args:
        mask: ``(H, W)`` integer class ids.
        label_colors: ``(N, 3)`` uint8 colours, RGB.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    r = np.zeros_like(mask).astype(np.uint8)
    g = np.zeros_like(mask).astype(np.uint8)
    b = np.zeros_like(mask).astype(np.uint8)
    for label in range(len(label_colors)):
        idx = mask == label
        r[idx] = label_colors[label, 0]
        g[idx] = label_colors[label, 1]
        b[idx] = label_colors[label, 2]
    return np.stack([r, g, b], axis=2)


def naive_run(seg: Segmenter, src: Path, frames: int, out_dir: Path, control: Control | None = None) -> Sample:
    """Process ``frames`` frames of ``src`` the naive way (see the module docstring).

    Returns:
        The run's :class:`Sample`, stages ``decode``, ``preprocess``, ``infer``, ``render``, ``encode``.

    Raises:
        KeyboardInterrupt: ``control`` asked to stop (checked before each frame).
    """
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    t_start = time.perf_counter()
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise SourceError(f"OpenCV cannot open {src} for the naive loop; try --source synthetic")
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS) or SYNTHETIC_FPS
    out_path = out_dir / "naive.mp4"
    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    done = 0
    try:
        if not writer.isOpened():
            raise OutputError(f"OpenCV cannot write {out_path} (mp4v) for the naive loop")
        while done < frames:
            check_stop(control)
            t0 = time.perf_counter()
            ok, frame = cap.read()
            if not ok:
                break
            t1 = time.perf_counter()
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            rgb = cv2.resize(rgb, seg.input_hw[::-1])
            x = naive_preprocess(seg, rgb)
            seg.synchronize()
            t2 = time.perf_counter()
            mask = naive_infer(seg, x)
            t3 = time.perf_counter()
            colour = decode_segmap(mask, voc_palette(seg.num_classes))
            colour = cv2.resize(cv2.cvtColor(colour, cv2.COLOR_RGB2BGR), (frame.shape[1], frame.shape[0]))
            blended = cv2.addWeighted(frame, 1 - DEFAULT_ALPHA, colour, DEFAULT_ALPHA, 0)
            t4 = time.perf_counter()
            writer.write(blended)
            t5 = time.perf_counter()
            for key, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                stages[key].append(seconds)
            done += 1
    finally:
        cap.release()
        writer.release()
    return Sample(time.perf_counter() - t_start, done, stages)


def model_only_runner(
    seg: Segmenter, frames: Sequence[np.ndarray], control: Control | None = None, workers: int = 1
) -> Callable[[int], Sample]:
    """A ``run(n)`` that times forward + argmax of ``ceil(n / len(frames))`` passes over one batch.

    The batch is preprocessed once, before any timing; the device is synchronised before
    every clock read. ``workers`` threads share the passes, as the pipeline's inference
    workers do (with the same torch threads each), so the ceiling is measured the same way.
    """
    batch = len(frames)
    x = seg.preprocess(frames)
    seg.synchronize()

    def run(n: int) -> Sample:
        per_frame: list[float] = []
        passes = max(1, math.ceil(n / batch))
        todo = iter(range(passes))
        lock = threading.Lock()

        def loop() -> None:
            while True:
                check_stop(control)
                with lock:
                    if next(todo, None) is None:
                        return
                t0 = time.perf_counter()
                seg.infer(x)
                seg.synchronize()
                with lock:
                    per_frame.extend([(time.perf_counter() - t0) / batch] * batch)

        seg.synchronize()
        t_start = time.perf_counter()
        if workers == 1:
            loop()
        else:
            threads = [threading.Thread(target=loop, name=f"live_seg-bench-{i}") for i in range(workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return Sample(time.perf_counter() - t_start, passes * batch, {"infer": per_frame})

    return run


def pipeline_run(
    seg: Segmenter,
    src: Path,
    frames: int,
    out_dir: Path,
    control: Control | None = None,
    *,
    batch: int = 1,
    workers: int | None = None,
) -> Sample:
    """Run the ``video`` job on the first ``frames`` frames of ``src``; time it whole.

    It takes :func:`naive_run`'s arguments, and the pipeline's ``batch`` (frames per forward
    pass) and ``workers`` (inference threads; ``None``: planned from the cores) by keyword.

    Returns:
        The run's :class:`Sample` with the pipeline's own per-frame stage times and latencies.

    Raises:
        KeyboardInterrupt: the run was stopped (Ctrl-C or ``control``) before its last frame.
    """
    check_stop(control)
    seen: list[Stats] = []

    def on_frame(stats: Stats) -> None:
        if not seen:
            seen.append(stats)

    options = VideoOptions(
        encode=EncodeOptions(audio=False),
        run=RunOptions(batch=batch, workers=workers, max_frames=frames, overwrite=True),
    )
    hooks = VideoHooks(control=control, on_frame=on_frame)
    t_start = time.perf_counter()
    summary = process_video(src, out_dir / "pipeline.mp4", seg, options, hooks=hooks)
    seconds = time.perf_counter() - t_start
    if summary["interrupted"]:
        raise KeyboardInterrupt(summary["stop_reason"] or "interrupted")
    stats = seen[0] if seen else Stats()
    return Sample(seconds, summary["frames_out"], {k: list(v) for k, v in stats.stages.items()}, list(stats.latency))


def agreement(seg: Segmenter, reference: Segmenter, frames: Sequence[np.ndarray]) -> dict[str, float]:
    """How far ``seg`` (e.g. bf16) is from ``reference`` (fp32, same weights) on ``frames``.

    Args:
        seg: the segmenter under test.
        reference: the same model and weights at the reference precision.
        frames: ``(H, W, 3)`` uint8 BGR frames (real footage gives meaningful figures).

    Returns:
        ``{"logit_rel_err": ||a - b|| / ||b|| over all logits, "mask_agreement": fraction of
        pixels whose argmax class is the same, "frames": len(frames)}``.
    """
    with torch.inference_mode():
        a = torch.cat([seg.logits([f]) for f in frames])
        b = torch.cat([reference.logits([f]) for f in frames])
        rel = float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-12))
        same = float((a.argmax(1) == b.argmax(1)).float().mean())
    return {"logit_rel_err": round(rel, 5), "mask_agreement": round(same, 5), "frames": len(frames)}
