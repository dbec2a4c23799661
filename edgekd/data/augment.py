"""The papers' training augmentations, in numpy, with one parameter draw per clip.

Every random choice of a training sample (temporal start, crop box, flip, colour jitter factors and
their order, grayscale, blur sigma) is drawn once into a ``ClipDraw`` and applied to all frames of the
clip: a per-frame draw would make colour and position flicker, which a 3D CNN reads as motion. The
draw comes from one ``numpy.random.Generator``, so a sample is a pure function of its generator's
seed; that is what makes teacher outputs cacheable per ``(video, variant)``.

Presets (``data.augment``):

* ``none``: random crop and optional horizontal flip (``data.hflip``).
* ``camarena`` (Camarena et al. 2024, Table 1 / Sec. 4): frames cached at 128x171 (``data.resize``),
  random crop 112, colour jitter with p=0.8 (brightness, contrast, saturation 0.4, hue 0.1, in a
  random order as torchvision's ``ColorJitter``), grayscale with p=0.2, Gaussian blur with p=0.5 and
  sigma uniform in [0.1, 2].
* ``hu`` (Hu et al. 2023, Sec. 4.2): frames cached at 256x256, random crop 112, horizontal flip that
  also negates the x-component of optical flow, mean subtraction (ActivityNet mean for RGB, 127.5
  for flow; see ``normalization_for``).

This runs inside forked DataLoader workers, so it is numpy only: OpenCV there can deadlock (see
DEVELOPERS.md). Hue is rotated in YIQ space (a 3x3 matrix), a close linear stand-in for
torchvision's HSV hue shift that avoids a per-pixel HSV round trip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgekd.recipe import AUGMENT_KINDS, AugmentParams

__all__ = [
    "ACTIVITYNET_MEAN",
    "AUGMENT_KINDS",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "AugmentParams",
    "ClipDraw",
    "apply_photometric",
    "draw_clip",
    "flip_flow",
    "gaussian_blur",
    "normalization_for",
]

KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)
# ActivityNet RGB mean in 0..255 (Hara et al.'s 3D-ResNets, which Hu et al. follow).
ACTIVITYNET_MEAN: tuple[float, float, float] = (114.7748, 107.7354, 99.4750)
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float64)
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


@dataclass(frozen=True)
class ClipDraw:
    """All random choices for one training clip."""

    start: int
    y: int
    x: int
    flip: bool
    jitter: tuple[tuple[int, ...], float, float, float, float] | None = None  # order, b, c, s, h
    grayscale: bool = False
    blur_sigma: float | None = None


def draw_clip(rng: np.random.Generator, *, n_frames: int, height: int, width: int, span: int,
              crop: tuple[int, int], hflip: bool, kind: str = "none", params: AugmentParams | None = None) -> ClipDraw:
    """Draw every random parameter of one clip, in a fixed order (start, y, x, flip, photometric).
    Only the ``camarena`` preset draws photometric changes (with ``params``, Camarena's values by
    default); ``none`` and ``hu`` stop after the flip."""
    if kind not in AUGMENT_KINDS:
        raise ValueError(f"augment kind must be one of {AUGMENT_KINDS}, got {kind!r}")
    params = params or AugmentParams()
    ch, cw = crop
    start = int(rng.integers(0, max(0, n_frames - span) + 1))
    y = int(rng.integers(0, height - ch + 1))
    x = int(rng.integers(0, width - cw + 1))
    flip = bool(hflip and rng.random() < 0.5)
    if kind != "camarena":
        return ClipDraw(start, y, x, flip)
    jitter = None
    if rng.random() < params.jitter_p:
        order = tuple(int(k) for k in rng.permutation(4))
        b = float(rng.uniform(max(0.0, 1 - params.brightness), 1 + params.brightness))
        c = float(rng.uniform(max(0.0, 1 - params.contrast), 1 + params.contrast))
        s = float(rng.uniform(max(0.0, 1 - params.saturation), 1 + params.saturation))
        h = float(rng.uniform(-params.hue, params.hue))
        jitter = (order, b, c, s, h)
    gray = bool(rng.random() < params.grayscale_p)
    sigma = float(rng.uniform(*params.blur_sigma)) if rng.random() < params.blur_p else None
    return ClipDraw(start, y, x, flip, jitter, gray, sigma)


def apply_photometric(clip: np.ndarray, draw: ClipDraw) -> np.ndarray:
    """Colour jitter, grayscale and blur of ``draw`` on a ``(T, H, W, 3)`` uint8 clip (uint8 out).

    Each jitter step clamps to [0, 255] like torchvision's. Contrast blends with the mean gray level
    of the whole clip (torchvision uses each image's own mean; per-frame means would flicker).
    """
    if draw.jitter is None and not draw.grayscale and draw.blur_sigma is None:
        return clip
    x = clip.astype(np.float32)
    if draw.jitter is not None:
        order, b, c, s, h = draw.jitter
        for k in order:
            if k == 0:
                x *= np.float32(b)
            elif k == 1:
                m = np.float32(_gray(x).mean())
                x = (x - m) * np.float32(c) + m
            elif k == 2:
                g = _gray(x)[..., None]
                x = g + (x - g) * np.float32(s)
            else:
                x = x @ _hue_matrix(h).T
            np.clip(x, 0, 255, out=x)
    if draw.grayscale:
        x = np.repeat(_gray(x)[..., None], 3, axis=-1)
    if draw.blur_sigma is not None:
        x = gaussian_blur(x, draw.blur_sigma)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _gray(x: np.ndarray) -> np.ndarray:
    return x @ _GRAY


def _hue_matrix(h: float) -> np.ndarray:
    """RGB -> RGB matrix rotating chroma (I, Q) by ``h`` turns; luma is unchanged."""
    a = 2 * math.pi * h
    rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    return (_YIQ2RGB @ rot @ _RGB2YIQ).astype(np.float32)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps over radius ``ceil(3 sigma)`` (at least 1)."""
    r = max(1, math.ceil(3 * sigma))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over H and W of a ``(T, H, W, C)`` float32 array (reflect borders).

    The kernel is symmetric, so each pair of taps ``r - j``, ``r + j`` is added before one multiply,
    into preallocated buffers: this is the most expensive augmentation, run in every worker.
    """
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    for axis in (1, 2):
        n = x.shape[axis]
        if n <= r:  # reflect padding needs more pixels than the radius
            continue
        pad = [(0, 0)] * x.ndim
        pad[axis] = (r, r)
        p = np.pad(x, pad, mode="reflect")

        def window(j: int, p: np.ndarray = p, axis: int = axis, n: int = n) -> np.ndarray:
            index = [slice(None)] * p.ndim
            index[axis] = slice(j, j + n)  # a view shifted by j along ``axis``
            return p[tuple(index)]

        out = np.multiply(window(r), k[r], dtype=np.float32)
        pair = np.empty_like(out)
        for j in range(r):
            np.add(window(j), window(2 * r - j), out=pair)
            pair *= k[j]
            out += pair
        x = out
    return x


def flip_flow(flow: np.ndarray) -> np.ndarray:
    """Mirror a ``(T, H, W, 2)`` uint8 flow clip left-right; the x-component changes sign.

    In the [-20, 20] -> [0, 255] code, negation is ``255 - u`` exactly (the map is symmetric).
    """
    out = np.ascontiguousarray(flow[:, :, ::-1])
    out[..., 0] = 255 - out[..., 0]
    return out


def normalization_for(kind: str) -> dict[str, tuple[float, ...]]:
    """Per-channel ``mean``/``std`` (in 0..1 units, for ``(x / 255 - mean) / std``) of each preset.

    ``hu`` is plain mean subtraction in pixel units: std ``1/255`` turns the formula into
    ``x - 255 * mean``. Flow: Hu subtracts 127.5; the other presets map flow to [-1, 1].
    """
    if kind == "hu":
        return {"rgb_mean": tuple(m / 255 for m in ACTIVITYNET_MEAN), "rgb_std": (1 / 255,) * 3,
                "flow_mean": (0.5, 0.5), "flow_std": (1 / 255,) * 2}
    return {"rgb_mean": KINETICS_MEAN, "rgb_std": KINETICS_STD, "flow_mean": (0.5, 0.5), "flow_std": (0.5, 0.5)}
