"""What every test module shares: running the command line, waiting on a condition, and the
threads a run must not leave behind.

* :func:`run_cli` runs ``python run_live.py ARGS`` to its end in a fresh interpreter, or, given
  pytest's ``capsys``/``capfd``, ``main(ARGS)`` in this process (so the test can look at this
  process's threads afterwards); either way a :class:`CliResult`.
* :func:`start_cli` starts the same command and returns the running process, for tests that
  signal it or read it while it runs (:class:`TerminalCli`: with its progress bar on a
  terminal; :class:`Lines`: a pipe's lines read as they come).
* :func:`wait_for` polls a condition and fails with what it waited for: the tests wait on
  conditions, not on clocks. Its timeouts are generous on purpose: the suite shares two cores
  with whatever else runs, and a condition that holds comes true long before them.
* :func:`live_threads` names the ``live_seg-*`` threads alive now; conftest's autouse fixture
  fails a test that leaves one behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
RUN_LIVE = ROOT / "run_live.py"
THREAD_PREFIX = "live_seg-"
"""Every pipeline thread's name starts with this (``live_seg.pipeline.threads.THREAD_PREFIX``)."""

T = TypeVar("T")


# -- waiting --------------------------------------------------------------------------------------


def wait_for(
    condition: Callable[[], T],
    timeout: float = 60.0,
    what: str = "",
    *,
    alive: subprocess.Popen | None = None,
    every: float = 0.02,
) -> T:
    """Poll ``condition`` until it returns something true, and return that.

    Args:
        condition: What to wait for; called every ``every`` seconds.
        timeout: Seconds before the test fails. Generous: it only bounds a wait for a condition
            that never comes, and a loaded machine takes many times longer than an idle one.
        what: Words for the failure message ("the first frame", "no client left").
        alive: A process that must still run while waiting: the wait fails at once, with the
            process's exit status, when it ends first.
        every: Seconds between polls.

    Raises:
        AssertionError: ``timeout`` passed, or ``alive`` ended, before ``condition`` held.
    """
    deadline = time.monotonic() + timeout
    while True:
        if value := condition():
            return value
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"the process ended (status {alive.returncode}) before {what or 'the condition'}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or 'the condition'}")
        time.sleep(every)


# -- threads --------------------------------------------------------------------------------------


def live_threads(prefix: str = THREAD_PREFIX) -> list[str]:
    """Names of the threads alive now whose name starts with ``prefix``."""
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def threads_since(before: set[threading.Thread], ignore: str = "") -> list[str]:
    """Names of the threads alive now that were not in ``before`` (but those starting with ``ignore``)."""
    return [t.name for t in threading.enumerate() if t not in before and not (ignore and t.name.startswith(ignore))]


def no_threads_left(prefix: str = THREAD_PREFIX, timeout: float = 10.0) -> None:
    """Fail unless every ``prefix`` thread ends within ``timeout`` s (a leaked one never does)."""
    wait_for(lambda: not live_threads(prefix), timeout, f"no {prefix}* thread left (still: {live_threads(prefix)})")


# -- the command line -----------------------------------------------------------------------------


