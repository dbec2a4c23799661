"""Built-in synthetic human-action videos, so the whole toolchain runs without a download.

Stick-figure people perform ten actions in front of textured backgrounds. The generator is built
to be a *fair* small benchmark rather than a toy:

* Appearance is randomised (size, position, facing, limb proportions, thickness, colours,
  background, pixel noise, camera shake), so a classifier has to look at the pose and its motion.
* ``sit_down`` and ``stand_up`` are the same pose trajectory played in opposite directions, so no
  single frame tells them apart: a model that ignores time cannot beat chance on that pair.
* Like UCF101, clips come in groups (``gGG``) that share an "actor + scene" (limb proportions,
  colours, background). A group's actor appears in every class, so the scene is never a class cue,
  and the official-style split keeps whole groups out of training: test measures generalisation to
  unseen actors and scenes, not memorised backgrounds.
* Everything is seeded per video from ``(seed, action, group, clip)``, so a run is reproducible
  and generating a subset of classes yields exactly the same videos for the classes kept.

The output is a real UCF101-style tree (MJPG ``.avi`` files plus ``classInd.txt``,
``trainlist01.txt`` and ``testlist01.txt``), which exercises the same decode and split code as
the real dataset.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import cv2
import numpy as np
from tqdm import tqdm

from edgekd import __version__
from edgekd.utils.atomic import atomic_path, write_json, write_text

__all__ = [
    "ACTIONS",
    "JOINTS",
    "Actor",
    "Clip",
    "Proportions",
    "SynthResult",
    "VideoParams",
    "generate_dataset",
    "generate_unlabeled",
    "pose_trajectory",
    "render_video",
    "sample_actor",
    "sample_params",
    "write_video",
]

ACTIONS: tuple[str, ...] = (
    "walk",
    "run",
    "jump",
    "wave_one_arm",
    "wave_two_arms",
    "bend",
    "jumping_jack",
    "squat",
    "sit_down",
    "stand_up",
)

JOINTS: tuple[str, ...] = (
    "head",
    "neck",
    "pelvis",
    "l_shoulder",
    "l_elbow",
    "l_hand",
    "r_shoulder",
    "r_elbow",
    "r_hand",
    "l_hip",
    "l_knee",
    "l_ankle",
    "l_toe",
    "r_hip",
    "r_knee",
    "r_ankle",
    "r_toe",
)
_J = {name: i for i, name in enumerate(JOINTS)}

# (from joint, to joint, colour slot): slot 0 = torso/head colour, 1 = left limbs, 2 = right limbs.
_SEGMENTS: tuple[tuple[int, int, int], ...] = (
    (_J["neck"], _J["pelvis"], 0),
    (_J["l_shoulder"], _J["r_shoulder"], 0),
    (_J["l_hip"], _J["r_hip"], 0),
    (_J["l_shoulder"], _J["l_elbow"], 1),
    (_J["l_elbow"], _J["l_hand"], 1),
    (_J["r_shoulder"], _J["r_elbow"], 2),
    (_J["r_elbow"], _J["r_hand"], 2),
    (_J["l_hip"], _J["l_knee"], 1),
    (_J["l_knee"], _J["l_ankle"], 1),
    (_J["l_ankle"], _J["l_toe"], 1),
    (_J["r_hip"], _J["r_knee"], 2),
    (_J["r_knee"], _J["r_ankle"], 2),
    (_J["r_ankle"], _J["r_toe"], 2),
)

_BACKGROUNDS: tuple[str, ...] = ("blobs", "gradient", "stripes", "room")
_SHIFT = 4  # fixed-point bits for cv2 drawing: sub-pixel positions keep slow motion smooth
_FIX = float(1 << _SHIFT)
_MAX_SCREEN_TRAVEL = 0.35  # walkers cover at most this fraction of the width; the camera pans for the rest
_FIT = 0.92  # the whole motion must fit in this fraction of the frame


@dataclass(frozen=True)
class _Spec:
    """How one action is filmed: view angle range (|yaw| in degrees, 90 = side view), tempo range (Hz),
    how the figure is anchored to the ground, and whether it travels or needs a chair."""

    yaw: tuple[float, float]
    freq: tuple[float, float]
    anchor: str = "feet"
    travel: bool = False
    chair: bool = False


_SPECS: dict[str, _Spec] = {
    "walk": _Spec(yaw=(60, 90), freq=(0.75, 1.1), anchor="pelvis", travel=True),
    "run": _Spec(yaw=(60, 90), freq=(1.3, 1.9), anchor="pelvis", travel=True),
    "jump": _Spec(yaw=(35, 90), freq=(0.7, 1.05)),
    "wave_one_arm": _Spec(yaw=(0, 35), freq=(1.2, 2.2)),
    "wave_two_arms": _Spec(yaw=(0, 35), freq=(0.8, 1.6)),
    "bend": _Spec(yaw=(50, 90), freq=(0.35, 0.65)),
    "jumping_jack": _Spec(yaw=(0, 30), freq=(0.9, 1.4)),
    "squat": _Spec(yaw=(45, 90), freq=(0.4, 0.7)),
    "sit_down": _Spec(yaw=(55, 90), freq=(1.0, 1.0), chair=True),
}
_SPECS["stand_up"] = _SPECS["sit_down"]  # identical filming, so only the direction of time differs


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proportions:
    """Segment lengths in body units, normalised so the standing height (ankle to crown) is 1."""

    thigh: float
    shin: float
    torso: float
    upper_arm: float
    forearm: float
    head_r: float
    neck: float
    shoulder: float  # half width
    hip: float  # half width
    foot: float

    @property
    def leg(self) -> float:
        """Hip-to-ankle length, which sets stride length."""
        return self.thigh + self.shin


@dataclass(frozen=True)
class Actor:
    """What a UCF101-style group shares: one person (proportions, colours) in one scene."""

    proportions: Proportions
    colours: tuple[tuple[int, int, int], ...]  # BGR: torso/head, left limbs, right limbs
    chair_colour: tuple[int, int, int]
    background: str
    bg_colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    bg_seed: int


@dataclass(frozen=True)
class Clip:
    """What varies between clips of one group. ``*_u`` values are uniforms in [0, 1) that are
    mapped onto per-action ranges later, so every action consumes the same random draws."""

    height_frac: float
    x_u: float
    y_u: float
    facing: int  # +1 faces/moves right, -1 left
    yaw_u: float
    freq_u: float
    phase: float
    amp: float
    arm: int  # 0 = left, 1 = right (which arm waves)
    rest_a: float
    rest_b: float
    thick_frac: float
    noise_sigma: float
    shake: float  # camera-shake std in pixels at 120 px frame height


@dataclass(frozen=True)
class VideoParams:
    """Everything that determines a clean (noise- and shake-free) rendering."""

    actor: Actor
    clip: Clip
    size: tuple[int, int]  # (width, height)
    fps: float


def _colour(level: float, hue: np.ndarray, sat: float) -> tuple[int, int, int]:
    """A BGR colour with mean brightness ``level`` (0..1): brightness is what keeps figures visible."""
    c = np.clip(level + sat * (hue - hue.mean()), 0.0, 1.0)
    return (int(round(c[0] * 255)), int(round(c[1] * 255)), int(round(c[2] * 255)))


def sample_actor(rng: np.random.Generator) -> Actor:
    """Draw one actor + scene. Figure brightness is kept far from the background's so the figure
    survives downscaling and noise whatever the colours."""
    u = rng.random(10).tolist()
    raw = {
        "thigh": 0.245 * (0.9 + 0.2 * u[0]),
        "shin": 0.245 * (0.9 + 0.2 * u[1]),
        "torso": 0.30 * (0.9 + 0.2 * u[2]),
        "upper_arm": 0.17 * (0.88 + 0.24 * u[3]),
        "forearm": 0.16 * (0.88 + 0.24 * u[4]),
        "head_r": 0.058 + 0.02 * u[5],
        "neck": 0.025 + 0.015 * u[6],
        "shoulder": 0.08 + 0.035 * u[7],
        "hip": 0.045 + 0.02 * u[8],
        "foot": 0.06 + 0.02 * u[9],
    }
    height = raw["thigh"] + raw["shin"] + raw["torso"] + raw["neck"] + 2 * raw["head_r"]
    props = Proportions(**{k: v / height for k, v in raw.items()})

    kind = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))]
    bg_level = 0.12 + 0.76 * float(rng.random())
    contrast = 0.08 + 0.22 * float(rng.random())
    lo, hi = bg_level - contrast / 2, bg_level + contrast / 2
    bg_a = _colour(lo, rng.random(3), 0.5 * rng.random())
    bg_b = _colour(hi, rng.random(3), 0.5 * rng.random())
    if bg_level >= 0.5:  # light scene, dark person
        fig_level = (lo - 0.32) * rng.random()
    else:
        fig_level = hi + 0.32 + (1.0 - hi - 0.32) * rng.random()
    limb_hue, torso_hue, chair_hue = rng.random(3), rng.random(3), rng.random(3)
    sat_limb, sat_torso = 0.2 + 0.7 * rng.random(), 0.2 + 0.7 * rng.random()
    shade = 0.12 if fig_level < bg_level else -0.12  # right limbs a touch further from the background
    colours = (
        _colour(fig_level, torso_hue, sat_torso),
        _colour(fig_level, limb_hue, sat_limb),
        _colour(float(np.clip(fig_level - shade, 0, 1)), limb_hue, sat_limb),
    )
    chair = _colour((fig_level + bg_level) / 2, chair_hue, 0.4)
    return Actor(
        proportions=props,
        colours=colours,
        chair_colour=chair,
        background=kind,
        bg_colours=(bg_a, bg_b),
        bg_seed=int(rng.integers(2**31)),
    )


def _sample_clip(rng: np.random.Generator) -> Clip:
    """Draw the per-clip variation; the same draws for every action (see ``Clip``)."""
    u = rng.random(14).tolist()  # plain floats: params print and compare cleanly
    return Clip(
        height_frac=0.45 + 0.35 * u[0],
        x_u=u[1],
        y_u=u[2],
        facing=1 if u[3] < 0.5 else -1,
        yaw_u=u[4],
        freq_u=u[5],
        phase=2 * math.pi * u[6],
        amp=0.85 + 0.3 * u[7],
        arm=int(u[8] < 0.5),
        rest_a=u[9],
        rest_b=u[10],
        thick_frac=0.028 + 0.018 * u[11],
        noise_sigma=7.0 * u[12],
        shake=1.5 * u[13],
    )


def _check_action(action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(_unknown_message("action", action))
    return action


def _unknown_message(what: str, name: object) -> str:
    text = str(name)
    close = difflib.get_close_matches(text, ACTIONS, n=2) or [a for a in ACTIONS if text and text in a][:2]
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {what} {name!r}.{hint} Valid: {', '.join(ACTIONS)}"


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if w < 16 or h < 16:
        raise ValueError(f"size must be at least (16, 16) pixels, got (width={w}, height={h})")
    return (w, h)


def sample_params(
    action: str,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (160, 120),
    fps: float = 25.0,
    actor: Actor | None = None,
) -> VideoParams:
    """Draw the parameters of one video (a new actor too, unless one is given).

    The draws do not depend on ``action``: the same generator state gives ``sit_down`` and
    ``stand_up`` identical parameters, which is what makes them exact time-reversals.
    """
    _check_action(action)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    actor = sample_actor(rng) if actor is None else actor
    return VideoParams(actor=actor, clip=_sample_clip(rng), size=_check_size(size), fps=float(fps))


# --------------------------------------------------------------------------------------------
# Poses: world-absolute segment angles per frame -> 3-D joints -> 2-D pixels
# --------------------------------------------------------------------------------------------


@dataclass
class _Pose:
    """Per-frame angles in degrees. Limb arrays are (T, side, [flex, abduction]), side 0 = left.
    Flex swings a segment forward from hanging straight down; abduction raises it sideways.
    ``lift`` is height off the ground and ``travel`` forward displacement, both in body units."""

    lean: np.ndarray
    arm_upper: np.ndarray
    arm_lower: np.ndarray
    leg_upper: np.ndarray
    leg_lower: np.ndarray
    lift: np.ndarray
    travel: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _standing(n: int) -> _Pose:
    """Relaxed standing pose; each action edits what it moves."""
    arm_upper = np.zeros((n, 2, 2))
    arm_upper[..., 0], arm_upper[..., 1] = 3.0, 8.0
    arm_lower = np.zeros((n, 2, 2))
    arm_lower[..., 0], arm_lower[..., 1] = 10.0, 8.0
    leg = np.zeros((n, 2, 2))
    leg[..., 1] = 3.0
    return _Pose(
        lean=np.zeros(n),
        arm_upper=arm_upper,
        arm_lower=arm_lower,
        leg_upper=leg.copy(),
        leg_lower=leg.copy(),
        lift=np.zeros(n),
        travel=np.zeros(n),
    )


def _bump(u: np.ndarray, a: float, b: float) -> np.ndarray:
    """Smooth 0 -> 1 -> 0 hump on [a, b), zero elsewhere."""
    inside = (u >= a) & (u < b)
    return np.where(inside, np.sin(np.pi * np.clip((u - a) / (b - a), 0, 1)) ** 2, 0.0)


def _legs(p: _Pose, thigh: np.ndarray, knee: np.ndarray, side: int | slice = slice(None)) -> None:
    """Set thigh flex and knee bend (the shin folds back by ``knee`` degrees); (T,) arrays apply
    to the chosen side, or to both legs when ``side`` is left out."""
    thigh, knee = np.asarray(thigh, dtype=np.float64), np.asarray(knee, dtype=np.float64)
    if isinstance(side, slice) and thigh.ndim == 1:
        thigh, knee = thigh[:, None], knee[:, None]
    p.leg_upper[:, side, 0] = thigh
    p.leg_lower[:, side, 0] = thigh - knee


def _walk(t: np.ndarray, c: Clip, f: float, props: Proportions) -> _Pose:
    """Legs swing in antiphase, the swinging knee flexes, arms swing opposite to the legs."""
    p = _standing(len(t))
    psi = 2 * np.pi * f * t + c.phase
    amp = 24.0 * c.amp
    s, co = np.sin(psi), np.cos(psi)
    _legs(p, amp * s, 6 + 50 * np.clip(co, 0, None) ** 2, 0)
    _legs(p, -amp * s, 6 + 50 * np.clip(-co, 0, None) ** 2, 1)
    p.arm_upper[:, 0, 0], p.arm_upper[:, 1, 0] = -0.9 * amp * s, 0.9 * amp * s
    p.arm_lower[..., 0] = p.arm_upper[..., 0] + 18
    p.lean[:] = 4
    p.travel = 4 * props.leg * math.sin(math.radians(amp)) * f * t
    return p


def _run(t: np.ndarray, c: Clip, f: float, props: Proportions) -> _Pose:
    """Faster, wider strides, heel kicks, elbows at 90 degrees, forward lean and a flight bounce."""
    p = _standing(len(t))
    psi = 2 * np.pi * f * t + c.phase
    amp = 36.0 * c.amp
    s, co = np.sin(psi), np.cos(psi)
    _legs(p, 10 + amp * s, 20 + 85 * np.clip(co, 0, None) ** 1.5, 0)
    _legs(p, 10 - amp * s, 20 + 85 * np.clip(-co, 0, None) ** 1.5, 1)
    p.arm_upper[:, 0, 0], p.arm_upper[:, 1, 0] = 5 - 0.8 * amp * s, 5 + 0.8 * amp * s
    p.arm_lower[..., 0] = p.arm_upper[..., 0] + 85
    p.arm_upper[..., 1] = p.arm_lower[..., 1] = 10
    p.lean[:] = 12
    p.lift = 0.04 * c.amp * s**2
    p.travel = 4 * props.leg * math.sin(math.radians(amp)) * f * t
    return p


def _jump(t: np.ndarray, c: Clip, f: float, props: Proportions) -> _Pose:
    """Crouch with arms back, take off with arms swinging up, land into a smaller crouch."""
    p = _standing(len(t))
    u = np.mod(f * t + c.phase / (2 * np.pi), 1.0)
    crouch = _bump(u, 0.0, 0.32) + 0.7 * _bump(u, 0.76, 1.0)
    flight = np.where((u >= 0.32) & (u < 0.76), np.sin(np.pi * np.clip((u - 0.32) / 0.44, 0, 1)), 0.0)
    _legs(p, 70 * crouch + 15 * flight, 120 * crouch + 30 * flight)
    p.lean = 35 * crouch
    p.arm_upper[..., 0] = (-45 * crouch + 160 * flight)[:, None]
    p.arm_lower[..., 0] = p.arm_upper[..., 0] + 10
    p.lift = 0.2 * c.amp * flight
    return p


def _wave_one_arm(t: np.ndarray, c: Clip, f: float, props: Proportions) -> _Pose:
    """One arm raised to the side, forearm up and swinging side to side; the other arm hangs."""
    p = _standing(len(t))
    s = np.sin(2 * np.pi * f * t + c.phase)
    p.arm_upper[:, c.arm, 0], p.arm_upper[:, c.arm, 1] = 10, 115 + 8 * s
    p.arm_lower[:, c.arm, 0], p.arm_lower[:, c.arm, 1] = 5, 160 + 28 * c.amp * s
    return p


def _wave_two_arms(t: np.ndarray, c: Clip, f: float, props: Proportions) -> _Pose:
    """Both arms overhead, swaying together from one side to the other like wipers."""
    p = _standing(len(t))
    s = np.sin(2 * np.pi * f * t + c.phase)
    p.arm_upper[..., 0] = p.arm_lower[..., 0] = 5
    p.arm_upper[:, 0, 1], p.arm_upper[:, 1, 1] = 140 + 12 * s, 140 - 12 * s
    p.arm_lower[:, 0, 1], p.arm_lower[:, 1, 1] = 165 + 30 * c.amp * s, 165 - 30 * c.amp * s
    return p


def _jumping_jack(t: np.ndarray, c: Clip, f: float, props: Proportions) -> _Pose:
    """Arms sweep from the sides to overhead while the legs spread, with a hop at each switch."""
    p = _standing(len(t))
    psi = 2 * np.pi * f * t + c.phase
    w = (1 - np.cos(psi)) / 2
    arms = 12 + min(165.0, 150 * c.amp) * w
    p.arm_upper[..., 0] = p.arm_lower[..., 0] = 0
    p.arm_upper[..., 1] = arms[:, None]
    p.arm_lower[..., 1] = (arms + 12 * w)[:, None]
    p.leg_upper[..., 1] = p.leg_lower[..., 1] = (3 + 20 * w)[:, None]
    p.lift = 0.05 * np.abs(np.sin(psi))
    return p


def _bend(t: np.ndarray, c: Clip, f: float, props: Proportions) -> _Pose:
    """Hinge forward at the hips with straight legs and hanging arms, then straighten up."""
    p = _standing(len(t))
    w = (1 - np.cos(2 * np.pi * f * t + c.phase)) / 2
    p.lean = 5 + min(100.0, 88 * c.amp) * w
    _legs(p, -9 * w, 6 * w)
    p.arm_upper[..., 0] = (0.12 * p.lean)[:, None]
    p.arm_upper[..., 1] = p.arm_lower[..., 1] = 6
    p.arm_lower[..., 0] = p.arm_upper[..., 0] + 8
    return p


def _squat(t: np.ndarray, c: Clip, f: float, props: Proportions) -> _Pose:
    """Knees and hips fold so the pelvis drops to knee height, arms reach forward for balance."""
    p = _standing(len(t))
    w = (1 - np.cos(2 * np.pi * f * t + c.phase)) / 2 * min(1.0, 0.85 * c.amp + 0.1)
    _legs(p, 100 * w, 120 * w)
    p.lean = 40 * w
    p.arm_upper[..., 0] = (8 + 75 * w)[:, None]
    p.arm_lower[..., 0] = p.arm_upper[..., 0]
    return p


def _sit_down(t: np.ndarray, c: Clip, f: float, props: Proportions) -> _Pose:
    """Stand still, lean forward and lower onto the chair behind, then sit still.

    The rest at each end is drawn from the same range, so the reversed clip (``stand_up``) has
    exactly the distribution of a natural stand-up clip.
    """
    p = _standing(len(t))
    n = len(t)
    frac = np.arange(n) / max(n - 1, 1)
    r1, r2 = 0.08 + 0.2 * c.rest_a, 0.08 + 0.2 * c.rest_b
    x = np.clip((frac - r1) / (1 - r1 - r2), 0, 1)
    pr = x * x * x * (x * (6 * x - 15) + 10)  # smootherstep: starts and ends at rest
    hump = np.sin(np.pi * pr)
    _legs(p, 90 * pr, 90 * pr)
    p.lean = 10 * pr + 35 * hump
    p.arm_upper[..., 0] = (4 + 18 * pr + 25 * hump)[:, None]
    p.arm_lower[..., 0] = (10 + 60 * pr + 20 * hump)[:, None]
    return p


_POSES: dict[str, Callable[[np.ndarray, Clip, float, Proportions], _Pose]] = {
    "walk": _walk,
    "run": _run,
    "jump": _jump,
    "wave_one_arm": _wave_one_arm,
    "wave_two_arms": _wave_two_arms,
    "bend": _bend,
    "jumping_jack": _jumping_jack,
    "squat": _squat,
    "sit_down": _sit_down,
}


def _seg_dir(flex: np.ndarray, abd: np.ndarray, side: float) -> np.ndarray:
    """Unit vector (forward, left, up) of a segment hanging down, swung forward by ``flex`` and
    raised sideways (outwards on ``side``) by ``abd`` degrees."""
    fl, ab = np.radians(flex), np.radians(abd)
    return np.stack([np.sin(fl), side * np.cos(fl) * np.sin(ab), -np.cos(fl) * np.cos(ab)], axis=-1)


def _forward_kinematics(p: _Pose, props: Proportions, anchor: str) -> np.ndarray:
    """Joint positions (T, J, 3) in the body frame (forward, left, up), standing on z = 0."""
    n = len(p.lean)
    out = np.zeros((n, len(JOINTS), 3))
    lean = np.radians(p.lean)
    spine = np.stack([np.sin(lean), np.zeros(n), np.cos(lean)], axis=-1)
    out[:, _J["neck"]] = props.torso * spine
    out[:, _J["head"]] = out[:, _J["neck"]] + (props.neck + props.head_r) * spine
    for k, (side, prefix) in enumerate(((1.0, "l_"), (-1.0, "r_"))):
        lateral = np.array([0.0, side, 0.0])
        sh = out[:, _J["neck"]] + props.shoulder * lateral
        el = sh + props.upper_arm * _seg_dir(p.arm_upper[:, k, 0], p.arm_upper[:, k, 1], side)
        hand = el + props.forearm * _seg_dir(p.arm_lower[:, k, 0], p.arm_lower[:, k, 1], side)
        hip = np.broadcast_to(props.hip * lateral, (n, 3))
        knee = hip + props.thigh * _seg_dir(p.leg_upper[:, k, 0], p.leg_upper[:, k, 1], side)
        ankle = knee + props.shin * _seg_dir(p.leg_lower[:, k, 0], p.leg_lower[:, k, 1], side)
        toe = ankle + np.array([props.foot, 0.0, 0.0])
        for name, value in (("shoulder", sh), ("elbow", el), ("hand", hand), ("hip", hip),
                            ("knee", knee), ("ankle", ankle), ("toe", toe)):
            out[:, _J[prefix + name]] = value
    ankles = out[:, [_J["l_ankle"], _J["r_ankle"]]]
    out[..., 2] += (p.lift - ankles[..., 2].min(axis=1))[:, None]
    if anchor == "feet":  # feet stay put; the pelvis moves over them
        out[..., :2] -= ankles[..., :2].mean(axis=1)[:, None, :]
    out[..., 0] += p.travel[:, None]
    return out


def _chair(seated: np.ndarray) -> np.ndarray:
    """Chair line segments (S, 2, 3) fitted under the pelvis of a seated frame (J, 3), so the
    figure lands on the seat whatever its proportions."""
    pf = seated[_J["pelvis"], 0]
    seat = seated[_J["pelvis"], 2] - 0.035
    back, front = pf - 0.13, pf + 0.11
    return np.array([
        [[back, 0, seat], [front, 0, seat]],
        [[back, 0, seat + 0.33], [back, 0, 0.0]],
        [[front, 0, seat], [front, 0, 0.0]],
    ])


@dataclass(frozen=True)
class _Layout:
    """A placed clip: pixel positions of joints (T, J, 2) and chair (S, 2, 2), per-joint depth
    (T, J; larger = nearer the camera), camera pan per frame, and stroke sizes in pixels."""

    joints: np.ndarray
    depth: np.ndarray
    chair: np.ndarray | None
    pan: np.ndarray
    thickness: int
    head_r: float


def _layout(action: str, params: VideoParams, num_frames: int) -> _Layout:
    """Pose the figure for every frame, then scale and place it so the whole motion stays in view."""
    if action == "stand_up":  # by construction: sit_down played backwards, nothing else
        fwd = _layout("sit_down", params, num_frames)
        return _Layout(fwd.joints[::-1].copy(), fwd.depth[::-1].copy(), fwd.chair, fwd.pan[::-1].copy(),
                       fwd.thickness, fwd.head_r)
    spec, c, props = _SPECS[action], params.clip, params.actor.proportions
    t = np.arange(num_frames) / params.fps
    freq = spec.freq[0] + (spec.freq[1] - spec.freq[0]) * c.freq_u
    pose = _POSES[action](t, c, freq, props)
    body = _forward_kinematics(pose, props, spec.anchor)
    chair = _chair(body[-1]) if spec.chair else None

    yaw = math.radians(c.facing * (spec.yaw[0] + (spec.yaw[1] - spec.yaw[0]) * c.yaw_u))
    cy, sy = math.cos(yaw), math.sin(yaw)

    def project(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Orthographic camera turned by ``yaw`` about the vertical: (screen x, height)."""
        return p[..., 1] * cy + p[..., 0] * sy, p[..., 2]

    travel = sy * pose.travel  # screen-x displacement (body units) of a travelling figure
    x, up = project(body)
    x_still = x - travel[:, None]
    chair_xu = None if chair is None else np.stack(project(chair), axis=-1)
    extent = [np.stack([x_still, up], axis=-1).reshape(-1, 2)]
    if chair_xu is not None:
        extent.append(chair_xu.reshape(-1, 2))
    scale, root_x, ground, pan, screen_travel, thickness = _place(np.concatenate(extent), travel, params)

    joints = np.stack([root_x + x_still * scale + screen_travel[:, None], ground - up * scale], axis=-1)
    chair_px = None
    if chair_xu is not None:
        chair_px = np.stack([root_x + chair_xu[..., 0] * scale, ground - chair_xu[..., 1] * scale], axis=-1)
    depth = body[..., 0] * cy - body[..., 1] * sy
    return _Layout(joints, depth, chair_px, pan, thickness, props.head_r * scale)


