"""Shared fixtures: every test must leave no pipeline thread alive."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

import pytest
from harness import no_threads_left


def pytest_configure(config):
    """Converted and compiled OpenVINO models go to a cache of this test session (shared with the
    CLI subprocesses it starts), not to the user's."""
    config._live_seg_cache = tempfile.mkdtemp(prefix="live_seg-test-cache-")
    os.environ["XDG_CACHE_HOME"] = config._live_seg_cache


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "_live_seg_cache", ""), ignore_errors=True)


@pytest.fixture(autouse=True)
def no_thread_left():
    """Fail a test that leaves a ``live_seg-*`` thread running (a leaked one never ends; the grace
    period only lets a thread that is on its way out finish on a loaded machine)."""
    yield
    no_threads_left()


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """An interrupted in-process run leaves its "already stopping" handlers (for the rest of a
    real process's life); give every test the handlers it started with."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.fixture(scope="session")
def selfie_files():
    """Both selfie models' files (``name -> path``), fetched once a session from the pinned wheel into the
    torch cache the command line uses (beside this session's cache: see :func:`pytest_configure`). Outside
    CI a machine without them and without the package registry skips, with the reason; under CI it fails."""
    from live_seg.base.errors import ModelError
    from live_seg.base.wheel_files import WHEEL_FILES
    from live_seg.model import wheel_weights

    try:
        return {f.name: wheel_weights.fetch(f) for f in WHEEL_FILES}
    except ModelError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"the selfie weights are not cached and the package registry is not reachable: {exc}")
