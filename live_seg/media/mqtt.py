"""Publishing to an MQTT broker that may be down, slow or gone, without ever holding up the caller.

:class:`MqttPublisher` wraps a paho-mqtt 2 client running its own network thread
(``loop_start``): it connects in the background (``connect_async``), reconnects with a growing
delay (``reconnect_delay_set``) when the broker goes away, and keeps ``PREFIX/available`` as
Frigate does: ``online`` published retained on each connection, ``offline`` retained as the
last will (sent by the broker when the connection is lost) and on a clean close.

:meth:`MqttPublisher.publish` never waits: a message is refused (counted as dropped) while the
client is not connected or while :data:`PENDING_MAX` messages are still unsent (a slow broker);
messages handed to the client but not sent when the connection drops are counted as dropped
too. :meth:`MqttPublisher.close` is bounded in time, broker or no broker.

paho-mqtt is imported when a publisher is built (the ``events`` extra), not with this module.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ..base.errors import OutputError

log = logging.getLogger(__name__)

SCHEME = "mqtt"
DEFAULT_PORT = 1883
DEFAULT_PREFIX = "live_seg"
AVAILABLE = "available"
"""``PREFIX/available``: ``online`` (retained) while connected, ``offline`` (retained, the last will)."""

KEEPALIVE_S = 30
CONNECT_TIMEOUT_S = 3.0
"""A connection attempt gives up after this long (and so does :meth:`MqttPublisher.close` waiting for one)."""
RECONNECT_DELAY_S = (1, 30)
"""First and longest wait between connection attempts (doubling in between)."""
PENDING_MAX = 64
"""Messages handed to the client and not yet sent, at most; more are refused (a slow broker)."""
CLOSE_S = 2.0
"""How long :meth:`MqttPublisher.close` waits for unsent messages and the ``offline`` message."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def topic_segment(text: str) -> str:
    """``text`` as one MQTT topic level: runs of characters other than letters, digits, ``_``,
    ``.`` and ``-`` become one ``_`` (no ``/``, ``+``, ``#``), trimmed; ``"source"`` when nothing is left.

    >>> topic_segment("rtsp://***@cam.local:554/live")
    'rtsp_cam.local_554_live'
    """
    return _UNSAFE.sub("_", text).strip("_.") or "source"


@dataclass(frozen=True)
class MqttTarget:
    """Where to publish: ``mqtt://[USER[:PASSWORD]@]HOST[:PORT]/PREFIX``.

    Attributes:
        host: the broker's host name or address.
        port: its TCP port (default 1883).
        prefix: the topics' first levels (default ``live_seg``); may hold ``/``.
        username, password: the broker's credentials, or ``None``.
    """

    host: str
    port: int = DEFAULT_PORT
    prefix: str = DEFAULT_PREFIX
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttTarget:
        """Read ``mqtt://[USER[:PASSWORD]@]HOST[:PORT][/PREFIX]``.

        Raises:
            ValueError: another scheme, no host, a bad port, or ``+``/``#``/empty levels in the prefix.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != SCHEME:
            raise ValueError(f"expected mqtt://HOST[:PORT]/PREFIX, got scheme {parts.scheme or 'none'!r}")
        if not parts.hostname:
            raise ValueError("expected mqtt://HOST[:PORT]/PREFIX, got no host")
        port = parts.port or DEFAULT_PORT  # urlsplit raises ValueError for a port out of range
        prefix = parts.path.strip("/") or DEFAULT_PREFIX
        if parts.query or parts.fragment or any(c in prefix for c in "+#") or "" in prefix.split("/"):
            raise ValueError(f"topic prefix {prefix!r}: expected levels without '+', '#', '?' or empty levels")
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, prefix, user, password)

    def __str__(self) -> str:
        """The URL with the credentials hidden (for logs and ``--stats``)."""
        user = "***@" if self.username else ""
        return f"{SCHEME}://{user}{self.host}:{self.port}/{self.prefix}"

    def topic(self, *levels: str) -> str:
        """``PREFIX/level/...``."""
        return "/".join((self.prefix, *levels))


class MqttPublisher:
    """A background MQTT connection whose :meth:`publish` never waits (see the module).

    Args:
        target: the broker and topic prefix.
        pending_max: unsent messages at most (more are refused).

    Attributes:
        published: messages sent to the broker (QoS 0: written to the connection).
        refused: messages refused (not connected, or too many unsent).
        lost: messages handed to the client but not sent (connection lost, or closed first).
        connections: successful connections so far (1 + reconnects).

    Raises:
        OutputError: paho-mqtt is not installed.
    """

    def __init__(self, target: MqttTarget, pending_max: int = PENDING_MAX) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise OutputError("--mqtt needs paho-mqtt: pip install 'live-seg[events]'") from exc
        self.target = target
        self.pending_max = pending_max
        self.published = self.refused = self.lost = self.connections = 0
        self.connected = False
        self._closed = False
        self._pending: set[int] = set()
        self._lock = threading.Condition()
        self._ok = mqtt.MQTT_ERR_SUCCESS
        client_id = f"live_seg-{os.getpid()}-{secrets.token_hex(3)}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if target.username is not None:
            self.client.username_pw_set(target.username, target.password)
        self.client.will_set(target.topic(AVAILABLE), "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(*RECONNECT_DELAY_S)
        self.client.connect_timeout = CONNECT_TIMEOUT_S
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.connect_async(target.host, target.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT %s refused the connection: %s", self.target, reason)
            return
        client.publish(self.target.topic(AVAILABLE), "online", qos=1, retain=True)
        with self._lock:
            self.connected = True
            self.connections += 1
            again = self.connections > 1
        log.info("MQTT: %s to %s", "reconnected" if again else "connected", self.target)

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        with self._lock:
            was = self.connected
            self.connected = False
            self.lost += len(self._pending)
            self._pending.clear()
            self._lock.notify_all()
        if was and not self._closed:
            log.warning("MQTT: lost %s (%s); reconnecting in the background", self.target, reason)

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, _reason: Any, _props: Any) -> None:
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
                self.published += 1
                self._lock.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Hand ``payload`` to the client for ``topic`` (QoS 0) without waiting.

        Returns:
            False when it was refused: not connected, or :attr:`pending_max` messages unsent.
        """
        with self._lock:  # _on_publish waits for the mid to be recorded
            if self._closed or not self.connected or len(self._pending) >= self.pending_max:
                self.refused += 1
                return False
            info = self.client.publish(topic, payload, qos=0, retain=retain)
            if info.rc != self._ok:
                self.refused += 1
                return False
            self._pending.add(info.mid)
            return True

    @property
    def dropped(self) -> int:
        """Messages refused or lost."""
        return self.refused + self.lost

    def close(self, timeout: float = CLOSE_S) -> None:
        """Send what is unsent and ``offline`` (retained) for up to ``timeout`` seconds, then
        disconnect and end the network thread (a connection attempt in progress may add up to
        :data:`CONNECT_TIMEOUT_S`). Safe to call again."""
        if self._closed:
            return
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            while self._pending and self.connected and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            connected = self.connected
        if connected:
            info = self.client.publish(self.target.topic(AVAILABLE), "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:  # not queued: the connection went meanwhile
                log.debug("MQTT: offline not sent: %s", exc)
        self.client.disconnect()
        self.client.loop_stop()
        with self._lock:
            self.lost += len(self._pending)
            self._pending.clear()

    def stats(self) -> dict[str, Any]:
        """``url`` (no credentials), ``published``, ``dropped``, ``connections``."""
        return {
            "url": str(self.target),
            "published": self.published,
            "dropped": self.dropped,
            "connections": self.connections,
        }
