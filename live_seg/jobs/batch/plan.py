"""Batches of videos: inputs expanded from files, folders and globs, one output per input under
an output folder, a resumable run, and a manifest written as each file finishes.

A batch is planned (:func:`plan_jobs`), split into what is already done and what is left
(:func:`split_done`), and the rest is run one file at a time by :func:`run_local` (or on a Ray
cluster by :mod:`live_seg.jobs.batch.ray_runner`) with a *process* callable that segments one file. The
model lives in that callable, built once by its factory, and only when something is left to do.

An output is complete or absent: the video writer writes to a hidden temporary name and renames
it when the file is closed, so "the output exists under its final name" means "done", and a
batch killed at any point resumes by running the same command again.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Protocol

from ...base.errors import LiveSegError, OutputError, SourceError, one_line
from ...base.options import MP4_SUFFIX
from .manifest import Manifest, Record, read_manifest
from .progress import BatchProgress, FileHooks

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv", ".flv", ".3gp"}
)
"""File name endings (lower case) taken as videos when folders are searched or globs expanded."""

_GLOB_MAGIC = re.compile(r"[*?[]")


@dataclass(frozen=True)
class Job:
    """One input video and where its output goes (absolute paths: every worker sees the same).

    Attributes:
        input: the input file.
        output: the output file under the output folder.
        name: the input's path relative to the folder or glob root it was found under (for logs).
    """

    input: Path
    output: Path
    name: str


class Process(Protocol):
    """Segments one file: ``process(job, hooks)`` writes ``job.output`` and returns a summary
    dict with at least ``frames_out``, ``fps`` and ``interrupted``; raises
    :class:`~live_seg.base.errors.LiveSegError` (or anything else) when the file fails."""

    def __call__(self, job: Job, hooks: FileHooks | None) -> dict[str, Any]: ...


def has_glob(text: str) -> bool:
    """Whether ``text`` holds glob characters (``*``, ``?``, ``[``)."""
    return bool(_GLOB_MAGIC.search(text))


def is_batch(inputs: Sequence[str], output: str | None) -> bool:
    """Whether a ``video`` command line is a batch (else the one-file job as before).

    A batch: several inputs, or one folder or glob (a glob that is not an existing file's name),
    or an output that is a folder (ends with a separator or exists as one). One input with an
    output named like a video file (``-o out.mp4``) is always the one-file job.
    """
    if len(inputs) != 1:
        return True
    if output is not None and is_video_file_name(output):
        return False
    src = inputs[0]
    if Path(src).is_dir() or (has_glob(src) and not Path(src).exists()):
        return True
    return output is not None and (output.endswith(("/", os.sep)) or Path(output).is_dir())


def is_video_file_name(output: str) -> bool:
    """``output`` is named like a video file (``out.mp4``; ``out.mp4/`` names a folder).

    An existing folder named so is still taken for a file name, and refused as the one-file
    job's output: a batch into it takes the trailing separator.
    """
    return not output.endswith(("/", os.sep)) and Path(output).suffix.lower() in VIDEO_SUFFIXES


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.resolve().is_relative_to(folder)


def _walk(folder: Path, skip: Path | None) -> Iterable[Path]:
    """Video files under ``folder``, recursively; hidden files and folders, and ``skip``, left out."""
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _inside(here / d, skip))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_SUFFIXES:
                yield here / name


def _glob_root(pattern: str) -> Path:
    """The leading part of a glob without glob characters: what matches are relative to."""
    parts = PurePath(pattern).parts
    fixed = list(parts[: next((i for i, p in enumerate(parts) if has_glob(p)), len(parts))])
    return Path(*fixed) if fixed else Path(".")


def expand_inputs(inputs: Sequence[str], skip: str | os.PathLike[str] | None = None) -> list[tuple[Path, PurePath]]:
    """Expand files, folders and globs into video files, each with its path relative to the
    folder or glob root it came from (a file given by name: its name).

    Folders are searched recursively for :data:`VIDEO_SUFFIXES`; globs (``**`` included) keep
    the matches that are videos, and search the folders they match. Hidden files and folders
    and anything under ``skip`` (the output folder) are left out of folders and globs; files
    given by name are taken as they are. A file reached twice is kept once, in first place.

    Raises:
        SourceError: an input does not exist, or a folder or glob holds no video file.
    """
    skip_dir = Path(skip).resolve() if skip is not None else None
    found: list[tuple[Path, PurePath]] = []
    seen: set[Path] = set()
    for text in inputs:
        path = Path(text)
        if path.is_file():
            items = [(path, PurePath(path.name))]
        elif path.is_dir():
            items = [(f, f.relative_to(path)) for f in _walk(path, skip_dir)]
        elif has_glob(text):
            root = _glob_root(text)
            items = []
            for match in map(Path, sorted(glob.glob(text, recursive=True))):
                if match.is_dir():
                    items += [(f, f.relative_to(root)) for f in _walk(match, skip_dir)]
                elif match.suffix.lower() in VIDEO_SUFFIXES and not _inside(match, skip_dir):
                    items.append((match, match.relative_to(root)))
        else:
            raise SourceError(f"input not found: {text}")
        if not items:
            kinds = " ".join(sorted(VIDEO_SUFFIXES))
            raise SourceError(f"no video files in {text} (looked for {kinds}); name the files or another folder")
        for file, rel in items:
            key = file.resolve()
            if key in seen:
                log.debug("%s: already in the batch", file)
                continue
            seen.add(key)
            found.append((file, rel))
    return found


def plan_jobs(inputs: Sequence[str], outdir: str | os.PathLike[str], suffix: str = MP4_SUFFIX) -> list[Job]:
    """The batch's jobs: each input video to ``outdir / <relative folder> / <stem><suffix>``.

    Raises:
        SourceError: see :func:`expand_inputs`.
        OutputError: two inputs would be written to the same output.
    """
    out_root = Path(outdir).absolute()
    jobs: list[Job] = []
    owner: dict[Path, Path] = {}
    for file, rel in expand_inputs(inputs, skip=out_root):
        output = out_root / rel.parent / (rel.stem + suffix)
        if output in owner:
            raise OutputError(
                f"{owner[output]} and {file} would both be written to {output}; "
                "rename one of them or run them into different output folders"
            )
        owner[output] = file
        jobs.append(Job(file.absolute(), output, rel.as_posix()))
    return jobs


def split_done(jobs: Sequence[Job], overwrite: bool = False) -> tuple[list[Job], list[Job]]:
    """``(todo, done)``: a job is done when its output exists under its final name (outputs are
    renamed there only once complete). With ``overwrite`` everything is to do."""
    if overwrite:
        return list(jobs), []
    done = [j for j in jobs if j.output.is_file()]
    return [j for j in jobs if not j.output.is_file()], done


_PARTIAL = "[a-z0-9_]{8}"  # tempfile.mkstemp's random part, as the video writer names its temporary file


def remove_stale_partials(output: Path) -> int:
    """Delete temporary files a killed run left beside ``output`` (``.<stem>.XXXXXXXX.partial<suffix>``).

    Called just before ``output`` is written again: the process about to write a name owns its
    leftovers. Returns how many were deleted.
    """
    pattern = re.compile(rf"\.{re.escape(output.stem)}\.{_PARTIAL}\.partial{re.escape(output.suffix)}")
    removed = 0
    if output.parent.is_dir():
        for leftover in output.parent.iterdir():
            if pattern.fullmatch(leftover.name):
                try:
                    leftover.unlink()
                    removed += 1
                except OSError as exc:
                    log.warning("cannot delete the leftover %s: %s", leftover, one_line(exc))
    if removed:
        log.info("%s: deleted %d temporary file(s) left by an earlier run", output.name, removed)
    return removed


def skipped_records(done: Sequence[Job], manifest_path: str | os.PathLike[str]) -> list[Record]:
    """Records for outputs already there, with the frames the manifest noted when they were made."""
    frames = {r.get("output"): r.get("frames") for r in read_manifest(manifest_path) if r.get("status") == "done"}
    return [Record(str(j.input), str(j.output), "skipped", frames=frames.get(str(j.output))) for j in done]


def attempt(job: Job, process: Process, hooks: FileHooks | None = None) -> Record:
    """Run ``process`` on one job and describe the outcome; an error fails this file only.

    ``KeyboardInterrupt`` (and other ``BaseException``) is not caught: it stops the batch.
    """
    t0 = time.perf_counter()
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(job.output)
        summary = process(job, hooks)
    except LiveSegError as exc:
        return Record(str(job.input), str(job.output), "failed", seconds=_since(t0), error=one_line(exc))
    except Exception as exc:
        log.debug("%s failed", job.input, exc_info=True)
        text = one_line(exc, with_type=True)
        return Record(str(job.input), str(job.output), "failed", seconds=_since(t0), error=text)
    record = Record(
        str(job.input),
        str(job.output),
        "done",
        frames=summary.get("frames_out"),
        fps=summary.get("fps"),
        seconds=_since(t0),
    )
    if summary.get("interrupted"):
        record.status, record.error = "interrupted", summary.get("stop_reason") or "interrupted"
    elif not job.output.is_file():
        record.status, record.error = "failed", "no output was written"
    return record


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)


def run_local(
    todo: Sequence[Job],
    make_process: Callable[[], Process],
    manifest: Manifest,
    *,
    progress: BatchProgress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Record]:
    """Process the jobs one after the other in this process, with one model for all.

    Args:
        todo: the jobs left to do.
        make_process: builds the process callable (and with it the model); called once, and
            only when ``todo`` is not empty.
        manifest: each record is appended as its file finishes.
        progress: the batch's progress bars, or ``None``.
        should_stop: checked between files (a first Ctrl-C); a file cut short also stops the batch.

    Returns:
        One record per file attempted, in order (fewer than ``todo`` when stopped).
    """
    records: list[Record] = []
    if not todo:
        return records
    process = make_process()
    for job in todo:
        if should_stop():
            break
        hooks = progress.start_file(job) if progress is not None else None
        record = attempt(job, process, hooks)
        finish(record, job.name, manifest, records, progress)
        if record.status == "interrupted":
            break
    return records


def finish(
    record: Record, name: str, manifest: Manifest, records: list[Record], progress: BatchProgress | None
) -> None:
    """A file's record is in: append it to the manifest and to ``records``, move the bar, log it."""
    manifest.append(record)
    records.append(record)
    if progress is not None:
        progress.end_file(record)
    log_record(record, name)


def log_record(record: Record, name: str) -> None:
    """One log line for a finished file."""
    if record.status == "done":
        log.info("%s: %s frames in %.1f s (%.2f fps)", name, record.frames, record.seconds or 0, record.fps or 0)
    elif record.status == "failed":
        log.error("%s: failed: %s", name, record.error)
    elif record.status == "interrupted":
        log.warning("%s: %s; nothing kept, the next run redoes it", name, record.error)


def prepare(
    inputs: Sequence[str], manifest: Manifest, *, overwrite: bool = False, suffix: str = MP4_SUFFIX
) -> tuple[list[Job], list[Job], list[Record]]:
    """Plan a batch into the manifest's folder and record what is already done (``suffix``: the outputs',
    see :func:`~live_seg.base.options.video_suffix`).

    Returns:
        ``(jobs, todo, skipped)``: every job, those left to do, and the ``skipped`` records
        (already appended to ``manifest``).

    Raises:
        SourceError, OutputError: see :func:`plan_jobs`.
    """
    jobs = plan_jobs(inputs, manifest.path.parent, suffix)
    todo, done = split_done(jobs, overwrite)
    if done:
        log.info("%d of %d already done, skipping", len(done), len(jobs))
    skipped = skipped_records(done, manifest.path)
    for record in skipped:
        manifest.append(record)
    return jobs, todo, skipped
