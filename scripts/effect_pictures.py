"""The README's effect pictures, made by the tool (``live-seg image``) from a frame of the sample.

No trained weights are needed (nor downloaded): LRASPP with a random low classifier (seed 0)
whose classes follow the picture's content. The classes covering the middle third of the
frame are chosen, so each effect shows on a region with ragged, feathered edges.

    python scripts/effect_pictures.py --out docs/effects --time 0.5 --width 480
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from effects_speed import make_weights  # noqa: E402

from live_seg.base.registry import EFFECTS  # noqa: E402
from live_seg.render.renderer import VOC_CLASSES  # noqa: E402


def frame_at(video: Path, seconds: float) -> np.ndarray:
    """The first frame at or after ``seconds``, BGR."""
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= seconds:
                return frame.to_ndarray(format="bgr24")
    raise SystemExit(f"{video} has no frame at {seconds} s")


def middle_classes(image: np.ndarray, weights: Path, share: float = 0.4) -> list[str]:
    """The classes most common in the middle third of the frame (background excluded), as many
    as cover at most ``share`` of the whole frame (at least one)."""
    from live_seg.model.segmenter import Segmenter

    seg = Segmenter("lraspp_mobilenet_v3_large", weights=str(weights), device="cpu")
    mask = seg.predict([image])[0]
    h, w = mask.shape
    counts = np.bincount(mask[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].ravel(), minlength=len(VOC_CLASSES))
    whole = np.bincount(mask.ravel(), minlength=len(VOC_CLASSES)) / mask.size
    chosen: list[int] = []
    for i in (int(i) for i in np.argsort(-counts) if counts[i] and i != 0):
        if not chosen or whole[chosen].sum() + whole[i] <= share:
            chosen.append(i)
    return [VOC_CLASSES[i].strip("_") for i in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(ROOT / "samples" / "sample.mp4"))
    parser.add_argument("--time", type=float, default=0.5, help="seconds into the clip")
    parser.add_argument("--out", default=str(ROOT / "docs" / "effects"))
    parser.add_argument("--width", type=int, default=480)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = make_weights(folder)["content"]
        image = frame_at(Path(args.video), args.time)
        source = folder / "frame.png"
        cv2.imwrite(str(source), image)
        classes = ",".join(middle_classes(image, weights))
        print(f"classes: {classes}")
        for effect in EFFECTS:
            result = folder / effect
            cmd = [sys.executable, str(ROOT / "run_live.py"), "-q", "image", str(source), "-o", str(result),
                   "--model", "lraspp_mobilenet_v3_large", "--weights", str(weights), "--device", "cpu",
                   "--no-legend", "--effect", effect, "--classes", classes]  # fmt: skip
            subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            picture = cv2.imread(str(result / f"{effect}.png"), cv2.IMREAD_UNCHANGED)
            height = round(picture.shape[0] * args.width / picture.shape[1])
            small = cv2.resize(picture, (args.width, height), interpolation=cv2.INTER_AREA)
            name = out / (f"{effect}.png" if effect == "cutout" else f"{effect}.jpg")  # a cutout keeps its alpha
            params = [cv2.IMWRITE_PNG_COMPRESSION, 9] if name.suffix == ".png" else [cv2.IMWRITE_JPEG_QUALITY, 85]
            cv2.imwrite(str(name), small, params)
            print(f"wrote {name.relative_to(ROOT) if name.is_relative_to(ROOT) else name}")
        original = cv2.resize(image, (args.width, round(image.shape[0] * args.width / image.shape[1])))
        cv2.imwrite(str(out / "source.jpg"), original, [cv2.IMWRITE_JPEG_QUALITY, 85])


if __name__ == "__main__":
    main()
