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
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Segmenter": "model",
    "build_segmenter": "backends",
    "MODELS": "model",
    "torch_runtime": "model",
    "Renderer": "render",
    "overlay": "render",
    "blend": "render",
    "colorize": "render",
    "make_palette": "render",
    "VOC_CLASSES": "render",
    "Effect": "effects",
    "EffectOptions": "effects",
    "choose_classes": "effects",
    "process_video": "video",
    "process_image": "image",
    "process_batch": "video_batch",
    "LiveSession": "live",
    "LiveOptions": "live",
    "run_live": "live",
    "run_bench": "bench",
    "VideoFileSource": "sources",
    "VideoWriter": "mp4",
    "Control": "pipeline",
    "run_file": "pipeline",
    "AnalysisOptions": "analysis_run",
    "TemporalSmoother": "analysis",
    "read_masks": "mask_outputs",
    "LiveSegError": "errors",
    "SourceError": "errors",
    "ModelError": "errors",
    "OutputError": "errors",
    "PipelineError": "errors",
    "ClusterError": "errors",
    "UsageError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'live_seg' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
