"""Peak memory of a live run over a big synthetic camera, with ``--record`` and one browser viewer.

Run as a process (its peak RSS is its own): ``python tests/bigcam.py SIDE FRAMES RECORDING``. The
camera is a stand-in for ``cv2.VideoCapture`` that makes a new ``SIDE x SIDE`` frame 5 times a second
(as OpenCV's FFmpeg backend hands out a new array per frame); LRASPP at 128 with random weights; one
HTTP client reads the browser view's stream for the whole run, which stops once FRAMES views were
shown and recorded (at most :data:`LIMIT_S`): what the recording's encoder holds grows with the frames
it was given, not with the seconds. Prints one JSON line: the RSS before the run (model loaded), the
peak RSS (``VmHWM``), both in MB, and the run's counts.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request

import cv2
import numpy as np

FPS = 5.0
LIMIT_S = 240.0


class BigCamera:
    """What :class:`live_seg.media.camera.CaptureSource` uses of ``cv2.VideoCapture``."""

    side = 7680

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.t0, self.n, self.opened = time.perf_counter(), 0, True
        self.base = np.full((self.side, self.side, 3), 80, np.uint8)

    def isOpened(self) -> bool:
        return self.opened

    def set(self, *args: object) -> bool:
        return True

    def get(self, prop: int) -> float:
        sizes = {cv2.CAP_PROP_FRAME_WIDTH: self.side, cv2.CAP_PROP_FRAME_HEIGHT: self.side, cv2.CAP_PROP_FPS: FPS}
        return float(sizes.get(prop, 0.0))

    def grab(self) -> bool:
        time.sleep(max(0.0, self.t0 + self.n / FPS - time.perf_counter()))
        self.n += 1
        return self.opened

    def retrieve(self) -> tuple[bool, np.ndarray]:
        image = self.base.copy()
        y = (self.n * 97) % (self.side - 200)
        image[y : y + 200, :400] = 255
        return True, image

    def release(self) -> None:
        self.opened = False


def peak_mb() -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def watch(url: str, got: list[int]) -> None:
    """One viewer: read the page's MJPEG stream until the server closes it."""
    base, _, query = url.partition("?")
    stream = base.rstrip("/") + "/stream.mjpg" + (f"?{query}" if query else "")
    try:
        with urllib.request.urlopen(stream, timeout=60) as resp:
            while chunk := resp.read(1 << 16):
                got.append(len(chunk))
    except OSError:
        pass


def main() -> None:
    side, frames, record = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    BigCamera.side = side
    cv2.VideoCapture = BigCamera  # the source opens this instead of a stream
    from live_seg.jobs.live.session import LiveOptions, LiveSession
    from live_seg.model.segmenter import Segmenter

    seg = Segmenter("lraspp_mobilenet_v3_large", weights="random", device="cpu", size=128)
    seg.predict([np.zeros((64, 64, 3), np.uint8)])
    before, _ = peak_mb()
    got: list[int] = []
    viewer: list[threading.Thread] = []

    def on_serve(url: str) -> None:
        viewer.append(threading.Thread(target=watch, args=(url, got), daemon=True))
        viewer[0].start()

    options = LiveOptions(source="http://127.0.0.1:9/big.mjpg", display="browser", port=0, record=record)
    session = LiveSession(options, seg, on_serve=on_serve)

    def stop_when_done() -> None:
        deadline = time.monotonic() + LIMIT_S
        while session.stats.frames_out < frames and time.monotonic() < deadline:
            time.sleep(0.1)
        session.control.stop("quit")

    stopper = threading.Thread(target=stop_when_done, daemon=True)
    stopper.start()
    summary = session.run()
    _, peak = peak_mb()
    counts = {k: summary[k] for k in ("frames_captured", "frames_inferred", "frames_shown", "frames_recorded")}
    print(json.dumps({"before_mb": before, "peak_mb": peak, "viewer_bytes": sum(got), **counts}))


if __name__ == "__main__":
    main()
