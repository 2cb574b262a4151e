"""The OpenVINO cache on disk: entries written as one unit, checked on load, cleaned and pruned.

Layout under the cache root (:func:`live_seg.model.ov_runtime.cache_root`)::

    NAME-SIZE-WEIGHTSKEY-VERSIONS/      the converted network: one entry
        model.xml, model.bin, manifest.json
        int8-TAIL-CALIB-VERSIONS/       an int8 network quantised from it: one entry
            model.xml, model.bin, manifest.json
            compiled-MODE-HEAD/         OpenVINO's compiled blob of one head (its CACHE_DIR)
        compiled-PRECISION-MODE-HEAD/

* **One unit per entry.** An entry is written into a temporary folder beside it (``.tmp-PID-…``) and
  renamed into place in one step: a reader sees the whole entry or none of it, never a ``.xml`` of
  one run beside the ``.bin`` of another. Two processes that build the same entry at once both
  finish; the second finds the first's entry in place, checks it and drops its own.
* **Checked on load.** ``manifest.json`` holds the size and SHA-256 of ``model.xml`` and
  ``model.bin``; an entry that does not match (a ``.bin`` damaged in place keeps its size and would
  give wrong masks without a word) is moved aside, deleted with what was built from it, and
  rebuilt.
* **Keyed by every version that changes the content** (:func:`versions_tag`): OpenVINO's (it
  converts and writes the IR), torch's and torchvision's (the traced network), NNCF's for int8, and
  :data:`CACHE_FORMAT`.
* **Self-cleaning.** ``.tmp-*`` folders of runs that were killed (their process is gone, or they
  are older than :data:`STALE_TMP_S`) are removed; each compiled-blob folder keeps its newest blob
  (the blob of the head and settings it is named after), and all blobs together are kept under
  :data:`MAX_COMPILED_BYTES`, the least recently used removed first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypeVar

from ..base.errors import one_line

log = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_FORMAT = 2
"""Part of every entry's key: raise it when what an entry holds, or how it is laid out, changes."""
MANIFEST = "manifest.json"
FILES = ("model.xml", "model.bin")
"""The files of an entry, checked against its manifest."""
TMP_PREFIX = ".tmp-"
STALE_TMP_S = 6 * 3600.0
"""A temporary folder this old is a leftover even if a process of its pid runs (pids are reused)."""
MAX_COMPILED_BYTES = 2 * 1024**3
"""All compiled blobs of the cache together are kept under this (13 MB for LRASPP, ~200 MB for
FCN-ResNet101 each); the least recently used go first."""
BLOB_SUFFIX = ".blob"


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "none"


def versions_tag(*packages: str) -> str:
    """A short hash of :data:`CACHE_FORMAT` and the installed versions of ``packages`` (read from
    their metadata: nothing is imported)."""
    text = "|".join([f"format-{CACHE_FORMAT}", *(f"{p}-{_package(p)}" for p in packages)])
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def network_entry(root: Path, name: str, size: int | str, weights_key: str) -> Path:
    """The entry of a converted network: keyed by OpenVINO, torch and torchvision's versions too."""
    return root / f"{name}-{size}-{weights_key}-{versions_tag('openvino', 'torch', 'torchvision')}"


def int8_entry(network: Path, calibration_name: str) -> Path:
    """The entry of an int8 network quantised from ``network``'s (whose key holds OpenVINO's version)."""
    return network / f"{calibration_name}-{versions_tag('nncf')}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _manifest(folder: Path) -> dict[str, dict[str, object]]:
    return {name: {"size": (folder / name).stat().st_size, "sha256": _sha256(folder / name)} for name in FILES}


