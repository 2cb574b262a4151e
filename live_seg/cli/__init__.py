"""The command line: ``main()`` (logging, signals, dispatch, one-line errors and exit codes), the argument
parser (defaults read from the option values), the batch command and the serve command (registered in
``main.COMMANDS`` here: any import of :mod:`live_seg.cli.main` runs this first).

May import: everything.
"""

from __future__ import annotations

from .main import COMMANDS, main
from .serve import cmd_serve

COMMANDS["serve"] = cmd_serve

__all__ = ["main"]
