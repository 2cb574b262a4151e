"""Checks that the synthetic media generators in ``tests/media.py`` make what they claim."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media import (
    SQUARE_BGR,
    corrupt_packets,
    frame_pattern,
    is_faststart,
    make_audio_only,
    make_video,
    probe,
    read_frames,
    read_index,
    top_level_boxes,
    truncate,
    video_packets,
)


def test_frame_pattern_shape_and_index_code() -> None:
    images = [frame_pattern(i, 160, 96) for i in (0, 1, 2, 513, 1023)]
    for image in images:
        assert image.shape == (96, 160, 3)
        assert image.dtype == np.uint8
    assert [read_index(image) for image in images] == [0, 1, 2, 513, 1023]
    assert read_index(frame_pattern(1024 + 7)) == 7
    assert not np.array_equal(images[0], images[1])
    assert np.array_equal(frame_pattern(5, 64, 40), frame_pattern(5, 64, 40))


def test_frame_pattern_square_is_red_in_bgr() -> None:
    image = frame_pattern(0, 160, 96)
    assert (image == SQUARE_BGR).all(axis=2).sum() > 100
    assert SQUARE_BGR == (0, 0, 255)


def test_read_index_survives_a_60_40_blend() -> None:
    image = frame_pattern(0b1010101010)
    for colour in ((0, 0, 0), (255, 255, 255), (128, 64, 192)):
        blend = (0.6 * image + 0.4 * np.array(colour)).round().astype(np.uint8)
        assert read_index(blend) == 0b1010101010
    assert read_index(image.mean(axis=2).astype(np.uint8)) == 0b1010101010


def test_frame_pattern_too_small() -> None:
    with pytest.raises(ValueError, match="at least 40x16"):
        frame_pattern(0, 32, 32)


def test_make_video_defaults(tmp_path: Path) -> None:
    path = make_video(tmp_path / "clip.mp4")
    info = probe(path)
    video = info["video"]
    assert info["audio"] is None
    assert info["faststart"] is False
    assert (video["codec"], video["pix_fmt"], video["width"], video["height"]) == ("h264", "yuv420p", 160, 96)
    assert video["frames"] == 12
    assert video["pts"] == pytest.approx([i / 25 for i in range(12)])
    assert video["duration"] == pytest.approx(0.48)
    assert video["stream_duration"] == pytest.approx(0.48)
    assert video["rotation"] == 0
    assert video["decode_errors"] == 0
    assert [read_index(image) for image in read_frames(path)] == list(range(12))


def test_make_video_is_deterministic(tmp_path: Path) -> None:
    first = make_video(tmp_path / "a.mp4", audio="aac").read_bytes()
    assert make_video(tmp_path / "b.mp4", audio="aac").read_bytes() == first


@pytest.mark.parametrize(
    ("name", "kwargs", "codec", "pix_fmt", "size"),
    [
        ("ten_bit.mp4", {"pix_fmt": "yuv420p10le"}, "h264", "yuv420p10le", (160, 96)),
        ("ten_bit.mkv", {"codec": "libx265", "pix_fmt": "yuv420p10le"}, "hevc", "yuv420p10le", (160, 96)),
        # A monochrome H.264 stream, which FFmpeg decodes as yuv420p.
        ("gray_h264.mp4", {"pix_fmt": "gray"}, "h264", "yuv420p", (160, 96)),
        ("gray_hevc.mp4", {"codec": "libx265", "pix_fmt": "gray"}, "hevc", "gray", (160, 96)),
        ("gray.mkv", {"codec": "ffv1", "pix_fmt": "gray"}, "ffv1", "gray", (160, 96)),
        ("odd.mp4", {"width": 321, "height": 241, "pix_fmt": "yuv444p"}, "h264", "yuv444p", (321, 241)),
        ("odd_mp4v.mp4", {"width": 321, "height": 241, "codec": "mpeg4"}, "mpeg4", "yuv420p", (321, 241)),
        ("odd.mkv", {"width": 321, "height": 241, "codec": "ffv1"}, "ffv1", "yuv420p", (321, 241)),
    ],
)
def test_make_video_formats(
    tmp_path: Path, name: str, kwargs: dict, codec: str, pix_fmt: str, size: tuple[int, int]
) -> None:
    path = make_video(tmp_path / name, frames=6, **kwargs)
    video = probe(path)["video"]
    assert (video["codec"], video["pix_fmt"], (video["width"], video["height"])) == (codec, pix_fmt, size)
    assert video["frames"] == 6
    assert [read_index(image) for image in read_frames(path)] == list(range(6))


def test_libx264_refuses_odd_size_in_yuv420p(tmp_path: Path) -> None:
    with pytest.raises(av.error.FFmpegError):
        make_video(tmp_path / "odd.mp4", width=321, height=241)


@pytest.mark.parametrize(
    ("name", "audio", "rate", "channels", "decoder"),
    [
        ("aac.mp4", "aac", 48000, 2, "aac"),
        ("aac_mono.mp4", "aac", 44100, 1, "aac"),
        ("mp3.mp4", "mp3", 48000, 2, "mp3float"),
        ("mulaw.mov", "pcm_mulaw", 8000, 1, "pcm_mulaw"),
    ],
)
def test_make_video_with_audio(tmp_path: Path, name: str, audio: str, rate: int, channels: int, decoder: str) -> None:
    path = make_video(tmp_path / name, frames=25, audio=audio, audio_rate=rate, audio_channels=channels)
    info = probe(path)
    sound = info["audio"]
    assert (sound["codec"], sound["sample_rate"], sound["channels"]) == (decoder, rate, channels)
    assert info["video"]["duration"] == pytest.approx(1.0)
    assert sound["duration"] == pytest.approx(info["video"]["duration"], abs=1e-3)
    # Decoded AAC/MP3 may run past the end by the encoder's padding, never short of it.
    assert sound["samples"] >= rate - 1
    assert sound["decode_errors"] == 0


def test_pcm_mulaw_cannot_go_in_mp4(tmp_path: Path) -> None:
    with pytest.raises((av.error.FFmpegError, ValueError)):
        make_video(tmp_path / "mulaw.mp4", audio="pcm_mulaw")


def test_ntsc_rate(tmp_path: Path) -> None:
    video = probe(make_video(tmp_path / "ntsc.mp4", fps=Fraction(30000, 1001)))["video"]
    assert video["average_rate"] == Fraction(30000, 1001)
    assert video["duration"] == pytest.approx(12 * 1001 / 30000)


@pytest.mark.parametrize("start", [0, 1000])
def test_variable_frame_rate_pts_are_kept(tmp_path: Path, start: int) -> None:
    pts_ms = [start + t for t in (0, 40, 80, 200, 230, 300)]
    path = make_video(tmp_path / "vfr.mp4", frames=6, pts=pts_ms)
    video = probe(path)["video"]
    assert video["pts"] == pytest.approx([t / 1000 for t in pts_ms])
    assert video["duration"] == pytest.approx(0.34)
    assert video["stream_duration"] == pytest.approx(0.34)
    assert [read_index(image) for image in read_frames(path)] == list(range(6))


def test_explicit_time_base(tmp_path: Path) -> None:
    path = make_video(tmp_path / "tb.mp4", frames=3, pts=[0, 3, 9], time_base=Fraction(1, 90))
    assert probe(path)["video"]["pts"] == pytest.approx([0, 3 / 90, 9 / 90])


@pytest.mark.parametrize("bad", [[0, 40, 40], [0, 40]])
def test_pts_must_increase_and_match_frames(tmp_path: Path, bad: list[int]) -> None:
    with pytest.raises(ValueError, match="increasing"):
        make_video(tmp_path / "bad.mp4", frames=3, pts=bad)


@pytest.mark.parametrize(("rotation", "expected"), [(90, 90), (180, 180), (-90, 270), (270, 270)])
def test_rotation_metadata(tmp_path: Path, rotation: int, expected: int) -> None:
    video = probe(make_video(tmp_path / "rot.mp4", frames=2, rotation=rotation))["video"]
    assert video["rotation"] == expected
    assert (video["width"], video["height"]) == (160, 96)


def test_faststart_moves_the_index(tmp_path: Path) -> None:
    slow = make_video(tmp_path / "slow.mp4")
    fast = make_video(tmp_path / "fast.mp4", faststart=True)
    assert top_level_boxes(slow).index("mdat") < top_level_boxes(slow).index("moov")
    assert top_level_boxes(fast).index("moov") < top_level_boxes(fast).index("mdat")
    assert (is_faststart(slow), is_faststart(fast)) == (False, True)
    assert probe(fast)["faststart"] is True
    assert probe(make_video(tmp_path / "clip.mkv", codec="ffv1"))["faststart"] is None


def test_make_audio_only(tmp_path: Path) -> None:
    info = probe(make_audio_only(tmp_path / "tone.m4a", 0.5))
    sound = info["audio"]
    assert info["video"] is None
    assert (sound["codec"], sound["sample_rate"], sound["channels"]) == ("aac", 48000, 2)
    assert sound["duration"] == pytest.approx(0.5)


def test_truncated_without_faststart_cannot_be_opened(tmp_path: Path) -> None:
    src = make_video(tmp_path / "slow.mp4", frames=50)
    cut = truncate(src, tmp_path / "cut.mp4", 0.6)
    assert cut.stat().st_size == int(src.stat().st_size * 0.6)
    with pytest.raises(av.error.FFmpegError):
        probe(cut)


def test_truncated_with_faststart_decodes_fewer_frames(tmp_path: Path) -> None:
    src = make_video(tmp_path / "fast.mp4", frames=50, faststart=True, audio="aac")
    cut = truncate(src, tmp_path / "cut.mp4", 0.6)
    info = probe(cut)
    assert info["faststart"] is True
    assert 0 < info["video"]["frames"] < 50
    indices = [read_index(image) for image in read_frames(cut)]
    # B-frames: the frame whose packet was cut may be missing before later ones that survived.
    assert len(indices) == info["video"]["frames"]
    assert indices == sorted(set(indices))
    assert indices[0] == 0


@pytest.mark.parametrize("fraction", [0, 1, 1.5])
def test_truncate_fraction_is_checked(tmp_path: Path, fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        truncate(make_video(tmp_path / "a.mp4", frames=2), tmp_path / "b.mp4", fraction)


def test_corrupt_packets_mid_stream(tmp_path: Path) -> None:
    src = make_video(tmp_path / "clip.mp4", frames=50, faststart=True)
    bad = corrupt_packets(src, tmp_path / "bad.mp4")
    assert bad.stat().st_size == src.stat().st_size
    assert video_packets(bad) == video_packets(src)
    video = probe(bad)["video"]
    assert (video["frames"], video["decode_errors"]) == (47, 3)
    indices = [read_index(image) for image in read_frames(bad)]
    assert indices[:20] == list(range(20))


def test_corrupt_packets_keeping_headers_is_concealed(tmp_path: Path) -> None:
    src = make_video(tmp_path / "clip.mp4", frames=50, faststart=True)
    bad = corrupt_packets(src, tmp_path / "bad.mp4", packets=[1], keep=16)
    assert bad.read_bytes() != src.read_bytes()
    video = probe(bad)["video"]
    assert (video["frames"], video["decode_errors"]) == (50, 0)
