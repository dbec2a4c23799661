"""Augmentation maths: one draw per clip, torchvision-style jitter semantics, blur parity, flow flip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgekd.data.augment import (
    AugmentParams,
    ClipDraw,
    apply_photometric,
    draw_clip,
    flip_flow,
    gaussian_blur,
    gaussian_kernel,
    normalization_for,
)
from edgekd.data.flow import flow_from_uint8

CAMARENA = {"kind": "camarena", "params": AugmentParams()}


def textured_clip(t: int = 4, h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def jitter(order: tuple[int, ...], b: float = 1.0, c: float = 1.0, s: float = 1.0, h: float = 0.0) -> ClipDraw:
    return ClipDraw(0, 0, 0, False, (order, b, c, s, h))


def test_draw_is_a_function_of_the_seed() -> None:
    kw = {"n_frames": 50, "height": 40, "width": 50, "span": 16, "crop": (32, 32), "hflip": True, **CAMARENA}
    a = [draw_clip(np.random.default_rng([7, i, 1]), **kw) for i in range(20)]
    b = [draw_clip(np.random.default_rng([7, i, 1]), **kw) for i in range(20)]
    assert a == b
    assert len({(d.start, d.y, d.x) for d in a}) > 10


def test_draw_probabilities_and_ranges() -> None:
    rng = np.random.default_rng(0)
    draws = [draw_clip(rng, n_frames=30, height=40, width=40, span=16, crop=(32, 32), hflip=True, **CAMARENA)
             for _ in range(4000)]
    frac = lambda pred: sum(map(pred, draws)) / len(draws)
    assert abs(frac(lambda d: d.jitter is not None) - 0.8) < 0.03
    assert abs(frac(lambda d: d.grayscale) - 0.2) < 0.03
    assert abs(frac(lambda d: d.blur_sigma is not None) - 0.5) < 0.03
    assert abs(frac(lambda d: d.flip) - 0.5) < 0.03
    for d in draws:
        assert 0 <= d.start <= 30 - 16 and 0 <= d.y <= 8 and 0 <= d.x <= 8
        if d.jitter is not None:
            order, b, c, s, h = d.jitter
            assert sorted(order) == [0, 1, 2, 3]
            assert 0.6 <= b <= 1.4 and 0.6 <= c <= 1.4 and 0.6 <= s <= 1.4 and -0.1 <= h <= 0.1
        if d.blur_sigma is not None:
            assert 0.1 <= d.blur_sigma <= 2.0
    plain = draw_clip(np.random.default_rng(0), n_frames=30, height=40, width=40, span=16, crop=(32, 32),
                      hflip=False, kind="hu")
    assert not plain.flip and plain.jitter is None and not plain.grayscale and plain.blur_sigma is None


def test_same_parameters_on_every_frame() -> None:
    frame = textured_clip(1)[0]
    clip = np.stack([frame] * 5)
    rng = np.random.default_rng(3)
    for _ in range(30):
        d = draw_clip(rng, n_frames=5, height=20, width=24, span=5, crop=(20, 24), hflip=False, **CAMARENA)
        out = apply_photometric(clip, d)
        assert out.dtype == np.uint8 and out.shape == clip.shape
        assert all(np.array_equal(out[0], out[k]) for k in range(1, 5))


def test_brightness_contrast_saturation_formulas() -> None:
    clip = textured_clip()
    x = clip.astype(np.float32)
    np.testing.assert_array_equal(apply_photometric(clip, jitter((0,), b=1.3)),
                                  np.clip(np.rint(np.clip(x * np.float32(1.3), 0, 255)), 0, 255).astype(np.uint8))
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    m = gray.mean()
    expected = np.rint(np.clip((x - m) * np.float32(0.7) + m, 0, 255)).astype(np.uint8)
    assert np.abs(apply_photometric(clip, jitter((1,), c=0.7)).astype(int) - expected).max() <= 1
    # saturation 0 is grayscale; contrast 0 is a flat clip at the mean gray level
    desat = apply_photometric(clip, jitter((2,), s=0.0))
    assert np.array_equal(desat[..., 0], desat[..., 1]) and np.array_equal(desat[..., 1], desat[..., 2])
    flat = apply_photometric(clip, jitter((1,), c=0.0))
    assert np.ptp(flat) == 0 and abs(int(flat[0, 0, 0, 0]) - m) <= 1


def test_hue_keeps_gray_pixels_and_luma() -> None:
    clip = textured_clip()
    clip[:, :5] = 90  # gray pixels have no hue
    same = apply_photometric(clip, jitter((3,), h=0.0))
    assert np.abs(same.astype(int) - clip).max() <= 1
    out = apply_photometric(clip, jitter((3,), h=0.08))
    assert np.abs(out[:, :5].astype(int) - 90).max() <= 1
    assert not np.array_equal(out, clip)
    luma = lambda c: c.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    unclipped = (out > 0).all(-1) & (out < 255).all(-1)
    assert np.abs(luma(out) - luma(clip))[unclipped].max() < 1.5


def test_grayscale_equal_channels() -> None:
    out = apply_photometric(textured_clip(), ClipDraw(0, 0, 0, False, None, True, None))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    expected = np.rint(textured_clip().astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    assert np.abs(out[..., 0].astype(int) - expected).max() <= 1


@pytest.mark.parametrize("sigma", [0.1, 0.7, 2.0])
def test_blur_matches_opencv(sigma: float) -> None:
    clip = textured_clip(2, 30, 40).astype(np.float32)
    k = gaussian_kernel(sigma)
    assert abs(float(k.sum()) - 1) < 1e-6 and np.allclose(k, k[::-1])
    ours = gaussian_blur(clip, sigma)
    size = len(k)
    ref = np.stack([cv2.GaussianBlur(f, (size, size), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
                    for f in clip])
    np.testing.assert_allclose(ours, ref, atol=1e-3)
    flat = np.full((2, 10, 10, 3), 77.0, np.float32)
    np.testing.assert_allclose(gaussian_blur(flat, sigma), flat, atol=1e-4)


def test_flow_flip_negates_x_only() -> None:
    rng = np.random.default_rng(0)
    code = rng.integers(0, 256, (3, 6, 8, 2), dtype=np.uint8)
    flipped = flip_flow(code)
    np.testing.assert_array_equal(flipped[..., 1], code[:, :, ::-1, 1])
    np.testing.assert_allclose(flow_from_uint8(flipped[..., 0]), -flow_from_uint8(code[:, :, ::-1, 0]), atol=1e-5)
    np.testing.assert_array_equal(flip_flow(flipped), code)


def test_normalization_presets() -> None:
    hu = normalization_for("hu")
    x = 114.7748 / 255
    assert hu["rgb_mean"][0] == pytest.approx(x) and hu["rgb_std"][0] == pytest.approx(1 / 255)
    # (v / 255 - mean) / std == v - 255 * mean: plain mean subtraction in pixel units
    assert (200 / 255 - hu["rgb_mean"][0]) / hu["rgb_std"][0] == pytest.approx(200 - 114.7748)
    assert (0 / 255 - hu["flow_mean"][0]) / hu["flow_std"][0] == pytest.approx(-127.5)
    with pytest.raises(ValueError, match="augment kind"):
        draw_clip(np.random.default_rng(0), n_frames=8, height=8, width=8, span=4, crop=(8, 8), hflip=False,
                  kind="simclr")
