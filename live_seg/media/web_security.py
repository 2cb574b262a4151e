"""The rules every web surface follows (``live --display browser`` and ``serve``).

* **Host check** (DNS rebinding): a request whose ``Host`` is not this machine by a name it
  answers to (loopback names, an IP literal when bound to all interfaces, the machine's host
  name, the bound address, names allowed explicitly) is refused with 421.
* **Origin check** (CSRF): a state-changing request (anything but GET, HEAD, OPTIONS) from
  another origin (``Origin`` not this page's origin, or ``Sec-Fetch-Site`` cross-site) gets 403.
* **Token**, when bound beyond loopback: every request must carry it, as ``?token=`` (the URL
  printed at start), ``Authorization: Bearer``, or the cookie the first such request sets
  (401 without one, 403 with a wrong one). The comparison takes constant time.
* **HTTPS**, when bound beyond loopback: the given certificate, or a self-signed one made once
  and cached under ``$XDG_CACHE_HOME/live_seg/tls/`` (browsers give a page the camera only
  on a secure origin, and the token must not cross the network in clear).
* **Caps**: request bodies (413) and clients (503) are bounded by the servers.

This module is framework-free: both the ``http.server`` view and the aiohttp server ask
:meth:`WebPolicy.check` with the request's method, target and headers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..base.errors import OutputError, UsageError, one_line
from ..base.files import written_beside

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BODY = 64 * 1024
"""Default cap on a request body, in bytes (an SDP offer is a few kB)."""
CERT_DAYS = 825


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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


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
        token: the token clients must show when bound beyond loopback (``None``: one is made);
            on loopback a given token is required too.
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
        """The policy of a server bound to ``host``: beyond loopback, a token (made here when not
        given) and HTTPS; on loopback, plain HTTP (HTTPS with ``tls``, e.g. a certificate was given)
        and the token only when one is given."""
        exposed = not is_loopback(host)
        if exposed and not token:
            token = secrets.token_urlsafe(18)
        return cls(host, token or None, exposed or tls, frozenset(allowed_hosts), **caps)

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

    def url(self, path: str = "/") -> str:
        """The page's address for this machine's browser, with the token when there is one."""
        host = self.host.strip("[]")
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        host = f"[{host}]" if ":" in host else host
        query = f"?token={self.token}" if self.token else ""
        return f"{self.scheme}://{host}:{self.port}{path}{query}"

    def host_allowed(self, host_header: str | None) -> bool:
        """Whether a ``Host`` header names this machine (no header: refused)."""
        name = _hostname(host_header or "")
        if name is None:
            return False
        if name in self._names:
            return True
        return _is_ip(name) and (self.host in ("", "0.0.0.0", "::") or is_loopback(name))

    def _cross_origin(self, headers: Mapping[str, str]) -> bool:
        if (headers.get("Sec-Fetch-Site") or "").lower() in ("cross-site", "same-site"):
            return True
        origin = headers.get("Origin")
        if origin is None:
            return False  # not sent by a browser making a cross-origin request
        try:
            parts = urlsplit(origin)
            same_port = (parts.port or (443 if parts.scheme == "https" else 80)) == self._host_port(headers)
        except ValueError:
            return True
        if parts.scheme != self.scheme or parts.path not in ("", "/") or not same_port:
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

    def check(self, method: str, target: str, headers: Mapping[str, str]) -> Refusal | None:
        """Whether to serve a request; ``None`` when it may be served.

        Args:
            method: the HTTP method.
            target: the request target (path and query).
            headers: the request headers (case-insensitive lookups, as both servers give).
        """
        if not self.host_allowed(headers.get("Host")):
            return Refusal(421, "unknown Host: this server answers to its own address only")
        if method.upper() not in SAFE_METHODS and self._cross_origin(headers):
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
            cert, key = self_signed_certificate(sorted(self._names | {self.host or "0.0.0.0"}))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load the certificate {cert} / key {key}: {one_line(exc)}") from exc
        return context


def tls_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/live_seg/tls`` (``~/.cache/live_seg/tls`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "live_seg" / "tls"


def self_signed_certificate(names: Iterable[str], folder: Path | None = None) -> tuple[str, str]:
    """A self-signed certificate for ``names`` (host names and IP addresses), made once and cached.

    Returns:
        The certificate and key paths (PEM; the key readable by this user only).

    Raises:
        OutputError: the cache folder cannot be written.
    """
    names = sorted({n.strip("[]").lower() for n in names if n and n not in ("0.0.0.0", "::")})
    folder = folder or tls_cache_dir()
    stem = "self-signed-" + hashlib.sha256(",".join(names).encode()).hexdigest()[:12]
    cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
    if cert_path.is_file() and key_path.is_file():
        return str(cert_path), str(key_path)
    cert_pem, key_pem = _make_certificate(names)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with written_beside(key_path) as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # the temporary name already exists with the usual permissions
            with os.fdopen(fd, "wb") as f:
                f.write(key_pem)  # written only once the key is private
        with written_beside(cert_path) as tmp:
            tmp.write_bytes(cert_pem)
    except OSError as exc:
        raise OutputError(f"cannot cache the self-signed certificate in {folder}: {one_line(exc)}") from exc
    log.info("made a self-signed certificate for %s (%s)", ", ".join(names), cert_path)
    return str(cert_path), str(key_path)


def _make_certificate(names: list[str]) -> tuple[bytes, bytes]:
    try:
        from cryptography import x509
    except ImportError as exc:
        raise OutputError(
            "HTTPS beyond loopback needs a certificate: give --cert and --key, or pip install 'live-seg[web]' "
            "(the cryptography package) to make a self-signed one"
        ) from exc
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "live_seg " + (names[0] if names else "server"))])
    alt: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n) for n in names
    ]
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
