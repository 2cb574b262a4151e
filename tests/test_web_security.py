"""The web surfaces under hostile input and load: credentials, cross-site reads, bounded threads and
offers, the certificate cache, and credentials kept out of every URL that is reported.

Bounds on time, memory and threads are generous (a loaded 2-core machine); each says what today's
code did instead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import logging
import multiprocessing
import os
import re
import socket
import ssl
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from harness import wait_for
from test_serve import request

from live_seg.base.errors import UsageError
from live_seg.base.redact import redact_text, redact_url
from live_seg.media import certificates
from live_seg.media.web_security import TOKEN_ENV, RateLimit, WebPolicy, resolve_token, self_signed_certificate
from live_seg.media.webrtc import WebRTCServer
from live_seg.media.webrtc_client import WebClient, offer_problem
from live_seg.media.webview import MAX_KEYS_QUEUED, PreviewServer

# -- credentials ----------------------------------------------------------------------------------


def test_token_comes_from_a_file_the_environment_or_argv_and_is_made_otherwise(tmp_path):
    path = tmp_path / "token"
    path.write_text("from-file\n")
    path.chmod(0o600)
    assert resolve_token(None, str(path), {TOKEN_ENV: "from-env"}) == "from-file"
    assert resolve_token("from-argv", None, {TOKEN_ENV: "from-env"}) == "from-argv"
    assert resolve_token(None, None, {TOKEN_ENV: "from-env"}) == "from-env"
    made = resolve_token(None, None, {})
    assert len(made) >= 20 and made != resolve_token(None, None, {})
    with pytest.raises(UsageError, match="one at a time"):
        resolve_token("a", str(path), {})
    with pytest.raises(UsageError, match="cannot read the token file"):
        resolve_token(None, str(tmp_path / "missing"), {})
    path.write_text("\n")
    with pytest.raises(UsageError, match="printable"):
        resolve_token(None, str(path), {})


def test_every_surface_has_a_token_and_a_page_with_it_redirects_to_a_clean_url():
    policy = WebPolicy.for_bind("127.0.0.1")
    policy.port = 8090
    assert policy.token and not policy.tls
    host = {"Host": "127.0.0.1:8090"}
    assert policy.check("GET", "/", host).status == 401
    assert policy.clean_target("GET", f"/?token={policy.token}&a=1", host) == "/?a=1"
    assert policy.clean_target("GET", "/", {**host, "Cookie": f"{policy.cookie_name}={policy.token}"}) is None
    assert policy.cookie_name.endswith("_8090")  # cookies do not tell ports apart: the name does


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
        ({"Referer": "http://evil.example/page.html"}, 403),
        ({"Referer": "http://127.0.0.1:9999/"}, 403),  # another port: another origin
        ({"Origin": "http://evil.example"}, 403),
        ({"Sec-Fetch-Site": "same-origin", "Referer": "http://127.0.0.1:8090/"}, None),
        ({}, None),  # not a browser's cross-site request (curl, a script with the token)
    ],
)
def test_the_camera_pictures_are_same_origin_reads(headers, status):
    policy = WebPolicy.for_bind("127.0.0.1", token="t")
    policy.port = 8090
    full = {"Host": "127.0.0.1:8090", "Cookie": "live_seg_token_8090=t", **headers}
    refusal = policy.check("GET", "/stream.mjpg", full, same_origin=True)
    assert (refusal.status if refusal else None) == status


def test_rate_limit_is_a_token_bucket():
    limit = RateLimit(rate=1.0, burst=3)
    assert [limit.allow() for _ in range(5)] == [True, True, True, False, False]


# -- live's browser view --------------------------------------------------------------------------


def _cookie(view: PreviewServer) -> str:
    return f"{view.policy.cookie_name}={view.policy.token}"


def test_live_view_on_loopback_wants_the_runs_token_and_hides_it_after_the_first_visit():
    with PreviewServer("127.0.0.1", 0) as view:
        view.publish(np.zeros((48, 64, 3), np.uint8))
        assert request(view.public_url)[0] == 401  # today: 200, to any local user or process
        assert request(view.public_url + "frame.jpg")[0] == 401
        status, headers, _ = request(view.url)
        assert status == 303 and headers["Location"] == "/"
        assert headers["Set-Cookie"].startswith(_cookie(view) + ";") and "SameSite=Strict" in headers["Set-Cookie"]
        assert request(view.public_url, Cookie=_cookie(view))[0] == 200
        assert request(view.public_url, path="/frame.jpg", Cookie=_cookie(view))[0] == 200


def _open_stream(port: int, **headers: str) -> tuple[http.client.HTTPConnection, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/stream.mjpg", headers=headers)
    resp = conn.getresponse()
    if resp.status == 200:
        resp.fp.readline()  # the stream started
    return conn, resp.status


def test_cross_site_stream_requests_take_no_viewer_slot():
    policy = WebPolicy.for_bind("127.0.0.1", max_clients=2)
    with PreviewServer("127.0.0.1", 0, policy=policy) as view:
        view.publish(np.zeros((48, 64, 3), np.uint8))
        cookie = _cookie(view)
        hostile = [
            {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image", "Referer": "http://evil.example/"},
            {"Sec-Fetch-Site": "cross-site", "Cookie": cookie},  # even if the cookie went along
            {"Referer": "http://evil.example/", "Cookie": cookie},
            {"Origin": "http://evil.example", "Cookie": cookie},
        ]
        held = [_open_stream(view.port, **h) for h in hostile]  # four cross-site <img> tags
        try:
            assert [status for _, status in held] == [403, 403, 403, 403]
            assert view.clients == 0
            own = [_open_stream(view.port, Cookie=cookie, Referer=f"http://127.0.0.1:{view.port}/") for _ in range(2)]
            assert [status for _, status in own] == [200, 200]  # today: 503, every slot taken
            assert view.clients == 2
            for conn, _ in own:
                conn.close()
        finally:
            for conn, _ in held:
                conn.close()


def test_page_keys_and_snapshots_are_rate_limited_and_bounded():
    with PreviewServer("127.0.0.1", 0) as view:
        cookie = _cookie(view)
        snaps = [request(view.public_url, "POST", "/key", b"s", Cookie=cookie)[0] for _ in range(6)]
        assert snaps.count(204) <= 3 and 429 in snaps  # today: a snapshot per request, without limit
        codes = [request(view.public_url, "POST", "/key", b"m", Cookie=cookie)[0] for _ in range(60)]
        assert 429 in codes and set(codes) <= {204, 429}
        assert len(view.keys()) <= MAX_KEYS_QUEUED


def _threads() -> int:
    return threading.active_count()


def test_half_open_connections_cost_a_bounded_number_of_threads():
    with PreviewServer("127.0.0.1", 0, head_timeout_s=1.5) as view:
        assert view._httpd is not None and view._httpd.request_queue_size >= 128  # today: 5
        before = _threads()
        socks = [socket.create_connection(("127.0.0.1", view.port), timeout=10) for _ in range(200)]
        try:
            time.sleep(1.0)
            peak = _threads() - before
            assert peak <= view.max_connections + 2, peak  # today: 200 threads
            # the head timeout (1.5 s) closes them; 30 s: a loaded machine
            wait_for(lambda: _threads() - before <= 1, 30, "the half-open connections to be closed")
        finally:
            for s in socks:
                s.close()
        assert request(view.url)[0] == 303  # still serving


def test_slowloris_is_closed_at_the_request_deadline():
    with PreviewServer("127.0.0.1", 0, head_timeout_s=1.0) as view:
        sock = socket.create_connection(("127.0.0.1", view.port), timeout=10)
        t0 = time.monotonic()
        closed_after = None
        try:
            sock.sendall(b"GET / HTTP/1.1\r\n")
            for _ in range(40):  # a header byte every 0.25 s: each one within the I/O timeout (10 s)
                time.sleep(0.25)
                sock.sendall(b"X")
        except OSError:
            closed_after = time.monotonic() - t0
        finally:
            sock.close()
        assert closed_after is not None and closed_after < 8, closed_after  # today: held for all 10 s and on


# -- the certificate cache ------------------------------------------------------------------------


def _make(folder: str) -> str:
    return self_signed_certificate(["localhost", "127.0.0.1"], Path(folder))[0]


def test_certificate_cache_is_one_private_unit_that_concurrent_starts_agree_on(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        paths = pool.map(_make, [str(tmp_path)] * 4)
    (path,) = set(paths)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [Path(path).name]  # no temporary left, one file
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(path)


def _pem(names: list[str], days: int = 30) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(days=60)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.mark.parametrize("damage", ["mismatch", "expired", "garbage", "truncated"])
def test_a_damaged_cached_certificate_is_made_again(tmp_path, damage):
    cert, key = self_signed_certificate(["localhost"], tmp_path)
    good = Path(cert).read_bytes()
    other_cert, other_key = _pem(["localhost"], days=-1 if damage == "expired" else 30)
    bad = {
        "mismatch": other_cert + Path(key).read_bytes().split(b"-----END CERTIFICATE-----\n", 1)[-1],
        "expired": other_cert + other_key,
        "garbage": b"not a certificate",
        "truncated": good[: len(good) // 2],
    }[damage]
    Path(cert).write_bytes(bad)
    if damage == "mismatch":  # today's two files: the key of one pair beside the certificate of another
        Path(key).write_bytes(Path(key).read_bytes() if key != cert else bad)
    cert2, key2 = self_signed_certificate(["localhost"], tmp_path)
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert2, key2)  # today: KEY_VALUES_MISMATCH
    assert certificates.cached_pair_problem(Path(cert2), ["localhost"]) is None


def test_self_signed_certificate_names_the_lan_addresses(tmp_path, monkeypatch):
    from cryptography import x509

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(certificates, "lan_addresses", lambda: {"192.168.7.23"})
    import live_seg.media.web_security as web_security

    monkeypatch.setattr(web_security, "lan_addresses", certificates.lan_addresses)
    policy = WebPolicy.for_bind("0.0.0.0")
    assert policy.ssl_context() is not None
    (path,) = (tmp_path / "live_seg" / "tls").iterdir()
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = {str(n.value) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}
    assert {"192.168.7.23", "localhost", "127.0.0.1"} <= names
    assert all(not n.startswith("127.") or n == "127.0.0.1" for n in certificates.lan_addresses())


# -- credentials out of every reported URL --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:secret@10.0.0.2:554/h264", "rtsp://***@10.0.0.2:554/h264"),
        ("http://cam/x.cgi?user=admin&password=hunter2&ch=1", "http://cam/x.cgi?user=***&password=***&ch=1"),
        ("http://cam/?usr=a&pwd=b&loginuse=c&loginpas=d", "http://cam/?usr=***&pwd=***&loginuse=***&loginpas=***"),
        ("https://h/v?X-Amz-Signature=s&X-Amz-Credential=c&api_key=k", "https://h/v?X-Amz-Signature=***&X-Amz-Credential=***&api_key=***"),
        ("http://127.0.0.1:8090/?token=abc", "http://127.0.0.1:8090/?token=***"),
        ("rtsp://h/live;auth=x#access_token=y", "rtsp://h/live;auth=***#access_token=***"),
        ("http://127.0.0.1/stream.mjpg?fps=25", "http://127.0.0.1/stream.mjpg?fps=25"),
        ("clip.mp4", "clip.mp4"),
    ],
)  # fmt: skip
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_text_finds_the_urls_in_a_title():
    assert redact_text("live_seg: rtsp://a:b@h/x?pass=1 + http://h/?secret=2") == (
        "live_seg: rtsp://***@h/x?pass=*** + http://h/?secret=***"
    )


def test_coverage_chart_title_never_shows_a_credential(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    from live_seg.analysis.coverage import plot_coverage

    titles: list[str] = []
    real = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes, "set_title", lambda ax, t, *a, **k: titles.append(t) or real(ax, t, *a, **k)
    )
    times, means = np.arange(3.0), np.full((3, 2), 0.5)
    plot_coverage(
        tmp_path / "c.png", times, means, ["background", "person"], title="http://cam/?user=u&password=hunter2"
    )
    assert titles and all("hunter2" not in t and "user=***" in t for t in titles)


# -- serve: offers and requests -------------------------------------------------------------------


class Hooks:
    """A client's side of a job that keeps the shapes of the frames it was offered."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, ...]] = []
        self.closed = False

    def offer(self, packet) -> None:
        self.frames.append(packet.image.shape)

    def render(self, result):
        return result.packet.image

    def control(self, message):
        return {"ok": True}

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def web():
    """A WebRTC server on loopback with a short pending timeout; its hooks per client."""
    hooks: list[Hooks] = []

    def connect(client: WebClient) -> Hooks:
        hooks.append(Hooks())
        return hooks[-1]

    policy = WebPolicy.for_bind("127.0.0.1", max_clients=2)
    server = WebRTCServer(policy, "<html>page</html>", connect, port=0, pending_s=2.0, max_pending=3)
    with server:
        yield server, hooks


