"""Tests of the command line's arguments and of the registry they are read from."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from live_seg.base import registry
from live_seg.base.specs import MODEL_NAMES
from live_seg.cli.args import get_args_parser
from live_seg.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["live_seg.base.registry", "live_seg.cli.args", "live_seg.cli.main"])
def test_registry_and_argument_parsing_do_not_import_torch(module):
    code = f"import {module}, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet"),
    [
        (["live", "--source", "7"], 0, False),
        (["-v", "live", "--source", "7"], 1, False),
        (["live", "--source", "7", "-v"], 1, False),
        (["-vv", "live"], 2, False),
        (["live", "-vv"], 2, False),
        (["-v", "live", "-q"], 1, True),
        (["-q", "video", "in.mp4"], 0, True),
        (["video", "in.mp4", "-q"], 0, True),
        (["bench", "--verbose"], 1, False),
        (["image", "in.png", "--quiet"], 0, True),
    ],
)
def test_global_flags_before_or_after_the_command(argv, verbose, quiet):
    args = get_args_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


@pytest.fixture
def root_logging():
    """main() installs its own handler on the root logger: give the next test the one it had."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_after_the_command_runs_it(tmp_path, capsys, root_logging, where):
    """``-v`` in either place: the command runs (exit 1 for a missing file, not 2 for usage) and logs verbosely."""
    missing = str(tmp_path / "missing.mp4")
    argv = ["live", "--source", missing, "--display", "none"]
    code = main(["-v", *argv] if where == "before" else [*argv, "-v"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "ERROR: error:" in err and missing in err  # -v: level names, and the traceback
    assert "Traceback" in err


def test_choices_come_from_the_registry():
    parser = get_args_parser()
    defaults = parser.parse_args(["video", "in.mp4"])
    assert (defaults.model, defaults.device, defaults.precision) == (
        registry.DEFAULT_MODEL,
        registry.AUTO,
        registry.AUTO,
    )
    for name in MODEL_NAMES:
        assert parser.parse_args(["video", "in.mp4", "--model", name]).model == name
    for device in registry.DEVICES:
        assert parser.parse_args(["live", "--device", device]).device == device
    for precision in registry.PRECISIONS:
        assert parser.parse_args(["image", "in.png", "--precision", precision]).precision == precision
    for view in registry.VIEWS:
        assert parser.parse_args(["video", "in.mp4", "--view", view]).view == view
    live = parser.parse_args(["live", "--pairing", registry.PAIRINGS[-1], "--display", registry.DISPLAYS[-1]])
    assert (live.pairing, live.display) == (registry.PAIRINGS[-1], registry.DISPLAYS[-1])
    bench = parser.parse_args(["bench", "--device", registry.ALL, "--precision", registry.ALL])
    assert bench.device == [registry.ALL] and bench.model == [registry.DEFAULT_MODEL]


def test_the_command_line_names_no_model_device_or_precision():
    """Every name is read from live_seg.base.registry; the command line's modules spell none of them."""
    names = {*MODEL_NAMES, *registry.DEVICES, *registry.PRECISIONS} - {registry.AUTO}
    for path in sorted((ROOT / "live_seg" / "cli").glob("*.py")):
        text = path.read_text()
        found = [n for n in names if re.search(rf"\b{re.escape(n)}\b", text)]
        assert not found, f"{path.name} names {found}"


def test_auto_texts_follow_the_registry():
    assert registry.auto_device_text() == ", then ".join(registry.AUTO_DEVICE_ORDER)
    text = registry.auto_precision_text()
    assert f"{registry.AUTO_PRECISION['cuda']} on cuda" in text and text.endswith(registry.AUTO_PRECISION["cpu"])