def check(folder: Path) -> str | None:
    """Why the entry in ``folder`` cannot be used (missing, no manifest, a file that does not match),
    or ``None`` when it is whole."""
    try:
        expected = json.loads((folder / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return "no manifest" if (folder / FILES[0]).exists() else "missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable manifest ({one_line(exc)})"
    for name in FILES:
        path, want = folder / name, expected.get(name) if isinstance(expected, dict) else None
        try:
            if not isinstance(want, dict) or path.stat().st_size != want.get("size"):
                return f"{name} is missing or has the wrong size"
            if _sha256(path) != want.get("sha256"):
                return f"{name} does not match its checksum"
        except OSError as exc:
            return f"{name} unreadable ({one_line(exc)})"
    return None


def load(folder: Path, read: Callable[[Path], T]) -> T | None:
    """The network in the entry ``folder`` (``read`` gets its ``model.xml``), or ``None`` when there is
    none; a damaged entry is logged, removed (with what was built from it) and ``None`` returned."""
    clean_tmp(folder.parent)
    problem = check(folder)
    if problem == "missing":
        return None
    if problem is None:
        try:
            return read(folder / FILES[0])
        except Exception as exc:  # noqa: BLE001 - a damaged cache entry is rebuilt, not fatal
            problem = f"unreadable ({one_line(exc, limit=200)})"
    log.warning("OpenVINO cache entry %s is damaged: %s; building it again", folder, problem)
    _remove(folder)
    return None


def store(folder: Path, write: Callable[[Path], None]) -> None:
    """Write an entry as one unit: ``write`` fills a temporary folder (``model.xml`` and ``.bin``),
    the manifest is added, and the folder is renamed to ``folder``. An entry already in place (another
    process was faster) is kept when whole; a damaged one is replaced.

    Raises:
        OSError: the cache cannot be written.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f"{TMP_PREFIX}{os.getpid()}-"))
    try:
        write(tmp)
        (tmp / MANIFEST).write_text(json.dumps({"format": CACHE_FORMAT, "files": _manifest(tmp)}, indent=1))
        for _ in range(2):
            try:
                os.rename(tmp, folder)  # a folder in place (not empty) makes this fail: never half-replaced
                return
            except OSError:
                if not folder.exists():
                    raise
            if check(folder) is None:
                return  # another process wrote the same entry first
            _remove(folder)
        raise OSError(f"could not put the cache entry {folder} in place")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove(folder: Path) -> None:
    """Move ``folder`` aside (one rename: no reader sees half of it), then delete it."""
    aside = folder.parent / f"{TMP_PREFIX}{os.getpid()}-removed-{folder.name}-{time.monotonic_ns()}"
    with contextlib.suppress(OSError):
        os.rename(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def clean_tmp(parent: Path, now: float | None = None) -> list[Path]:
    """Remove the ``.tmp-PID-*`` folders in ``parent`` left by runs that were killed: their process
    is gone, or they are older than :data:`STALE_TMP_S`. Returns what was removed."""
    now = time.time() if now is None else now
    removed = []
    with contextlib.suppress(OSError):
        for path in parent.glob(f"{TMP_PREFIX}*"):
            pid_text = path.name[len(TMP_PREFIX) :].split("-", 1)[0]
            try:
                stale = now - path.lstat().st_mtime > STALE_TMP_S
            except OSError:
                continue
            if stale or not pid_text.isdigit() or not _pid_alive(int(pid_text)):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    if removed:
        log.debug("removed %d leftover(s) of interrupted runs from %s", len(removed), parent)
    return removed


def _blobs(folder: Path) -> list[tuple[float, int, Path]]:
    out = []
    for path in folder.rglob(f"*{BLOB_SUFFIX}"):
        with contextlib.suppress(OSError):
            st = path.stat()
            out.append((st.st_mtime, st.st_size, path))
    return sorted(out)


def prune_compiled(blob_dir: Path, root: Path | None, limit: int | None = None) -> list[Path]:
    """After a compile that used ``blob_dir`` (one head's CACHE_DIR): keep its newest blob (marked as
    just used) and remove the others; then remove the least recently used blobs under ``root`` until
    all together take at most ``limit`` bytes (default :data:`MAX_COMPILED_BYTES`). Returns what was removed."""
    limit = MAX_COMPILED_BYTES if limit is None else limit
    removed: list[Path] = []
    own = _blobs(blob_dir)
    if own:
        newest = own[-1][2]
        with contextlib.suppress(OSError):
            os.utime(newest)  # "used now": a hit does not rewrite it
        removed += _unlink(p for _, _, p in own[:-1])
    if root is not None:
        blobs = _blobs(root)
        total = sum(size for _, size, _ in blobs)
        extra = []
        for _, size, path in blobs:  # oldest first
            if total <= limit or (own and path == own[-1][2]):
                continue
            extra.append(path)
            total -= size
        removed += _unlink(extra)
    if removed:
        log.info("OpenVINO cache: removed %d old compiled blob(s)", len(removed))
    return removed


def _unlink(paths: Iterable[Path]) -> list[Path]:
    done = []
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()
            done.append(path)
    return done
