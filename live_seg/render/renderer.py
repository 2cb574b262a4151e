"""Colour a class mask and blend it over its frame.

Everything here works on BGR ``uint8`` images (OpenCV's order). The mask is resized to
the frame (nearest neighbour, so class ids stay ids) and coloured there through a lookup
table; the colour image itself is never interpolated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..base.frames import Frame, Mask, check_frame, check_mask
from ..base.registry import DEFAULT_ALPHA, PALETTES, VIEWS, VOC_CLASSES

if TYPE_CHECKING:
    from .effects import Effect

RANDOM_PALETTE_SEED = 0


def voc_palette(num_classes: int = 21) -> np.ndarray:
    """The standard PASCAL VOC colour map.

    Class ``i`` gets a colour whose bits are ``i``'s bits spread over R, G and B from the
    most significant bit down (0 black, 1 dark red, 2 dark green, 15 person = (192,128,128)).

    Returns:
        ``(num_classes, 3)`` uint8 array in **RGB** order.
    """
    lut = np.zeros((num_classes, 3), dtype=np.uint8)
    for i in range(num_classes):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        lut[i] = (r, g, b)
    return lut


def named_voc_palette(names: Sequence[str]) -> np.ndarray:
    """The VOC colour map for a model's own class list: a class named like a PASCAL VOC class (``person``,
    ``cat``; ``background`` for ``__background__``) gets that class's colour, any other class the colour of
    its index. A person/background model paints people as the VOC models do.

    Returns:
        ``(len(names), 3)`` uint8 array in **RGB** order.
    """
    full = voc_palette(max(len(names), len(VOC_CLASSES)))
    voc = {n: i for i, n in enumerate(VOC_CLASSES)} | {"background": 0}
    return np.ascontiguousarray(full[[voc.get(n.lower(), i) for i, n in enumerate(names)]])


def make_palette(
    name: str = "voc", num_classes: int = 21, seed: int = RANDOM_PALETTE_SEED, names: Sequence[str] | None = None
) -> np.ndarray:
    """A colour lookup table for class ids.

    Args:
        name: ``"voc"`` for the standard PASCAL colours, ``"random"`` for colours drawn
            from a fixed seed (as the original single-image script did).
        num_classes: rows in the table.
        seed: the seed of the random palette.
        names: the model's class names, for the first rows (``"voc"``: VOC classes keep their colour, see
            :func:`named_voc_palette`; the rows after them keep their index's colour).

    Returns:
        ``(num_classes, 3)`` uint8 array in **BGR** order, ready for BGR frames.
    """
    if name == "voc":
        rgb = voc_palette(num_classes)
        if names is not None:
            rgb[: len(names)] = named_voc_palette(names)[:num_classes]
    elif name == "random":
        rgb = np.random.default_rng(seed).integers(0, 256, size=(num_classes, 3), dtype=np.uint8)
    else:
        raise ValueError(f"palette: expected one of {', '.join(PALETTES)}, got {name!r}")
    return np.ascontiguousarray(rgb[:, ::-1])


def resize_mask(mask: Mask, height: int, width: int) -> Mask:
    """Resize a class mask to ``(height, width)`` with nearest neighbour (ids stay ids)."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def colorize(mask: Mask, lut: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Colour a mask through a lookup table.

    Args:
        mask: ``(H, W)`` uint8 class ids.
        lut: ``(N, 3)`` uint8 colours, BGR.
        out: optional ``(H, W, 3)`` uint8 buffer to fill.

    Returns:
        ``(H, W, 3)`` uint8 BGR colour image.
    """
    return np.take(lut, mask, axis=0, out=out, mode="clip")


def lookup_table(lut: np.ndarray) -> np.ndarray:
    """``lut`` (``(N, 3)`` uint8 BGR colours) as the ``(1, 256, 3)`` table of ``cv2.LUT``; ids
    from ``N`` up get the last colour, as :func:`colorize` clips them."""
    table = np.empty((256, 3), np.uint8)
    n = min(256, len(lut))
    table[:n] = lut[:n]
    table[n:] = lut[n - 1]
    return table.reshape(1, 256, 3)


def frame_colors(mask: Mask, table: np.ndarray, height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """The class colours of ``mask`` stretched to ``(height, width)`` (nearest neighbour).

    A mask smaller than the frame is coloured at its own size and the colours are resized:
    nearest picks the same source pixel either way, so this equals colouring the resized mask,
    with the lookup done on fewer pixels (512x512 instead of 1280x720: 3.5x fewer).

    Args:
        mask: ``(h, w)`` uint8 class ids.
        table: :func:`lookup_table` of the colours.
        out: optional ``(height, width, 3)`` uint8 buffer to fill.

    Returns:
        ``(height, width, 3)`` uint8 BGR.
    """
    if mask.size < height * width:
        color = cv2.LUT(cv2.merge([mask, mask, mask]), table)
        return cv2.resize(color, (width, height), dst=out, interpolation=cv2.INTER_NEAREST)
    ids = resize_mask(mask, height, width)
    return cv2.LUT(cv2.merge([ids, ids, ids]), table, dst=out)


def blend(frame: Frame, color: np.ndarray, alpha: float = DEFAULT_ALPHA, out: np.ndarray | None = None) -> Frame:
    """``frame * (1 - alpha) + color * alpha``, rounded and saturated to uint8.

    Args:
        frame: ``(H, W, 3)`` uint8 BGR.
        color: same shape and dtype.
        alpha: weight of ``color`` in [0, 1].
        out: optional buffer of the same shape to write into.
    """
    return cv2.addWeighted(frame, 1.0 - alpha, color, alpha, 0.0, dst=out)


def overlay(frame: Frame, mask: Mask, lut: np.ndarray, alpha: float = DEFAULT_ALPHA) -> Frame:
    """Blend the coloured ``mask`` over ``frame`` (the mask is resized to the frame).

    Returns:
        A new ``(H, W, 3)`` uint8 BGR image.
    """
    check_frame(frame)
    check_mask(mask)
    h, w = frame.shape[:2]
    return blend(frame, colorize(resize_mask(mask, h, w), lut), alpha)


def class_shares(mask: Mask, num_classes: int = 21) -> list[tuple[int, float]]:
    """Classes present in ``mask`` with their share of pixels, largest first."""
    counts = np.bincount(mask.ravel(), minlength=num_classes)
    total = max(int(counts.sum()), 1)
    present = [(int(i), int(c) / total) for i, c in enumerate(counts) if c]
    return sorted(present, key=lambda item: -item[1])


def present_classes(mask: Mask, num_classes: int = 21) -> list[int]:
    """Ids present in ``mask``, ascending. Counts on a 4x subsample for speed."""
    small = mask[::4, ::4] if mask.shape[0] >= 64 and mask.shape[1] >= 64 else mask
    return [int(i) for i in np.flatnonzero(np.bincount(small.ravel(), minlength=num_classes))]


FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)
TEXT_PAD = 6
"""Pixels between a text box's left edge and its text (and its swatches)."""

