"""The self-signed certificate of the web surfaces: made once, cached as one unit, checked on every load.

The key and the certificate are one PEM file (certificate first, then the key; readable by this
user only), written under a temporary name and renamed into place: two servers starting at once
each write a whole, matching pair, and the last rename wins. A cached file is used only if it
parses, its key matches its certificate, it names every name asked for and it is valid for at
least :data:`RENEW_DAYS` more days; otherwise a new one replaces it (logged).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path

from ..base.errors import OutputError, one_line
from ..base.files import written_beside

log = logging.getLogger(__name__)

CERT_DAYS = 825
RENEW_DAYS = 1
"""A cached certificate that ends within this many days is replaced."""
_PROBES = ("192.0.2.1", "2001:db8::1")
"""Documentation addresses (never routed): a UDP socket "connected" to one tells this machine's
address on its default route without sending anything."""


def tls_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/live_seg/tls`` (``~/.cache/live_seg/tls`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "live_seg" / "tls"


def is_ip(host: str) -> bool:
    """An IPv4 or IPv6 address literal (no brackets)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def lan_addresses() -> set[str]:
    """This machine's non-loopback addresses that a browser on the LAN would type (best effort).

    From the host name's addresses and the address of the default route (found without sending a
    packet); an empty set when there is no network.
    """
    found: set[str] = set()
    try:
        found |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        pass
    for probe in _PROBES:
        family = socket.AF_INET6 if ":" in probe else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                found.add(str(s.getsockname()[0]))
        except OSError:
            pass
    out = set()
    for address in found:
        address = address.split("%", 1)[0]  # an IPv6 scope
        ip = ipaddress.ip_address(address) if is_ip(address) else None
        if ip is not None and not (ip.is_loopback or ip.is_unspecified or ip.is_link_local):
            out.add(str(ip))
    return out


def self_signed_certificate(names: Iterable[str], folder: Path | None = None) -> tuple[str, str]:
    """A self-signed certificate for ``names`` (host names and IP addresses), made once and cached.

    Returns:
        The certificate and key paths (one PEM file holding both, readable by this user only).

    Raises:
        OutputError: the cache folder cannot be written, or cryptography is missing.
    """
    names = sorted({n.strip("[]").lower() for n in names if n and n not in ("0.0.0.0", "::")})
    folder = folder or tls_cache_dir()
    stem = "self-signed-" + hashlib.sha256(",".join(names).encode()).hexdigest()[:12]
    path = folder / f"{stem}.pem"
    problem = cached_pair_problem(path, names)
    if problem is None:
        return str(path), str(path)
    if problem != "missing":
        log.info("the cached certificate %s %s: making a new one", path, problem)
    cert_pem, key_pem = _make_certificate(names)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with written_beside(path) as tmp:
            os.chmod(tmp, 0o600)  # private before the key is written
            tmp.write_bytes(cert_pem + key_pem)
    except OSError as exc:
        raise OutputError(f"cannot cache the self-signed certificate in {folder}: {one_line(exc)}") from exc
    log.info("made a self-signed certificate for %s (%s)", ", ".join(names), path)
    return str(path), str(path)


def cached_pair_problem(path: Path, names: Iterable[str]) -> str | None:
    """What is wrong with a cached certificate file (``None``: it is good; ``"missing"``: none yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({one_line(exc)})"
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(path)  # parses; key matches
    except (OSError, ssl.SSLError, ValueError) as exc:
        return f"is not a matching key and certificate ({one_line(exc)})"
    try:
        from cryptography import x509
    except ImportError:  # the pair loads; without cryptography its dates and names cannot be read
        return None
    try:
        cert = x509.load_pem_x509_certificate(data)
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        return f"cannot be read ({one_line(exc)})"
    if cert.not_valid_after_utc < dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=RENEW_DAYS):
        return "has expired or ends within a day"
    if cert.not_valid_before_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5):
        return "is not valid yet"
    if set(names) - {str(n.value) for n in alt}:
        return "does not name every address"
    if os.stat(path).st_mode & 0o077:
        return "is readable by other users"
    return None


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
        x509.IPAddress(ipaddress.ip_address(n)) if is_ip(n) else x509.DNSName(n) for n in names
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
