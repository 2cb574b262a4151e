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


class ClusterError(LiveSegError):
    """A Ray cluster could not be used (Ray missing, no cluster at the address, no resources)."""


class UsageError(LiveSegError, ValueError):
    """A bad argument that only the run can tell (a class name the weights lack): exit 2."""


class PipelineError(LiveSegError):
    """A pipeline stage failed; the original exception is chained as ``__cause__``."""


def one_line(exc: BaseException | str, *, with_type: bool = False, limit: int | None = None) -> str:
    """A message on one line: whitespace runs collapsed, optionally prefixed and cut.

    Args:
        exc: an exception (its ``str``, or the ``strerror`` of an OS or PyAV error) or a text.
        with_type: prefix the exception's class name (``"ValueError: ..."``).
        limit: cut the text to this many characters.
    """
    if isinstance(exc, BaseException):
        raw = getattr(exc, "strerror", None)  # OSError and av.error.FFmpegError carry one
        text = " ".join(str(raw or exc).split())
    else:
        text = " ".join(str(exc).split())
    if limit is not None:
        text = text[:limit]
    if with_type and isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text or (type(exc).__name__ if isinstance(exc, BaseException) else "")