Color = tuple[int, int, int]
"""A BGR colour."""


def _text_scale(image_height: int) -> tuple[float, int]:
    scale = max(0.4, min(1.0, image_height / 900))
    return scale, max(1, round(scale * 2))


def line_height(scale: float, thick: int) -> int:
    """Pixels per line of text at this font scale and thickness (ascent, descent, 4 px gap)."""
    (_, text_h), base = cv2.getTextSize("Ag", FONT, scale, thick)
    return text_h + base + 4


def text_box_size(
    texts: Sequence[str], scale: float, thick: int, line_h: int | None = None, indent: int = 0
) -> tuple[int, int]:
    """``(width, height)`` of the box :func:`draw_text_box` draws for these lines."""
    widest = max((cv2.getTextSize(t, FONT, scale, thick)[0][0] for t in texts), default=0)
    return indent + widest + 2 * TEXT_PAD, (line_h or line_height(scale, thick)) * len(texts) + 8


def draw_text_box(
    image: Frame,
    lines: Sequence[tuple[str, Color]],
    origin: tuple[int, int],
    *,
    scale: float,
    thick: int,
    shade: float = 0.0,
    line_h: int | None = None,
    indent: int = 0,
) -> tuple[int, int, int, int]:
    """Darken a box and write lines of text in it, in place: the legend, labels and the HUD.

    Args:
        image: ``(H, W, 3)`` uint8 BGR, modified in place.
        lines: ``(text, BGR colour)`` top to bottom.
        origin: the box's top-left corner ``(x, y)``.
        scale, thick: OpenCV font scale and stroke thickness.
        shade: the share of the picture's brightness the box keeps (0: black), so the text
            reads on any picture.
        line_h: pixels per line (default :func:`line_height`).
        indent: pixels left free before the text (the legend draws its swatches there).

    Returns:
        The box as drawn, ``(x, y, width, height)``, clipped to the image.
    """
    line_h = line_h or line_height(scale, thick)
    width, height = text_box_size([text for text, _ in lines], scale, thick, line_h, indent)
    x, y = origin
    width, height = max(0, min(width, image.shape[1] - x)), max(0, min(height, image.shape[0] - y))
    roi = image[y : y + height, x : x + width]
    if shade > 0:
        roi[:] = (roi.astype(np.float32) * shade).astype(np.uint8)
    else:
        roi[:] = 0
    descent = cv2.getTextSize("Ag", FONT, scale, thick)[1]
    for row, (text, color) in enumerate(lines):
        baseline = y + 4 + (row + 1) * line_h - descent - 4
        cv2.putText(image, text, (x + TEXT_PAD + indent, baseline), FONT, scale, color, thick, cv2.LINE_AA)
    return x, y, width, height


