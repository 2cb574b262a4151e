"""The README's effect pictures, made by the tool (``live-seg image``) on a real photo of a person.

The mask is a real one: ``--model selfie`` (MediaPipe's selfie segmentation, its weights fetched
once from the pinned mediapipe wheel on the package registry and cached) on scikit-image's
astronaut photo (Eileen Collins, NASA, public domain; it ships in the scikit-image wheel). What
each effect is given shows the usual use of a person mask: the person coloured (``overlay``),
kept in colour on grey (``highlight``) or cut out with a transparent background (``cutout``); the
background blurred (``blur``), pixelated (``pixelate``) or replaced (``replace``, the default green).

    python scripts/effect_pictures.py --out docs/effects --width 480
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live_seg.base.registry import EFFECTS  # noqa: E402

CLASSES = {"overlay": "person", "highlight": "person", "cutout": "person",
           "blur": "background", "pixelate": "background", "replace": "background"}  # fmt: skip
"""The class each effect is given."""


def photo(name: str) -> np.ndarray:
    """scikit-image's photograph ``name`` as BGR."""
    from skimage import data

    image = getattr(data, name)()
    return np.ascontiguousarray(image[..., :3][..., ::-1])


def save(picture: np.ndarray, path: Path, width: int) -> None:
    """``picture`` scaled to ``width`` (area), as JPEG (quality 85) or PNG (level 9, alpha kept)."""
    height = round(picture.shape[0] * width / picture.shape[1])
    small = cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 9] if path.suffix == ".png" else [cv2.IMWRITE_JPEG_QUALITY, 85]
    if not cv2.imwrite(str(path), small, params):
        raise SystemExit(f"could not write {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default="astronaut", help="a scikit-image photograph of a person")
    parser.add_argument("--out", default=str(ROOT / "docs" / "effects"))
    parser.add_argument("--width", type=int, default=480)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image = photo(args.photo)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{args.photo}.png"
        cv2.imwrite(str(source), image)
        for effect in EFFECTS:
            result = Path(tmp) / effect
            cmd = [sys.executable, str(ROOT / "run_live.py"), "-q", "image", str(source), "-o", str(result),
                   "--model", "selfie", "--device", "cpu", "--no-legend", "--effect", effect,
                   "--classes", CLASSES[effect]]  # fmt: skip
            subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            name = out / (f"{effect}.png" if effect == "cutout" else f"{effect}.jpg")  # a cutout keeps its alpha
            save(cv2.imread(str(result / f"{effect}.png"), cv2.IMREAD_UNCHANGED), name, args.width)
            print(f"wrote {name.relative_to(ROOT) if name.is_relative_to(ROOT) else name} ({CLASSES[effect]})")
    save(image, out / "source.jpg", args.width)


if __name__ == "__main__":
    main()
