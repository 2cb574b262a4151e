"""Writing files so that no final name ever holds half a file: through a temporary name beside it.

Torch-free and small, for every job that writes pictures or tables: the ``image`` job's PNGs, live
snapshots, ``--masks`` PNGs, the coverage CSV and plot.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


@contextlib.contextmanager
def written_beside(target: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``target`` (``.NAME`` + ``suffix``) for the block to write; when the
    block ends it replaces ``target``, so ``target`` is never half-written. On any error the
    temporary file is removed and the error passes through."""
    tmp = target.with_name(f".{target.name}{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a BGR (or BGRA, with its alpha) uint8 image as PNG, through a temporary name.

    Raises:
        OSError: the image could not be encoded, or the file written.
    """
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise OSError("PNG encoding failed")
    with written_beside(path) as tmp:
        buf.tofile(str(tmp))


def write_palette_png(path: Path, ids: np.ndarray, palette_rgb: Sequence[int]) -> None:
    """Write ``(H, W)`` uint8 class ids as a palette PNG (pixel values are the ids; ``palette_rgb``
    is ``[r0, g0, b0, r1, ...]``), through a temporary name.

    Raises:
        OSError: the file could not be written.
    """
    image = Image.fromarray(ids)
    image.putpalette(list(palette_rgb))  # mode L -> P: the values stay the class ids
    with written_beside(path) as tmp:
        image.save(tmp, format="PNG")