def _place(
    points: np.ndarray, travel: np.ndarray, params: VideoParams
) -> tuple[float, float, float, np.ndarray, np.ndarray, int]:
    """Choose pixel scale, root x and ground y so every point of the motion (``points`` in body
    units: screen x, height) stays in frame, within the clip's random size and position.

    A travelling figure may cross at most ``_MAX_SCREEN_TRAVEL`` of the width; the camera pans to
    follow the rest, as a cameraman would. Returns (scale, root_x, ground_y, pan per frame,
    on-screen travel per frame, line thickness).
    """
    c, props = params.clip, params.actor.proportions
    width, height = params.size
    r = props.head_r
    x_lo, x_hi, top = points[:, 0].min() - r, points[:, 0].max() + r, points[:, 1].max() + r

    scale = min(c.height_frac * height, _FIT * height / top, _FIT * width / (x_hi - x_lo))
    thickness = max(2, int(round(scale * c.thick_frac)))
    margin = thickness / 2 + 1.0

    total = abs(travel[-1]) * scale
    keep = 1.0 if total <= _MAX_SCREEN_TRAVEL * width else _MAX_SCREEN_TRAVEL * width / total
    screen_travel = keep * travel * scale
    pan = (1 - keep) * travel * scale

    lo_x = margin - (x_lo * scale + min(screen_travel.min(), 0))
    hi_x = width - margin - (x_hi * scale + max(screen_travel.max(), 0))
    root_x = lo_x + (hi_x - lo_x) * c.x_u if hi_x > lo_x else (lo_x + hi_x) / 2
    lo_y, hi_y = margin + top * scale, height - margin
    ground = lo_y + (hi_y - lo_y) * c.y_u if hi_y > lo_y else hi_y
    return scale, root_x, ground, pan, screen_travel, thickness


