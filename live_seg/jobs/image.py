"""The ``image`` job: one picture in; overlay (or effect), class mask and side-by-side PNGs out."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..base.errors import OutputError, SourceError, one_line
from ..base.files import write_palette_png, write_png
from ..base.frames import Frame
from ..base.options import IMAGE_RENDER, ModelOptions, RenderOptions, fold
from ..model.select import job_runtime, segmenter_for
from ..pipeline.infer import infer_masks
from ..render.alpha import upsample_threshold
from ..render.effects import EffectOptions
from ..render.renderer import Renderer, class_shares, resize_mask, side_by_side

if TYPE_CHECKING:
    from ..model.segmenter import Segmenter

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("overlay.png", "mask.png", "side_by_side.png")


def read_image(path: str | os.PathLike[str]) -> Frame:
    """Read an image file as ``(H, W, 3)`` uint8 BGR (grey and alpha are converted).

    Raises:
        SourceError: missing, empty or undecodable file.
    """
    p = Path(path)
    if not p.is_file():
        raise SourceError(f"image not found: {p}")
    data = np.fromfile(str(p), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise SourceError(f"cannot read {p} as an image (empty, damaged or not an image format OpenCV reads)")
    return image


def output_names(effect: str = "overlay") -> tuple[str, str, str]:
    """The three PNGs written: ``overlay.png`` (``EFFECT.png`` for another effect), mask, side by side."""
    return (f"{effect}.png", *OUTPUT_NAMES[1:])


def process_image(
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] = ".",
    segmenter: Segmenter | None = None,
    *,
    render: RenderOptions = IMAGE_RENDER,
    effect: EffectOptions | str | None = None,
    overwrite: bool = False,
    **keywords: Any,
) -> dict[str, Any]:
    """Segment one image, as the original single-image script did, and save three PNGs.

    Writes ``overlay.png`` (frame 60 % + mask colour 40 %), ``mask.png`` (a palette PNG whose
    pixel values are class ids, at the image's size) and ``side_by_side.png`` (original |
    overlay, labelled) into ``out_dir``. With an ``effect`` other than ``overlay`` the first
    file is ``EFFECT.png`` (a ``cutout`` keeps its alpha; the side by side shows it over a
    checkerboard).

    Args:
        src, out_dir: the image; the folder for the PNGs (created if missing).
        segmenter: a ready model; when ``None`` one is built from the model keywords.
        render: palette, mask weight, legend (the view is always the overlay).
        effect: what the chosen classes get (:class:`~live_seg.render.effects.EffectOptions`, a name,
            or ``None``: the overlay).
        overwrite: replace existing PNGs.
        **keywords: :class:`~live_seg.base.options.RenderOptions` fields (``palette``, ``alpha``,
            ``legend``) folded into ``render``, and the model: a
            :class:`~live_seg.base.options.ModelOptions` as ``model``, or its fields (``model="…"``,
            ``weights``, ``device``, ...).

    Returns:
        ``{"outputs": [...paths], "classes": [{"id", "name", "share"}...], **model details}``.
    """
    model = keywords.pop("model") if isinstance(keywords.get("model"), ModelOptions) else ModelOptions()
    groups = fold({"render": render, "model": model}, keywords)
    render, model = groups["render"], groups["model"]
    image = read_image(src)
    options = EffectOptions.of(effect)
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output folder is a file: {folder}")
    targets = [folder / name for name in output_names(options.name)]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise OutputError(f"output exists: {existing[0]}; pass --overwrite to replace it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {folder}: {one_line(exc)}") from exc
    with options.build_before_model(segmenter, model, render.palette, render.alpha) as fx:
        seg = segmenter or segmenter_for(model, mode="latency")
        with job_runtime(seg):
            masks, softs = infer_masks(seg, seg.preprocess([image]))
            small, soft = masks[0], softs[0]  # a probability's soft map: smooth edges, upsampled before its threshold
            described = seg.describe()
        h, w = image.shape[:2]
        mask = resize_mask(small, h, w) if soft is None else upsample_threshold(soft, h, w)
        renderer = Renderer(seg.categories, palette=render.palette, alpha=render.alpha, legend=render.legend, effect=fx)
        shares = class_shares(mask, len(seg.categories))
        blended = renderer.render(image, small, classes=[cid for cid, _ in shares], soft=soft).copy()  # largest first
        pair = side_by_side(
            image, fx.preview(image, small, soft) if blended.shape[2] == 4 else blended, ("original", "segmented")
        )
    colours = renderer.lut[:, ::-1].reshape(-1).tolist()  # BGR rows -> [r0, g0, b0, r1, ...]
    for target, write in (
        (targets[0], lambda p: write_png(p, blended)),
        (targets[1], lambda p: write_palette_png(p, mask, colours)),
        (targets[2], lambda p: write_png(p, pair)),
    ):
        try:
            write(target)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {one_line(exc)}") from exc
    classes = [{"id": cid, "name": seg.categories[cid], "share": round(share, 4)} for cid, share in shares]
    return {"input": str(src), "outputs": [str(t) for t in targets], "classes": classes, **described}
