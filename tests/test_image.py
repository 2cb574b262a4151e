"""The ``image`` job: the original single-image script, as a command."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from live_seg.base.errors import OutputError, SourceError
from live_seg.cli.main import main
from live_seg.jobs.image import process_image
from live_seg.render.renderer import make_palette

LIGHT = {"model": "lraspp_mobilenet_v3_large", "weights": "random", "device": "cpu", "precision": "fp32", "size": 128}


@pytest.fixture
def photo(tmp_path):
    from skimage import data

    path = tmp_path / "cat.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR))  # 451x300
    return path


def test_writes_overlay_palette_mask_and_side_by_side(photo, tmp_path):
    out = tmp_path / "out"
    summary = process_image(photo, out, **LIGHT)
    image = cv2.imread(str(photo))
    h, w = image.shape[:2]
    overlay = cv2.imread(str(out / "overlay.png"))
    pair = cv2.imread(str(out / "side_by_side.png"))
    mask_img = Image.open(out / "mask.png")
    assert mask_img.mode == "P" and mask_img.size == (w, h)
    mask = np.array(mask_img)
    palette = np.array(mask_img.getpalette()[: 21 * 3], np.uint8).reshape(21, 3)
    assert np.array_equal(palette, make_palette("voc")[:, ::-1])  # RGB in the PNG
    assert overlay.shape == image.shape and pair.shape == (h, 2 * w, 3)
    assert np.array_equal(pair[60:, :w], image[60:])  # left half is the original (below the label)
    shares = {c["id"]: c["share"] for c in summary["classes"]}
    counts = np.bincount(mask.ravel(), minlength=21) / mask.size
    assert shares == {i: round(float(counts[i]), 4) for i in np.flatnonzero(counts)}
    assert abs(sum(shares.values()) - 1) < 1e-3


def test_cli_prints_classes_and_refuses_to_overwrite(photo, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["image", str(photo), "-o", str(out), "--model", "lraspp_mobilenet_v3_large", "--weights", "random"]
    assert main([*args, "--size", "128"]) == 0
    printed = capsys.readouterr().out
    assert "classes found" in printed and "untrained weights" in printed and "%" in printed
    assert main([*args, "--size", "128"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--size", "128", "--overwrite"]) == 0


def test_bad_image_and_output(tmp_path, photo):
    bad = tmp_path / "x.png"
    bad.write_text("not an image")
    with pytest.raises(SourceError, match="cannot read"):
        process_image(bad, tmp_path / "o", **LIGHT)
    with pytest.raises(SourceError, match="not found"):
        process_image(tmp_path / "missing.png", tmp_path / "o", **LIGHT)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        process_image(photo, tmp_path / "file", **LIGHT)
