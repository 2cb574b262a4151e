"""Events out: per-frame records as JSON lines and over MQTT, appear/leave events, the sink threads.

The MQTT tests run a real Mosquitto broker (Debian's ``mosquitto``, installed by ``.ci/run``) on
a free loopback port; without the binary they are skipped, except under CI, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import torch
from harness import run_cli, start_cli, wait_for
from PIL import Image
from pycocotools import mask as coco_mask
from test_analysis_cli import LIGHT, lraspp_state, sample_frames, write_clip

from live_seg.analysis.event_outputs import EventOutputs, source_topic
from live_seg.analysis.events import Presence, class_shares, rle_masks
from live_seg.analysis.masks import mask_name
from live_seg.base.errors import OutputError, PipelineError, UsageError
from live_seg.base.options import EventOptions
from live_seg.base.registry import VOC_CLASSES
from live_seg.media.jsonl import JsonLines
from live_seg.media.mqtt import CLOSE_S, CONNECT_TIMEOUT_S, MqttPublisher, MqttTarget, topic_segment
from live_seg.pipeline.sinks import SinkThread

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning:pycocotools.*")

# --- the sink thread -------------------------------------------------------------------------


def test_sink_thread_hands_items_in_order_and_drains_on_close():
    got: list[int] = []
    sink = SinkThread("order", got.append, size=4)
    for i in range(3):
        assert sink.put(i)
    sink.close()
    assert got == [0, 1, 2] and sink.stats() == {"handled": 3, "dropped": 0}
    assert not sink.put(3) and sink.dropped == 1  # closed: refused and counted


def test_a_full_sink_drops_its_oldest_items_and_never_waits():
    release = threading.Event()
    got: list[int] = []

    def slow(item: int) -> None:
        release.wait(10)
        got.append(item)

    sink = SinkThread("slow", slow, size=3)
    t0 = time.perf_counter()
    for i in range(50):
        sink.put(i)
    put_s = time.perf_counter() - t0
    release.set()
    sink.close()
    # 50 puts into a stuck sink: no waiting. A put that waited would take the sink's 10 s (it is
    # released only after the puts); 5 s leaves room for a loaded machine.
    assert put_s < 5.0, put_s
    assert got[-3:] == [47, 48, 49]  # the newest kept
    assert len(got) in (3, 4)  # the one in hand (taken before the queue filled, or not) and the newest three
    assert sink.handled + sink.dropped == 50


def test_a_stuck_sink_is_given_up_after_the_drain_time_and_its_error_is_raised():
    def stuck(_item: int) -> None:
        while not sink.stop.wait(0.01):
            pass
        raise OSError("gave up")

    sink = SinkThread("stuck", stuck, size=8)
    for i in range(5):
        sink.put(i)
    t0 = time.perf_counter()
    with pytest.raises(PipelineError, match="sink stuck failed: OSError: gave up"):
        sink.close(timeout=0.2)
    assert time.perf_counter() - t0 < 5.0  # bounded by the timeout (+ the thread's join on a busy machine)
    assert sink.handled == 0 and sink.dropped == 5
    assert not sink.put(9)


# --- records and appear/leave ----------------------------------------------------------------


def test_class_shares_sum_to_one_and_rle_decodes_to_the_resized_mask():
    rng = np.random.default_rng(0)
    mask = rng.choice([0, 3, 15], size=(32, 48)).astype(np.uint8)
    shares = class_shares(mask, VOC_CLASSES)
    assert set(shares) == {VOC_CLASSES[0], VOC_CLASSES[3], VOC_CLASSES[15]}
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5)
    rles = rle_masks(mask, VOC_CLASSES, 64, 96)
    import cv2

    big = cv2.resize(mask, (96, 64), interpolation=cv2.INTER_NEAREST)
    for name, rle in rles.items():
        assert rle["size"] == [64, 96] and isinstance(rle["counts"], str)
        decoded = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert np.array_equal(decoded, big == VOC_CLASSES.index(name))


@pytest.mark.parametrize(
    ("shares", "expected"),
    [
        ([0.5, 0.5, 0.5, 0.0, 0.0, 0.0], [(1, "new"), (4, "end")]),  # 2 frames in a row each way
        ([0.5, 0.0, 0.5, 0.0, 0.5, 0.0], []),  # flicker shorter than 2 frames: nothing
        ([0.05, 0.05, 0.05], []),  # at or below the threshold: never seen
        ([0.5, 0.5, 0.05, 0.5, 0.05, 0.05], [(1, "new"), (5, "end")]),
    ],
)
def test_presence_needs_n_frames_in_a_row(shares, expected):
    presence = Presence(threshold=0.1, frames=2)
    got = []
    for i, share in enumerate(shares):
        got += [(i, e.type) for e in presence.update({"person": share} if share else {})]
    assert got == expected


def test_presence_ends_what_is_present_when_the_source_ends():
    presence = Presence(threshold=0.1, frames=1)
    assert [(e.type, e.label) for e in presence.update({"dog": 0.3, "cat": 0.05})] == [("new", "dog")]
    ended = presence.end()
    assert [(e.type, e.label, e.reason, e.coverage) for e in ended] == [("end", "dog", "ended", 0.3)]


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("mqtt://broker", MqttTarget("broker", 1883, "live_seg")),
        ("mqtt://10.0.0.2:1884/home/cams", MqttTarget("10.0.0.2", 1884, "home/cams")),
        ("MQTT://u:p%40ss@h/x", MqttTarget("h", 1883, "x", "u", "p@ss")),
    ],
)
def test_mqtt_urls(url, target):
    assert MqttTarget.parse(url) == target


@pytest.mark.parametrize("url", ["http://h/x", "mqtt:///x", "mqtt://h:99999/x", "mqtt://h/a/+/b", "mqtt://h/a//b"])
def test_bad_mqtt_urls(url):
    with pytest.raises(ValueError):
        MqttTarget.parse(url)
    r = run_cli("video", "in.mp4", "--mqtt", url)
    assert r.returncode == 2 and "--mqtt" in r.stderr


def test_topics_and_the_source_are_safe_and_redacted(tmp_path):
    assert topic_segment("camera 0") == "camera_0"
    assert source_topic("rtsp://***@cam.local:554/live+#") == "rtsp_cam.local_554_live"
    assert source_topic(str(tmp_path / "front door.mp4")) == "front_door.mp4"
    assert str(MqttTarget.parse("mqtt://u:secret@h/x")) == "mqtt://***@h:1883/x"
    out = tmp_path / "e.jsonl"
    with EventOutputs(EventOptions(events=out)) as events:
        feeds = [events.source(name, VOC_CLASSES) for name in ("rtsp://user:pw@cam/a", "/x/a", "/y/a")]
        for feed in feeds:
            feed.frame(0, 0.0, np.zeros((4, 4), np.uint8), key=True, frame_hw=(8, 8))
    assert [f.topic for f in feeds] == ["rtsp_cam_a", "a", "a-2"]
    lines = out.read_text()
    assert "pw" not in lines and json.loads(lines.splitlines()[0])["source"] == "rtsp://***@cam/a"


# --- the JSON-lines writer -------------------------------------------------------------------


def test_json_lines_go_through_a_temporary_name(tmp_path):
    out = tmp_path / "e.jsonl"
    lines = JsonLines(out)
    assert lines.write(b'{"a":1}\n') and not out.exists()  # a crash now leaves no file under the final name
    assert lines.close() == out and out.read_text() == '{"a":1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["e.jsonl"]
    with pytest.raises(OutputError, match="--events: output exists"):
        JsonLines(out)
    aborted = JsonLines(out, overwrite=True)
    aborted.write(b"{}\n")
    aborted.abort()
    assert out.read_text() == '{"a":1}\n' and len(list(tmp_path.iterdir())) == 1


def test_a_write_into_a_stalled_pipe_gives_up_when_stopped(monkeypatch):
    read_end, write_end = os.pipe()
    stdout = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", stdout)
    stop = threading.Event()
    lines = JsonLines("-", stop=stop)
    line = b"x" * 1000 + b"\n"
    try:
        while lines.lines < 1000:  # far more than a pipe holds: the write that does not fit waits
            timer = threading.Timer(0.3, stop.set)
            timer.start()
            if not lines.write(line):
                break
            timer.cancel()
        assert stop.is_set() and 10 < lines.lines < 1000
    finally:
        timer.cancel()
        stdout.close()
        os.close(read_end)


# --- end to end through the command line -----------------------------------------------------


@pytest.fixture(scope="module")
def content_weights(tmp_path_factory) -> Path:
    """Masks that follow local image content (a dozen classes on a photo)."""
    path = tmp_path_factory.mktemp("w") / "content.pth"
    shape = lraspp_state()["classifier.low_classifier.weight"].shape
    torch.save(lraspp_state(low_weight=torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 10), path)
    return path


@pytest.fixture(scope="module")
def scenes_clip(tmp_path_factory) -> Path:
    """Black, then 6 frames of the sample, then white (160x96): classes that appear and leave."""
    black, white = np.zeros((96, 160, 3), np.uint8), np.full((96, 160, 3), 255, np.uint8)
    frames = [black] * 6 + sample_frames(6, 160, 96) + [white] * 6
    return write_clip(tmp_path_factory.mktemp("clip") / "scenes.mp4", frames)


def read_records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def rle_image(masks: dict, shape: tuple[int, int]) -> np.ndarray:
    """The class-id image the RLE masks of one record describe (every pixel exactly once)."""
    image = np.full(shape, 255, np.uint8)
    for name, rle in masks.items():
        part = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
        assert not (part & (image != 255)).any()
        image[part] = VOC_CLASSES.index(name)
    return image


def test_records_and_rle_masks_match_the_mask_files(tmp_path, content_weights):
    src = write_clip(tmp_path / "in.mp4", sample_frames(8, 200, 120, start=20))
    r = run_cli("video", src, "-o", tmp_path / "o.mp4", *LIGHT, "--weights", content_weights, "--size", "64",
                "--key-interval", "3", "--masks", tmp_path / "m", "--masks-size", "source",
                "--events", tmp_path / "e.jsonl", "--events-masks", "rle", "--stats", tmp_path / "s.json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    records = read_records((tmp_path / "e.jsonl").read_text())
    assert [rec["frame"] for rec in records] == list(range(8))
    assert [rec["key"] for rec in records] == [i % 3 == 0 for i in range(8)]
    assert all(rec["source"] == str(src) and (rec["width"], rec["height"]) == (200, 120) for rec in records)
    assert all(sum(rec["coverage"].values()) == pytest.approx(1.0, abs=1e-5) for rec in records)
    assert all(rec["time"].endswith("Z") for rec in records) and records[0]["time"] <= records[-1]["time"]
    for rec in records:
        png = np.array(Image.open(tmp_path / "m" / mask_name(rec["frame"], rec["pts"])))
        assert np.array_equal(rle_image(rec["masks"], (120, 200)), png)
    assert len(np.unique(np.array(Image.open(next((tmp_path / "m").iterdir()))))) > 3  # several classes
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["events"] == {"jsonl": {"path": str(tmp_path / "e.jsonl"), "lines": 8, "dropped": 0}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.jsonl", "in.mp4", "m", "o.mp4", "s.json"]


def read_slowly(args: list) -> tuple[int, list[bytes]]:
    """Run the command line with its events on stdout read one line a second while it runs (a slow
    consumer: pacing, not waiting), the rest at once; its exit status and the lines."""
    got: list[bytes] = []
    with start_cli(*args, stderr=subprocess.DEVNULL, text=False) as proc:
        assert proc.stdout is not None
        while proc.poll() is None:
            got.append(proc.stdout.readline())
            time.sleep(1.0)
        got += proc.stdout.read().splitlines(keepends=True)
    return proc.returncode, got


def test_a_slow_reader_of_the_events_does_not_slow_the_run(tmp_path, content_weights):
    """Events with masks onto a pipe read one line a second: the pipe and the sink's queue fill,
    the oldest records are dropped and counted, and the run goes at its own pace."""
    src = write_clip(tmp_path / "in.mp4", sample_frames(120, 160, 96))
    common = [*LIGHT, "--weights", content_weights, "--size", "64", "--workers", "1"]
    base = run_cli("video", src, "-o", tmp_path / "base.mp4", *common, "--stats", tmp_path / "base.json")
    assert base.returncode == 0, base.stderr
    args = ["video", src, "-o", tmp_path / "slow.mp4", *common, "--events", "-", "--events-masks", "rle",
            "--stats", tmp_path / "slow.json"]  # fmt: skip
    code, got = read_slowly(args)
    assert code == 0
    fps = {name: json.loads((tmp_path / f"{name}.json").read_text())["fps"] for name in ("base", "slow")}
    events = json.loads((tmp_path / "slow.json").read_text())["events"]["jsonl"]
    print(f"fps without events {fps['base']:.1f}, into a slow pipe {fps['slow']:.1f}; {events}")
    assert events["dropped"] > 0 and events["lines"] + events["dropped"] == 120  # the sink did fall behind
    assert fps["slow"] >= 0.5 * fps["base"]  # generous: two runs one after the other on a shared machine
    frames = [json.loads(line)["frame"] for line in got if line.strip()]
    assert len(frames) == events["lines"] and frames == sorted(set(frames))


# --- MQTT against a real broker --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """``mosquitto -p PORT`` (loopback only without a config file)."""

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "-p", str(self.port)], stderr=subprocess.DEVNULL)
        wait_for(self.accepts, 10, "mosquitto to listen")

    def accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            assert self.proc.poll() is None, "mosquitto exited"
            return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def broker() -> Iterator[Broker]:
    binary = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.path.exists(p)), None)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is missing; .ci/run installs it (apt-get install mosquitto mosquitto-clients)")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto mosquitto-clients)")
    b = Broker(binary)
    yield b
    b.kill()


class Subscriber:
    """A paho client that keeps every message it receives."""

    def __init__(self, port: int, topic: str = "#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "subscription not confirmed"

    def _on_message(self, _c, _u, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def on(self, suffix: str) -> list[dict]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(broker) -> Iterator[Subscriber]:
    sub = Subscriber(broker.port)
    yield sub
    sub.close()


def test_frames_and_appear_leave_events_reach_a_subscriber(tmp_path, broker, subscriber, content_weights, scenes_clip):
    url = f"mqtt://127.0.0.1:{broker.port}/test/cams"
    r = run_cli("video", scenes_clip, "-o", tmp_path / "o.mp4", *LIGHT, "--weights", content_weights,
                "--size", "64", "--mqtt", url, "--events-every", "4", "--event-threshold", "0.1",
                "--event-frames", "2", "--stats", tmp_path / "s.json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / "s.json").read_text())["events"]["mqtt"]
    wait_for(lambda: len(subscriber.messages) >= stats["published"] + 2, 10, "every message to arrive")
    frames = subscriber.on("test/cams/scenes.mp4/frame")
    assert [f["frame"] for f in frames] == [0, 4, 8, 12, 16]
    assert all(sum(f["coverage"].values()) == pytest.approx(1.0, abs=1e-5) for f in frames)
    events = subscriber.on("test/cams/scenes.mp4/event")
    seen = {(e["type"], e["label"], e["reason"]) for e in events}
    assert {("new", "dog", "appeared"), ("end", "dog", "left")} <= seen, seen  # the sample's dog comes and goes
    assert [e["frame"] for e in events] == sorted(e["frame"] for e in events)
    dog = [e["frame"] for e in events if e["label"] == "dog"]
    assert dog == [7, 13]  # 2 frames in a row: the second frame of the sample, and of the white frames
    assert events[-1]["reason"] == "ended" and all(e["source"] == str(scenes_clip) for e in events)
    assert stats["published"] == 5 + len(events) and stats["dropped"] == 0 and stats["events"] == len(events)
    with subscriber.lock:
        available = [(p, retain) for t, p, retain in subscriber.messages if t == "test/cams/available"]
    assert available == [(b"online", False), (b"offline", False)]  # live, as they were sent


def kill_the_broker_mid_run(args: list, stats_path: Path, broker, subscriber, frames: int) -> dict:
    """Run the command line with ``--mqtt`` to ``broker`` and ``--stats``; kill the broker once ``frames``
    frame records arrived. The run must end by itself with status 0, having logged the loss; its stats."""
    url = f"mqtt://127.0.0.1:{broker.port}/t"
    with start_cli(*args, "--stats", stats_path, "--mqtt", url, stdout=None) as proc:
        wait_for(lambda: len(subscriber.on("/frame")) >= frames, 120, f"{frames} frames", alive=proc)
        broker.kill()
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "MQTT: lost mqtt://127.0.0.1" in err
    return json.loads(stats_path.read_text())


def test_killing_the_broker_mid_run_drops_and_counts(tmp_path, broker, subscriber, content_weights):
    src = write_clip(tmp_path / "in.mp4", sample_frames(150, 160, 96) * 4)  # ~2 s of run after the first frame
    args = ["video", src, "-o", tmp_path / "o.mp4", *LIGHT, "--weights", content_weights, "--size", "64",
            "--workers", "1"]  # fmt: skip
    stats = kill_the_broker_mid_run(args, tmp_path / "s.json", broker, subscriber, 3)
    mqtt_stats = stats["events"]["mqtt"]
    print(stats["fps"], mqtt_stats)
    assert mqtt_stats["published"] >= 3 and mqtt_stats["dropped"] > 0
    assert mqtt_stats["published"] + mqtt_stats["dropped"] == 600 + mqtt_stats["events"]  # every message counted


def test_a_broker_absent_at_start_does_not_stall_the_feed_and_close_is_bounded():
    target = f"mqtt://127.0.0.1:{free_port()}/t"  # nothing listens there
    outputs = EventOutputs(EventOptions(mqtt=target, event_frames=1))
    feed = outputs.source("cam", VOC_CLASSES)
    mask = np.zeros((64, 64), np.uint8)
    mask[:32] = 15
    t0 = time.perf_counter()
    for i in range(200):
        feed.frame(i, i / 25, mask, key=True, frame_hw=(96, 160))
    feed_s = time.perf_counter() - t0
    feed.end()
    t0 = time.perf_counter()
    outputs.close()
    close_s = time.perf_counter() - t0
    stats = outputs.summary()["events"]["mqtt"]
    assert stats["published"] == 0 and stats["dropped"] == 200 + 4  # person and background: new and end
    assert feed_s < 2.0, feed_s  # ~50 µs a frame; 2 s only on a machine stalled by others
    assert close_s < CONNECT_TIMEOUT_S + CLOSE_S + 5.0, close_s  # bounded, though no broker ever answered
    assert not [t for t in threading.enumerate() if t.name.startswith("paho")]


def test_the_publisher_counts_every_message(broker):
    publisher = MqttPublisher(MqttTarget("127.0.0.1", broker.port, "p"))
    wait_for(lambda: publisher.connected, 10, "the connection")
    sent = sum(publisher.publish("p/x", b"%d" % i) for i in range(100))
    publisher.close()
    assert sent == 100 - publisher.refused
    assert publisher.published + publisher.dropped == 100 and publisher.published > 0
    assert not publisher.publish("p/x", b"late") and publisher.connections == 1


def test_bad_event_options_are_usage_errors():
    with pytest.raises(UsageError, match="event threshold"):
        EventOutputs(EventOptions(events="-", event_threshold=1.5))
    with pytest.raises(UsageError, match="events every"):
        EventOutputs(EventOptions(mqtt="mqtt://h/x", events_every=0))


def test_events_take_one_input_video(tmp_path):
    r = run_cli("video", "a.mp4", "b.mp4", "-o", f"{tmp_path}/out/", "--events", tmp_path / "e.jsonl")
    assert r.returncode == 2 and "--events and --mqtt take one input video" in r.stderr


# --- live: one event output for the run, one feed per source ----------------------------------


def two_clips(folder: Path, count: int, repeat: int = 1) -> tuple[Path, Path]:
    """Two clips of ``count`` frames of the sample (from different starts) played ``repeat`` times."""
    return (write_clip(folder / "left.mp4", sample_frames(count, 160, 96) * repeat),
            write_clip(folder / "right.mp4", sample_frames(count, 200, 120, start=30) * repeat))  # fmt: skip


def test_live_two_sources_give_records_of_each_and_rle_masks_match_the_mask_files(tmp_path, content_weights):
    left, right = two_clips(tmp_path, 10)
    r = run_cli("live", "--display", "none", "--source", left, "--source", right, *LIGHT, "--weights",
                content_weights, "--size", "64", "--masks", tmp_path / "m", "--masks-size", "source",
                "--events", tmp_path / "e.jsonl", "--events-masks", "rle", "--stats", tmp_path / "s.json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    records = read_records((tmp_path / "e.jsonl").read_text())
    for src, name, shape in ((left, "left", (96, 160)), (right, "right", (120, 200))):
        own = [rec for rec in records if rec["source"] == str(src)]
        assert [rec["frame"] for rec in own] == list(range(10))  # a file read as fast as the model goes: every frame
        assert all(rec["key"] and (rec["height"], rec["width"]) == shape for rec in own)
        assert all(sum(rec["coverage"].values()) == pytest.approx(1.0, abs=1e-5) for rec in own)
        for rec in own:
            png = np.array(Image.open(tmp_path / "m" / name / mask_name(rec["frame"], rec["pts"])))
            assert np.array_equal(rle_image(rec["masks"], shape), png)
    assert len(records) == 20
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["events"] == {"jsonl": {"path": str(tmp_path / "e.jsonl"), "lines": 20, "dropped": 0}}


def test_live_sources_each_publish_frames_and_appear_leave_events(tmp_path, broker, subscriber, content_weights,
                                                                  scenes_clip):  # fmt: skip
    other = tmp_path / "other.mp4"
    shutil.copy(scenes_clip, other)
    url = f"mqtt://127.0.0.1:{broker.port}/live"
    r = run_cli("live", "--display", "none", "--source", scenes_clip, "--source", other, *LIGHT, "--weights",
                content_weights, "--size", "64", "--mqtt", url, "--events-every", "6", "--event-threshold", "0.1",
                "--event-frames", "2", "--stats", tmp_path / "s.json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / "s.json").read_text())["events"]["mqtt"]
    wait_for(lambda: len(subscriber.messages) >= stats["published"] + 2, 10, "every message to arrive")
    for src in (scenes_clip, other):
        frames = subscriber.on(f"live/{src.name}/frame")
        assert [f["frame"] for f in frames] == [0, 6, 12] and all(f["source"] == str(src) for f in frames)
        events = subscriber.on(f"live/{src.name}/event")
        dog = [(e["type"], e["frame"]) for e in events if e["label"] == "dog"]
        assert dog == [("new", 7), ("end", 13)], events  # the same clip: the same events, on each source's topic
        assert events[-1]["reason"] == "ended"
    assert stats["dropped"] == 0 and stats["published"] == 6 + stats["events"]


def infer_fps(stats_path: Path) -> float:
    return json.loads(stats_path.read_text())["infer_fps"]


def test_live_killing_the_broker_mid_run_keeps_the_rate_and_counts_the_drops(tmp_path, broker, subscriber,
                                                                             content_weights):  # fmt: skip
    """Two files read as fast as the model goes: the inference rate is the model's. Killing the
    broker after the first frames arrived leaves it where a run without MQTT has it."""
    left, right = two_clips(tmp_path, 100, 4)  # 400 frames each: a run of seconds
    common = ["--source", left, "--source", right, *LIGHT, "--weights", content_weights, "--size", "64"]
    base = run_cli("live", "--display", "none", *common, "--stats", tmp_path / "base.json")
    assert base.returncode == 0, base.stderr
    stats = kill_the_broker_mid_run(["live", "--display", "none", *common], tmp_path / "s.json", broker, subscriber, 6)
    mqtt_stats = stats["events"]["mqtt"]
    ratio = stats["infer_fps"] / infer_fps(tmp_path / "base.json")
    print(f"infer fps: {infer_fps(tmp_path / 'base.json'):.1f} without MQTT, {stats['infer_fps']:.1f} broker killed "
          f"({ratio:.2f}x); {mqtt_stats}")  # fmt: skip
    assert mqtt_stats["published"] >= 6 and mqtt_stats["dropped"] > 0
    assert mqtt_stats["published"] + mqtt_stats["dropped"] == 800 + mqtt_stats["events"]  # every message counted
    assert ratio >= 0.5  # generous: two runs one after the other on a shared, loaded 2-core machine


def test_live_events_into_a_slow_pipe_do_not_slow_inference(tmp_path, content_weights):
    left, right = two_clips(tmp_path, 100, 4)  # 400 frames each: a run of seconds
    common = ["--source", left, "--source", right, *LIGHT, "--weights", content_weights, "--size", "64"]
    base = run_cli("live", "--display", "none", *common, "--stats", tmp_path / "base.json")
    assert base.returncode == 0, base.stderr
    args = ["live", "--display", "none", *common, "--events", "-", "--events-masks", "rle", "--stats",
            tmp_path / "slow.json"]  # fmt: skip
    code, got = read_slowly(args)
    assert code == 0
    stats = json.loads((tmp_path / "slow.json").read_text())
    events = stats["events"]["jsonl"]
    ratio = stats["infer_fps"] / infer_fps(tmp_path / "base.json")
    print(f"infer fps: {infer_fps(tmp_path / 'base.json'):.1f} without events, {stats['infer_fps']:.1f} into a slow "
          f"pipe ({ratio:.2f}x); {events}")  # fmt: skip
    assert events["dropped"] > 0 and events["lines"] + events["dropped"] == 800  # the sink did fall behind
    assert ratio >= 0.5  # generous, as above
    records = [json.loads(line) for line in got if line.strip()]
    assert len(records) == events["lines"]
    for name in ("left.mp4", "right.mp4"):
        frames = [rec["frame"] for rec in records if rec["source"].endswith(name)]
        assert frames == sorted(set(frames))
