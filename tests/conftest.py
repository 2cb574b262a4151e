"""Shared fixtures: every test must leave no pipeline thread alive."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time

import pytest

PREFIX = "live_seg-"


def pytest_configure(config):
    """Converted and compiled OpenVINO models go to a cache of this test session (shared with the
    CLI subprocesses it starts), not to the user's."""
    config._live_seg_cache = tempfile.mkdtemp(prefix="live_seg-test-cache-")
    os.environ["XDG_CACHE_HOME"] = config._live_seg_cache


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "_live_seg_cache", ""), ignore_errors=True)


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(PREFIX) and t.is_alive()]


@pytest.fixture(autouse=True)
def no_thread_left():
    """Fail a test that leaves a ``live_seg-*`` thread running (after a short grace period)."""
    yield
    deadline = time.monotonic() + 2.0
    while pipeline_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    left = pipeline_threads()
    assert not left, f"pipeline threads still alive after the test: {left}"


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """An interrupted in-process run leaves its "already stopping" handlers (for the rest of a
    real process's life); give every test the handlers it started with."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