def pose_trajectory(action: str, params: VideoParams, num_frames: int) -> np.ndarray:
    """Pixel positions (num_frames, len(JOINTS), 2) of every joint, before camera shake.

    Exposed so tests (and curious users) can check the motion itself, e.g. that ``stand_up`` is
    exactly ``sit_down`` reversed for the same parameters.
    """
    _check_action(action)
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2 (motion needs two frames), got {num_frames!r}")
    return _layout(action, params, num_frames).joints


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _background(actor: Actor, width: int, height: int, x0: int, y0: int, ref_h: int) -> np.ndarray:
    """The scene texture over a window of the (infinite) scene plane, uint8 BGR (height, width, 3).

    Textures are analytic functions of position in frame-height units, so a larger canvas (for
    shake or panning) shows more of the same scene, and every clip of a group sees the same one.
    """
    g = np.random.default_rng(actor.bg_seed)
    x = ((np.arange(width) + x0) / ref_h)[None, :]
    y = ((np.arange(height) + y0) / ref_h)[:, None]

    def blobs(k: int) -> np.ndarray:
        freq = g.uniform(0.4, 2.5, k)
        ang = g.uniform(0, 2 * np.pi, k)
        ph = g.uniform(0, 2 * np.pi, k)
        a = g.uniform(0.3, 1.0, k)
        field = np.zeros((height, width))
        for i in range(k):
            field = field + a[i] * np.cos(2 * np.pi * freq[i] * (x * np.cos(ang[i]) + y * np.sin(ang[i])) + ph[i])
        return field / (2.5 * math.sqrt(float((a**2).sum()) / 2))  # roughly within [-1, 1]

    ang = g.uniform(0, 2 * np.pi)
    along = x * math.cos(ang) + y * math.sin(ang)
    if actor.background == "blobs":
        w = 0.5 + 0.5 * blobs(7)
    elif actor.background == "gradient":
        w = 0.5 + 0.6 * (along - along.mean()) / (abs(math.cos(ang)) + abs(math.sin(ang)) + 1e-6) + 0.15 * blobs(4)
    elif actor.background == "stripes":
        w = 0.5 + 0.5 * np.tanh(2.5 * np.sin(2 * np.pi * g.uniform(2, 6) * along + g.uniform(0, 6.3)))
        w = w + 0.15 * blobs(3)
    elif actor.background == "room":
        horizon = g.uniform(0.45, 0.8)
        w = 1 / (1 + np.exp(-(y - horizon) * 60)) + 0.2 * blobs(4) * np.ones_like(x)
    else:
        raise ValueError(f"unknown background kind {actor.background!r}; expected one of {_BACKGROUNDS}")
    w = np.clip(w, 0, 1)[..., None]
    a, b = (np.asarray(col, dtype=np.float64) for col in actor.bg_colours)
    return np.clip(a * (1 - w) + b * w, 0, 255).astype(np.uint8)


