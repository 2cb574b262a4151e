"""What an effect adds to a whole ``video`` job: paired whole-process runs, medians.

Runs ``python run_live.py video`` on the clip with each effect in turn (overlay first, then
the others, rounds alternating the order), LRASPP on the CPU with controllable weights:
``person`` (every pixel a person: the effect covers the whole frame) and ``content`` (a
random low classifier whose classes follow the picture: a dozen classes, ragged edges, as
a worst case for soft edges). Prints the median wall time of each and its ratio to overlay.

    python scripts/effects_speed.py --video samples/sample.mp4 --rounds 5 --effects overlay blur replace
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_weights(folder: Path) -> dict[str, Path]:
    """``person``: every pixel class 15; ``content``: a random low classifier (seed 0), high branch zero."""
    import torch
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(0)
    made = {}
    for kind in ("person", "content"):
        state = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21).state_dict()
        for key in state:
            if key.startswith(("classifier.low_classifier.", "classifier.high_classifier.")):
                state[key].zero_()
        if kind == "person":
            state["classifier.low_classifier.bias"][15] = 10.0
        else:
            state["classifier.low_classifier.weight"].normal_(0.0, 10.0)
        made[kind] = folder / f"{kind}.pth"
        torch.save(state, made[kind])
    return made


def run_once(video: str, out: Path, weights: Path, effect: str) -> float:
    """Wall seconds of one whole ``video`` process."""
    cmd = [sys.executable, str(ROOT / "run_live.py"), "-q", "video", video, "-o", str(out), "--overwrite",
           "--no-audio", "--model", "lraspp_mobilenet_v3_large", "--weights", str(weights), "--device", "cpu",
           "--effect", effect]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(ROOT / "samples" / "sample.mp4"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--effects", nargs="+", default=["overlay", "blur", "replace"])
    parser.add_argument("--weights", nargs="+", default=["person", "content"], choices=("person", "content"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = make_weights(folder)
        for kind in args.weights:
            run_once(args.video, folder / "warm.mp4", weights[kind], args.effects[0])  # warm-up, not counted
            times: dict[str, list[float]] = {e: [] for e in args.effects}
            for r in range(args.rounds):
                order = args.effects if r % 2 == 0 else args.effects[::-1]
                for effect in order:
                    times[effect].append(run_once(args.video, folder / f"{effect}.mp4", weights[kind], effect))
            base = statistics.median(times[args.effects[0]])
            for effect, samples in times.items():
                med = statistics.median(samples)
                print(f"{kind:8s} {effect:10s} median {med:6.2f} s  x{med / base:.3f}  ({len(samples)} runs)")


if __name__ == "__main__":
    main()
