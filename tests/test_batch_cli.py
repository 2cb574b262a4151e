"""``live-seg video`` batches end to end through the command line: a folder with a damaged clip,
a rerun that redoes nothing, a batch killed with SIGKILL mid-file and resumed, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from harness import TerminalCli, run_cli, start_cli, wait_for
from media import CLIP_TREE, make_clip_tree, probe

from live_seg.jobs.batch.manifest import MANIFEST_NAME

LIGHT = ("--model", "lraspp_mobilenet_v3_large", "--weights", "random", "--size", "128", "--device", "cpu")


def outputs(folder: Path) -> dict[str, int]:
    """``{relative path: decoded frames}`` of every visible .mp4 under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): probe(p)["video"]["frames"]
        for p in sorted(folder.rglob("*.mp4"))
        if not p.name.startswith(".")
    }


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / MANIFEST_NAME).read_text().splitlines()]


FRAMES = 60
TORCH_AT_EXIT = (
    "import atexit\natexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr))"
)
"""Setup for :func:`harness.run_cli`: the child says, as it exits, whether it imported torch."""
EXPECTED = dict.fromkeys(["a.mp4", "day1/b.mp4", "day1/c.mp4", "day2/d.mp4", "day2/deep/e.mp4"], FRAMES)


def test_a_folder_with_a_damaged_clip_then_the_same_command_again(tmp_path: Path) -> None:
    # Clips long enough that the first run does some work besides loading torch and the model.
    make_clip_tree(tmp_path / "in", frames=FRAMES)
    first = run_cli("video", "in", "-o", "out/", *LIGHT, cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    assert outputs(tmp_path / "out") == EXPECTED
    assert "6 input(s): 5 done, 1 failed" in first.stderr
    failed_lines = [ln for ln in first.stderr.splitlines() if ln.startswith("failed: ")]
    assert len(failed_lines) == 1 and "damaged.mp4" in failed_lines[0]
    records = manifest(tmp_path / "out")
    assert len(records) == 6
    assert sorted(r["status"] for r in records) == ["done"] * 5 + ["failed"]
    assert all(r["frames"] == FRAMES for r in records if r["status"] == "done")
    assert not list((tmp_path / "out").rglob(".*partial*"))

    # The rerun says, as it exits, whether torch was imported: not building the model is what
    # makes it fast (a ratio of the two runs' times is not: it follows the machine's load).
    again = run_cli("video", "in", "-o", "out/", *LIGHT, cwd=tmp_path, setup=TORCH_AT_EXIT)
    assert again.returncode == 1, again.stderr
    assert "5 of 6 already done, skipping" in again.stderr
    assert "model lraspp" not in again.stderr  # the model was not built
    assert "torch imported: False" in again.stderr, again.stderr
    records = manifest(tmp_path / "out")[6:]
    assert sorted(r["status"] for r in records) == ["failed"] + ["skipped"] * 5
    assert all(r["frames"] == FRAMES for r in records if r["status"] == "skipped")


def test_overwrite_redoes_and_one_file_with_an_output_folder(tmp_path: Path) -> None:
    (clip,) = make_clip_tree(tmp_path, ["x.mp4"])
    first = run_cli("video", str(clip), "-o", "out/", *LIGHT, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = run_cli("video", str(clip), "-o", "out", "--overwrite", *LIGHT, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert [r["status"] for r in manifest(tmp_path / "out")] == ["done", "done"]
    assert outputs(tmp_path / "out") == {"x.mp4": 12}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("in",), "need an output folder: -o OUTDIR/"),
        (("in", "-o", "file.txt"), "a batch writes into a folder"),
        (("in/a.mp4", "in/a.mp4", "-o", "x.mp4"), "-o x.mp4: a batch writes into a folder; name one with a trailing /"),
        (("in/*.avi", "-o", "out/"), "no video files in in/*.avi"),  # and no out/ left behind
    ],
)
def test_batch_argument_errors_are_one_line(tmp_path: Path, args: tuple, message: str) -> None:
    make_clip_tree(tmp_path / "in", ["a.mp4"])
    (tmp_path / "file.txt").write_text("x")
    out = run_cli("video", *args, *LIGHT, cwd=tmp_path, timeout=60)
    assert out.returncode in (1, 2) and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "out").exists()