def _fixed(points: np.ndarray) -> list:
    """Pixel coordinates -> nested lists of cv2 fixed-point ints (``_SHIFT`` fractional bits)."""
    return np.rint(points * _FIX).astype(np.int64).tolist()


def _draw_figure(img: np.ndarray, pts: list, depth: np.ndarray, lay: _Layout, actor: Actor) -> None:
    """Draw limbs far-to-near so the near side correctly overlaps the far side. ``pts`` are the
    frame's joints in fixed point (see ``_fixed``)."""
    seg_depth = [float(depth[a] + depth[b]) / 2 for a, b, _ in _SEGMENTS]
    order = sorted([*range(len(_SEGMENTS)), -1], key=lambda i: (seg_depth[i] if i >= 0 else float(depth[0]), i))
    for i in order:
        if i < 0:
            radius = max(1, int(round(lay.head_r * _FIX)))
            cv2.circle(img, pts[_J["head"]], radius, actor.colours[0], -1, cv2.LINE_AA, _SHIFT)
            continue
        a, b, slot = _SEGMENTS[i]
        thick = lay.thickness + (1 if a == _J["neck"] else 0)  # the spine a little heavier
        cv2.line(img, pts[a], pts[b], actor.colours[slot], thick, cv2.LINE_AA, _SHIFT)


