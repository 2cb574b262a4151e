"""Effects on the pixels of chosen classes: overlay, blur, pixelate, replace, cutout, highlight.

A frame is ``(H, W, 3)`` uint8 **BGR**; a mask is ``(h, w)`` uint8 class ids at the model's
size (512x512), stretched to the frame. The chosen classes become an alpha at the mask's size,
feathered there (a box blur: the edge ramps over about ``feather`` frame pixels) and scaled
to the frame with linear interpolation, so edges are not the staircase of a nearest-resized
mask. With ``feather=0`` the alpha is the nearest-resized mask (hard edges).

Only the work an effect needs is done: nothing when no pixel is chosen, no blend when every
pixel is, and the effect and the blend only over the bounding box of the chosen region.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..base.errors import UsageError
from ..base.frames import Frame, Mask, check_frame, check_mask
from ..base.options import ModelOptions
from ..base.registry import ALPHA_EFFECTS, EFFECTS, VOC_CLASSES
from ..base.specs import resolve_spec
from .alpha import SOFT_EDGE, Alpha, composite, soft_alpha
from .backgrounds import Background, flatten, load_background
from .renderer import DEFAULT_ALPHA, frame_colors, lookup_table, make_palette


class ClassNameError(UsageError):
    """A ``--classes`` name the weights do not have (a bad argument: the CLI exits 2)."""


@dataclass(frozen=True, slots=True)
class EffectOptions:
    """What the user asked for, before the weights' class names are known.

    Attributes:
        name: one of ``registry.EFFECTS``.
        classes: class names (comma-separated or a sequence); ``None``: every class but background.
        invert: apply to every class except ``classes``.
        feather: edge width in frame pixels (``None``: :func:`default_feather`).
        blur: ``blur`` sigma in frame pixels (``None``: :func:`default_blur`).
        block: ``pixelate`` block in frame pixels (``None``: :func:`default_block`).
        background: ``replace``'s colour, picture or video (``None``: green).
    """

    name: str = EFFECTS[0]
    classes: str | Sequence[str] | None = None
    invert: bool = False
    feather: float | None = None
    blur: float | None = None
    block: int | None = None
    background: str | None = None

    @classmethod
    def of(cls, value: EffectOptions | str | None) -> EffectOptions:
        """Options from an effect name (defaults for the rest), or ``value`` itself."""
        if isinstance(value, EffectOptions):
            return value
        return cls(value or EFFECTS[0])

    @property
    def alpha_output(self) -> bool:
        """The effect's frames are BGRA (an output format with alpha is needed)."""
        return self.name in ALPHA_EFFECTS

    def check(self, categories: Sequence[str] = VOC_CLASSES) -> None:
        """Raise now for a bad class name, setting or background (what :meth:`build` would raise)."""
        self.build(categories).close()

    def build(
        self,
        categories: Sequence[str],
        palette: str | np.ndarray = "voc",
        overlay_alpha: float = DEFAULT_ALPHA,
        flat: bool = False,
    ) -> Effect:
        """The :class:`Effect` for weights with these ``categories`` (reads the background now).

        Raises:
            ClassNameError: an unknown class name.
            SourceError: a background that cannot be read.
            ValueError: a bad effect name or setting.
        """
        chosen = choose_classes(self.classes, categories, self.invert)
        if isinstance(palette, str):  # the model's classes keep their colours (a person is painted as VOC's)
            palette = make_palette(palette, 256, names=categories)
        fx = Effect(self.name, chosen, palette, self.feather, self.blur, self.block, self.background, overlay_alpha)
        fx.flat = flat
        return fx

    def build_before_model(
        self, segmenter: Any, model: ModelOptions, palette: str = "voc", overlay_alpha: float = DEFAULT_ALPHA
    ) -> Effect:
        """A job's effect, built before its model loads so that a bad class or background fails
        first: for ``segmenter``'s categories when one is given, else for the categories of the
        model that ``model`` asks for (its spec: VOC's, the selfie model's ``background``/``person``,
        or your own model's labels)."""
        categories = segmenter.categories if segmenter is not None else resolve_spec(model).categories
        return self.build(categories, palette=palette, overlay_alpha=overlay_alpha)


