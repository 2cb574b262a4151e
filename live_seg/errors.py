"""Errors users see.

Every error the tool raises on purpose derives from :class:`LiveSegError`. Its message is
one line that names the context and, where there is one, the fix. The CLI prints it as is
and exits 1; tracebacks only appear with ``-v``.
"""

from __future__ import annotations


class LiveSegError(Exception):
    """Base class of every error the tool reports to the user."""


class SourceError(LiveSegError):
    """An input (file, camera, stream) could not be opened or read."""


class ModelError(LiveSegError):
    """A model, its weights, its device or its precision could not be set up."""


class OutputError(LiveSegError):
    """An output file or folder could not be written."""


class PipelineError(LiveSegError):
    """A pipeline stage failed; the original exception is chained as ``__cause__``."""
