"""A batch on a Ray cluster: actors that keep the model loaded, one video per task.

The driver (this process) plans the batch as a local run does (:mod:`live_seg.jobs.batch.plan`), starts
one actor per GPU (``num_gpus=1``) or, without GPUs, CPU actors of :data:`CPU_ACTOR_CORES`
cores each, hands each idle actor the next video, and appends every record to the manifest as
its result arrives. Inputs and outputs are paths every node sees (a shared file system).

An actor whose process or node is lost mid-file leaves only a hidden temporary file (outputs
are renamed to their final name once complete); Ray restarts the actor, which builds its model
again, and retries the video (:data:`MAX_RETRIES` times), deleting that leftover first.

``RAY_ADDRESS`` is honoured as Ray's own tools do (``ray.init()`` reads it, ``auto`` included);
without it a private local Ray is started. Either way the driver shuts its Ray down (or
disconnects) on every exit path, Ctrl-C included; the actors end with it.

This is the only module that imports :mod:`ray`, and only when a Ray batch runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ...base.errors import ClusterError, one_line
from ...base.options import CPU_ACTOR_CORES
from .manifest import Manifest, Record
from .plan import Job, Process, attempt, finish, remove_stale_partials
from .progress import BatchProgress

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install -e ".[cluster]"'
"""The command that installs Ray for ``--ray``."""

MAX_RETRIES = 3
"""Times an actor is restarted, and a video retried, after its worker process or node is lost."""

CONNECT_TIMEOUT_S = 5.0
"""How long the head's address may take to accept a connection."""

MakeProcess = Callable[[int | None], Process]
"""Builds the per-actor process callable (and its model), given the CPU cores it may use."""


def import_ray() -> Any:
    """The :mod:`ray` module.

    Raises:
        ClusterError: Ray is not installed (naming the command that installs it).
    """
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(f"--ray needs Ray, which is not installed here; install it with: {INSTALL_HINT}") from exc
    return ray


@dataclass(frozen=True)
class ActorPlan:
    """How many actors, and the resources each one asks Ray for."""

    actors: int
    num_cpus: int
    num_gpus: int

    def describe(self) -> str:
        each = f"1 GPU + {self.num_cpus} CPU" if self.num_gpus else f"{self.num_cpus} CPU"
        return f"{self.actors} actor(s), {each} each"