def _offer_target(server: WebRTCServer) -> str:
    return f"/offer?token={server.policy.token}"


async def _client_offer(video: int = 1, audio: int = 0, channels: int = 1, track=None):
    """An aiortc peer connection and its offer (ICE gathered), with what a hostile page might add."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    for _ in range(channels):
        pc.createDataChannel("control")
    if track is not None:
        pc.addTrack(track)
        video -= 1
    for _ in range(video):
        pc.addTransceiver("video")
    for _ in range(audio):
        pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def _post(server: WebRTCServer, body: bytes, **headers: str) -> tuple[int, bytes]:
    status, _, text = request(server.url, "POST", _offer_target(server), body, **headers)
    return status, text


def _offer_body(sdp: str) -> bytes:
    return json.dumps({"type": "offer", "sdp": sdp}).encode()


def test_offer_problem_bounds_tracks_channels_and_candidates():
    base = "v=0\r\na=fingerprint:sha-256 AA\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    base += "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    assert offer_problem(base) is None
    assert "one video track" in offer_problem(base + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n")
    assert "got video, application, audio" in offer_problem(base + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")
    assert "no fingerprint" in offer_problem(base.replace("a=fingerprint:", "a=x:"))
    assert "ICE candidates" in offer_problem(base + "a=candidate:1 1 udp 1 10.0.0.1 9 typ host\r\n" * 33)


def test_hostile_offers_and_requests_get_4xx_and_the_server_keeps_serving(web, caplog):
    """Fuzzing ``POST /offer``: never a 500, never a traceback in the log, and a real client connects after."""
    server, hooks = web
    caplog.set_level(logging.INFO)

    async def run() -> list[tuple[str, int]]:
        seen: list[tuple[str, int]] = []
        pcs = []
        for name, kwargs in [("5 video", {"video": 5}), ("2 video", {"video": 2}), ("audio", {"audio": 1})]:
            pc, sdp = await _client_offer(**kwargs)
            pcs.append(pc)
            seen.append((name, (await asyncio.to_thread(_post, server, _offer_body(sdp)))[0]))
        pc, sdp = await _client_offer()
        pcs.append(pc)
        lines = sdp.splitlines(keepends=True)
        edits = {
            "100 candidates": sdp + "a=candidate:1 1 udp 2122260223 10.0.0.1 9 typ host\r\n" * 100,
            "no fingerprint": "".join(line for line in lines if not line.startswith("a=fingerprint")),
            "garbage lines": sdp.replace("a=mid:", "a=mid:\x00\xff\r\nz=what\r\na=mid:"),
            "bad port": re.sub(r"m=video \d+", "m=video 99999999999", sdp),
            "truncated": sdp[: len(sdp) // 3],
            "no video": "".join(line for line in lines if not line.startswith("m=video")),
        }
        for name, edited in edits.items():
            seen.append((name, (await asyncio.to_thread(_post, server, _offer_body(edited)))[0]))
        for pc in pcs:
            await pc.close()
        return seen

    malformed = {
        "deep JSON": b"[" * 30_000 + b"]" * 30_000,  # today: 500 with a RecursionError traceback
        "deep sdp": json.dumps({"type": "offer", "sdp": "x"}).encode()[:-1] + b', "x": ' + b"[" * 30_000 + b"}",
        "not JSON": b"{not json",
        "a list": b'["a list"]',
        "sdp a number": b'{"type": "offer", "sdp": 5}',
        "an answer": b'{"type": "answer", "sdp": "v=0"}',
        "binary": bytes(range(256)) * 10,
        "empty": b"",
    }
    answers = asyncio.run(run())
    answers += [(name, _post(server, body)[0]) for name, body in malformed.items()]
    answers.append(("oversized", _post(server, b"x" * 200_000)[0]))
    assert [a for a in answers if not 400 <= a[1] < 500] == []
    # malformed HTTP under the request line: a 400 from aiohttp, no traceback at the default level
    for raw in (b"Content-Length: abc\r\n", b"Content-Length: -1\r\n", b"Content-Length: 1\r\nContent-Length: 2\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"POST " + _offer_target(server).encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + raw + b"\r\nab")
            assert s.recv(100).split(b" ", 2)[1] == b"400"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text
    assert server.active == 0 and all(h.closed for h in hooks)
    assert request(server.url)[0] == 303  # still serving: the page, then a real client
    _connect_and_stream(server, hooks)


class _Frames:
    """A small synthetic camera for an aiortc client (320x240, 30 fps)."""

    @staticmethod
    def track():
        import av
        from aiortc.mediastreams import VideoStreamTrack

        class Camera(VideoStreamTrack):
            async def recv(self):
                pts, time_base = await self.next_timestamp()
                frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), 90, np.uint8), format="bgr24")
                frame.pts, frame.time_base = pts, time_base
                return frame

        return Camera()


def _connect_and_stream(server: WebRTCServer, hooks: list[Hooks], seconds: float = 2.0, channels: int = 1) -> dict:
    """A real aiortc client: offer, answer, frames for ``seconds``; what it saw."""

    async def run() -> dict:
        pc, sdp = await _client_offer(channels=channels, track=_Frames.track())
        extra = [pc.createDataChannel(f"extra-{i}") for i in range(channels - 1)]
        status, text = await asyncio.to_thread(_post, server, _offer_body(sdp))
        assert status == 200, text
        from aiortc import RTCSessionDescription

        await pc.setRemoteDescription(RTCSessionDescription(**json.loads(text)))
        deadline = time.monotonic() + 30
        while pc.connectionState != "connected" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(seconds)
        seen = {"state": pc.connectionState, "extra": [c.readyState for c in extra], "active": server.active}
        await pc.close()
        return seen

    before = len(hooks)
    seen = asyncio.run(run())
    assert seen["state"] == "connected" and len(hooks) == before + 1 and hooks[-1].frames
    return seen


def test_extra_data_channels_are_closed_and_a_client_that_leaves_is_removed(web):
    server, hooks = web
    seen = _connect_and_stream(server, hooks, channels=3)
    assert seen["extra"] and all(state in ("closing", "closed") for state in seen["extra"]), seen
    wait_for(lambda: not (server.active or server.clients), 30, "the client to be gone")
    assert server.active == 0 and server.clients == [] and server.served == 1  # today: listed for ever


def test_offers_that_never_connect_keep_no_real_client_out(web):
    """A burst of answered offers that never connect: they wait apart from the clients, the oldest
    makes room for the newest, each is dropped after ``pending_s``; a real client gets in meanwhile."""
    server, hooks = web

    async def burst() -> list[int]:
        pcs, codes = [], []
        for _ in range(8):  # never setRemoteDescription: ICE never starts
            pc, sdp = await _client_offer()
            pcs.append(pc)
            codes.append((await asyncio.to_thread(_post, server, _offer_body(sdp)))[0])
        for pc in pcs:
            await pc.close()
        return codes

    codes = asyncio.run(burst())
    assert codes == [200] * 8, codes  # today: 503 after max_clients of them, for ~10 s each
    assert server.pending <= 3
    _connect_and_stream(server, hooks, seconds=0.5)  # in while the burst's offers still wait
    wait_for(lambda: not server.active, 30, "the pending offers to expire")  # pending_s (2 s), generous
    assert server.active == 0 and server.pending == 0


def test_one_client_costs_bounded_memory_and_threads(web):
    """Frames decoded for one video track only, converted off the event loop; memory stays bounded."""
    server, hooks = web
    tracemalloc.start()
    try:
        threads_before = threading.active_count()
        _connect_and_stream(server, hooks, seconds=3.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 3 s of 320x240 frames is ~20 MB decoded; nothing holds them: well under that
    assert peak < 64 * 2**20, peak
    assert threading.active_count() - threads_before < 20
    assert [t for t in threading.enumerate() if t.name.startswith("live_seg-web-decode")]  # the conversions' pool


def test_the_running_report_costs_the_same_after_hours():
    client = WebClient("c")
    client.latency_s.extend(np.random.default_rng(0).random(2_000_000))  # ~18 h at 30 fps
    client.latency_recent_s.extend([0.05] * 30)
    t0 = time.perf_counter()
    for _ in range(20):
        report = client.report()
    per_call = (time.perf_counter() - t0) / 20
    assert per_call < 0.005, per_call  # today: the whole history sorted, ~0.3 s a call at this length
    assert report["latency_recent_ms"] == 50.0 and report["frames_sent"] == 0


# -- serve: the job's lists, the token on the command line ----------------------------------------


def test_serve_job_lists_only_connected_views_and_a_bounded_history(monkeypatch):
    from live_seg.jobs import serve
    from live_seg.model.segmenter import Segmenter
    from live_seg.pipeline.threads import Control

    monkeypatch.setattr(serve, "MAX_FINISHED", 10)
    seg = Segmenter("lraspp_mobilenet_v3_large", weights="random", device="cpu", size=128)
    job = serve.ServeJob(serve.ServeOptions(port=0), seg, Control())
    for i in range(25):
        view = job.connect(WebClient(f"client-{i}"))
        if i < 24:
            view.close()
    assert [v.name for v in job.views] == ["client-24"]  # today: all 25 kept, renderers and all
    assert len(job.finished) == 10 and job.finished[-1]["name"] == "client-23"
    job.views[0].close()
    assert job.views == [] and job.close() is None


def test_serve_token_file_keeps_the_token_out_of_argv_logs_and_stats(tmp_path):
    from test_serve import LIGHT_MODEL, serve_cli, stop, wait_url

    token_file, stats = tmp_path / "token", tmp_path / "stats.json"
    token_file.write_text("a-token-from-a-file-0123456789\n")
    token_file.chmod(0o600)
    proc = serve_cli(
        "--port", "0", "--token-file", str(token_file), "--stats", str(stats), *LIGHT_MODEL, "--size", "128"
    )
    try:
        url = wait_url(proc)
        assert url.endswith("?token=a-token-from-a-file-0123456789")
        assert b"a-token-from" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert request(url.split("?")[0])[0] == 401
        code, err = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 130 and "a-token-from" not in err and "a-token-from" not in stats.read_text()
    assert json.loads(stats.read_text())["token"] is True


def test_serve_bad_token_file_is_a_one_line_usage_error(tmp_path):
    from test_serve import serve_cli

    proc = serve_cli("--port", "0", "--token-file", str(tmp_path / "missing"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err and "cannot read the token file" in err, err


def test_serve_takes_the_token_from_the_environment(monkeypatch):
    from live_seg.jobs.serve import ServeJob, ServeOptions
    from live_seg.pipeline.threads import Control

    monkeypatch.setenv(TOKEN_ENV, "env-token-0123456789")

    class Seg:
        categories = ("background",)

    job = ServeJob(ServeOptions(port=0), Seg(), Control())
    assert job.server.policy.token == "env-token-0123456789"
