"""The Ray runner: actor planning, the missing-extra error, and (with Ray installed) batches on a
local Ray started by the runner, a worker lost mid-file, and no Ray process left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from harness import ROOT, run_cli, start_cli, wait_for

from live_seg.jobs.batch.manifest import Manifest, read_manifest
from live_seg.jobs.batch.plan import Job
from live_seg.jobs.batch.ray_runner import CPU_ACTOR_CORES, INSTALL_HINT, ActorPlan, plan_actors

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False


def needs_ray(test):
    """Mark a test ``ray`` and skip it when Ray is not installed."""
    return pytest.mark.ray(pytest.mark.skipif(not HAVE_RAY, reason=f"Ray is not installed ({INSTALL_HINT})")(test))


@pytest.mark.parametrize(
    ("nodes", "jobs", "per", "plan"),
    [
        ([{"CPU": 2}], 6, None, ActorPlan(1, CPU_ACTOR_CORES, 0)),
        ([{"CPU": 16}], 6, None, ActorPlan(6, 2, 0)),
        ([{"CPU": 16}], 40, None, ActorPlan(8, 2, 0)),
        ([{"CPU": 16}, {"CPU": 4}], 40, 4, ActorPlan(5, 4, 0)),
        ([{"CPU": 1}], 3, None, ActorPlan(1, 1, 0)),  # never more cores than a node has
        ([{"CPU": 16, "GPU": 2}, {"CPU": 8}], 40, None, ActorPlan(2, 8, 1)),  # GPUs: one actor each
        ([{"CPU": 16, "GPU": 2}, {"CPU": 8, "GPU": 4}], 40, None, ActorPlan(6, 2, 1)),
        ([{"CPU": 16, "GPU": 8}], 3, None, ActorPlan(3, 2, 1)),  # never more actors than videos
    ],
)
def test_plan_actors(nodes: list[dict], jobs: int, per: int | None, plan: ActorPlan) -> None:
    assert plan_actors(nodes, jobs, per) == plan


def test_without_ray_the_error_names_the_install_command() -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from live_seg.jobs.batch.ray_runner import import_ray\n"
        "try:\n    import_ray()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    expected = f"ClusterError --ray needs Ray, which is not installed here; install it with: {INSTALL_HINT}"
    assert out.stdout.strip() == expected


def ray_pids(marker: str) -> set[int]:
    """Ray processes (raylet, GCS, workers) started under ``RAY_TMPDIR=marker``: they inherit the
    environment of the driver that started them, so other Ray instances on the machine do not count."""
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"RAY_TMPDIR={marker}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.add(int(proc.name))
        except OSError:
            continue
    return found - {os.getpid()}


@pytest.fixture
def no_ray_left(monkeypatch):
    """Run without RAY_ADDRESS (a private local Ray, in a temporary folder of its own) and fail if
    a Ray process it started stays."""
    marker = tempfile.mkdtemp(prefix="lsray")  # short: Ray's socket paths live under it
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", marker)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    yield marker
    try:
        wait_for(lambda: not ray_pids(marker), 30, f"the Ray processes to end: {ray_pids(marker)}", every=0.2)
    finally:
        shutil.rmtree(marker, ignore_errors=True)


def make_jobs(tmp_path: Path, names: str = "abcd") -> list[Job]:
    jobs = []
    for n in names:
        src = tmp_path / "in" / f"{n}.mp4"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(b"v")
        jobs.append(Job(src, tmp_path / "out" / "sub" / f"{n}.mp4", f"{n}.mp4"))
    return jobs


def fake_factory(fail: str = "", die_once: str = "", slow: float = 0.0):
    """A make_process for actors: writes the output like the video writer (temporary name, then
    rename); fails on ``fail``; on ``die_once`` it leaves a temporary file and kills its own
    process, the first time only (a marker file tells)."""

    def make(cores: int | None):
        pid = os.getpid()

        def process(job: Job, hooks) -> dict:
            from live_seg.base.errors import SourceError

            if job.input.stem == fail:
                raise SourceError(f"cannot decode {job.input}")
            tmp = job.output.parent / f".{job.output.stem}.abcd1234.partial.mp4"
            tmp.write_bytes(b"half")
            marker = job.input.with_suffix(".died")
            if job.input.stem == die_once and not marker.exists():
                marker.write_text(str(pid))
                os._exit(1)
            time.sleep(slow)
            tmp.write_bytes(f"{pid} {cores}".encode())
            os.replace(tmp, job.output)
            return {"frames_out": 12, "fps": 100.0, "interrupted": False}

        return process

    return make


@needs_ray
def test_ray_batch_records_each_video_and_leaves_no_ray(tmp_path: Path, no_ray_left) -> None:
    from live_seg.jobs.batch.ray_runner import run_on_ray

    jobs = make_jobs(tmp_path)
    with Manifest.in_folder(tmp_path / "out") as manifest:
        records = run_on_ray(jobs, fake_factory(fail="c"), manifest)
    by_name = {Path(r.input).stem: r for r in records}
    assert {k: r.status for k, r in by_name.items()} == {"a": "done", "b": "done", "c": "failed", "d": "done"}
    assert "cannot decode" in by_name["c"].error and by_name["a"].frames == 12
    assert sorted(p.name for p in (tmp_path / "out" / "sub").iterdir()) == ["a.mp4", "b.mp4", "d.mp4"]
    manifest_lines = read_manifest(tmp_path / "out" / "live_seg_manifest.jsonl")
    assert sorted(r["status"] for r in manifest_lines) == ["done", "done", "done", "failed"]
    assert (tmp_path / "out/sub/a.mp4").read_text().split()[1] == str(CPU_ACTOR_CORES if os.cpu_count() >= 2 else 1)


@needs_ray
def test_a_worker_lost_mid_file_is_retried_and_leaves_no_half_file(tmp_path: Path, no_ray_left) -> None:
    from live_seg.jobs.batch.ray_runner import run_on_ray

    jobs = make_jobs(tmp_path, "ab")
    with Manifest.in_folder(tmp_path / "out") as manifest:
        records = run_on_ray(jobs, fake_factory(die_once="b"), manifest)
    assert sorted((Path(r.input).stem, r.status) for r in records) == [("a", "done"), ("b", "done")]
    assert (tmp_path / "in" / "b.died").exists()  # the first attempt did die
    out = tmp_path / "out" / "sub"
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4"]  # the leftover was removed
    died_pid = (tmp_path / "in" / "b.died").read_text()
    assert (out / "b.mp4").read_text().split()[0] != died_pid  # written by the restarted actor


@needs_ray
def test_a_stop_drops_the_videos_in_flight(tmp_path: Path, no_ray_left) -> None:
    from live_seg.jobs.batch.ray_runner import run_on_ray

    jobs = make_jobs(tmp_path, "abc")
    out = tmp_path / "out" / "sub"
    out.mkdir(parents=True)

    def in_flight() -> bool:  # a first Ctrl-C once a video is being written
        return any(out.glob(".*.partial.mp4"))

    t0 = time.monotonic()
    with Manifest.in_folder(tmp_path / "out") as manifest:
        records = run_on_ray(jobs, fake_factory(slow=60), manifest, should_stop=in_flight)
    assert time.monotonic() - t0 < 50
    assert {r.status for r in records} == {"interrupted"} and records
    assert not list(out.iterdir())  # nothing under a final name, no temporary file either


LIGHT = ("--model", "lraspp_mobilenet_v3_large", "--weights", "random", "--size", "128", "--device", "cpu")


def local_env() -> dict[str, str]:
    """This environment without RAY_ADDRESS: a run starts a private local Ray."""
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def test_ray_option_without_ray_is_one_line(tmp_path: Path) -> None:
    from media import make_clip_tree

    make_clip_tree(tmp_path / "in", ["a.mp4"])
    out = run_cli(
        "video", "in", "-o", "out/", "--ray", *LIGHT, cwd=tmp_path, setup="sys.modules['ray'] = None", env=local_env()
    )
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: --ray needs Ray, which is not installed here; install it with: {INSTALL_HINT}"
    assert not (tmp_path / "out").exists()


@needs_ray
def test_ray_batch_matches_the_local_batch(tmp_path: Path, no_ray_left) -> None:
    from media import make_clip_tree, probe

    make_clip_tree(tmp_path / "in")
    local = run_cli("video", "in", "-o", "local/", *LIGHT, cwd=tmp_path, env=local_env())
    on_ray = run_cli("video", "in", "-o", "ray/", "--ray", *LIGHT, cwd=tmp_path, env=local_env())
    assert (local.returncode, on_ray.returncode) == (1, 1), on_ray.stderr
    assert "on a local Ray" in on_ray.stderr and "6 input(s): 5 done, 1 failed" in on_ray.stderr

    def frames(folder: Path) -> dict[str, int]:
        return {p.relative_to(folder).as_posix(): probe(p)["video"]["frames"] for p in folder.rglob("[!.]*.mp4")}

    def statuses(folder: Path) -> dict[str, str]:
        return {Path(r["input"]).name: r["status"] for r in read_manifest(folder / "live_seg_manifest.jsonl")}

    assert frames(tmp_path / "ray") == frames(tmp_path / "local") and len(frames(tmp_path / "ray")) == 5
    assert statuses(tmp_path / "ray") == statuses(tmp_path / "local")
    assert len(read_manifest(tmp_path / "ray" / "live_seg_manifest.jsonl")) == 6


@needs_ray
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_ray_batch_and_leaves_no_ray(tmp_path: Path, no_ray_left, signum: int) -> None:
    from media import make_clip_tree

    make_clip_tree(tmp_path / "in", ["a.mp4", "b.mp4"], frames=600, width=160, height=120)
    with (tmp_path / "log.txt").open("w") as log:
        proc = start_cli("video", "in", "-o", "out/", "--ray", *LIGHT, cwd=tmp_path, env=local_env(), stdout=log,
                         stderr=subprocess.STDOUT)  # fmt: skip
    out = tmp_path / "out"
    try:
        wait_for(lambda: out.is_dir() and any(out.glob(".*.partial.mp4")), 120, "a video in flight", alive=proc)
        assert ray_pids(no_ray_left)  # the check below sees this batch's Ray
        proc.send_signal(signum)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    text = (tmp_path / "log.txt").read_text()
    assert code == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum], text
    assert "Traceback" not in text
    assert not [p.name for p in out.iterdir() if p.suffix == ".mp4"]  # nothing complete, nothing half
    assert {r["status"] for r in read_manifest(out / "live_seg_manifest.jsonl")} == {"interrupted"}


@needs_ray
def test_a_cluster_address_where_nothing_listens_is_one_line(tmp_path: Path) -> None:
    from media import make_clip_tree

    make_clip_tree(tmp_path / "in", ["a.mp4"])
    out = run_cli("video", "in", "-o", "out/", "--ray", *LIGHT, cwd=tmp_path, timeout=120,
                  setup="import os; os.environ['RAY_ADDRESS'] = '127.0.0.1:9'")  # fmt: skip
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert (
        line.startswith("error: cannot reach the Ray cluster at 127.0.0.1:9 (RAY_ADDRESS): ")
        and "RAY_AUTH_MODE" in line
    )
