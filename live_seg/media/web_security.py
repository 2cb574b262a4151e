"""The rules every web surface follows (``live --display browser`` and ``serve``).

* **Host check** (DNS rebinding): a request whose ``Host`` is not this machine by a name it
  answers to (loopback names, an IP literal when bound to all interfaces, the machine's host
  name, the bound address, names allowed explicitly) is refused with 421.
* **Origin check** (CSRF): a state-changing request (anything but GET, HEAD, OPTIONS) from
  another origin (``Origin`` not this page's origin, or ``Sec-Fetch-Site`` cross-site) gets 403.
  Routes that show what the camera sees (the MJPEG stream, the newest frame) are same-origin
  reads: ``Sec-Fetch-Site`` cross-site or same-site, or a foreign ``Origin`` or ``Referer``, gets
  403 before anything is held for the request (a cross-site ``<img>`` takes no viewer slot).
* **Token**, on every surface and every address (a per-run secret, the way Jupyter does it): the
  one given (``--token-file``, ``$LIVE_SEG_TOKEN``, ``--token``) or one made at start. Every request
  carries it, as ``?token=`` (the URL printed once at start, to the terminal only), ``Authorization:
  Bearer``, or the cookie the first such request sets (``HttpOnly``, ``SameSite=Strict``, ``Secure``
  over HTTPS, named after the port: two servers on one machine keep theirs apart). 401 without
  one, 403 with a wrong one; the comparison takes constant time. A page opened with ``?token=`` is
  answered with the cookie and a redirect to the same address without it (out of the address bar
  and the history).
* **HTTPS**, when bound beyond loopback: the given certificate, or a self-signed one made once
  and cached (:mod:`live_seg.media.certificates`; it names the machine's LAN addresses too).
* **Caps**: request bodies (413), clients (503) and request rates (429) are bounded by the servers.

This module is framework-free: both the ``http.server`` view and the aiohttp server ask
:meth:`WebPolicy.check` with the request's method, target and headers.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from ..base.errors import UsageError, one_line
from .certificates import is_ip, lan_addresses, self_signed_certificate

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BODY = 64 * 1024
"""Default cap on a request body, in bytes (an SDP offer is a few kB)."""
TOKEN_ENV = "LIVE_SEG_TOKEN"
"""The environment variable a token may come from (out of the process list, unlike ``--token``)."""
MAX_TOKEN = 256


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the HTTP status and a one-line reason."""

    status: int
    reason: str


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(
    token: str | None = None, token_file: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The run's token: from ``token_file``, ``token`` (argv: visible in the process list), the
    :data:`TOKEN_ENV` environment variable, or a new random one, in that order.

    Raises:
        UsageError: both ``token`` and ``token_file``; a file that cannot be read; an empty or
            over-long token, or one with spaces or control characters.
    """
    environ = os.environ if environ is None else environ
    if token is not None and token_file is not None:
        raise UsageError("--token and --token-file go one at a time")
    if token_file is not None:
        try:
            path = Path(token_file)
            if path.stat().st_mode & 0o077:
                log.warning("the token file %s is readable by other users (chmod 600 it)", token_file)
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the token file {token_file}: {one_line(exc)}") from exc
    elif token is None:
        token = environ.get(TOKEN_ENV) or None
    if token is None:
        return secrets.token_urlsafe(18)
    if not token or len(token) > MAX_TOKEN or not token.isprintable() or " " in token:
        raise UsageError(f"a token is 1 to {MAX_TOKEN} printable characters without spaces")
    return token


class RateLimit:
    """A token bucket: ``rate`` events a second on average, bursts of ``burst``; thread-safe."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._t = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Take one event's place; False when the rate is exceeded (the caller answers 429)."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._t) * self.rate)
            self._t = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True


def _hostname(netloc: str) -> str | None:
    """The host name of a ``Host`` header or an origin's netloc, lower case; ``None`` if malformed."""
    try:
        parts = urlsplit("//" + netloc)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    return (parts.hostname or "").rstrip(".") or None


def _machine_names() -> set[str]:
    names = {socket.gethostname().lower()}
    try:
        names.add(socket.getfqdn().lower())
    except OSError:
        pass
    return {n.rstrip(".") for n in names if n}


