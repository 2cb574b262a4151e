from __future__ import annotations

import numpy as np
import pytest

from live_seg.render.renderer import (
    VOC_CLASSES,
    Renderer,
    blend,
    class_shares,
    colorize,
    frame_colors,
    lookup_table,
    make_palette,
    overlay,
    resize_mask,
    voc_palette,
)


@pytest.mark.parametrize(
    ("cid", "rgb"),
    [(0, (0, 0, 0)), (1, (128, 0, 0)), (2, (0, 128, 0)), (3, (128, 128, 0)), (8, (64, 0, 0)),
     (12, (64, 0, 128)), (15, (192, 128, 128)), (20, (0, 64, 128))],
)  # fmt: skip
def test_voc_palette_standard_colours(cid, rgb):
    assert tuple(voc_palette()[cid]) == rgb


def test_palettes_are_bgr_and_random_is_seeded():
    voc = make_palette("voc")
    assert voc.shape == (21, 3) and voc.dtype == np.uint8
    assert tuple(voc[15]) == (128, 128, 192)  # person, BGR
    a, b = make_palette("random"), make_palette("random")
    assert np.array_equal(a, b) and not np.array_equal(a, voc)
    with pytest.raises(ValueError, match="palette"):
        make_palette("rainbow")


def _known_mask(h=512, w=512):
    mask = np.zeros((h, w), np.uint8)
    mask[: h // 2, : w // 2] = 15
    mask[h // 2 :, w // 2 :] = 8
    mask[: h // 4, w // 2 :] = 12
    return mask


def test_rendered_frame_is_the_60_40_blend_of_frame_and_palette():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    mask = _known_mask()  # 512x512, model resolution
    out = Renderer(VOC_CLASSES).render(frame, mask)
    # The mask is resized to the frame with nearest neighbour: quadrants keep their class.
    full = resize_mask(mask, 240, 320)
    assert full[0, 0] == 15 and full[-1, -1] == 8 and full[0, -1] == 12 and full[-1, 0] == 0
    colour = make_palette("voc")[full]
    expected = np.clip(np.rint(frame * 0.6 + colour.astype(np.float64) * 0.4), 0, 255)
    diff = np.abs(out.astype(int) - expected.astype(int))
    assert diff.max() <= 1  # rounding of .5 cases only
    assert (diff == 0).mean() > 0.99


def test_overlay_and_blend_agree_and_alpha_bounds():
    frame = np.full((8, 8, 3), 100, np.uint8)
    mask = np.full((4, 4), 15, np.uint8)
    lut = make_palette("voc")
    out = overlay(frame, mask, lut, alpha=0.4)
    assert tuple(out[0, 0]) == (
        round(100 * 0.6 + 128 * 0.4),
        round(100 * 0.6 + 128 * 0.4),
        round(100 * 0.6 + 192 * 0.4),
    )
    assert np.array_equal(blend(frame, colorize(resize_mask(mask, 8, 8), lut), 0.0), frame)
    with pytest.raises(ValueError, match="alpha"):
        Renderer(alpha=1.5)


@pytest.mark.parametrize(
    ("mask_shape", "frame_shape"), [((64, 64), (90, 160)), ((512, 512), (97, 161)), ((30, 40), (30, 40))]
)
def test_frame_colors_equal_colouring_the_resized_mask(mask_shape, frame_shape):
    """Colouring at the smaller of the two sizes is the same picture as colouring the resized mask,
    and ids past the palette take its last colour, as colorize clips them."""
    mask = np.random.default_rng(2).integers(0, 30, mask_shape, dtype=np.uint8)  # ids 21..29: none in VOC
    lut = make_palette("voc")
    h, w = frame_shape
    expected = colorize(resize_mask(mask, h, w), lut)
    assert np.array_equal(frame_colors(mask, lookup_table(lut), h, w), expected)
    out = np.empty((h, w, 3), np.uint8)
    assert frame_colors(mask, lookup_table(lut), h, w, out=out) is out and np.array_equal(out, expected)


@pytest.mark.parametrize("mode", ["overlay", "mask", "side"])
def test_renderer_modes_shapes(mode):
    frame = np.zeros((90, 160, 3), np.uint8)
    out = Renderer(mode=mode, legend=True).render(frame, _known_mask(64, 64))
    assert out.dtype == np.uint8
    assert out.shape == ((90, 320, 3) if mode == "side" else (90, 160, 3))


def test_mask_mode_is_pure_palette_and_legend_draws():
    frame = np.zeros((200, 300, 3), np.uint8)
    mask = _known_mask(200, 300)
    plain = Renderer(mode="mask").render(frame, mask).copy()
    assert np.array_equal(plain, make_palette("voc")[mask])
    with_legend = Renderer(mode="mask", legend=True).render(frame, mask)
    assert not np.array_equal(plain, with_legend)  # legend box in the top-right corner
    assert np.array_equal(plain[150:, :100], with_legend[150:, :100])


def test_class_shares():
    mask = _known_mask(100, 100)
    shares = dict(class_shares(mask))
    assert shares == {15: 0.25, 8: 0.25, 12: 0.125, 0: 0.375}


@pytest.mark.parametrize(
    ("bad", "message"),
    [(np.zeros((4, 4), np.uint8), r"\(H, W, 3\)"), (np.zeros((4, 4, 3), np.float32), "uint8"), ([1, 2], "numpy")],
)
def test_overlay_rejects_bad_frames(bad, message):
    with pytest.raises(ValueError, match=message):
        overlay(bad, np.zeros((4, 4), np.uint8), make_palette())
