"""``live --display none`` without a recording: the run counts and times every mask but paints nothing
(no render, no mask carried along the flow): with four 720p cameras, painting pictures no one sees took
more CPU than the model (README, "Many cameras in one run")."""

from __future__ import annotations

import pytest
from mjpeg import MJPEGServer

from live_seg.jobs.live.options import LiveOptions
from live_seg.jobs.live.session import LiveSession

FPS = 25


@pytest.fixture(scope="module")
def lraspp():
    from live_seg.model.segmenter import Segmenter

    return Segmenter("lraspp_mobilenet_v3_large", weights="random", device="cpu", size=64)


@pytest.mark.parametrize("record", [False, True])
def test_no_one_looking_means_nothing_is_painted(lraspp, tmp_path, monkeypatch, record):
    from live_seg.analysis.propagate import MaskPropagator
    from live_seg.render.renderer import Renderer

    calls = {"render": 0, "carry": 0}
    render, carry = Renderer.render, MaskPropagator.carry

    def counted_render(self, *args, **kwargs):
        calls["render"] += 1
        return render(self, *args, **kwargs)

    def counted_carry(self, *args, **kwargs):
        calls["carry"] += 1
        return carry(self, *args, **kwargs)

    monkeypatch.setattr(Renderer, "render", counted_render)
    monkeypatch.setattr(MaskPropagator, "carry", counted_carry)
    with MJPEGServer(fps=FPS, size=(320, 180), duration=60) as a, MJPEGServer(fps=FPS, size=(320, 180)) as b:
        extra = {"record": f"{tmp_path}/rec/"} if record else {}
        options = LiveOptions(sources=(a.url, b.url), display="none", duration=3.0, **extra)
        summary = LiveSession(options, lraspp).run()
    assert summary["frames_inferred"] > 0 and summary["latency_ms"]["p50"] is not None
    kinds = summary["masks_shown"]
    assert sum(kinds.values()) > 0 and summary["frames_shown"] >= sum(kinds.values())  # counted, with latency
    if not record:
        assert kinds["carried"] == 0  # nothing carried along the flow for no one
    if record:
        assert calls["render"] > 0  # a recording is a look: its frames are painted
    else:
        assert calls == {"render": 0, "carry": 0}


def test_a_file_as_a_live_source_is_size_capped_too(tmp_path):
    """``--max-frame-pixels`` holds for every live source: a video file is refused before its first frame."""
    from harness import run_cli
    from media import make_video

    clip = make_video(tmp_path / "clip.mp4", frames=4, width=160, height=96)
    r = run_cli("live", "--source", clip, "--display", "none", "--max-frame-pixels", "10000", "--model",
                "lraspp_mobilenet_v3_large", "--weights", "random")  # fmt: skip
    r.one_line_error("160x96 frames", "--max-frame-pixels")