ALL_CLASSES = "all"
"""The ``--classes`` name for every class, background included."""


def class_name(category: str) -> str:
    """The name a user types for a category: torchvision's ``__background__`` is ``background``."""
    return category.strip("_") or category


def choose_classes(names: str | Sequence[str] | None, categories: Sequence[str], invert: bool = False) -> np.ndarray:
    """Which class ids an effect applies to.

    Args:
        names: comma-separated names or a sequence of names (case-insensitive; ``background``
            included; ``all`` for every class); ``None`` or empty: every class but background (id 0).
        categories: the weights' category names, index = class id.
        invert: every class except the named ones.

    Returns:
        ``(len(categories),)`` bool, True for chosen ids.

    Raises:
        ClassNameError: an unknown name; the message lists the valid ones.
    """
    known = {class_name(c).lower(): i for i, c in enumerate(categories)}
    if isinstance(names, str):
        names = names.split(",")
    wanted = [n.strip() for n in names or () if n.strip()]
    chosen = np.zeros(len(categories), bool)
    if not wanted:
        chosen[1:] = True
    for name in wanted:
        if name.lower() == ALL_CLASSES:
            chosen[:] = True
            continue
        cid = known.get(class_name(name).lower())
        if cid is None:
            valid = ", ".join(class_name(c) for c in categories)
            raise ClassNameError(f"unknown class {name!r}; valid names: {valid} (or {ALL_CLASSES})")
        chosen[cid] = True
    return ~chosen if invert else chosen


def default_feather(effect: str, height: int) -> float:
    """Edge width in frame pixels: 0 (hard) for ``overlay``, else ``height / 120`` (6 px at 720p)."""
    return 0.0 if effect == "overlay" else height / 120


def default_blur(height: int) -> float:
    """Blur sigma in frame pixels: ``height / 36`` (20 px at 720p), enough to hide a face."""
    return height / 36


def default_block(height: int) -> int:
    """Pixelate block size in frame pixels: ``height / 45`` (16 px at 720p), at least 4."""
    return max(4, round(height / 45))


def blurred(frame: Frame, roi: tuple[int, int, int, int], sigma: float) -> Frame:
    """A Gaussian-like blur of ``frame`` over ``roi``: downscale, blur, upscale (cheap at any sigma).

    Args:
        frame: ``(H, W, 3)`` uint8 BGR.
        roi: ``(y0, y1, x0, x1)``; pixels around it are read so the box's edges blur like the rest.
        sigma: standard deviation in frame pixels (as CSS ``blur()``).

    Returns:
        ``(y1 - y0, x1 - x0, 3)`` uint8 BGR.
    """
    y0, y1, x0, x1 = roi
    if sigma <= 0:
        return frame[y0:y1, x0:x1]
    H, W = frame.shape[:2]
    pad = math.ceil(2 * sigma)
    py0, py1, px0, px1 = max(0, y0 - pad), min(H, y1 + pad), max(0, x0 - pad), min(W, x1 + pad)
    region = frame[py0:py1, px0:px1]
    factor = max(1.0, sigma / 3)
    sw, sh = max(1, round((px1 - px0) / factor)), max(1, round((py1 - py0) / factor))
    small = cv2.resize(region, (sw, sh), interpolation=cv2.INTER_AREA) if factor > 1 else region
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_REPLICATE)
    big = cv2.resize(small, (px1 - px0, py1 - py0), interpolation=cv2.INTER_LINEAR) if factor > 1 else small
    return big[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]


