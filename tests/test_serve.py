"""``live-seg serve`` and the rules of every web surface.

The browser is Debian's headless Chromium with a fake camera (a y4m clip), driven over its DevTools
protocol (:mod:`cdp`); the security rules are checked with plain HTTP requests on loopback.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import ssl
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from cdp import CHROMIUM, Chromium, fake_camera_clip, page_state_json, video_box
from harness import ROOT, Lines, start_cli, threads_since, wait_for
from media import SlowModel
from test_effects_cli import PERSON, one_class_weights

from live_seg.base.frames import FramePacket, SegResult
from live_seg.media.web_security import WebPolicy, self_signed_certificate
from live_seg.media.webrtc_client import WebClient, track_class
from live_seg.media.webview import PreviewServer
from live_seg.pipeline.threads import Control
from live_seg.render.renderer import make_palette

LIGHT_MODEL = ["--model", "lraspp_mobilenet_v3_large", "--weights", "random", "--device", "cpu"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


# -- the policy, request by request ---------------------------------------------------------------

LOCAL = WebPolicy.for_bind("127.0.0.1", token="l0cal")
LOCAL.port = 8443
EXPOSED = WebPolicy.for_bind("0.0.0.0", token="s3cret")
EXPOSED.port = 8443


@pytest.mark.parametrize(
    ("policy", "host", "allowed"),
    [
        (LOCAL, "127.0.0.1:8443", True),
        (LOCAL, "localhost:8443", True),
        (LOCAL, "[::1]:8443", True),
        (LOCAL, "evil.example", False),
        (LOCAL, "evil.example:8443", False),
        (LOCAL, "10.1.2.3:8443", False),  # bound to loopback: only loopback names
        (LOCAL, None, False),
        (LOCAL, "user@127.0.0.1", False),
        (LOCAL, "127.0.0.1:notaport", False),
        (EXPOSED, "10.1.2.3:8443", True),  # an address of this machine, as typed by a user
        (EXPOSED, "[fd00::2]:8443", True),
        (EXPOSED, "rebind.evil.example:8443", False),
    ],
)
def test_host_check(policy, host, allowed):
    assert policy.host_allowed(host) is allowed


def _h(**headers: str) -> dict[str, str]:
    return {"Host": "127.0.0.1:8443", **{k.replace("_", "-"): v for k, v in headers.items()}}


def _l(**headers: str) -> dict[str, str]:
    """Headers of a request to LOCAL that carries its token (its cookie)."""
    return _h(Cookie="live_seg_token_8443=l0cal", **headers)


@pytest.mark.parametrize(
    ("policy", "method", "target", "headers", "status"),
    [
        (LOCAL, "GET", "/", _l(), None),
        (LOCAL, "GET", "/", {"Host": "evil.example"}, 421),
        (LOCAL, "POST", "/offer", _l(Origin="http://evil.example"), 403),
        (LOCAL, "POST", "/offer", _l(Origin="null"), 403),
        (LOCAL, "POST", "/offer", _l(Origin="http://127.0.0.1:9999"), 403),  # another port is another origin
        (LOCAL, "POST", "/offer", _l(Origin="https://127.0.0.1:8443"), 403),  # and another scheme
        (LOCAL, "POST", "/offer", _l(Origin="http://127.0.0.1:8443"), None),
        (LOCAL, "POST", "/offer", _l(Sec_Fetch_Site="cross-site"), 403),
        (LOCAL, "POST", "/offer", _l(), None),  # no Origin: not a browser's cross-origin request
        (LOCAL, "GET", "/", _l(Origin="http://evil.example"), None),  # reads: the browser keeps them from it
        (LOCAL, "POST", "/offer", _l(Content_Length="999999999"), 413),
        (LOCAL, "POST", "/offer", _l(Content_Length="-1"), 400),
        (LOCAL, "GET", "/", _h(), 401),  # a token on loopback too: one per run
        (LOCAL, "GET", "/?token=l0cal", _h(), None),
        (EXPOSED, "GET", "/", _h(), 401),
        (EXPOSED, "GET", "/?token=wrong", _h(), 403),
        (EXPOSED, "GET", "/?token=s3cret", _h(), None),
        (EXPOSED, "GET", "/", _h(Authorization="Bearer s3cret"), None),
        (EXPOSED, "GET", "/", _h(Cookie="live_seg_token_8443=s3cret"), None),
        (EXPOSED, "GET", "/", _h(Cookie="live_seg_token_8443=wrong"), 403),
        (EXPOSED, "GET", "/", _h(Cookie="live_seg_token_9999=s3cret"), 401),  # another server's cookie
        (EXPOSED, "POST", "/offer?token=s3cret", _h(Origin="https://evil.example"), 403),
        (EXPOSED, "POST", "/offer?token=s3cret", _h(Origin="https://127.0.0.1:8443"), None),
    ],
)
def test_policy_check(policy, method, target, headers, status):
    refusal = policy.check(method, target, headers)
    assert (refusal.status if refusal else None) == status, refusal


def test_beyond_loopback_means_https_and_a_generated_token():
    local, exposed = WebPolicy.for_bind("127.0.0.1"), WebPolicy.for_bind("0.0.0.0")
    assert not local.tls and len(local.token or "") >= 20 and not local.exposed  # a token on every address
    assert exposed.tls and exposed.exposed and len(exposed.token or "") >= 20
    assert WebPolicy.for_bind("0.0.0.0").token != exposed.token
    exposed.port = 9000
    assert exposed.url() == f"https://127.0.0.1:9000/?token={exposed.token}"
    assert exposed.url(with_token=False) == "https://127.0.0.1:9000/"
    assert "Secure" in exposed.cookie_header() and "SameSite=Strict" in exposed.cookie_header()


def test_self_signed_certificate_is_made_once_and_cached(tmp_path):
    from cryptography import x509

    cert, key = self_signed_certificate(["localhost", "127.0.0.1", "box.example"], tmp_path)
    assert self_signed_certificate(["box.example", "127.0.0.1", "localhost"], tmp_path) == (cert, key)
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # written through temporary names
    names = x509.load_pem_x509_certificate(Path(cert).read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert {str(n.value) for n in names.value} == {"localhost", "127.0.0.1", "box.example"}
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)


def test_the_frame_sent_is_the_newest_result_with_its_input_timestamp():
    from fractions import Fraction

    image, mask = np.zeros((48, 64, 3), np.uint8), np.zeros((8, 8), np.uint8)
    rendered: list[int] = []

    class Hooks:
        def render(self, result: SegResult) -> np.ndarray:
            rendered.append(result.packet.index)
            return result.packet.image

    def result(index: int, pts: float) -> SegResult:
        return SegResult(FramePacket(index, pts, time.perf_counter(), image + index), mask)

    async def run() -> None:
        client = WebClient("c", _loop=asyncio.get_running_loop(), _fresh=asyncio.Event())
        track = track_class()(client, Hooks())
        for index, pts in enumerate((1.0, 1.5, 2.0)):  # three results before the encoder asks
            client.deliver(result(index, pts))
        frame = await track.recv()
        assert (frame.pts, frame.time_base, rendered) == (180_000, Fraction(1, 90_000), [2])
        assert frame.to_ndarray(format="bgr24")[0, 0].tolist() == [2, 2, 2]
        client.deliver(result(3, 2.0))  # no newer input time: nothing to send
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(track.recv(), 0.3)
        client.deliver(result(4, 2.04))
        assert (await track.recv()).pts == 183_600
        track.stop()
        summary = client.summary()
        assert (summary["frames_processed"], summary["frames_sent"], rendered) == (5, 2, [2, 4])
        assert summary["latency_ms"]["p50"] is not None

    asyncio.run(run())


# -- the live browser view ------------------------------------------------------------------------


def request(url: str, method: str = "GET", path: str | None = None, body: bytes | None = None, **headers: str):
    """One request through 127.0.0.1 (TLS unverified: self-signed); ``(status, headers, body)``."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", parts.port, timeout=15, context=ssl._create_unverified_context()
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=15)
    try:
        target = path if path is not None else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.putrequest(method, target, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name.replace("_", "-"), value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_live_view_on_loopback_refuses_foreign_hosts_and_origins():
    with PreviewServer("127.0.0.1", 0) as view:
        view.publish(np.zeros((48, 64, 3), np.uint8))
        token = view.policy.token
        assert view.url == f"http://127.0.0.1:{view.port}/?token={token}"
        assert view.public_url == f"http://127.0.0.1:{view.port}/"
        cookie = f"{view.policy.cookie_name}={token}"
        assert request(view.public_url, Cookie=cookie)[0] == 200
        assert request(view.public_url, Host="evil.example", Cookie=cookie)[0] == 421
        assert request(view.public_url + "frame.jpg", Host=f"evil.example:{view.port}", Cookie=cookie)[0] == 421
        assert request(view.public_url, "POST", "/key", b"m", Origin="http://evil.example", Cookie=cookie)[0] == 403
        assert request(view.public_url, "POST", "/key", b"m", Sec_Fetch_Site="cross-site", Cookie=cookie)[0] == 403
        assert view.keys() == []
        assert (
            request(view.public_url, "POST", "/key", b"m", Origin=f"http://127.0.0.1:{view.port}", Cookie=cookie)[0]
            == 204
        )
        assert view.keys() == ["m"]
        assert request(view.public_url, "POST", "/key", b"x" * 100, Content_Length="100000", Cookie=cookie)[0] == 413
        assert request(view.public_url, "POST", "/nothing", b"m", Cookie=cookie)[0] == 404


def test_live_view_beyond_loopback_wants_https_and_the_token(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    policy = WebPolicy.for_bind("0.0.0.0", max_clients=1)
    with PreviewServer("0.0.0.0", 0, policy=policy) as view:
        view.publish(np.zeros((48, 64, 3), np.uint8))
        url = view.url
        assert url.startswith("https://127.0.0.1:") and f"?token={policy.token}" in url
        assert request(url.split("?")[0])[0] == 401
        assert request(url.split("?")[0] + "?token=wrong")[0] == 403
        status, headers, _ = request(url)
        assert status == 303 and headers["Location"] == "/"  # the token out of the address bar
        cookie = headers["Set-Cookie"].split(";")[0]
        assert cookie == f"{policy.cookie_name}={policy.token}" and "HttpOnly" in headers["Set-Cookie"]
        status, _, page = request(url.split("?")[0], Cookie=cookie)
        assert status == 200 and b"stream.mjpg" in page
        assert request(url, path="/frame.jpg", Cookie=cookie)[0] == 200
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):  # no clear text
            request(url.replace("https://", "http://"))
        # one stream at most: a second viewer gets 503 while the first one watches
        parts = urlsplit(url)
        conn = http.client.HTTPSConnection("127.0.0.1", parts.port, timeout=15,
                                           context=ssl._create_unverified_context())  # fmt: skip
        try:
            conn.request("GET", "/stream.mjpg", headers={"Cookie": cookie})
            first = conn.getresponse()
            assert first.status == 200
            first.fp.readline()
            assert request(url, path="/stream.mjpg", Cookie=cookie)[0] == 503
        finally:
            conn.close()


# -- serve ----------------------------------------------------------------------------------------


def serve_cli(*args: str) -> subprocess.Popen:
    return start_cli("serve", *args)


def wait_url(proc: subprocess.Popen, timeout: float = 120) -> str:
    """The URL ``serve`` prints at start."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("serve: open "):
            return line.split("serve: open ", 1)[1].strip()
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no URL printed; stderr: {proc.stderr.read() if proc.stderr else ''}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return proc.returncode, err


def test_serve_beyond_loopback_https_token_and_refusals_then_ctrl_c(tmp_path):
    stats = tmp_path / "stats.json"
    # its self-signed certificate goes to this test session's cache (conftest's XDG_CACHE_HOME)
    proc = serve_cli("--host", "0.0.0.0", "--port", "0", "--stats", str(stats), *LIGHT_MODEL, "--size", "128")
    try:
        url = wait_url(proc)
        parts = urlsplit(url)
        token = parts.query.removeprefix("token=")
        assert parts.scheme == "https" and parts.hostname == "127.0.0.1" and len(token) >= 20
        bare = f"https://127.0.0.1:{parts.port}/"
        assert request(bare)[0] == 401
        assert request(bare + "?token=wrong")[0] == 403
        status, headers, _ = request(url)
        assert status == 303 and headers["Location"] == "/" and "Secure" in headers["Set-Cookie"]
        status, _, page = request(bare, Cookie=headers["Set-Cookie"].split(";")[0])
        assert status == 200 and b"RTCPeerConnection" in page
        assert request(url, Host="evil.example")[0] == 421
        offer = json.dumps({"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}).encode()
        for origin in ("http://evil.example", "https://evil.example", f"http://127.0.0.1:{parts.port}"):
            assert not 200 <= request(url, "POST", f"/offer?{parts.query}", offer, Origin=origin)[0] < 300
        assert request(url, "POST", f"/offer?{parts.query}", b"{not json")[0] == 400
        assert request(url, "POST", f"/offer?{parts.query}", b'["a list"]')[0] == 400
        assert request(url, "POST", f"/offer?{parts.query}", offer)[0] == 400  # an SDP aiortc cannot take
        assert request(url, "POST", f"/offer?{parts.query}", b"x" * 200_000)[0] == 413
        assert request(url, "GET", f"/nothing?{parts.query}")[0] == 404
        assert request(url, "POST", "/offer", offer)[0] == 401  # token on every request
        code, err = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 130, err
    assert "Traceback" not in err, err
    summary = json.loads(stats.read_text())
    assert summary["https"] and summary["token"] and summary["clients"] == []
    assert summary["interrupted"] and summary["stop_reason"] == "interrupted by SIGINT"
    assert token not in stats.read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["--cert", "nothing.pem"],
        ["--cert", "nothing.pem", "--key", "nothing.key"],
        ["--max-clients", "0"],
        ["--classes", "unicorn"],
        ["--port", "99999"],
    ],
)
def test_serve_bad_arguments_are_one_line(args):
    proc = serve_cli("--port", "0", *LIGHT_MODEL, "--size", "128", *args)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (1, 2) and "Traceback" not in err and err.strip(), err
    assert len(err.strip().splitlines()[-1]) < 300


@pytest.fixture(scope="module")
def camera(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("camera")
    return fake_camera_clip(folder / "clip.y4m", ROOT / "samples" / "sample.mp4", seconds=2.0)


@needs_chromium
def test_browser_sees_its_camera_segmented_and_a_client_that_leaves_frees_its_place(tmp_path, camera):
    """Frames go both ways; the page shows the mask; settings change from the page; latency stays flat
    with a model slower than the camera; a client that leaves frees its place; nothing is left."""
    from live_seg.jobs.serve import ServeOptions, run_serve
    from live_seg.model.segmenter import Segmenter

    weights = one_class_weights(tmp_path / "person.pth", PERSON)
    seg = Segmenter("lraspp_mobilenet_v3_large", weights=str(weights), device="cpu", size=128)
    before = set(threading.enumerate())
    control, urls, result = Control(), [], {}
    options = ServeOptions(port=0, view="mask", legend=False, max_clients=1)
    runner = threading.Thread(
        target=lambda: result.update(run_serve(options, SlowModel(seg, 0.2), control=control, on_ready=urls.append))
    )
    runner.start()

    async def browse() -> None:
        while not urls:
            await asyncio.sleep(0.05)
        async with Chromium(urls[0], camera, tmp_path / "profile") as page:
            await page.wait_for("window.liveSeg && window.liveSeg.shown >= 15 && window.liveSeg.stats", 90)
            state = json.loads(await page.evaluate(page_state_json()))
            assert state["stats"]["frames_received"] > state["stats"]["frames_processed"] > 0  # newest only
            sdp = (
                "v=0\r\na=fingerprint:sha-256 AA\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
            )
            offer = json.dumps({"type": "offer", "sdp": sdp}).encode()  # well-formed enough to be counted
            status = await asyncio.to_thread(request, urls[0], "POST", f"/offer?{urlsplit(urls[0]).query}", offer)
            assert status[0] == 503  # --max-clients 1, and one is connected
            rect = await page.evaluate("document.getElementById('view').getBoundingClientRect().toJSON()")
            box = video_box(await page.screenshot(), rect)
            h, w = box.shape[:2]
            # the camera's 4:3 (Chromium may send it smaller than 640x480 when its CPU is busy)
            assert w >= 160 and abs(w / h - 4 / 3) < 0.05, rect
            inner = box[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3)
            person = make_palette("voc", 21)[PERSON].astype(int)  # BGR
            assert np.abs(np.median(inner, axis=0) - person).max() < 12, (np.median(inner, axis=0), person)
            # a bad class name is refused with its reason, a good setting applies
            await page.evaluate("document.getElementById('classes').value = 'unicorn'; "
                                "document.getElementById('apply').click()")  # fmt: skip
            assert "unknown class 'unicorn'" in await page.wait_for("window.liveSeg.error", 10)
            await page.evaluate("const v = document.getElementById('viewmode'); v.value = 'side'; "
                                "document.getElementById('classes').value = ''; v.onchange()")  # fmt: skip
            await page.wait_for("window.liveSeg.settings.view === 'side' && !window.liveSeg.error", 10)
            await page.wait_for("(v => v.videoHeight && Math.abs(v.videoWidth / v.videoHeight - 8 / 3) < 0.05)"
                                "(document.getElementById('view'))", 30)  # fmt: skip
            # the client leaves: its place (max_clients=1) is free for the next page
            await page.evaluate("window.liveSeg.pc.close()")
            await asyncio.sleep(1.0)
            await page.call("Page.reload")
            await page.wait_for("window.liveSeg && window.liveSeg.shown >= 5", 90)

    try:
        asyncio.run(browse())
    finally:
        control.stop("test over")
        runner.join(60)
    assert not runner.is_alive()
    first, second = result["clients"]
    assert first["frames_sent"] >= 15 and second["frames_sent"] >= 5
    assert first["dropped"] > 0 and first["frames_processed"] <= first["frames_received"] - first["dropped"] + 1
    # latency stays flat though the model (0.2 s) is slower than the camera: no queue
    assert first["latency_ms"]["p95"] < 1500, first
    assert first["connected_s"] < result["wall_s"] - 3
    wait_for(lambda: not threads_since(before), 30, f"the web threads to end: {threads_since(before)}")


@needs_chromium
@pytest.mark.slow
def test_serve_acceptance_45_s_with_a_browser(tmp_path, camera):
    """The issue's acceptance: 45 s on 127.0.0.1 with the light model and Chromium's fake camera."""
    stats = tmp_path / "stats.json"
    proc = serve_cli("--port", "0", "--duration", "45", "--stats", str(stats), *LIGHT_MODEL)
    try:
        url = wait_url(proc)

        async def browse() -> None:
            async with Chromium(url, camera, tmp_path / "profile") as page:
                await page.wait_for("window.liveSeg && window.liveSeg.shown > 0", 90)
                while proc.poll() is None:
                    await asyncio.sleep(0.5)

        asyncio.run(browse())
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    summary = json.loads(stats.read_text())
    (client,) = summary["clients"]
    print(json.dumps(client))
    assert client["frames_received"] >= 200 and client["frames_processed"] >= 100 and client["frames_sent"] >= 100
    assert summary["stop_reason"] == "duration reached"


@needs_chromium
def test_serve_https_in_a_browser_a_dropped_client_then_ctrl_c(tmp_path, camera):
    """Bound to all interfaces: the page over HTTPS with the printed token works in a browser; a browser
    killed without a goodbye is closed by the server; Ctrl-C then ends it with 130 and its stats."""
    stats = tmp_path / "stats.json"
    proc = serve_cli("--host", "0.0.0.0", "--port", "0", "--stats", str(stats), *LIGHT_MODEL, "--size", "128")
    err = Lines(proc.stderr)
    try:
        url = wait_url(proc)
        assert url.startswith("https://127.0.0.1:")

        async def browse() -> None:
            async with Chromium(url, camera, tmp_path / "profile") as page:
                await page.wait_for("window.liveSeg && window.liveSeg.shown >= 10", 90)
                assert await page.evaluate("location.protocol") == "https:"
                kids = [Path(p).read_text().split() for p in Path(f"/proc/{proc.pid}/task").glob("*/children")]
                assert not any(kids), kids  # serve starts no process of its own

        asyncio.run(browse())  # ends by killing Chromium: no goodbye from its side
        t_killed = time.monotonic()
        err.wait_for("client-1 sent no frame for 10 s: closing it", 30)
        err.wait_for("client-1 left after", 10)
        assert time.monotonic() - t_killed < 20
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = err.text()
    assert "Traceback" not in text, text
    (client,) = json.loads(stats.read_text())["clients"]
    assert client["frames_sent"] >= 10 and client["frames_received"] >= client["frames_processed"] >= 10


@needs_chromium
def test_two_browsers_share_one_model_in_batches(tmp_path, camera):
    """Two clients at once: one model, their waiting frames run as one batch, each gets its own frames."""
    from live_seg.jobs.serve import ServeOptions, run_serve
    from live_seg.model.segmenter import Segmenter

    seg = Segmenter("lraspp_mobilenet_v3_large", weights="random", device="cpu", size=128)
    control, urls, result = Control(), [], {}
    options = ServeOptions(port=0, max_clients=2, legend=False, max_side=320)
    runner = threading.Thread(
        target=lambda: result.update(run_serve(options, SlowModel(seg, 0.2), control=control, on_ready=urls.append))
    )
    runner.start()

    async def browse(name: str) -> None:
        async with Chromium(urls[0], camera, tmp_path / name, size=(800, 600)) as page:
            await page.wait_for("window.liveSeg && window.liveSeg.shown >= 10", 120)

    async def both() -> None:
        while not urls:
            await asyncio.sleep(0.05)
        await asyncio.gather(browse("a"), browse("b"))

    try:
        asyncio.run(both())
    finally:
        control.stop("test over")
        runner.join(60)
    assert not runner.is_alive()
    a, b = result["clients"]
    assert a["frames_sent"] >= 10 and b["frames_sent"] >= 10
    assert a["scaled_down"] > 0 and b["scaled_down"] > 0  # the camera's 640x480 is over --max-side 320
    assert result["mean_batch"] > 1.2, result  # the model was slower than both cameras: both waited


def test_serve_fills_its_summary_when_it_fails_while_serving(monkeypatch):
    from live_seg.base.errors import PipelineError
    from live_seg.jobs import serve
    from live_seg.model.segmenter import Segmenter

    def fail(self, t_start: float) -> None:
        raise PipelineError("infer failed: boom")

    monkeypatch.setattr(serve.ServeJob, "wait", fail)
    seg = Segmenter("lraspp_mobilenet_v3_large", weights="random", device="cpu", size=128)
    summary: dict = {}
    with pytest.raises(PipelineError, match="boom"):
        serve.run_serve(serve.ServeOptions(port=0), seg, summary=summary)
    assert summary["clients"] == [] and summary["url"].startswith("http://127.0.0.1:") and summary["wall_s"] >= 0
    assert "token" not in summary["url"]


def test_serve_smooths_each_client_on_its_own(tmp_path):
    """``--smooth ema``: the model gives class probabilities and each client's masks are averaged
    over its own frames, in its order, exactly as a :class:`TemporalSmoother` of its own would."""
    import torch
    from test_analysis_cli import lraspp_state, sample_frames

    from live_seg.analysis.smoothing import TemporalSmoother, pack_scores
    from live_seg.base.options import AnalysisOptions
    from live_seg.jobs.serve import ServeJob, ServeOptions
    from live_seg.model.segmenter import Segmenter

    weights = tmp_path / "content.pth"  # masks that follow the picture: a dozen classes
    shape = lraspp_state()["classifier.low_classifier.weight"].shape
    torch.save(lraspp_state(low_weight=torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 10), weights)
    seg = Segmenter("lraspp_mobilenet_v3_large", weights=str(weights), device="cpu", size=64)
    job = ServeJob(ServeOptions(port=0, analysis=AnalysisOptions(smooth="ema", smooth_strength=0.8)), seg, Control())
    got: dict[str, list[SegResult]] = {"a": [], "b": []}

    class Client:
        def __init__(self, name: str) -> None:
            self.name = name

        def put(self, result: SegResult) -> None:
            got[self.name].append(result)

        def summary(self) -> dict:
            return {}

    views = [job.connect(Client(name)) for name in got]  # type: ignore[arg-type]
    frames = sample_frames(6, 64, 48, start=20)
    job.start()
    try:
        for i, frame in enumerate(frames):
            views[0].offer(FramePacket(i, i / 25, time.perf_counter(), frame))
            wait_for(lambda n=i: len(got["a"]) > n, 30, f"the result of frame {i}")
        views[1].offer(FramePacket(0, 0.0, time.perf_counter(), frames[-1]))
        wait_for(lambda: got["b"], 30, "the second client's result")
    finally:
        job.close()
        job.server.close()

    def smoothed(images: list[np.ndarray]) -> list[np.ndarray]:
        smoother = TemporalSmoother(0.8)
        return [smoother.step(pack_scores(seg.infer_scores(seg.preprocess([f])))[0], f) for f in images]

    expected = smoothed(frames)
    assert [r.mask.dtype for r in got["a"]] == [np.uint8] * 6
    assert all(np.array_equal(r.mask, e) for r, e in zip(got["a"], expected, strict=True))
    alone = smoothed(frames[-1:])[0]  # client b's first frame: its own mask, not a's past
    assert len(got["b"]) == 1 and np.array_equal(got["b"][0].mask, alone)
    assert not np.array_equal(alone, expected[-1])  # a's smoothing did change its mask
    assert job.summary(time.perf_counter())["smooth"] == "ema"


def test_serve_refuses_analysis_files_in_a_missing_folder(tmp_path):
    from live_seg.base.errors import OutputError
    from live_seg.base.options import AnalysisOptions
    from live_seg.jobs.serve import ServeOptions

    with pytest.raises(OutputError, match="does not exist"):
        ServeOptions(analysis=AnalysisOptions(coverage=tmp_path / "no" / "cov.csv")).check()
    ServeOptions(analysis=AnalysisOptions(coverage=tmp_path / "cov.csv", masks=tmp_path / "m")).check()


@needs_chromium
def test_serve_key_frames_coverage_and_events_per_client(tmp_path, camera):
    """``serve --key-interval 4 --coverage --events --smooth ema``: every frame the browser sends comes back
    painted, the network runs on a quarter of them, each client gets its own coverage file and its records."""
    stats, cov, events = tmp_path / "stats.json", tmp_path / "cov.csv", tmp_path / "ev.jsonl"
    weights = one_class_weights(tmp_path / "person.pth", PERSON)
    model = ["--model", "lraspp_mobilenet_v3_large", "--weights", str(weights), "--device", "cpu", "--size", "128"]
    proc = serve_cli("--port", "0", "--stats", str(stats), "--key-interval", "4", "--coverage", str(cov),
                     "--events", str(events), "--smooth", "ema", *model)  # fmt: skip
    try:
        url = wait_url(proc)

        async def browse() -> None:
            async with Chromium(url, camera, tmp_path / "profile") as page:
                await page.wait_for("window.liveSeg && window.liveSeg.shown >= 30", 90)

        asyncio.run(browse())
        code, err = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 130 and "Traceback" not in err, err
    summary = json.loads(stats.read_text())
    assert summary["key_interval"] == 4 and summary["smooth"] == "ema"
    (client,) = summary["clients"]
    assert client["frames_carried"] > 0 and client["frames_sent"] >= 30, client
    sinks = client["sinks"]
    assert sinks["coverage"]["handled"] + sinks["coverage"]["dropped"] == client["frames_processed"], client
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert {r["source"] for r in records} == {"client-1"}
    frames = [r["frame"] for r in records]
    assert frames == sorted(set(frames)) and len(frames) >= 30
    keys = [r["frame"] for r in records if r["key"]]
    # key frames: every 4th, and the first of a new scene (the fake camera loops its clip)
    assert keys and sum(k % 4 != 0 for k in keys) <= client["analysis"]["cut_key_frames"] and len(keys) < len(records)
    assert all(abs(r["coverage"]["person"] - 1.0) < 1e-6 for r in records)  # the one-class model: all person
    rows = (tmp_path / "cov-client-1.csv").read_text().splitlines()
    assert len(rows) - 1 == client["analysis"]["key_frames"] + client["frames_carried"] == len(records), client