LEGEND_SHADE = 0.4
"""The legend's box keeps this share of the picture's brightness."""


def draw_legend(image: Frame, class_ids: Sequence[int], names: Sequence[str], lut: np.ndarray) -> Frame:
    """Draw a legend (colour swatch + name per class) in the image's top-right corner, in place.

    Args:
        image: ``(H, W, 3)`` uint8 BGR, modified in place.
        class_ids: the classes to list, top to bottom.
        names: class names indexed by id.
        lut: the BGR palette the mask was coloured with.
    """
    if not class_ids:
        return image
    scale, thick = _text_scale(image.shape[0])
    line = int(26 * scale) + 6
    lines = [(names[i] if i < len(names) else str(i), WHITE) for i in class_ids]
    width, _ = text_box_size([text for text, _ in lines], scale, thick, line, indent=line)
    origin = (max(0, image.shape[1] - width - 8), 8)
    x0, y0, _, _ = draw_text_box(
        image, lines, origin, scale=scale, thick=thick, shade=LEGEND_SHADE, line_h=line, indent=line
    )
    for row, cid in enumerate(class_ids):
        y = y0 + 4 + row * line
        color = tuple(int(c) for c in lut[cid])
        cv2.rectangle(image, (x0 + TEXT_PAD, y + 3), (x0 + line - 2, y + line - 5), color, -1)
    return image


def draw_label(image: Frame, text: str, origin: tuple[int, int] = (10, 10)) -> Frame:
    """Write ``text`` on a black box at ``origin`` (top-left), in place."""
    scale, thick = _text_scale(image.shape[0])
    draw_text_box(image, [(text, WHITE)], origin, scale=scale, thick=thick)
    return image


def side_by_side(left: Frame, right: Frame, labels: tuple[str, str] | None = ("original", "segmented")) -> Frame:
    """Place two same-size BGR images next to each other, optionally labelled."""
    out = np.concatenate([left, right], axis=1)
    if labels:
        draw_label(out, labels[0], (10, 10))
        draw_label(out, labels[1], (left.shape[1] + 10, 10))
    return out