class CliResult(subprocess.CompletedProcess):
    """A finished command line: ``returncode``, ``stdout``, ``stderr`` (text) and ``seconds``."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str, seconds: float) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.seconds = seconds

    @property
    def lines(self) -> list[str]:
        """The non-blank lines of stderr."""
        return [ln for ln in self.stderr.splitlines() if ln.strip()]

    def one_line_error(self, *parts: str) -> str:
        """Exit 1, one stderr line (the error), no traceback; the line holds every part."""
        assert self.returncode == 1, self.stderr
        assert "Traceback" not in self.stderr
        assert len(self.lines) == 1, self.stderr
        line = self.lines[0]
        assert line.startswith("error: "), line
        for part in parts:
            assert part in line, (part, line)
        return line


def cli_command(*args: object, setup: str = "") -> list[str]:
    """The argv of ``python run_live.py ARGS``; with ``setup``, Python run in the child before
    ``main(ARGS)`` (to patch something inside it)."""
    if not setup:
        return [sys.executable, str(RUN_LIVE), *map(str, args)]
    script = f"import sys\n{setup}\nfrom live_seg.cli.main import main\nraise SystemExit(main(sys.argv[1:]))"
    return [sys.executable, "-c", script, *map(str, args)]


def _child_env(env: dict[str, str] | None, cwd: Path) -> dict[str, str] | None:
    """The child's environment: this checkout importable from any working folder."""
    if cwd == ROOT and env is None:
        return None
    base = dict(os.environ if env is None else env)
    base["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
    return base


def run_cli(
    *args: object,
    cwd: str | os.PathLike[str] = ROOT,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    setup: str = "",
    capture: Any = None,
) -> CliResult:
    """Run the command line to its end.

    Args:
        *args: Its arguments (anything ``str()`` turns into one).
        cwd: The working folder (of the child; in process, the test's own is kept).
        env: The child's environment (default: this one's).
        timeout: Seconds the child may run.
        setup: Python run in the child before ``main`` (see :func:`cli_command`).
        capture: pytest's ``capsys`` or ``capfd``: run ``main(ARGS)`` in this process instead,
            with what it wrote read from that fixture (``capfd`` also sees what FFmpeg or
            OpenCV print on their own). The root logger is given back as it was.

    Returns:
        Exit status, stdout, stderr and the seconds it took.
    """
    argv = [str(a) for a in args]
    t0 = time.perf_counter()
    if capture is not None:
        from live_seg.cli.main import main

        root = logging.getLogger()
        saved = (root.handlers[:], root.level)
        capture.readouterr()
        try:
            code = main(argv)
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
        out, err = capture.readouterr()
        return CliResult(argv, code, out, err, time.perf_counter() - t0)
    cmd = cli_command(*argv, setup=setup)
    cwd = Path(cwd)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_child_env(env, cwd))
    return CliResult(cmd, done.returncode, done.stdout, done.stderr, time.perf_counter() - t0)


def start_cli(
    *args: object,
    cwd: str | os.PathLike[str] = ROOT,
    env: dict[str, str] | None = None,
    setup: str = "",
    **popen: Any,
) -> subprocess.Popen:
    """Start the command line and return it running; stdout and stderr are text pipes unless
    ``popen`` says otherwise (any :class:`subprocess.Popen` argument)."""
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    cwd = Path(cwd)
    return subprocess.Popen(cli_command(*args, setup=setup), cwd=cwd, env=_child_env(env, cwd), **options)


class TerminalCli:
    """``python run_live.py ARGS`` with stderr on a pseudo-terminal, so that its progress bar
    says how many frames are done (the bar is drawn only on a terminal); stdout is discarded."""

    def __init__(self, *args: object, cwd: str | os.PathLike[str] = ROOT) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        self.proc = start_cli(*args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        self._master = master
        self._chunks: list[str] = []
        self._reader = threading.Thread(target=self._read, name="test-pty-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:  # the child closed its end
                return
            if not data:
                return
            self._chunks.append(data.decode("utf-8", "replace"))

    @property
    def text(self) -> str:
        """Everything the child wrote to stderr so far."""
        return "".join(self._chunks)

    def frames_done(self) -> int:
        """The frame count of the progress bar drawn last (0 before the first)."""
        counts = re.findall(r"(\d+)/\d+ \[", self.text)
        return int(counts[-1]) if counts else 0

    def wait_frames(self, n: int, timeout: float = 120) -> None:
        """Wait until the bar says ``n`` frames are done; fail if the child ends first."""
        wait_for(lambda: self.frames_done() >= n, timeout, f"{n} frames done:\n{self.text}", alive=self.proc)

    def wait_text(self, text: str, timeout: float = 60) -> None:
        """Wait until stderr holds ``text``."""
        wait_for(lambda: text in self.text, timeout, f"{text!r} on stderr:\n{self.text}")

    def finish(self, timeout: float) -> int:
        """Wait for the child's exit status (killing it after ``timeout`` s) and close the terminal."""
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)
            os.close(self._master)


class Lines:
    """Collect a pipe's lines in a thread; wait for one that matches."""

    def __init__(self, pipe: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: Any) -> None:
        for line in pipe:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        """The first line holding ``text``, once there is one."""

        def found() -> str | None:
            return next((line for line in list(self.lines) if text in line), None)

        return wait_for(found, timeout, f"a line with {text!r}; got: {self.lines}")

    def text(self) -> str:
        """Every line, once the pipe is closed (or 10 s passed)."""
        self._thread.join(10)
        return "\n".join(self.lines)
