"""Pretext transforms for self-supervised pretraining (Camarena et al. Sec. 3.2.1, after Tao et al.'s PCL).

The network is shown a clip and must say which of these transforms was applied. The class set is
the paper's five transform types; the label is the position of the type in the configured list
(``pretrain.transforms``), by default:

====  ============================  ==============================================================
 0    ``none``                      the clip unchanged
 1    ``rotation``                  every frame rotated by 90, 180 or 270 degrees (uniform; one
                                    class for the three angles, as the paper's "randomly rotates
                                    a video clip between 90 and 270 degrees"); needs H == W
 2    ``spatial_permutation``       the frame cut into 2x2 equal quadrants (TL, TR, BL, BR), put
                                    back in a uniformly drawn non-identity order (23 choices); the
                                    same order for every frame; needs even H and W
 3    ``temporal_adjacent_swap``    the clip cut into 4 segments of ``T // 4`` frames; segments
                                    ``i`` and ``i + 1`` swapped, ``i`` uniform in {0, 1, 2}
 4    ``temporal_segment_replace``  the same 4 segments; segment 2 replaced by a copy of segment
                                    4 (1-based, as in the paper), so the clip shows 1, 4, 3, 4
====  ============================  ==============================================================

When ``T`` is not a multiple of 4 the last ``T % 4`` frames are never moved. Every transform is an
index permutation or copy of pixels, so it commutes with per-channel normalisation and can be
applied to normalised tensors. Tensors are ``(C, T, H, W)`` (any leading dims allowed).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from edgekd.recipe import PRETEXT_TRANSFORMS

SEGMENTS = 4
_QUADRANT_PERMS = [p for p in itertools.permutations(range(4)) if p != (0, 1, 2, 3)]


def rotate(x: torch.Tensor, quarter_turns: int) -> torch.Tensor:
    """Rotate every frame by ``90 * quarter_turns`` degrees (counter-clockwise, ``torch.rot90``)."""
    if x.shape[-1] != x.shape[-2] and quarter_turns % 2:
        raise ValueError(f"rotation by 90/270 degrees needs square frames, got H x W = {x.shape[-2]} x {x.shape[-1]}")
    return torch.rot90(x, quarter_turns, dims=(-2, -1))


def quadrants(x: torch.Tensor) -> list[torch.Tensor]:
    """The 2x2 quadrants of each frame in the order top-left, top-right, bottom-left, bottom-right."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"quadrant permutation needs even H and W, got {h} x {w}")
    hh, hw = h // 2, w // 2
    return [x[..., :hh, :hw], x[..., :hh, hw:], x[..., hh:, :hw], x[..., hh:, hw:]]


def permute_quadrants(x: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    """Quadrant position ``i`` of the output holds input quadrant ``order[i]``."""
    if sorted(order) != [0, 1, 2, 3]:
        raise ValueError(f"order must be a permutation of 0..3, got {order}")
    q = quadrants(x)
    top = torch.cat([q[order[0]], q[order[1]]], dim=-1)
    bottom = torch.cat([q[order[2]], q[order[3]]], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def segment_bounds(num_frames: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of the 4 equal temporal segments (``T // 4`` frames each)."""
    seg = num_frames // SEGMENTS
    if seg < 1:
        raise ValueError(f"temporal transforms need at least {SEGMENTS} frames, got {num_frames}")
    return [(k * seg, (k + 1) * seg) for k in range(SEGMENTS)]


def _time_index(num_frames: int, order: list[int]) -> torch.Tensor:
    """Frame index list that lays segments out in ``order`` (frames after the 4th segment stay)."""
    bounds = segment_bounds(num_frames)
    idx = [i for k in order for i in range(*bounds[k])]
    idx += list(range(bounds[-1][1], num_frames))
    return torch.tensor(idx, dtype=torch.long)


def swap_adjacent_segments(x: torch.Tensor, first: int) -> torch.Tensor:
    """Swap temporal segments ``first`` and ``first + 1`` (0-based, ``first`` in {0, 1, 2})."""
    if first not in range(SEGMENTS - 1):
        raise ValueError(f"first segment must be in 0..{SEGMENTS - 2}, got {first}")
    order = list(range(SEGMENTS))
    order[first], order[first + 1] = order[first + 1], order[first]
    return x.index_select(-3, _time_index(x.shape[-3], order))


def replace_segment(x: torch.Tensor) -> torch.Tensor:
    """Segment 2 replaced by segment 4 (1-based): segments laid out 1, 4, 3, 4."""
    return x.index_select(-3, _time_index(x.shape[-3], [0, 3, 2, 3]))


@dataclass(frozen=True)
class PretextDraw:
    """One sampled transform: its class label and the parameter drawn within the class."""

    label: int
    name: str
    param: int | tuple[int, ...] | None = None


def sample_pretext(rng: np.random.Generator, transforms: tuple[str, ...] = PRETEXT_TRANSFORMS) -> PretextDraw:
    """Draw a class uniformly from ``transforms``, then its parameter uniformly (see the module table)."""
    label = int(rng.integers(len(transforms)))
    name = transforms[label]
    if name == "rotation":
        return PretextDraw(label, name, int(rng.integers(1, 4)))
    if name == "spatial_permutation":
        return PretextDraw(label, name, _QUADRANT_PERMS[int(rng.integers(len(_QUADRANT_PERMS)))])
    if name == "temporal_adjacent_swap":
        return PretextDraw(label, name, int(rng.integers(SEGMENTS - 1)))
    if name in ("none", "temporal_segment_replace"):
        return PretextDraw(label, name)
    raise ValueError(f"unknown pretext transform {name!r} (known: {', '.join(PRETEXT_TRANSFORMS)})")


def apply_pretext(x: torch.Tensor, draw: PretextDraw) -> torch.Tensor:
    """Apply a drawn transform to a ``(..., C, T, H, W)`` clip."""
    if draw.name == "none":
        return x
    if draw.name == "rotation":
        assert isinstance(draw.param, int)
        return rotate(x, draw.param)
    if draw.name == "spatial_permutation":
        assert isinstance(draw.param, tuple)
        return permute_quadrants(x, draw.param)
    if draw.name == "temporal_adjacent_swap":
        assert isinstance(draw.param, int)
        return swap_adjacent_segments(x, draw.param)
    if draw.name == "temporal_segment_replace":
        return replace_segment(x)
    raise ValueError(f"unknown pretext transform {draw.name!r} (known: {', '.join(PRETEXT_TRANSFORMS)})")
