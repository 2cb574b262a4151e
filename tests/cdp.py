"""Debian's headless Chromium with a fake camera, driven over its DevTools protocol (for tests).

    clip = fake_camera_clip(tmp_path / "clip.y4m", samples / "sample.mp4")
    async with Chromium(url, camera=clip, profile=tmp_path / "profile") as page:
        await page.wait_for("window.liveSeg.shown > 10", timeout=60)
        png = await page.screenshot()

Chromium runs with ``--use-fake-ui-for-media-stream`` (the camera is allowed without asking)
and ``--use-file-for-fake-video-capture`` (a y4m clip, looped, is the camera). The protocol is
spoken over aiohttp's websocket client; nothing downloads a browser. The browser process is
killed and reaped on exit, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np

CHROMIUM = shutil.which("chromium")


def fake_camera_clip(target: Path, source: Path, size: str = "640x480", fps: int = 30, seconds: float = 2.0) -> Path:
    """A y4m clip Chromium takes as its fake camera: ffmpeg's ``yuv420p`` y4m with the ``C420mpeg2``
    colour tag (which Chromium refuses) replaced by ``C420`` in the header."""
    w, h = size.split("x")
    tmp = target.with_suffix(".ffmpeg.y4m")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-t", str(seconds), "-vf", f"scale={w}:{h},fps={fps}",
         "-pix_fmt", "yuv420p", str(tmp)],
        check=True,
    )  # fmt: skip
    data = tmp.read_bytes()
    end = data.index(b"\n")
    target.write_bytes(data[:end].replace(b"C420mpeg2", b"C420") + data[end:])
    tmp.unlink()
    return target


class Page:
    """One page's DevTools session: evaluate JavaScript, take screenshots."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict:
        """Send a protocol command and return its result (events in between are skipped)."""
        msg_id = next(self._ids)
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, every: float = 0.25) -> Any:
        """Poll ``expression`` until it is truthy; its value. Raises ``TimeoutError`` with the page's state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if loop.time() > deadline:
                state = await self.evaluate(page_state_json())
                raise TimeoutError(f"{expression} still false after {timeout:g} s; page state: {state}")
            await asyncio.sleep(every)

    async def screenshot(self) -> np.ndarray:
        """The page as a BGR image."""
        data = await self.call("Page.captureScreenshot", format="png")
        import base64

        png = base64.b64decode(data["data"])
        return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


class Chromium:
    """Headless Chromium on ``url`` with ``camera`` (a y4m clip) as its webcam.

    Args:
        url: the page to open.
        camera: the fake camera's y4m clip.
        profile: a fresh user-data folder.
        size: window size.
    """

    def __init__(self, url: str, camera: Path, profile: Path, size: tuple[int, int] = (1280, 800)) -> None:
        self.url, self.camera, self.profile, self.size = url, camera, profile, size
        self.proc: subprocess.Popen | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> Page:
        assert CHROMIUM is not None, "chromium is not installed"
        flags = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={self.camera}", "--ignore-certificate-errors",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required",
            f"--window-size={self.size[0]},{self.size[1]}", f"--user-data-dir={self.profile}",
            "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            [CHROMIUM, *flags, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            port = await asyncio.to_thread(self._devtools_port)
            self._session = aiohttp.ClientSession()
            async with self._session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json(content_type=None)
            page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            self._ws = await self._session.ws_connect(page_ws, max_msg_size=0)
            page = Page(self._ws)
            await page.call("Page.enable")
            await page.call("Page.navigate", url=self.url)
            return page
        except BaseException:
            await self.__aexit__()
            raise

    def _devtools_port(self, timeout: float = 60.0) -> int:
        """Read ``DevTools listening on ws://127.0.0.1:PORT/…`` from Chromium's stderr."""
        assert self.proc is not None and self.proc.stderr is not None
        seen = []
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            seen.append(line)
            found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if found:
                # keep draining stderr so Chromium never blocks on a full pipe
                import threading

                threading.Thread(target=self._drain, name="chromium-stderr", daemon=True).start()
                return int(found.group(1))
        raise RuntimeError("chromium exited before its DevTools port was known:\n" + "".join(seen[-20:]))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for _ in self.proc.stderr:
            pass

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self.proc is not None:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 30)


def video_box(shot: np.ndarray, rect: dict) -> np.ndarray:
    """The part of a screenshot inside an element's ``getBoundingClientRect()`` (CSS px = device px here)."""
    x, y, w, h = (round(rect[k]) for k in ("x", "y", "width", "height"))
    return shot[y : y + h, x : x + w]


def page_state_json() -> str:
    """A JavaScript expression: the page's ``window.liveSeg`` as JSON (without the peer connection)."""
    return "JSON.stringify(window.liveSeg || null, (k, v) => k === 'pc' ? undefined : v)"


def parse_state(text: str) -> dict:
    return json.loads(text)
