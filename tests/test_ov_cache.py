"""The OpenVINO cache (live_seg.model.ov_cache): one unit per entry, checksums checked on load, leftovers
of killed runs cleaned, compiled blobs pruned, keys that follow every version that changes the content.

The network is LRASPP at 128x128 with untrained weights (converted in a few seconds)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from media import frame_pattern

import live_seg.model.ov_runtime as ovb
from live_seg.model import ov_cache
from live_seg.model.segmenter import Segmenter

SMALL = "lraspp_mobilenet_v3_large"


@pytest.fixture(scope="module")
def torch_seg() -> Segmenter:
    return Segmenter(SMALL, weights="random", device="cpu", precision="fp32", size=128)


def build(seg: Segmenter, cache: Path) -> ovb.OpenVinoSegmenter:
    return ovb.OpenVinoSegmenter(
        seg.module, spec=seg.spec, weights="random", cache_dir=str(cache), precision="fp32", mode="latency"
    )


def frames() -> list[np.ndarray]:
    return [frame_pattern(i, 256, 192) for i in range(3)]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_entry_is_whole_with_a_manifest_and_a_corrupt_bin_of_the_same_size_is_rebuilt(torch_seg, tmp_path, caplog):
    first = build(torch_seg, tmp_path)
    want = first.predict(frames())
    entry = first.cache
    assert entry is not None and first.converted
    manifest = json.loads((entry / "manifest.json").read_text())["files"]
    assert set(manifest) == {"model.xml", "model.bin"}
    assert manifest["model.bin"]["size"] == (entry / "model.bin").stat().st_size
    assert not list(tmp_path.glob(".tmp-*"))
    # Damage the weights in place, keeping the size: before, this loaded silently (wrong masks).
    data = bytearray((entry / "model.bin").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = bytes(4096)
    (entry / "model.bin").write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again = build(torch_seg, tmp_path)
    assert again.converted and not again.cache_hit
    assert "model.bin does not match its checksum" in caplog.text
    np.testing.assert_array_equal(np.stack(again.predict(frames())), np.stack(want))
    assert ov_cache.check(entry) is None


def test_a_write_cut_short_leaves_no_entry_and_no_temporary_folder(tmp_path):
    def write(folder: Path) -> None:
        (folder / "model.xml").write_text("<net/>")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        ov_cache.store(tmp_path / "entry", write)
    assert list(tmp_path.iterdir()) == []


def test_store_keeps_an_entry_another_process_put_in_place_and_replaces_a_damaged_one(tmp_path):
    def write(text: str):
        def fill(folder: Path) -> None:
            (folder / "model.xml").write_text(text)
            (folder / "model.bin").write_bytes(text.encode() * 100)

        return fill

    entry = tmp_path / "entry"
    ov_cache.store(entry, write("first"))
    ov_cache.store(entry, write("second"))  # the race's loser: the whole entry in place wins
    assert (entry / "model.xml").read_text() == "first" and ov_cache.check(entry) is None
    (entry / "model.bin").write_bytes(b"x" * 500)
    assert ov_cache.check(entry) == "model.bin does not match its checksum"
    ov_cache.store(entry, write("third"))
    assert (entry / "model.xml").read_text() == "third" and ov_cache.check(entry) is None
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_leftovers_of_killed_runs_are_cleaned_and_live_ones_kept(torch_seg, tmp_path):
    dead = tmp_path / f".tmp-{dead_pid()}-abc"
    old_style = tmp_path / ".tmp-k2j4h5"  # today's leftovers carry no pid
    live = tmp_path / f".tmp-{os.getpid()}-def"
    stale = tmp_path / f".tmp-{os.getpid()}-old"
    for folder in (dead, old_style, live, stale):
        folder.mkdir()
        (folder / "model.bin").write_bytes(b"x" * 1000)
    week_ago = time.time() - 7 * 86400
    os.utime(stale, (week_ago, week_ago))
    build(torch_seg, tmp_path)
    assert sorted(p.name for p in tmp_path.glob(".tmp-*")) == [live.name]


def test_each_compiled_folder_keeps_its_newest_blob_and_all_stay_under_the_bound(torch_seg, tmp_path, monkeypatch):
    seg = build(torch_seg, tmp_path)
    (blob_dir,) = [p for p in seg.cache.iterdir() if p.name.startswith("compiled-")]
    (in_use,) = blob_dir.glob("*.blob")
    stale = blob_dir / "1234.blob"  # a blob of a network this entry no longer holds
    stale.write_bytes(b"x" * 1000)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    other = tmp_path / "other-entry" / "compiled-fp32-latency-ids"
    other.mkdir(parents=True)
    old_blobs = []
    for i in range(3):
        old_blobs.append(other.parent / f"compiled-{i}" / "9.blob")
        old_blobs[-1].parent.mkdir()
        old_blobs[-1].write_bytes(b"y" * 4000)
        os.utime(old_blobs[-1], (time.time() - 100 + i, time.time() - 100 + i))
    size = in_use.stat().st_size
    monkeypatch.setattr(ov_cache, "MAX_COMPILED_BYTES", size + 4000 + 10)
    build(torch_seg, tmp_path)  # a start from the cache compiles (from the blob) and prunes
    assert in_use.exists() and not stale.exists()
    assert [p.exists() for p in old_blobs] == [False, False, True]  # the least recently used went first


def test_the_key_follows_every_version_that_changes_the_content(tmp_path, monkeypatch):
    base_net = ov_cache.network_entry(tmp_path, SMALL, 128, "k")
    base_int8 = ov_cache.int8_entry(base_net, "int8-float-c")
    for package in ("openvino", "torch", "torchvision", "nncf"):
        real = ov_cache._package
        monkeypatch.setattr(ov_cache, "_package", lambda name, p=package, real=real: "9.9" if name == p else real(name))
        net = ov_cache.network_entry(tmp_path, SMALL, 128, "k")
        assert (net != base_net) == (package != "nncf"), package
        assert ov_cache.int8_entry(base_net, "int8-float-c") != base_int8 or package != "nncf"
        monkeypatch.undo()
    monkeypatch.setattr(ov_cache, "CACHE_FORMAT", ov_cache.CACHE_FORMAT + 1)
    assert ov_cache.network_entry(tmp_path, SMALL, 128, "k") != base_net
