"""Credentials out of every URL the tool reports (logs, ``--stats``, chart and window titles).

One rule for all of them: the user-info part (``user:password@``) becomes ``***@``, and the value of
every parameter whose name looks like a credential (``user``, ``password``, ``pwd``, ``token``,
``key``, ``secret``, ``auth``, ``signature``, ``session`` and the like, matched as a part of the
name, case and ``-``/``_`` ignored) becomes ``***``, in the query, the fragment and ``;``-parameters.
A harmless parameter that looks like a credential is masked too: when in doubt, it is hidden.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

MASK = "***"
SECRET_PARTS = (
    "user", "login", "pass", "pwd", "token", "secret", "key", "auth", "sig", "cred", "session", "cookie",
    "account", "nonce",
)  # fmt: skip
"""A parameter whose (normalised) name contains one of these is a credential."""
SECRET_NAMES = frozenset({"u", "p", "pw", "usr", "code"})
"""Short names that are credentials by themselves (``?u=admin&p=1234``)."""

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_PAIR = re.compile(r"(?<=[?&;#])([^=&;#?/]+)=([^&;#]*)")


def is_secret_name(name: str) -> bool:
    """Whether a URL parameter named ``name`` carries a credential (see the module's docstring)."""
    norm = unquote_plus(name).lower().replace("-", "").replace("_", "").strip()
    return norm in SECRET_NAMES or any(part in norm for part in SECRET_PARTS)


def redact_url(url: str) -> str:
    """``rtsp://user:secret@host/x?token=abc&ch=1`` → ``rtsp://***@host/x?token=***&ch=1``.

    A string without ``://`` (a file path, a camera index) is returned as it is.
    """
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    tail = _PAIR.sub(lambda m: f"{m.group(1)}={MASK}" if is_secret_name(m.group(1)) else m.group(0), tail)
    return f"{scheme}://{netloc}{tail}"


def redact_text(text: str) -> str:
    """Every URL inside ``text`` redacted (a title or a message that may quote one)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)