def _gauss_table() -> np.ndarray:
    """Standard-normal quantiles of 256 equiprobable bins: byte -> Gaussian value lookup, because
    one random byte per pixel is far cheaper than ``standard_normal`` and looks the same."""
    dist = NormalDist()
    return np.array([dist.inv_cdf((k + 0.5) / 256) for k in range(256)])


_GAUSS = _gauss_table()


def _add_noise(frames: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Independent Gaussian-like pixel noise of std ``sigma`` on every pixel of every frame.

    Done as byte lookups plus saturating add/subtract (each pixel gets either a positive or a
    negative part), which equals ``clip(frame + noise, 0, 255)`` at a fraction of the float cost.
    """
    values = np.rint(_GAUSS * sigma)
    pos = np.clip(values, 0, 255).astype(np.uint8)
    neg = np.clip(-values, 0, 255).astype(np.uint8)
    flat = frames.reshape(-1, frames.shape[-2] * frames.shape[-1])
    idx = rng.integers(0, 256, flat.shape, dtype=np.uint8)
    out = cv2.subtract(cv2.add(flat, cv2.LUT(idx, pos)), cv2.LUT(idx, neg))
    return out.reshape(frames.shape)


def render_video(
    action: str,
    rng: np.random.Generator,
    *,
    num_frames: int = 48,
    size: tuple[int, int] = (160, 120),
    fps: float = 25.0,
    actor: Actor | None = None,
    _clean: bool = False,
) -> np.ndarray:
    """Render one clip of ``action``: (num_frames, height, width, 3) uint8 BGR, ``size`` = (width, height).

    All randomness comes from ``rng`` (a fresh actor is drawn unless ``actor`` is given, which is
    how a dataset group shares one). ``_clean`` turns off pixel noise and camera shake; tests use
    it to check that ``stand_up`` frames are exactly ``sit_down`` frames in reverse order.
    """
    _check_action(action)
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2 (motion needs two frames), got {num_frames!r}")
    params = sample_params(action, rng, size=size, fps=fps, actor=actor)
    lay = _layout(action, params, num_frames)
    width, height = params.size
    c = params.clip

    m = max(1, int(math.ceil(2.5 * c.shake * height / 120)))  # room for shake on each side
    if _clean:
        shake = np.zeros((num_frames, 2), dtype=np.int64)
    else:
        shake = np.clip(np.rint(rng.normal(0.0, c.shake * height / 120, (num_frames, 2))), -m, m).astype(np.int64)
    pan = np.rint(lay.pan).astype(np.int64)
    left = m + max(0, -int(pan.min()))
    bg = _background(params.actor, width + left + m + max(0, int(pan.max())), height + 2 * m, -left, -m, height)

    # A camera shake of (dx, dy) moves the whole picture by (-dx, -dy): crop the background at
    # +shake and draw everything in the scene at -shake.
    joints = _fixed(lay.joints - shake[:, None, :])
    chair = None if lay.chair is None else _fixed(lay.chair[None] - shake[:, None, None, :])
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        ox, oy = left + int(pan[i]) + int(shake[i, 0]), m + int(shake[i, 1])
        img = frames[i]
        img[...] = bg[oy : oy + height, ox : ox + width]
        if chair is not None:
            for a, b in chair[i]:
                cv2.line(img, a, b, params.actor.chair_colour, lay.thickness, cv2.LINE_AA, _SHIFT)
        _draw_figure(img, joints[i], lay.depth[i], lay, params.actor)
    if not _clean and c.noise_sigma > 0.5:
        frames = _add_noise(frames, c.noise_sigma, rng)
    return frames


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthResult:
    """Where a generated dataset lives and what is in it."""

    root: Path
    classes: tuple[str, ...]
    num_train: int
    num_test: int
    num_frames: int
    size: tuple[int, int]


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write BGR frames (T, H, W, 3) uint8 as an MJPG ``.avi``, atomically (no half-written files)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape} for {path}")
    path = Path(path)
    height, width = frames.shape[1:3]
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (width, height))
        if not writer.isOpened():
            raise RuntimeError(
                f"cv2.VideoWriter could not open {path} (MJPG, {width}x{height} @ {fps} fps); "
                "check that the directory is writable and OpenCV has video I/O support"
            )
        try:
            for frame in frames:
                writer.write(np.ascontiguousarray(frame))
        finally:
            writer.release()
    return path


def _resolve_classes(classes: Sequence[str] | None) -> tuple[str, ...]:
    """Validate names and return them in ``ACTIONS`` order, so label ids never depend on argument order."""
    if classes is None:
        return ACTIONS
    if isinstance(classes, str):
        classes = [classes]
    chosen = list(classes)
    if not chosen:
        raise ValueError(f"classes is empty; choose some of: {', '.join(ACTIONS)}")
    for name in chosen:
        if name not in ACTIONS:
            raise ValueError(_unknown_message("class", name))
    return tuple(a for a in ACTIONS if a in set(chosen))


def _plan_groups(per_class: int, clips_per_group: int) -> list[int]:
    """Clips per group. At least two groups, so one can be held out for test."""
    groups = max(2, math.ceil(per_class / clips_per_group))
    size = math.ceil(per_class / groups)
    counts = [min(size, per_class - g * size) for g in range(groups)]
    return [n for n in counts if n > 0]


def _split_into_groups(n: int, clips_per_group: int) -> list[int]:
    """``n`` clips in groups of at most ``clips_per_group``."""
    full, rest = divmod(n, clips_per_group)
    return [clips_per_group] * full + ([rest] if rest else [])


def generate_unlabeled(
    out: str | Path,
    *,
    count: int,
    classes: Sequence[str] | None = None,
    seed: int = 0,
    num_frames: int = 48,
    size: tuple[int, int] = (160, 120),
    fps: float = 25.0,
    show_progress: bool = True,
) -> list[Path]:
    """``count`` unlabelled videos ``u_NNNNN.avi`` under ``out``: the footage a user has without labels.

    Each shows one of ``classes`` (drawn at random) performed by an actor of its own, in a scene of
    its own, from a random stream that never meets a labelled video's (their actors and scenes are
    neither the training nor the test actors). The actions drawn are kept in ``synth_unlabeled.json``
    for diagnostics only (how often the teacher labels the transfer set correctly); nothing in
    training reads them. Written last, so its presence means the videos are complete.
    """
    chosen = _resolve_classes(classes)
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an integer >= 1, got {count!r}")
    size = _check_size(size)
    root = Path(out)
    stream = 2000 + len(ACTIONS)  # outside the labelled streams (action indices and the actor stream)
    paths, actions = [], []
    for i in tqdm(range(count), desc="synth unlabelled", unit="video", disable=not show_progress):
        rng = np.random.default_rng([seed, stream, i])
        action = chosen[int(rng.integers(len(chosen)))]
        actor = sample_actor(rng)
        path = root / f"u_{i:05d}.avi"
        write_video(path, render_video(action, rng, num_frames=num_frames, size=size, fps=fps, actor=actor), fps)
        paths.append(path)
        actions.append(action)
    write_json(root / "synth_unlabeled.json", {"generator": "edgekd.data.synth", "edgekd_version": __version__,
                                               "seed": seed, "count": count, "classes": list(chosen),
                                               "num_frames": num_frames, "size": list(size), "fps": fps,
                                               "videos": [p.name for p in paths], "actions": actions})
    return paths


def generate_dataset(
    out: str | Path,
    *,
    classes: Sequence[str] | None = None,
    per_class: int = 12,
    seed: int = 0,
    num_frames: int = 48,
    size: tuple[int, int] = (160, 120),
    fps: float = 25.0,
    clips_per_group: int = 4,
    show_progress: bool = True,
    test_per_class: int | None = None,
) -> SynthResult:
    """Write a UCF101-style synthetic dataset under ``out`` and return what was written.

    Layout: ``<class>/v_<class>_gGG_cCC.avi``, ``classInd.txt``, ``trainlist01.txt``,
    ``testlist01.txt`` and ``synth.json`` (the parameters, for reproducibility). The last ~25% of
    groups (at least one) form the test set, so test clips show unseen actors and scenes. If there
    would be only one group, clips are spread over two. Group ``gGG`` is the same actor + scene in
    every class. The lists and ``synth.json`` are written last, so their presence means the videos
    are complete.

    ``test_per_class`` sizes the test set on its own: ``per_class`` clips per class then all go to
    training and ``test_per_class`` more, in groups of their own (unseen actors), form the test set.
    A few labelled training videos and hundreds of test videos is how a small experiment gets
    accuracy intervals of a few points.
    """
    chosen = _resolve_classes(classes)
    if not isinstance(per_class, int) or per_class < 2:
        raise ValueError(f"per_class must be an integer >= 2 (need train and test videos), got {per_class!r}")
    if not isinstance(clips_per_group, int) or clips_per_group < 1:
        raise ValueError(f"clips_per_group must be an integer >= 1, got {clips_per_group!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames!r}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    size = _check_size(size)

    root = Path(out)
    if test_per_class is None:
        groups = _plan_groups(per_class, clips_per_group)
        n_test_groups = min(len(groups) - 1, max(1, int(len(groups) * 0.25 + 0.5)))
    else:
        if not isinstance(test_per_class, int) or test_per_class < 1:
            raise ValueError(f"test_per_class must be an integer >= 1, got {test_per_class!r}")
        train_groups = _split_into_groups(per_class, clips_per_group)
        test_groups = _split_into_groups(test_per_class, clips_per_group)
        groups, n_test_groups = train_groups + test_groups, len(test_groups)
    first_test = len(groups) - n_test_groups + 1  # 1-based group id
    # The actor stream id is outside the range of action indices, so it never collides with a video seed.
    actors = {g: sample_actor(np.random.default_rng([seed, 1000 + len(ACTIONS), g])) for g in range(1, len(groups) + 1)}

    train_lines: list[str] = []
    test_lines: list[str] = []
    total = len(chosen) * sum(groups)
    with tqdm(total=total, desc="synth videos", unit="video", disable=not show_progress) as bar:
        for label, action in enumerate(chosen, start=1):
            for g, count in enumerate(groups, start=1):
                for clip in range(1, count + 1):
                    rel = f"{action}/v_{action}_g{g:02d}_c{clip:02d}.avi"
                    rng = np.random.default_rng([seed, ACTIONS.index(action), g, clip])
                    frames = render_video(action, rng, num_frames=num_frames, size=size, fps=fps, actor=actors[g])
                    write_video(root / rel, frames, fps)
                    if g >= first_test:
                        test_lines.append(rel)
                    else:
                        train_lines.append(f"{rel} {label}")
                    bar.update(1)

    write_text(root / "classInd.txt", "".join(f"{i} {a}\n" for i, a in enumerate(chosen, start=1)))
    write_text(root / "trainlist01.txt", "".join(line + "\n" for line in train_lines))
    write_text(root / "testlist01.txt", "".join(line + "\n" for line in test_lines))
    write_json(
        root / "synth.json",
        {
            "generator": "edgekd.data.synth",
            "edgekd_version": __version__,
            "seed": seed,
            "classes": list(chosen),
            "per_class": per_class,
            "clips_per_group": clips_per_group,
            "groups": len(groups),
            "test_groups": list(range(first_test, len(groups) + 1)),
            "test_per_class": test_per_class,
            "num_frames": num_frames,
            "size": list(size),
            "fps": fps,
            "codec": "MJPG",
        },
    )
    return SynthResult(
        root=root,
        classes=chosen,
        num_train=len(train_lines),
        num_test=len(test_lines),
        num_frames=num_frames,
        size=size,
    )