@dataclass
class WebPolicy:
    """The access rules of one server (see the module's docstring).

    Args:
        host: the address bound (``0.0.0.0`` / ``::`` / ``""``: all interfaces).
        token: the token clients must show (:meth:`for_bind` makes one when none is given).
        tls: serve HTTPS (forced on beyond loopback by :meth:`for_bind`).
        allowed_hosts: extra names the server answers to (a DNS name of the machine).
        max_body: the largest request body accepted, in bytes.
        max_clients: the most clients served at once.
        port: the bound port (set by the server once bound; 0 before).
    """

    host: str = "127.0.0.1"
    token: str | None = None
    tls: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    max_body: int = MAX_BODY
    max_clients: int = 4
    port: int = 0
    _names: frozenset[str] = field(default=frozenset(), init=False, repr=False)

    def __post_init__(self) -> None:
        names = set(LOOPBACK_NAMES) | {h.lower().rstrip(".") for h in self.allowed_hosts}
        if self.host not in ("", "0.0.0.0", "::"):
            names.add(self.host.strip("[]").lower())
        if self.exposed:
            names |= _machine_names()
        self._names = frozenset(names)

    @classmethod
    def for_bind(
        cls, host: str, token: str | None = None, allowed_hosts: Iterable[str] = (), tls: bool = False, **caps: int
    ) -> WebPolicy:
        """The policy of a server bound to ``host``: a token (made here when not given) on every
        address; beyond loopback HTTPS too; on loopback plain HTTP (HTTPS with ``tls``, e.g. a
        certificate was given)."""
        exposed = not is_loopback(host)
        return cls(host, token or secrets.token_urlsafe(18), exposed or tls, frozenset(allowed_hosts), **caps)

    @property
    def exposed(self) -> bool:
        """Bound beyond loopback (other machines can connect)."""
        return not is_loopback(self.host or "0.0.0.0")

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def cookie_name(self) -> str:
        """The token cookie's name (per port: cookies do not tell ports apart)."""
        return f"live_seg_token_{self.port}"

    def url(self, path: str = "/", with_token: bool = True) -> str:
        """The page's address for this machine's browser, with the token (``with_token``) when there
        is one. Only the terminal sees it with the token: logs and ``--stats`` take it without."""
        host = self.host.strip("[]")
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        host = f"[{host}]" if ":" in host else host
        query = f"?token={self.token}" if self.token and with_token else ""
        return f"{self.scheme}://{host}:{self.port}{path}{query}"

    def host_allowed(self, host_header: str | None) -> bool:
        """Whether a ``Host`` header names this machine (no header: refused)."""
        name = _hostname(host_header or "")
        if name is None:
            return False
        if name in self._names:
            return True
        return is_ip(name) and (self.host in ("", "0.0.0.0", "::") or is_loopback(name))

    def _cross_origin(self, headers: Mapping[str, str], referer: bool = False) -> bool:
        """Sent by a page of another site or origin (``Sec-Fetch-Site``, ``Origin``; ``Referer`` too
        with ``referer``). A request with none of them is not a browser's cross-origin request."""
        if (headers.get("Sec-Fetch-Site") or "").lower() in ("cross-site", "same-site"):
            return True
        origin = headers.get("Origin")
        if origin is not None and self._foreign(origin, headers, page=False):
            return True
        ref = headers.get("Referer") if referer else None
        return ref is not None and self._foreign(ref, headers, page=True)

    def _foreign(self, address: str, headers: Mapping[str, str], page: bool) -> bool:
        """Whether ``address`` (an origin; a page's URL with ``page``) is of another origin than this server."""
        try:
            parts = urlsplit(address)
            same_port = (parts.port or (443 if parts.scheme == "https" else 80)) == self._host_port(headers)
        except ValueError:
            return True
        if parts.scheme != self.scheme or (not page and parts.path not in ("", "/")) or not same_port:
            return True
        return _hostname(parts.netloc) != _hostname(headers.get("Host") or "")

    def _host_port(self, headers: Mapping[str, str]) -> int:
        port = urlsplit("//" + (headers.get("Host") or "")).port
        return port or (443 if self.tls else 80)

    def supplied_token(self, target: str, headers: Mapping[str, str]) -> tuple[str | None, bool]:
        """The token a request carries and whether it came in the URL (then the reply sets the cookie)."""
        values = parse_qs(urlsplit(target).query).get("token")
        if values:
            return values[0], True
        auth = headers.get("Authorization") or ""
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip(), False
        try:
            morsel = SimpleCookie(headers.get("Cookie") or "").get(self.cookie_name)
        except CookieError:
            morsel = None
        return (morsel.value if morsel is not None else None), False

    def check(
        self, method: str, target: str, headers: Mapping[str, str], *, same_origin: bool = False
    ) -> Refusal | None:
        """Whether to serve a request; ``None`` when it may be served.

        Args:
            method: the HTTP method.
            target: the request target (path and query).
            headers: the request headers (case-insensitive lookups, as both servers give).
            same_origin: a read only this server's own pages may make (the camera's pictures):
                refused when another site or origin asks, ``Referer`` included.
        """
        if not self.host_allowed(headers.get("Host")):
            return Refusal(421, "unknown Host: this server answers to its own address only")
        unsafe = method.upper() not in SAFE_METHODS
        if (unsafe or same_origin) and self._cross_origin(headers, referer=same_origin):
            return Refusal(403, "cross-origin request refused")
        if self.token is not None:
            given, _ = self.supplied_token(target, headers)
            if not given:
                return Refusal(401, "token required: open the URL printed at start")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return Refusal(403, "wrong token")
        length = headers.get("Content-Length")
        if length is not None:
            if not length.isdigit():
                return Refusal(400, "bad Content-Length")
            if int(length) > self.max_body:
                return Refusal(413, f"request body over {self.max_body} bytes")
        return None

    def clean_target(self, method: str, target: str, headers: Mapping[str, str]) -> str | None:
        """Where to redirect a page request that carried the token in its URL (the same target
        without ``token``; the reply sets the cookie); ``None`` when no redirect is due."""
        if method.upper() != "GET" or self.token is None or not self.supplied_token(target, headers)[1]:
            return None
        parts = urlsplit(target)
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"])
        return (parts.path or "/") + (f"?{query}" if query else "")

    def cookie_header(self) -> str:
        """A ``Set-Cookie`` value that keeps the token for the page's own requests."""
        secure = "; Secure" if self.tls else ""
        return f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict{secure}"

    def ssl_context(self, cert: str | None = None, key: str | None = None) -> ssl.SSLContext | None:
        """The server's TLS context (``None`` for plain HTTP): ``cert``/``key``, or the cached self-signed pair.

        Raises:
            UsageError: the certificate or key cannot be loaded.
        """
        if not self.tls:
            return None
        if cert is None:
            names = self._names | {self.host or "0.0.0.0"}
            if self.host in ("", "0.0.0.0", "::"):  # what a browser on the LAN types
                names |= lan_addresses()
            cert, key = self_signed_certificate(sorted(names))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load the certificate {cert} / key {key}: {one_line(exc)}") from exc
        return context
