"""The live view's heads-up display: rates, latency, drops and what model runs, in a corner box.

Drawn in place on the rendered BGR ``uint8`` view, after the mask blend and the legend.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .frames import Frame

WHITE = (255, 255, 255)
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


def hud_lines(info: HudInfo) -> list[tuple[str, tuple[int, int, int]]]:
    """The HUD's text lines with their BGR colours, top to bottom."""
    latency = "--" if info.latency_ms is None else f"{info.latency_ms:.0f}"
    lines = [
        (f"capture {info.capture_fps:.1f} fps   infer {info.infer_fps:.1f} fps", WHITE),
        (f"latency {latency} ms   dropped {info.dropped}", WHITE),
        (f"{info.model}  {info.device}  {info.precision}", WHITE),
        (PAIRING_LABELS.get(info.pairing, f"mask: {info.pairing}"), WHITE),
    ]
    if info.untrained:
        lines.append(("untrained weights", ORANGE))
    if info.status:
        lines.append((info.status, YELLOW))
    if info.paused:
        lines.append(("PAUSED (space)", YELLOW))
    return lines


def draw_hud(image: Frame, info: HudInfo, margin: int = 8) -> Frame:
    """Draw the HUD box in the bottom-left corner of ``image``, in place.

    The text shrinks to fit narrow images. The legend (top-right) and side-by-side labels
    (top-left) stay clear of it.

    Args:
        image: ``(H, W, 3)`` uint8 BGR, modified in place.
        info: what to show.
        margin: pixels between the box and the image's edges.

    Returns:
        ``image``.
    """
    lines = hud_lines(info)
    h, w = image.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.35, min(0.7, h / 900))
    widest = max(cv2.getTextSize(text, font, scale, 1)[0][0] for text, _ in lines)
    if widest + 2 * margin + 12 > w:
        scale = max(0.25, scale * (w - 2 * margin - 12) / widest)
    thick = 1 if scale < 0.6 else 2
    (_, text_h), base = cv2.getTextSize("Ag", font, scale, thick)
    line_h = text_h + base + 4
    widest = max(cv2.getTextSize(text, font, scale, thick)[0][0] for text, _ in lines)
    box_w = min(w - margin, widest + 12)
    box_h = min(h - margin, line_h * len(lines) + 8)
    x0 = margin if w > box_w + margin else 0
    y0 = max(0, h - box_h - margin)
    roi = image[y0 : y0 + box_h, x0 : x0 + box_w]
    roi[:] = (roi.astype(np.float32) * BOX_SHADE).astype(np.uint8)
    for row, (text, color) in enumerate(lines):
        y = y0 + 4 + text_h + row * line_h
        cv2.putText(image, text, (x0 + 6, y), font, scale, color, thick, cv2.LINE_AA)
    return image
