"""The command line: ``main()`` (logging, signals, dispatch, one-line errors and exit codes), the argument
parser (defaults read from the option values), the batch command and the serve command.

May import: everything.
"""

from __future__ import annotations

from .main import main

__all__ = ["main"]