class Renderer:
    """Turns (frame, mask) pairs into the image that is shown or encoded.

    Keeps its colour and output buffers between frames of the same size, so a video
    costs no allocation per frame.

    Args:
        names: class names by id.
        palette: ``"voc"`` or ``"random"``.
        alpha: weight of the mask colour (0.4 = the 60/40 blend).
        legend: draw the legend of the classes present.
        mode: ``"overlay"``, ``"mask"`` (colour mask only) or ``"side"`` (original | overlay).
        effect: what the ``overlay`` and ``side`` views show (:class:`live_seg.render.effects.Effect`,
            e.g. the colour blend on the chosen classes only, or a blur); ``None``: the colour
            blend on every pixel, background included.
    """

    MODES = VIEWS

    def __init__(
        self,
        names: Sequence[str] = VOC_CLASSES,
        palette: str = "voc",
        alpha: float = DEFAULT_ALPHA,
        legend: bool = False,
        mode: str = "overlay",
        effect: Effect | None = None,
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha: expected a value in [0, 1], got {alpha}")
        if mode not in self.MODES:
            raise ValueError(f"mode: expected one of {', '.join(self.MODES)}, got {mode!r}")
        self.names = list(names)
        self.lut = make_palette(palette, len(self.names), names=self.names)
        self._table = lookup_table(self.lut)
        self.alpha = alpha
        self.legend = legend
        self.mode = mode
        self.effect = effect
        self._color: np.ndarray | None = None
        self._out: np.ndarray | None = None

    def render(
        self, frame: Frame, mask: Mask, classes: Sequence[int] | None = None, soft: np.ndarray | None = None
    ) -> Frame:
        """The rendered view of ``frame`` with ``mask`` (any mask size; resized to the frame).

        Args:
            frame: ``(H, W, 3)`` uint8 BGR.
            mask: ``(h, w)`` uint8 class ids, any size.
            classes: the legend's classes, in order (default: those present in ``mask``, by id).
            soft: a probability model's soft foreground map at the mask's size
                (:attr:`~live_seg.base.frames.SegResult.soft`): the effect's edges follow it.

        Returns:
            ``(H, W, 3)`` uint8 BGR (``(H, 2W, 3)`` in ``"side"`` mode; ``(H, W, 4)`` BGRA in
            ``"overlay"`` mode with an effect that makes alpha). The buffer is reused by the next
            call: copy it if you keep it.
        """
        if self.effect is not None and self.mode != "mask":
            return self._render_effect(frame, mask, classes, soft)
        h, w = frame.shape[:2]
        if self._color is None or self._color.shape[:2] != (h, w):
            self._color = np.empty((h, w, 3), np.uint8)
            self._out = np.empty((h, w, 3), np.uint8)
        color = frame_colors(mask, self._table, h, w, out=self._color)
        if self.mode == "mask":
            view = color
        else:
            view = blend(frame, color, self.alpha, out=self._out)
        if self.legend:
            shown = present_classes(mask, len(self.names)) if classes is None else classes
            draw_legend(view, shown, self.names, self.lut)
        if self.mode == "side":
            view = side_by_side(frame, view)
        return view

    def _render_effect(
        self, frame: Frame, mask: Mask, classes: Sequence[int] | None, soft: np.ndarray | None = None
    ) -> np.ndarray:
        """The ``overlay`` or ``side`` view through :attr:`effect` (the legend on the colour blend only)."""
        assert self.effect is not None
        fx = self.effect
        view = fx.apply(frame, mask, soft) if self.mode == "overlay" else fx.preview(frame, mask, soft)
        if self.legend and self.effect.name == "overlay":
            chosen = self.effect.chosen_ids()
            shown = present_classes(mask, len(self.names)) if classes is None else classes
            draw_legend(view, [c for c in shown if c in chosen], self.names, self.lut)
        if self.mode == "side":
            view = side_by_side(frame, view)
        return view