def start_batch(tmp_path: Path, names: list[str], frames: int) -> subprocess.Popen:
    make_clip_tree(tmp_path / "in", names, frames=frames, width=160, height=120)
    log = (tmp_path / "log.txt").open("w")
    return start_cli("video", "in", "-o", "out/", *LIGHT, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)


def test_sigkill_mid_file_leaves_only_complete_outputs_and_a_rerun_finishes(tmp_path: Path) -> None:
    names, frames = ["a.mp4", "b.mp4", "c.mp4"], 240
    proc = start_batch(tmp_path, names, frames)
    out = tmp_path / "out"
    try:
        wait_for(lambda: (out / "a.mp4").exists() and any(out.glob(".b.*.partial.mp4")), 120, "b in flight", alive=proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert outputs(out) == {"a.mp4": frames}  # each final name holds a whole video
    assert [r["status"] for r in manifest(out)] == ["done"]

    again = run_cli("video", "in", "-o", "out/", *LIGHT, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "1 of 3 already done, skipping" in again.stderr
    assert outputs(out) == dict.fromkeys(names, frames)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # the killed run's leftover is gone


def test_ctrl_c_discards_the_file_in_flight_and_stops(tmp_path: Path) -> None:
    names = ["a.mp4", "b.mp4", "c.mp4"]
    make_clip_tree(tmp_path / "in", names, frames=600, width=160, height=120)
    run = TerminalCli("video", "in", "-o", "out/", *LIGHT, cwd=tmp_path)
    out = tmp_path / "out"
    # Ctrl-C once frames flow (the bar moves): a clean stop of the file in flight. Its output file
    # exists a moment earlier, while a Ctrl-C still stops at once and runs nothing: on a loaded
    # machine that moment is long enough for a signal sent on the file's appearance to land in it.
    run.wait_frames(1)
    run.proc.send_signal(signal.SIGINT)
    assert run.finish(60) == 130, run.text
    assert "Traceback" not in run.text and "run the same command again" in run.text
    assert outputs(out) == {}  # the file cut short is not under its final name
    assert [r["status"] for r in manifest(out)] == ["interrupted"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_the_relative_layout_matches_the_clip_tree() -> None:
    expected = {str(Path(n).with_suffix(".mp4").as_posix()) for n in CLIP_TREE if "damaged" not in n}
    assert expected == set(EXPECTED) and os.sep  # the table above follows media.CLIP_TREE


def test_the_python_api_runs_the_same_batch(tmp_path: Path) -> None:
    from live_seg import process_batch

    make_clip_tree(tmp_path / "in", ["a.mp4", "sub/b.mp4", "sub/damaged.mp4"])
    light = {"model": "lraspp_mobilenet_v3_large", "weights": "random", "size": 128, "device": "cpu"}
    result = process_batch([str(tmp_path / "in")], tmp_path / "out", audio=False, **light)
    assert result.summary_line() == "3 input(s): 2 done, 1 failed"
    assert outputs(tmp_path / "out") == {"a.mp4": 12, "sub/b.mp4": 12}
    again = process_batch([str(tmp_path / "in")], tmp_path / "out", **light)
    assert again.count("skipped") == 2 and again.count("failed") == 1


def test_a_cutout_batch_through_the_python_api_writes_webm_with_alpha(tmp_path: Path) -> None:
    """The outputs are named from the options the files are processed with: a cutout is a .webm."""
    import av

    from live_seg import EffectOptions, process_batch

    make_clip_tree(tmp_path / "in", ["a.mp4", "sub/b.mp4"])
    light = {"model": "lraspp_mobilenet_v3_large", "weights": "random", "size": 128, "device": "cpu"}
    effect = EffectOptions("cutout", classes="person")
    result = process_batch([str(tmp_path / "in")], tmp_path / "out", effect=effect, audio=False, **light)
    assert result.summary_line() == "2 input(s): 2 done" and not result.failed
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*"))
    assert written == ["a.webm", MANIFEST_NAME, "sub/b.webm"]
    for name in ("a.webm", "sub/b.webm"):
        with av.open(str(tmp_path / "out" / name)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "vp9" and stream.metadata.get("alpha_mode") == "1"
        assert probe(tmp_path / "out" / name)["video"]["frames"] == 12
    assert [r["output"].endswith(".webm") for r in manifest(tmp_path / "out")] == [True, True]
