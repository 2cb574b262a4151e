"""live_seg: real-time semantic segmentation (FCN-ResNet101, PASCAL VOC) for video, cameras and images.

Public API (imported lazily, so ``import live_seg`` does not load torch)::

    from live_seg import Segmenter, Renderer, overlay, process_video, process_image

    seg = Segmenter("fcn_resnet101", weights="default", device="auto")
    masks = seg.predict([frame_bgr])              # list of (512, 512) uint8 class ids
    view = overlay(frame_bgr, masks[0], make_palette("voc"))   # 60/40 blend, BGR uint8
    stats = process_video("in.mp4", "out.mp4", seg)

    # steadier masks, and the masks themselves as a lossless video, read back one by one
    opts = AnalysisOptions(smooth="ema", mask_video="masks.mkv", coverage="coverage.csv")
    stats = process_video("in.mp4", "out.mp4", seg, analysis=opts)   # stats["flicker"]
    for mask in read_masks("masks.mkv"):          # (512, 512) uint8 class ids per frame
        ...

    # many live sources, one model: results as they are ready (closing the loop stops every thread)
    for r in stream(["rtsp://cam1/h264", "http://cam2/stream.mjpg"], model="lraspp_mobilenet_v3_large"):
        print(r.source, r.index, r.latency_s, r.mask.shape)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Segmenter": "model.segmenter",
    "build_segmenter": "model.select",
    "segmenter_for": "model.select",
    "ModelSpec": "base.specs",
    "SPECS": "base.specs",
    "MODELS": "model.segmenter",
    "torch_runtime": "model.segmenter",
    "Renderer": "render.renderer",
    "overlay": "render.renderer",
    "blend": "render.renderer",
    "colorize": "render.renderer",
    "make_palette": "render.renderer",
    "VOC_CLASSES": "base.registry",
    "Effect": "render.effects",
    "EffectOptions": "render.effects",
    "choose_classes": "render.effects",
    "process_video": "jobs.video",
    "process_image": "jobs.image",
    "process_batch": "jobs.batch.video",
    "LiveSession": "jobs.live.session",
    "LiveOptions": "jobs.live.options",
    "run_live": "jobs.live.session",
    "stream": "jobs.live.stream",
    "StreamResult": "jobs.live.stream",
    "run_bench": "jobs.bench",
    "VideoFileSource": "media.file_source",
    "VideoWriter": "media.writer",
    "Control": "pipeline.threads",
    "run_file": "pipeline.file_run",
    "AnalysisOptions": "base.options",
    "ModelOptions": "base.options",
    "RenderOptions": "base.options",
    "EncodeOptions": "base.options",
    "RunOptions": "base.options",
    "VideoOptions": "jobs.video",
    "TemporalSmoother": "analysis.smoothing",
    "read_masks": "analysis.masks",
    "LiveSegError": "base.errors",
    "SourceError": "base.errors",
    "ModelError": "base.errors",
    "OutputError": "base.errors",
    "PipelineError": "base.errors",
    "ClusterError": "base.errors",
    "UsageError": "base.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'live_seg' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
