"""Effects on chosen classes: class choice, feathered alpha, each effect, backgrounds, alpha video."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from live_seg.base.errors import OutputError, SourceError
from live_seg.base.options import ModelOptions
from live_seg.media.formats import MP4, add_video_stream, read_bgra, video_format
from live_seg.render.backgrounds import (
    ColorBackground,
    PictureBackground,
    VideoBackground,
    checkerboard,
    cover,
    flatten,
    load_background,
    parse_color,
)
from live_seg.render.effects import (
    EFFECTS,
    ClassNameError,
    Effect,
    EffectOptions,
    blurred,
    choose_classes,
    pixelated,
    soft_alpha,
)
from live_seg.render.renderer import VOC_CLASSES, Renderer

PERSON = 15


def textured(h: int = 90, w: int = 160, seed: int = 0) -> np.ndarray:
    """A sharp BGR test frame: random blocks plus fine noise."""
    rng = np.random.default_rng(seed)
    blocks = cv2.resize(
        rng.integers(0, 256, (h // 6, w // 6, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
    )
    noise = rng.integers(-30, 31, (h, w, 3))
    return np.clip(blocks.astype(int) + noise, 0, 255).astype(np.uint8)


def box_mask(size: int = 64, cls: int = PERSON) -> np.ndarray:
    """A mask-size map: ``cls`` in a centred box, background elsewhere."""
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = cls
    return mask


def sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


# --- choosing classes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "invert", "expected"),
    [
        (None, False, [i for i in range(21) if i]),
        ("", False, list(range(1, 21))),
        ("person", False, [PERSON]),
        ("Person, car", False, [7, PERSON]),
        (["background"], False, [0]),
        ("__background__", False, [0]),
        ("person", True, [i for i in range(21) if i != PERSON]),
        (None, True, [0]),
        ("all", False, list(range(21))),
    ],
)
def test_choose_classes(names, invert, expected):
    chosen = choose_classes(names, VOC_CLASSES, invert=invert)
    assert chosen.shape == (21,)
    assert np.flatnonzero(chosen).tolist() == expected


def test_unknown_class_lists_valid_names():
    with pytest.raises(ClassNameError) as info:
        choose_classes("persn", VOC_CLASSES)
    message = str(info.value)
    assert "persn" in message and "background, aeroplane" in message and "\n" not in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("model", "classes", "expected"),
    [("fcn_resnet101", "person", {PERSON}), ("selfie", "person", {1}), ("selfie_landscape", "background", {0})],
)
def test_a_job_chooses_classes_by_its_models_own_names_before_it_loads(model, classes, expected):
    """``person`` is id 15 for VOC's models and id 1 for the selfie model (not VOC's 15, which chose nothing)."""
    options = EffectOptions("highlight", classes=classes)
    with options.build_before_model(None, ModelOptions(model=model)) as fx:
        assert fx.chosen_ids() == expected


def test_a_class_the_model_lacks_is_refused_before_it_loads():
    with pytest.raises(ClassNameError, match="valid names: background, person"):
        EffectOptions("blur", classes="cat").build_before_model(None, ModelOptions(model="selfie"))


# --- alpha --------------------------------------------------------------------------------------


def test_alpha_none_all_and_hard():
    chosen = np.zeros((32, 32), np.uint8)
    assert soft_alpha(chosen, 72, 128, 4).coverage == "none"
    alpha = soft_alpha(np.ones_like(chosen), 72, 128, 4)
    assert alpha.coverage == "all" and alpha.values.min() == 255
    chosen[8:24, 8:24] = 1
    hard = soft_alpha(chosen, 72, 128, 0)
    assert hard.hard and set(np.unique(hard.values)) == {0, 255}
    expected = cv2.resize(chosen, (128, 72), interpolation=cv2.INTER_NEAREST) * 255
    assert np.array_equal(hard.values, expected)


def test_feathered_alpha_ramps_and_stays_in_its_box():
    chosen = np.zeros((64, 64), np.uint8)
    chosen[20:40, 20:40] = 1
    alpha = soft_alpha(chosen, 360, 640, feather=12)
    assert alpha.coverage == "some" and not alpha.hard
    values = alpha.values
    assert values[180, 320] == 255  # inside
    assert values[0, 0] == 0
    row = values[180].astype(int)
    ramp = np.flatnonzero((row > 0) & (row < 255))
    assert len(ramp) >= 12  # a soft edge, not a step
    assert np.all(np.diff(row[:320]) >= 0)  # monotonic towards the inside
    y0, y1, x0, x1 = alpha.roi
    outside = values.copy()
    outside[y0:y1, x0:x1] = 0
    assert outside.max() == 0


# --- effects ------------------------------------------------------------------------------------


def test_overlay_matches_renderer_on_chosen_pixels_and_leaves_background():
    frame = textured(180, 320)
    mask = box_mask(64)
    mask[:8, :8] = 7
    renderer = Renderer()
    today = renderer.render(frame, mask).copy()
    out = Effect("overlay", palette=renderer.lut).apply(frame, mask)
    background = cv2.resize(mask, (320, 180), interpolation=cv2.INTER_NEAREST) == 0
    assert np.array_equal(out[~background], today[~background])
    assert np.array_equal(out[background], frame[background])


def test_blur_hides_detail_only_where_chosen():
    frame = textured(180, 320)
    out = Effect("blur").apply(frame, np.full((64, 64), PERSON, np.uint8))
    assert sharpness(out) <= 0.35 * sharpness(frame)
    out = Effect("blur").apply(frame, np.zeros((64, 64), np.uint8))
    assert np.array_equal(out, frame)
    out = Effect("blur", feather=0).apply(frame, box_mask(64))
    assert np.array_equal(out[:40], frame[:40])
    assert sharpness(out[60:120, 100:220]) < 0.35 * sharpness(frame[60:120, 100:220])


def test_blurred_box_equals_blurred_frame_inside():
    frame = textured(120, 200)
    whole = blurred(frame, (0, 120, 0, 200), 6)
    part = blurred(frame, (40, 80, 60, 140), 6)
    assert np.abs(whole[40:80, 60:140].astype(int) - part.astype(int)).max() <= 12


def test_pixelate_blocks_on_the_frame_grid():
    frame = textured(96, 128)
    out = pixelated(frame, (13, 61, 21, 99), 8)
    grid = pixelated(frame, (0, 96, 0, 128), 8)
    assert np.array_equal(out[3:11, 3:11], grid[16:24, 24:32])  # same blocks as the whole frame's
    assert len(np.unique(grid[16:24, 24:32].reshape(-1, 3), axis=0)) == 1


def test_replace_with_colour_and_invert():
    frame = textured()
    person = np.full((64, 64), PERSON, np.uint8)
    green = Effect("replace", background="#00ff00").apply(frame, person)
    assert np.all(green == np.array([0, 255, 0], np.uint8))
    inverted = Effect("replace", choose_classes("person", VOC_CLASSES, invert=True), background="#00ff00")
    assert np.array_equal(inverted.apply(frame, person), frame)


def test_cutout_alpha_and_highlight():
    frame = textured(180, 320)
    cut = Effect("cutout", feather=0).apply(frame, box_mask(64))
    assert cut.shape == (180, 320, 4)
    assert np.array_equal(cut[..., :3], frame)
    assert cut[90, 160, 3] == 255 and cut[5, 5, 3] == 0
    assert set(np.unique(cut[..., 3])) == {0, 255}
    flat = flatten(cut)
    assert flat.shape == (180, 320, 3)
    board = checkerboard(180, 320)
    assert np.array_equal(flat[90, 160], frame[90, 160]) and np.array_equal(flat[5, 5], board[5, 5])
    assert checkerboard(180, 320) is board and not board.flags.writeable  # made once, shared read-only
    high = Effect("highlight", feather=0).apply(frame, box_mask(64))
    assert np.array_equal(high[90, 160], frame[90, 160])
    b, g, r = high[5, 5]
    assert b == g == r


@pytest.mark.parametrize("name", EFFECTS)
def test_every_effect_keeps_shape_and_leaves_unchosen_pixels(name):
    frame = textured(180, 320)
    effect = Effect(name, feather=0)
    out = effect.apply(frame, box_mask(64)).copy()
    assert out.shape[:2] == frame.shape[:2] and out.dtype == np.uint8
    assert out.shape[2] == (4 if effect.alpha_output else 3)
    if name != "highlight":
        assert np.array_equal(out[:20, :, :3], frame[:20])
    effect.close()


def test_cycle_goes_through_every_effect():
    effect = Effect()
    seen = [effect.cycle() for _ in EFFECTS]
    assert seen[-1] == "overlay" and sorted(seen) == sorted(EFFECTS)


@pytest.mark.parametrize("kwargs", [{"name": "glow"}, {"blur": -1}, {"block": 0}, {"feather": -2}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        Effect(**kwargs)


# --- backgrounds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bgr"),
    [("#00ff00", (0, 255, 0)), ("#f00", (0, 0, 255)), ("white", (255, 255, 255)), ("rgb(1,2,3)", (3, 2, 1))],
)
def test_parse_color(text, bgr):
    assert parse_color(text) == bgr


def test_cover_keeps_aspect_and_fills():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, :50] = 255
    out = cover(image, 50, 200)
    assert out.shape == (50, 200, 3)
    assert out[:, :90].min() == 255 and out[:, 110:].max() == 0


def test_load_background_kinds(tmp_path):
    assert isinstance(load_background("green"), ColorBackground)
    picture = tmp_path / "bg.png"
    cv2.imwrite(str(picture), textured(40, 60))
    assert isinstance(load_background(str(picture)), PictureBackground)
    clip = tmp_path / "bg.mp4"
    write_clip(clip, 3)
    video = load_background(str(clip))
    assert isinstance(video, VideoBackground)
    frames = [video.frame(30, 80).copy() for _ in range(7)]
    assert frames[0].shape == (30, 80, 3) and video.loops == 2
    assert np.abs(frames[0].astype(int) - frames[3].astype(int)).mean() < 2  # looped back to frame 0
    video.close()


@pytest.mark.parametrize("spec", ["no-such-colour", "missing.png"])
def test_bad_background_is_one_line(spec, tmp_path):
    with pytest.raises(SourceError) as info:
        load_background(spec)
    assert "\n" not in str(info.value)


def test_unreadable_background_file(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(SourceError, match="picture or a video"):
        Effect("replace", background=str(junk))


def write_clip(path, frames: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = np.full((48, 64, 3), 40 * i + 20, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode(None))


# --- alpha video --------------------------------------------------------------------------------


def test_mp4_cannot_hold_alpha():
    assert video_format("out.mp4") is MP4
    with pytest.raises(OutputError, match=r"\.webm .*\.mov"):
        video_format("clips/out.mp4", alpha=True)


@pytest.mark.parametrize(("ext", "size"), [(".webm", (64, 48)), (".mov", (63, 47))])
def test_alpha_survives_encoding(tmp_path, ext, size):
    path = tmp_path / f"cut{ext}"
    fmt = video_format(path, alpha=True)
    w, h = size
    image = np.zeros((h, w, 4), np.uint8)
    image[..., 2] = 200
    image[:, : w // 2 - 1, 3] = 255
    with av.open(str(path), "w", format=fmt.container) as container:
        stream = add_video_stream(container, fmt, w, h, Fraction(25))
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format=fmt.input_format)))
        container.mux(stream.encode(None))
    frames = list(read_bgra(path))
    assert len(frames) == 3
    alpha = frames[-1][..., 3]
    assert alpha[:, : w // 2 - 6].min() == 255 and alpha[:, w // 2 + 4 :].max() == 0


def test_overlay_on_all_classes_is_the_old_blend_exactly():
    frame = textured(90, 160)
    mask = np.random.default_rng(1).integers(0, 21, (64, 64), dtype=np.uint8)
    renderer = Renderer()
    old = renderer.render(frame, mask).copy()
    effect = Effect("overlay", choose_classes("all", VOC_CLASSES), palette=renderer.lut)
    assert np.array_equal(effect.apply(frame, mask), old)
