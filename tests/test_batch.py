"""Batches: input expansion, output mapping, skip logic, the manifest and the local batch loop."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import ClassVar

import pytest

from live_seg.base.errors import OutputError, SourceError
from live_seg.base.options import video_suffix
from live_seg.jobs.batch.manifest import MANIFEST_NAME, BatchResult, Manifest, Record, read_manifest
from live_seg.jobs.batch.plan import (
    Job,
    attempt,
    expand_inputs,
    is_batch,
    plan_jobs,
    remove_stale_partials,
    run_local,
    skipped_records,
    split_done,
)
from live_seg.jobs.batch.progress import BatchProgress, FileHooks


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """in/a.mp4, in/day1/b.MOV, in/day1/deep/c.mkv, plus files a batch must not take."""
    root = tmp_path / "in"
    for name in ("a.mp4", "day1/b.MOV", "day1/deep/c.mkv", "notes.txt", ".hidden.mp4", ".cache/d.mp4"):
        touch(root / name)
    return root


def rel(found: list[tuple[Path, object]]) -> list[str]:
    return [str(r) for _f, r in found]


def test_folder_is_searched_recursively_for_videos(tree: Path) -> None:
    assert rel(expand_inputs([str(tree)])) == ["a.mp4", "day1/b.MOV", "day1/deep/c.mkv"]


def test_files_given_by_name_are_taken_as_they_are(tree: Path) -> None:
    assert rel(expand_inputs([str(tree / "notes.txt"), str(tree / "day1/b.MOV")])) == ["notes.txt", "b.MOV"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("in/*.mp4", ["a.mp4"]),
        ("in/**/*.*", ["a.mp4", "day1/b.MOV", "day1/deep/c.mkv"]),  # notes.txt is not a video
        ("in/day*", ["day1/b.MOV", "day1/deep/c.mkv"]),  # a matched folder is searched
        ("in/day1/*/c.mkv", ["deep/c.mkv"]),  # relative to in/day1
    ],
)
def test_globs_are_relative_to_their_fixed_part(tree: Path, monkeypatch, pattern: str, expected: list[str]) -> None:
    monkeypatch.chdir(tree.parent)
    assert sorted(rel(expand_inputs([pattern]))) == sorted(expected)


def test_a_file_reached_twice_is_kept_once(tree: Path) -> None:
    found = expand_inputs([str(tree / "a.mp4"), str(tree)])
    assert rel(found) == ["a.mp4", "day1/b.MOV", "day1/deep/c.mkv"]


def test_output_folder_inside_the_input_folder_is_not_searched(tree: Path) -> None:
    touch(tree / "out" / "a.mp4")
    assert "out/a.mp4" not in rel(expand_inputs([str(tree)], skip=tree / "out"))


@pytest.mark.parametrize("arg", ["missing.mp4", "in/*.avi", "empty"])
def test_nothing_to_do_is_one_line(tree: Path, monkeypatch, arg: str) -> None:
    monkeypatch.chdir(tree.parent)
    (tree.parent / "empty").mkdir()
    with pytest.raises(SourceError) as err:
        expand_inputs([arg])
    assert "\n" not in str(err.value) and arg in str(err.value)


def test_outputs_keep_the_relative_path_and_stem(tree: Path, tmp_path: Path) -> None:
    jobs = plan_jobs([str(tree)], tmp_path / "out")
    out = tmp_path / "out"
    assert [j.output for j in jobs] == [out / "a.mp4", out / "day1/b.mp4", out / "day1/deep/c.mp4"]
    assert all(j.input.is_absolute() and j.output.is_absolute() for j in jobs)
    assert [j.name for j in jobs] == ["a.mp4", "day1/b.MOV", "day1/deep/c.mkv"]
    assert video_suffix(False) == ".mp4" and video_suffix(True) == ".webm"


def test_two_inputs_for_one_output_are_refused(tmp_path: Path) -> None:
    a, b = touch(tmp_path / "x/clip.mp4"), touch(tmp_path / "y/clip.mp4")
    with pytest.raises(OutputError, match="both be written"):
        plan_jobs([str(a), str(b)], tmp_path / "out")


@pytest.mark.parametrize(
    ("inputs", "output", "batch"),
    [
        (["in/a.mp4"], None, False),
        (["in/a.mp4"], "x.mp4", False),
        (["in/a.mp4"], "outdir/", True),
        (["in/a.mp4"], "in", True),  # an existing folder
        (["in/a.mp4", "in/day1/b.MOV"], "o", True),
        (["in/a.mp4", "in/day1/b.MOV"], "o.mp4", True),  # refused later: a batch needs a folder
        (["in"], "o.mp4", False),  # one input to one file: the one-file job refuses the folder
        (["in"], None, True),
        (["in/*.mp4"], None, True),
    ],
)
def test_is_batch(tree: Path, monkeypatch, inputs: list[str], output: str | None, batch: bool) -> None:
    monkeypatch.chdir(tree.parent)
    assert is_batch(inputs, output) is batch


def test_done_means_the_final_name_exists(tmp_path: Path) -> None:
    jobs = [Job(tmp_path / f"{n}.mp4", tmp_path / "out" / f"{n}.mp4", f"{n}.mp4") for n in "abc"]
    touch(jobs[1].output)
    touch(jobs[2].output.parent / ".c.abcd1234.partial.mp4")  # a killed run's leftover is not done
    todo, done = split_done(jobs)
    assert (todo, done) == ([jobs[0], jobs[2]], [jobs[1]])
    assert split_done(jobs, overwrite=True) == (jobs, [])


def test_stale_partials_of_that_output_only_are_removed(tmp_path: Path) -> None:
    ours = touch(tmp_path / ".clip.k2j_9xab.partial.mp4")
    others = [touch(tmp_path / n) for n in (".clip.2.k2j_9xab.partial.mp4", ".clip.k2j9.partial.mp4", "clip.mp4")]
    assert remove_stale_partials(tmp_path / "clip.mp4") == 1
    assert not ours.exists() and all(p.exists() for p in others)


def test_manifest_lines_are_durable_and_a_cut_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "out" / MANIFEST_NAME
    with Manifest(path) as manifest:
        manifest.append(Record("a.mp4", "out/a.mp4", "done", frames=12, fps=30.0, seconds=0.4))
        assert json.loads(path.read_text())["frames"] == 12  # on disk before the batch ends
    with path.open("a") as f:
        f.write('{"input": "b.mp4", "sta')  # a crash mid-line
    with Manifest.in_folder(tmp_path / "out") as manifest:
        manifest.append(Record("c.mp4", "out/c.mp4", "failed", error="damaged"))
    records = read_manifest(path)
    assert [r["status"] for r in records] == ["done", "failed"]
    assert set(records[0]) == {"input", "output", "status", "frames", "fps", "seconds", "error", "time"}


def test_skipped_records_carry_the_frames_noted_when_made(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST_NAME
    job = Job(tmp_path / "a.mp4", tmp_path / "o/a.mp4", "a.mp4")
    with Manifest(path) as manifest:
        manifest.append(Record(str(job.input), str(job.output), "done", frames=7))
    assert skipped_records([job], path)[0].frames == 7
    assert skipped_records([job], tmp_path / "none.jsonl")[0].frames is None


def fake_process(fail: set[str] = frozenset(), interrupt: set[str] = frozenset()):  # type: ignore[assignment]
    """A process callable that writes a 'video' of 3 frames, or fails / is interrupted by name."""

    def process(job: Job, hooks: FileHooks | None) -> dict:
        if job.input.name in fail:
            raise SourceError(f"cannot decode {job.input}:\n  bad data")
        if hooks:
            hooks.on_open(3)
            for _ in range(3):
                hooks.on_frame()
        if job.input.name in interrupt:
            return {"frames_out": 1, "fps": 10.0, "interrupted": True, "stop_reason": "interrupted by SIGINT"}
        job.output.write_bytes(b"video")
        return {"frames_out": 3, "fps": 10.0, "interrupted": False}

    return process


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({}, "done", None),
        ({"fail": {"a.mp4"}}, "failed", "cannot decode"),
        ({"interrupt": {"a.mp4"}}, "interrupted", "SIGINT"),
    ],
)
def test_attempt_describes_the_outcome(tmp_path: Path, kwargs: dict, status: str, error: str | None) -> None:
    job = Job(touch(tmp_path / "a.mp4"), tmp_path / "out/sub/a.mp4", "a.mp4")
    record = attempt(job, fake_process(**kwargs))
    assert record.status == status and record.seconds is not None
    assert (error is None and record.error is None) or (error in record.error and "\n" not in record.error)


def test_attempt_reports_a_bug_with_its_type(tmp_path: Path) -> None:
    def broken(job: Job, hooks: FileHooks | None) -> dict:
        raise ZeroDivisionError("division by zero")

    record = attempt(Job(tmp_path / "a.mp4", tmp_path / "a.out.mp4", "a.mp4"), broken)
    assert (record.status, record.error) == ("failed", "ZeroDivisionError: division by zero")


def test_attempt_without_output_fails(tmp_path: Path) -> None:
    record = attempt(Job(tmp_path / "a.mp4", tmp_path / "o.mp4", "a"), lambda job, hooks: {"frames_out": 0})
    assert (record.status, record.error) == ("failed", "no output was written")


def jobs_in(tmp_path: Path, names: str = "abcd") -> list[Job]:
    return [Job(touch(tmp_path / f"{n}.mp4"), tmp_path / "out" / f"{n}.mp4", f"{n}.mp4") for n in names]


def test_local_batch_goes_on_after_a_failure_and_builds_once(tmp_path: Path) -> None:
    built = []

    def make():
        built.append(1)
        return fake_process(fail={"b.mp4"})

    with Manifest.in_folder(tmp_path / "out") as manifest:
        records = run_local(jobs_in(tmp_path), make, manifest)
    assert [r.status for r in records] == ["done", "failed", "done", "done"]
    assert built == [1]
    assert [r["status"] for r in read_manifest(tmp_path / "out" / MANIFEST_NAME)] == [r.status for r in records]
    result = BatchResult(records, 4)
    assert [Path(r.input).name for r in result.failed] == ["b.mp4"] and not result.interrupted
    assert result.summary_line() == "4 input(s): 3 done, 1 failed"


def test_nothing_left_builds_no_model(tmp_path: Path) -> None:
    def make():
        raise AssertionError("the model must not be built")

    with Manifest.in_folder(tmp_path / "out") as manifest:
        assert run_local([], make, manifest) == []


def test_an_interrupted_file_stops_the_batch(tmp_path: Path) -> None:
    with Manifest.in_folder(tmp_path / "out") as manifest:
        records = run_local(jobs_in(tmp_path), lambda: fake_process(interrupt={"b.mp4"}), manifest)
    assert [r.status for r in records] == ["done", "interrupted"]
    result = BatchResult(records, 4)
    assert result.interrupted and result.summary_line() == "4 input(s): 1 done, 1 interrupted, 2 not started"


def test_should_stop_is_checked_between_files(tmp_path: Path) -> None:
    seen = []

    def process(job: Job, hooks: FileHooks | None) -> dict:
        seen.append(job.name)
        job.output.write_bytes(b"v")
        return {"frames_out": 1}

    with Manifest.in_folder(tmp_path / "out") as manifest:
        run_local(jobs_in(tmp_path), lambda: process, manifest, should_stop=lambda: len(seen) >= 2)
    assert seen == ["a.mp4", "b.mp4"]


class FakeBar:
    bars: ClassVar[list[FakeBar]] = []

    def __init__(self, total=None, position=0, desc="", **_kw) -> None:
        self.total, self.position, self.desc, self.n, self.closed = total, position, desc, 0, False
        FakeBar.bars.append(self)

    def update(self, n=1) -> None:
        self.n += n

    def set_description(self, desc, refresh=True) -> None:
        self.desc = desc

    def close(self) -> None:
        self.closed = True


def test_progress_counts_files_and_frames(tmp_path: Path, monkeypatch) -> None:
    import tqdm

    from live_seg.jobs.batch import progress as progress_mod

    FakeBar.bars = []
    monkeypatch.setattr(tqdm, "tqdm", FakeBar)
    monkeypatch.setattr(progress_mod, "count_frames", lambda path: 3 if path.name != "c.mp4" else 5)
    jobs = jobs_in(tmp_path)
    progress = BatchProgress(jobs, enabled=True)
    with Manifest.in_folder(tmp_path / "out") as manifest:
        run_local(jobs, lambda: fake_process(fail={"b.mp4"}), manifest, progress=progress)
    progress.close()
    batch, files = FakeBar.bars[0], FakeBar.bars[1:]
    assert batch.position == 0 and {f.position for f in files} == {1}
    assert batch.n == 9 and batch.total == 9  # c.mp4 wrote 3 of its 5; b.mp4 failed before any
    assert batch.desc == "batch 4/4 files, 1 failed"
    assert all(b.closed for b in FakeBar.bars)


def test_progress_disabled_does_nothing(tmp_path: Path) -> None:
    progress = BatchProgress(jobs_in(tmp_path), enabled=False)
    hooks = progress.start_file(jobs_in(tmp_path)[0])
    hooks.on_open(3)
    hooks.on_frame()
    progress.end_file(Record("a", "b", "done"))
    progress.close()


def test_count_frames_reads_the_header(tmp_path: Path) -> None:
    from media import make_video

    from live_seg.jobs.batch.progress import count_frames

    assert count_frames(make_video(tmp_path / "a.mp4", frames=7, width=64, height=48)) == 7
    assert count_frames(touch(tmp_path / "bad.mp4", b"not a video")) is None


def test_outputs_are_absolute_even_from_relative_arguments(tree: Path, monkeypatch) -> None:
    monkeypatch.chdir(tree.parent)
    (job,) = plan_jobs(["in/a.mp4"], "out")
    assert job.output == tree.parent / "out" / "a.mp4" and os.path.isabs(job.input)
