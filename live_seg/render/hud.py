"""The live view's heads-up display: rates, latency, drops and what model runs, in a corner box.

Drawn in place on the rendered BGR ``uint8`` view, after the mask blend and the legend.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base.frames import Frame
from .renderer import TEXT_PAD, WHITE, Color, draw_text_box, text_box_size

ORANGE = (0, 165, 255)
YELLOW = (0, 230, 255)
BOX_SHADE = 0.25
"""The box behind the text keeps this share of the picture's brightness."""

PAIRING_LABELS = {"newest": "mask: newest, on newest frame", "matched": "mask: on its own frame"}


@dataclass(frozen=True, slots=True)
class HudInfo:
    """What the HUD shows.

    Attributes:
        capture_fps: frames read from the source per second (recent window).
        infer_fps: masks computed per second (recent window).
        latency_ms: capture of the shown mask's frame → the moment it was first shown; ``None``
            before the first mask.
        dropped: frames the inference worker never saw (replaced by a newer one).
        model, device, precision: what runs.
        untrained: random weights (the classes mean nothing).
        pairing: ``"newest"`` (newest frame with the newest mask) or ``"matched"``.
        paused: the view is frozen.
        status: an extra line (e.g. "waiting for the first mask"), or ``None``.
        effect: the effect shown (key e cycles), or ``None``.
    """

    capture_fps: float
    infer_fps: float
    latency_ms: float | None
    dropped: int
    model: str
    device: str
    precision: str
    untrained: bool = False
    pairing: str = "newest"
    paused: bool = False
    status: str | None = None
    effect: str | None = None


def hud_lines(info: HudInfo) -> list[tuple[str, Color]]:
    """The HUD's text lines with their BGR colours, top to bottom."""
    latency = "--" if info.latency_ms is None else f"{info.latency_ms:.0f}"
    lines = [
        (f"capture {info.capture_fps:.1f} fps   infer {info.infer_fps:.1f} fps", WHITE),
        (f"latency {latency} ms   dropped {info.dropped}", WHITE),
        (f"{info.model}  {info.device}  {info.precision}", WHITE),
        (PAIRING_LABELS.get(info.pairing, f"mask: {info.pairing}"), WHITE),
    ]
    if info.effect:
        lines.append((f"effect: {info.effect} (e)", WHITE))
    if info.untrained:
        lines.append(("untrained weights", ORANGE))
    if info.status:
        lines.append((info.status, YELLOW))
    if info.paused:
        lines.append(("PAUSED (space)", YELLOW))
    return lines


MAX_SHARE = 0.4
"""The HUD box covers at most about this share of the picture's height: a small picture (a small
source's tile) gets the compact HUD (:func:`compact_lines`) in smaller text."""


def compact_lines(info: HudInfo) -> list[tuple[str, Color]]:
    """The HUD of a small picture: rates, latency and drops on one line, then the status."""
    latency = "--" if info.latency_ms is None else f"{info.latency_ms:.0f}"
    rates = f"cap {info.capture_fps:.1f}  inf {info.infer_fps:.1f} fps  {latency} ms  drop {info.dropped}"
    lines = [(rates, ORANGE if info.untrained else WHITE)]
    if info.status:
        lines.append((info.status, YELLOW))
    if info.paused:
        lines.append(("PAUSED", YELLOW))
    return lines


def _fitted(texts: list[str], h: int, w: int, margin: int) -> tuple[float, int, int, int]:
    """The font scale, stroke and box size for ``texts`` in an ``h x w`` picture."""
    scale = max(0.35, min(0.7, h / 900))
    box_w, _ = text_box_size(texts, scale, 1)
    if box_w + 2 * margin > w:
        scale = max(0.25, scale * (w - 2 * margin - 2 * TEXT_PAD) / (box_w - 2 * TEXT_PAD))
    thick = 1 if scale < 0.6 else 2
    box_w, box_h = text_box_size(texts, scale, thick)
    return scale, thick, box_w, box_h


def draw_hud(image: Frame, info: HudInfo, margin: int = 8) -> Frame:
    """Draw the HUD box in the bottom-left corner of ``image``, in place.

    The text shrinks to fit narrow images; where the full HUD would cover more than
    :data:`MAX_SHARE` of the height, the compact one is drawn. The legend (top-right) and
    side-by-side labels (top-left) stay clear of it.

    Args:
        image: ``(H, W, 3)`` uint8 BGR, modified in place.
        info: what to show.
        margin: pixels between the box and the image's edges (fewer on a small picture).

    Returns:
        ``image``.
    """
    h, w = image.shape[:2]
    margin = min(margin, max(2, h // 48))
    lines = hud_lines(info)
    scale, thick, box_w, box_h = _fitted([text for text, _ in lines], h, w, margin)
    if box_h > MAX_SHARE * h:
        lines = compact_lines(info)
        scale, thick, box_w, box_h = _fitted([text for text, _ in lines], h, w, margin)
    origin = (margin if w > box_w + margin else 0, max(0, h - box_h - margin))
    draw_text_box(image, lines, origin, scale=scale, thick=thick, shade=BOX_SHADE)
    return image