def plan_actors(nodes: Sequence[dict[str, float]], jobs: int, cpus_per_actor: int | None = None) -> ActorPlan:
    """Actors for a batch from the nodes' resources (``{"CPU": 16, "GPU": 2, ...}`` each).

    With GPUs: one actor per GPU, each with the CPU cores of its node shared among its GPUs
    (the smallest share over the GPU nodes). Without: actors of ``cpus_per_actor`` cores
    (default :data:`CPU_ACTOR_CORES`, at most a node's cores), as many as the nodes hold.
    Never more actors than videos, never fewer than one.
    """
    gpu_nodes = [n for n in nodes if n.get("GPU", 0) >= 1]
    if gpu_nodes:
        gpus = sum(int(n["GPU"]) for n in gpu_nodes)
        share = min(int(n.get("CPU", 1) // int(n["GPU"])) for n in gpu_nodes)
        return ActorPlan(max(1, min(jobs, gpus)), max(1, share), 1)
    biggest = max((int(n.get("CPU", 0)) for n in nodes), default=1)
    per = max(1, min(cpus_per_actor or CPU_ACTOR_CORES, biggest))
    fits = sum(int(n.get("CPU", 0)) // per for n in nodes)
    return ActorPlan(max(1, min(jobs, fits)), per, 0)


class VideoActor:
    """Holds one process callable (one model) and runs videos through it, one per call."""

    def __init__(self, make_process: MakeProcess, cores: int | None, log_level: int = logging.WARNING) -> None:
        logging.basicConfig(level=log_level, format="%(levelname)s: %(message)s")
        logging.getLogger("live_seg").setLevel(log_level)
        self.process = make_process(cores)

    def run(self, job: Job) -> Record:
        """Segment one video; failures come back as a ``failed`` record."""
        return attempt(job, self.process)

    def pid(self) -> int:
        return os.getpid()


@contextlib.contextmanager
def ray_session(ray: Any, log_level: int = logging.WARNING) -> Iterator[str]:
    """Connect to ``RAY_ADDRESS`` or start a private local Ray; shut it down on every exit path.

    Yields:
        Where the batch runs, for the log (``"local Ray"`` or the address).

    Raises:
        ClusterError: no cluster at the address, or its authentication token is missing.
    """
    address = os.environ.get("RAY_ADDRESS") or None
    where = f"the Ray cluster at {address} (RAY_ADDRESS)" if address else "a local Ray"
    fix = (
        "is it up (`ray start --head`)? With token authentication (Ray's default) set RAY_AUTH_MODE=token "
        "and copy the head's ~/.ray/auth_token here; or unset RAY_ADDRESS to run on this machine alone"
        if address
        else "run without --ray, or see Ray's messages above"
    )
    if address:
        _check_reachable(address, where, fix)
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    try:
        # address=None reads RAY_ADDRESS as Ray's tools do; "local" never joins another instance.
        ray.init(address=None if address else "local", include_dashboard=False, logging_level=log_level)
        if sigterm is not None:  # ray.init makes SIGTERM exit at once; the caller's handler stops cleanly
            signal.signal(signal.SIGTERM, sigterm)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        ray.shutdown()
        raise ClusterError(f"cannot start or join {where}: {one_line(exc, limit=200)}; {fix}") from exc
    except BaseException:  # Ctrl-C while Ray starts
        ray.shutdown()
        raise
    try:
        yield where
    finally:
        ray.shutdown()


def _check_reachable(address: str, where: str, fix: str) -> None:
    """Fail fast when nothing listens at a ``host:port`` address (Ray itself retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # "auto", "ray://…": Ray resolves those itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach {where}: {one_line(exc)}; {fix}") from exc


def run_on_ray(
    todo: Sequence[Job],
    make_process: MakeProcess,
    manifest: Manifest,
    *,
    progress: BatchProgress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    cpus_per_actor: int | None = None,
    log_level: int = logging.WARNING,
    on_start: Callable[[], None] | None = None,
) -> list[Record]:
    """Process the jobs on Ray actors; the records are appended to ``manifest`` as they arrive.

    Args:
        todo: the jobs left to do (Ray is not touched when there are none).
        make_process: builds an actor's process callable (its model) from the cores it has;
            pickled to the actors.
        manifest: written by this process only.
        progress: the batch's bar (it moves as each file's record arrives).
        should_stop: checked while waiting; once true, no further video is handed out and the
            videos in flight are dropped (their actors are killed; the next run redoes them).
        cpus_per_actor: cores per CPU actor (default :data:`CPU_ACTOR_CORES`).
        log_level: logging level inside the actors.
        on_start: called once Ray is up and the actors are asked for, as videos start to be
            handed out (before it, an interrupt has nothing to finish).

    Returns:
        One record per video that finished or was dropped, in the order they came back.

    Raises:
        ClusterError: Ray is missing or the cluster cannot be used.
    """
    if not todo:
        return []
    ray = import_ray()
    with ray_session(ray, log_level) as where:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        plan = plan_actors(nodes, len(todo), cpus_per_actor)
        log.info("running %d video(s) on %s: %s", len(todo), where, plan.describe())
        remote = ray.remote(
            num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES
        )(VideoActor)
        cores = plan.num_cpus
        actors = [remote.remote(make_process, cores, log_level) for _ in range(plan.actors)]
        if on_start is not None:
            on_start()
        return _dispatch(ray, actors, todo, manifest, progress, should_stop)


def _dispatch(
    ray: Any,
    actors: list[Any],
    todo: Sequence[Job],
    manifest: Manifest,
    progress: BatchProgress | None,
    should_stop: Callable[[], bool],
) -> list[Record]:
    """Hand each idle actor the next job; record results as they come back."""
    queue, idle = deque(todo), list(actors)
    pending: dict[Any, tuple[Job, Any]] = {}
    records: list[Record] = []
    while queue or pending:
        while idle and queue and not should_stop():
            job, actor = queue.popleft(), idle.pop()
            pending[actor.run.remote(job)] = (job, actor)
        if should_stop():
            _drop(ray, pending, manifest, records, progress)
            break
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        for ref in ready:
            job, actor = pending.pop(ref)
            finish(_result(ray, ref, job), job.name, manifest, records, progress)
            idle.append(actor)
    return records


def _result(ray: Any, ref: Any, job: Job) -> Record:
    """The record an actor returned, or a ``failed`` one when the actor was lost for good."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        lost = isinstance(exc, ray.exceptions.RayActorError)
        why = f"worker lost {MAX_RETRIES + 1} times" if lost else "worker error"
        return Record(str(job.input), str(job.output), "failed", error=f"{why}: {one_line(exc, limit=300)}")


def _drop(
    ray: Any,
    pending: dict[Any, tuple[Job, Any]],
    manifest: Manifest,
    records: list[Record],
    progress: BatchProgress | None,
) -> None:
    """Stop the videos in flight: kill their actors, delete their temporary files, record them."""
    for job, actor in pending.values():
        ray.kill(actor, no_restart=True)
        remove_stale_partials(job.output)
        record = Record(str(job.input), str(job.output), "interrupted", error="stopped before the end")
        finish(record, job.name, manifest, records, progress)
    pending.clear()
