"""Writing files so that no final name ever holds half a file: through a temporary name beside it.

Torch-free and small; the one way every writer of the package reaches its final name: the video
writer and the mask video (:class:`PendingFile` held open while frames come), and the ``image``
job's PNGs, live snapshots, ``--masks`` PNGs, the coverage CSV and plot and the stats JSON
(:func:`written_beside` around one block).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

NAME_ATTEMPTS = 100
"""Random temporary names tried before giving up (one is taken only if another writer holds it)."""


class PendingFile:
    """A new, empty file under a temporary name beside ``target``, renamed to ``target`` once complete.

    The temporary name is ``.<target stem>.XXXXXXXX<suffix>`` (8 random characters, hidden, in
    ``target``'s folder, so the rename is atomic), created exclusively so that two writers never
    share one. Unlike :func:`tempfile.mkstemp` it is created with the usual permissions (``0o666``
    less the umask): the final file keeps them.

    Use :meth:`commit` when the file is complete and :meth:`discard` on any failure, or the
    object as a context manager around one block (committed when the block ends, discarded when
    it raises, an interrupt included).

    Args:
        target: the final name.
        suffix: the temporary name's ending; keep the format's extension last where a library
            picks the format by it (``".partial.mp4"``).

    Attributes:
        target: the final name.
        path: the temporary file.

    Raises:
        OSError: the folder does not take new files.
    """

    def __init__(self, target: str | os.PathLike[str], suffix: str = ".tmp") -> None:
        self.target = Path(target)
        for _ in range(NAME_ATTEMPTS):
            path = self.target.with_name(f".{self.target.stem}.{secrets.token_hex(4)}{suffix}")
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                continue
            self.path = path
            return
        raise FileExistsError(f"no free temporary name beside {self.target}")

    def commit(self) -> Path:
        """Move the temporary file to the final name (replacing what was there); returns it."""
        os.replace(self.path, self.target)
        return self.target

    def discard(self) -> None:
        """Delete the temporary file; the final name is left as it was."""
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.discard()
            return
        try:
            self.commit()
        except BaseException:
            self.discard()
            raise


@contextlib.contextmanager
def written_beside(target: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``target`` (a :class:`PendingFile`) for the block to write; when the
    block ends it replaces ``target``, so ``target`` is never half-written. On any error the
    temporary file is removed and the error passes through."""
    with PendingFile(target, suffix) as tmp:
        yield tmp


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


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON and a final newline, through a temporary name.

    Raises:
        OSError: the file could not be written.
    """
    with written_beside(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
