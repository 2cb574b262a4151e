"""Tests of live_seg.base.files: a final name never holds half a file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from live_seg.base.files import write_palette_png, write_png, written_beside


def test_written_beside_replaces_the_target_only_when_the_block_ends(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with written_beside(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old" and tmp.parent == tmp_path and tmp.name.startswith(".")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_an_error_keeps_the_old_target_and_removes_the_temporary_file(tmp_path, error):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(type(error)), written_beside(target, ".tmp.png") as tmp:
        tmp.write_bytes(b"half")
        raise error
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_pngs_read_back(tmp_path):
    bgr = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", bgr)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_COLOR), bgr)
    ids = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32) % 21
    write_palette_png(tmp_path / "m.png", ids, [v for i in range(21) for v in (i, 2 * i, 3 * i)])
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "P" and im.getpalette()[3:6] == [1, 2, 3]
        np.testing.assert_array_equal(np.asarray(im), ids)
    with pytest.raises(OSError):
        write_png(tmp_path / "missing" / "b.png", bgr)
    assert not (tmp_path / "missing").exists()