def pixelated(frame: Frame, roi: tuple[int, int, int, int], block: int) -> Frame:
    """``frame`` over ``roi`` in blocks of ``block`` pixels, aligned to the frame's grid (blocks do
    not crawl as the region moves).

    Returns:
        ``(y1 - y0, x1 - x0, 3)`` uint8 BGR: each block the mean of its pixels.
    """
    y0, y1, x0, x1 = roi
    H, W = frame.shape[:2]
    by0, bx0 = y0 - y0 % block, x0 - x0 % block
    by1, bx1 = min(H, -(-y1 // block) * block), min(W, -(-x1 // block) * block)
    nh, nw = -(-(by1 - by0) // block), -(-(bx1 - bx0) // block)
    small = cv2.resize(frame[by0:by1, bx0:bx1], (nw, nh), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (nw * block, nh * block), interpolation=cv2.INTER_NEAREST)
    return big[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]


class Effect(contextlib.AbstractContextManager["Effect"]):
    """Applies one effect to the chosen classes of each frame.

    Args:
        name: one of :data:`EFFECTS`.
        chosen: ``(num_classes,)`` bool, the ids the effect applies to (:func:`choose_classes`).
        palette: ``(N, 3)`` uint8 **BGR** class colours for ``overlay`` (N >= num_classes), or a
            palette name for :func:`live_seg.render.renderer.make_palette` (``"voc"``, ``"random"``).
        feather: edge width in frame pixels; ``None``: :func:`default_feather` for the frame.
        blur: ``blur`` sigma in frame pixels; ``None``: :func:`default_blur`.
        block: ``pixelate`` block in frame pixels; ``None``: :func:`default_block`.
        background: for ``replace``: a background or its spec (colour, picture or video path,
            read now); ``None``: green, loaded when ``replace`` is first used.
        overlay_alpha: weight of the colour in ``overlay``.

    Attributes:
        flat: :meth:`apply` always returns BGR (a cutout over a checkerboard), for a screen.

    Raises:
        ValueError: an unknown effect name or a bad setting.
        SourceError: a background that cannot be read.
    """

    def __init__(
        self,
        name: str = "overlay",
        chosen: np.ndarray | None = None,
        palette: str | np.ndarray = "voc",
        feather: float | None = None,
        blur: float | None = None,
        block: int | None = None,
        background: Background | str | None = None,
        overlay_alpha: float = DEFAULT_ALPHA,
    ) -> None:
        self.name = name
        for label, value in (("feather", feather), ("blur", blur), ("block", block)):
            if value is not None and value < (1 if label == "block" else 0):
                raise ValueError(f"{label}: expected a value >= {1 if label == 'block' else 0}, got {value}")
        chosen = np.asarray(chosen if chosen is not None else np.arange(256) > 0, bool)
        self._lut = np.zeros(256, np.uint8)
        self._lut[: min(256, chosen.size)] = chosen[:256]
        self.palette = make_palette(palette, 256) if isinstance(palette, str) else palette
        self._table = lookup_table(self.palette)
        self.feather, self.blur, self.block = feather, blur, block
        self.background = load_background(background) if isinstance(background, str) else background
        self.overlay_alpha = overlay_alpha
        self.flat = False
        self._color: np.ndarray | None = None
        self._color_id = -1  # the class whose plain colour _color holds (-1: per-pixel class colours)
        self._out: np.ndarray | None = None
        self._out4: np.ndarray | None = None

    @property
    def name(self) -> str:
        """The effect applied."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        if value not in EFFECTS:
            raise ValueError(f"effect: expected one of {', '.join(EFFECTS)}, got {value!r}")
        self._name = value

    @property
    def alpha_output(self) -> bool:
        """True when :meth:`apply` returns BGRA."""
        return self._name in ALPHA_EFFECTS and not self.flat

    def chosen_ids(self) -> set[int]:
        """The class ids the effect applies to."""
        return {int(i) for i in np.flatnonzero(self._lut)}

    def cycle(self) -> str:
        """Switch to the next effect (the live view's ``e`` key); returns its name."""
        self.name = EFFECTS[(EFFECTS.index(self._name) + 1) % len(EFFECTS)]
        return self._name

    def alpha(self, frame_shape: tuple[int, ...], mask: Mask, soft: np.ndarray | None = None) -> Alpha:
        """The alpha of the chosen classes of ``mask`` at the frame's size; with a probability model's ``soft``
        map (classes 0 and 1), its values shape the edges instead of the hard mask's."""
        h, w = frame_shape[:2]
        feather = self.feather if self.feather is not None else default_feather(self._name, h)
        weight = None
        if soft is not None and soft.shape == mask.shape and self._lut[0] != self._lut[1]:
            weight = cv2.LUT(soft, SOFT_EDGE if self._lut[1] else SOFT_EDGE[::-1].copy())  # how surely chosen
        return soft_alpha(cv2.LUT(mask, self._lut), h, w, feather, weight)

    def apply(self, frame: Frame, mask: Mask, soft: np.ndarray | None = None) -> np.ndarray:
        """The frame with the effect on its chosen pixels.

        Args:
            frame: ``(H, W, 3)`` uint8 BGR.
            mask: ``(h, w)`` uint8 class ids (any size; stretched to the frame).
            soft: a probability model's soft foreground map at the mask's size (smooth edges), or ``None``.

        Returns:
            ``(H, W, 3)`` uint8 BGR, or ``(H, W, 4)`` BGRA (straight alpha) for ``cutout``.
            The buffer is reused by the next call: copy it if you keep it.
        """
        check_frame(frame)
        check_mask(mask)
        alpha = self.alpha(frame.shape, mask, soft)
        if self._name == "cutout":
            return flatten(self._cutout(frame, alpha)) if self.flat else self._cutout(frame, alpha)
        if self._out is None or self._out.shape != frame.shape:
            self._out = np.empty_like(frame)
        out = self._out
        if self._name == "highlight":  # grey everywhere, the frame itself where chosen
            cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR, dst=out)
            top = frame[alpha.roi[0] : alpha.roi[1], alpha.roi[2] : alpha.roi[3]]
        else:
            np.copyto(out, frame)
            if alpha.coverage == "none":
                return out
            top = self._top(frame, mask, alpha.roi)
        composite(out, top, alpha)
        return out

    def preview(self, frame: Frame, mask: Mask, soft: np.ndarray | None = None) -> Frame:
        """:meth:`apply` as ``(H, W, 3)`` BGR for a screen: a cutout over a checkerboard."""
        out = self.apply(frame, mask, soft)
        return flatten(out) if out.shape[2] == 4 else out

    def _top(self, frame: Frame, mask: Mask, roi: tuple[int, int, int, int]) -> Frame:
        """What the chosen pixels become, over ``roi``."""
        y0, y1, x0, x1 = roi
        h, w = frame.shape[:2]
        if self._name == "blur":
            return blurred(frame, roi, self.blur if self.blur is not None else default_blur(h))
        if self._name == "pixelate":
            return pixelated(frame, roi, self.block if self.block is not None else default_block(h))
        if self._name == "replace":
            if self.background is None:
                self.background = load_background(None)
            return self.background.frame(h, w)[y0:y1, x0:x1]
        # overlay: the class colours blended 60/40
        a = self.overlay_alpha
        chosen = np.flatnonzero(self._lut)
        if len(chosen) == 1:  # one class chosen (a person model's person): one colour, no per-pixel lookup
            if self._color is None or self._color.shape[:2] != (h, w) or self._color_id != chosen[0]:
                self._color, self._color_id = np.empty((h, w, 3), np.uint8), chosen[0]
                self._color[:] = self.palette[chosen[0]]  # filled once for the frame size, sliced to each box
            return cv2.addWeighted(frame[y0:y1, x0:x1], 1.0 - a, self._color[y0:y1, x0:x1], a, 0.0)
        if self._color is None or self._color.shape[:2] != (h, w):
            self._color = np.empty((h, w, 3), np.uint8)
        self._color_id = -1
        color = frame_colors(mask, self._table, h, w, out=self._color)
        return cv2.addWeighted(frame[y0:y1, x0:x1], 1.0 - a, color[y0:y1, x0:x1], a, 0.0)

    def _cutout(self, frame: Frame, alpha: Alpha) -> np.ndarray:
        h, w = frame.shape[:2]
        if self._out4 is None or self._out4.shape[:2] != (h, w):
            self._out4 = np.empty((h, w, 4), np.uint8)
        out = self._out4
        cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA, dst=out)
        if alpha.coverage == "none":
            out[..., 3] = 0
        elif alpha.coverage == "some":
            out[..., 3] = alpha.values
        return out

    def close(self) -> None:
        """Release the background (a video file)."""
        if self.background is not None:
            self.background.close()

    def __exit__(self, *exc: object) -> None:
        self.close()
