"""Hand pose and landmark model of the synthetic demonstration set.

A hand is a kinematic skeleton of MediaPipe's 21 landmarks (order and parents as in
:mod:`data_loaders.hand_graph`) in a local 3-D frame whose unit is the palm length (wrist to middle MCP ~ 1):
``x`` points to the thumb side of a right hand seen palm-on, ``y`` along the
fingers, ``z`` out of the palm. Each gesture sets the flexion and spread of
every finger and a thumb pose (explicit angles, or a reach to a target such as
the index tip for ``ok``); a 3-D rotation (a base roll per gesture plus yaw,
pitch and in-plane jitter), an optional mirror (left hands) and an orthographic
projection give image points. :mod:`data_loaders.synthetic.render` draws the hand
from the very same points, so landmarks and pixels agree.

This is a demonstration model: plausible to the eye and to a classifier, not
anatomically exact. Nothing here is HaGRID data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..classes import GESTURES_18, NO_GESTURE
from ..hand_graph import NUM_NODES, PARENTS

#: Index of each finger's (index, middle, ring, pinky) first landmark, its MCP: the joints hanging off the wrist.
FINGER_BASE = tuple(j for j, parent in enumerate(PARENTS) if parent == 0 and j > 1)

# ----------------------------------------------------------------------------- #
# geometry of the canonical (right, palm-on, fingers-up) hand, in palm lengths
# ----------------------------------------------------------------------------- #
_MCP = np.array([[0.30, 0.93, 0.0], [0.08, 0.98, 0.0], [-0.13, 0.93, 0.0], [-0.31, 0.82, 0.0]])
_PHALANX = np.array([[0.44, 0.26, 0.21], [0.49, 0.30, 0.23], [0.46, 0.29, 0.22], [0.36, 0.22, 0.19]])
_BASE_SPLAY = np.array([5.0, 0.0, -5.0, -11.0])  # degrees, + towards the thumb
_THUMB_CMC = np.array([0.21, 0.19, 0.04])
_THUMB_LEN = np.array([0.40, 0.31, 0.27])
#: Drawn radii (palm lengths) at the start and end of each finger bone.
FINGER_RADII = np.array([
    [0.098, 0.088, 0.080, 0.072],
    [0.102, 0.092, 0.083, 0.075],
    [0.095, 0.086, 0.078, 0.070],
    [0.084, 0.076, 0.069, 0.062],
])
#: Thumb radii at CMC, MCP, IP, tip (the CMC-MCP bone is the thenar bulge).
THUMB_RADII = np.array([0.15, 0.115, 0.100, 0.088])
#: Radius of the rounded palm outline.
PALM_EDGE_RADIUS = 0.06
# palm outline polygon (inside the edge radius), not landmarks
_PALM = np.array([
    [-0.20, 0.02, 0.0], [0.15, 0.00, 0.0], [0.26, 0.50, 0.0], [0.31, 0.90, 0.0], [0.08, 0.95, 0.0],
    [-0.13, 0.90, 0.0], [-0.30, 0.79, 0.0], [-0.33, 0.45, 0.0], [-0.27, 0.15, 0.0],
])
_FLEX_TOWARDS = np.array([-0.7, 0.15, 0.7]) / np.linalg.norm([-0.7, 0.15, 0.7])  # where a bending thumb goes


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else v


def _rotate(v: np.ndarray, axis: np.ndarray, deg: float) -> np.ndarray:
    """Rodrigues rotation of ``v`` about unit ``axis``."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return v * c + np.cross(axis, v) * s + axis * float(axis @ v) * (1 - c)


def _towards(d: np.ndarray, target_dir: np.ndarray, deg: float) -> np.ndarray:
    axis = np.cross(d, target_dir)
    if np.linalg.norm(axis) < 1e-6:
        return d
    return _rotate(d, _unit(axis), deg)


def rot_x(deg: float) -> np.ndarray:
    a = math.radians(deg); c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg); c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg); c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def two_link(base: np.ndarray, target: np.ndarray, l1: float, l2: float, hint: np.ndarray):
    """Middle joint and end of a two-bone chain from ``base`` reaching for ``target``;
    the middle joint bows towards ``hint``. Out of reach, the chain stretches straight at it."""
    d = target - base
    dist = float(np.linalg.norm(d))
    u = d / dist if dist > 1e-9 else np.array([0.0, 1.0, 0.0])
    dist_c = min(max(dist, abs(l1 - l2) + 1e-3), l1 + l2 - 1e-4)
    a = (l1 * l1 - l2 * l2 + dist_c * dist_c) / (2 * dist_c)
    h = math.sqrt(max(l1 * l1 - a * a, 0.0))
    w = hint - float(hint @ u) * u
    w = _unit(w) if np.linalg.norm(w) > 1e-6 else _unit(np.cross(u, [0.0, 0.0, 1.0]))
    mid = base + a * u + h * w
    end = base + dist_c * u
    return mid, end


# ----------------------------------------------------------------------------- #
# gestures
# ----------------------------------------------------------------------------- #
@dataclass(frozen=True)
class GestureDef:
    """How to pose one gesture.

    ``fingers``: one letter per finger (index, middle, ring, pinky): E extended,
    C curled, P pinching (ok), R relaxed. ``thumb``: a thumb pose name.
    ``spread``: extra splay per finger in degrees (+ towards the thumb).
    ``base_roll``: in-plane roll of the canonical hand (90 turns a right hand's
    thumb up). ``view``: yaw/pitch family. ``back_p``: chance the back of the hand
    faces the camera. ``place``: where the hand goes relative to the face.
    """

    fingers: str
    thumb: str
    spread: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    base_roll: float = 0.0
    view: str = "front"
    back_p: float = 0.0
    place: str = "side"


GESTURES: dict[str, GestureDef] = {
    "call": GestureDef("CCCE", "call", (0, 0, 0, -30), back_p=0.2),
    "dislike": GestureDef("CCCC", "up", base_roll=-90, view="fist_side"),
    "fist": GestureDef("CCCC", "fist", back_p=0.3),
    "four": GestureDef("EEEE", "across_palm", (4, 1, -3, -6)),
    "like": GestureDef("CCCC", "up", base_roll=90, view="fist_side"),
    "mute": GestureDef("ECCC", "fist", view="side", place="mouth"),
    "ok": GestureDef("PEEE", "pinch", (6, 3, -5, -12), view="ok"),
    "one": GestureDef("ECCC", "across_middle", back_p=0.2),
    "palm": GestureDef("EEEE", "out", (12, 2, -9, -20)),
    "peace": GestureDef("EECC", "across_ring", (12, -12, 0, 0), back_p=0.1),
    "peace_inverted": GestureDef("EECC", "across_ring", (12, -12, 0, 0), base_roll=180, back_p=0.1, place="chest"),
    "rock": GestureDef("ECCE", "across_mid_ring", (4, 0, 0, -10), back_p=0.2),
    "stop": GestureDef("EEEE", "side", (-3, 0, 3, 6)),
    "stop_inverted": GestureDef("EEEE", "side", (-3, 0, 3, 6), base_roll=180, place="chest"),
    "three": GestureDef("EECC", "three", (8, -4, 0, 0)),
    "three2": GestureDef("EEEC", "hold_pinky", (6, 0, -6, 0)),
    "two_up": GestureDef("EECC", "across_ring", (-4, 3, 0, 0), back_p=0.1),
    "two_up_inverted": GestureDef("EECC", "across_ring", (-4, 3, 0, 0), base_roll=180, back_p=0.1, place="chest"),
    NO_GESTURE: GestureDef("RRRR", "relaxed", (2, 0, -2, -5), base_roll=180, view="relaxed", place="low"),
}
assert set(GESTURES) == set(GESTURES_18) | {NO_GESTURE}

#: In-plane rotation jitter (degrees) kept well under the 30 deg that would turn e.g. peace into peace_inverted.
MAX_ROLL_JITTER = 22.0


def _flex(state: str, rng: np.random.Generator, i: int) -> np.ndarray:
    u = rng.uniform
    if state == "E":
        return np.array([u(-6, 12), u(0, 12), u(0, 10)])
    if state == "C":
        return np.array([u(70, 95), u(85, 108), u(35, 65)])
    if state == "P":
        return np.array([u(30, 45), u(45, 65), u(25, 45)])
    if state == "H":
        return np.array([u(35, 60), u(40, 70), u(20, 40)])
    if state == "R":
        return np.array([u(8, 32) + 5 * i, u(12, 40) + 5 * i, u(8, 28)])
    raise ValueError(f"unknown finger state {state!r}")


@dataclass
class HandShape:
    """Per-subject proportions."""

    finger_length: float = 1.0
    palm_width: float = 1.0
    thumb_length: float = 1.0


@dataclass
class HandPose:
    """A hand in its local frame (palm lengths): 21 joints, palm outline, thumb web,
    and the outward (nail side) normal of each distal bone."""

    joints: np.ndarray  # (21, 3)
    palm: np.ndarray  # (P, 3)
    web: np.ndarray  # (3, 3)
    nail_normals: np.ndarray  # (5, 3): thumb, index, middle, ring, pinky
    widths: float = 1.0  # multiplier on the drawn radii
    fingers: str = ""


def pose_hand(gesture: str, rng: np.random.Generator, shape: HandShape | None = None,
              sloppy_p: float = 0.15) -> HandPose:
    """Sample a local 3-D pose for ``gesture`` (or ``no_gesture``, a relaxed hand)."""
    g = GESTURES[gesture]
    shape = shape or HandShape()
    states = list(g.fingers)
    flex = [_flex(s, rng, i) for i, s in enumerate(states)]
    # a sloppy performer: one finger half way between its state and half-bent
    if gesture != NO_GESTURE and rng.random() < sloppy_p:
        k = int(rng.integers(4))
        if states[k] in "EC":
            t = rng.uniform(0.2, 0.6)
            flex[k] = (1 - t) * flex[k] + t * _flex("H", rng, k)
    spread_scale = rng.uniform(0.6, 1.3)  # how wide this performer spreads (a narrow V, a loose palm)
    joints = np.zeros((NUM_NODES, 3))
    nails = np.zeros((5, 3))
    mcp = _MCP * np.array([shape.palm_width, 1.0, 1.0])
    for i in range(4):
        splay = math.radians(_BASE_SPLAY[i] * (0.7 + 0.6 * rng.random()) + g.spread[i] * spread_scale + rng.normal(0, 3.0))
        u = np.array([math.sin(splay), math.cos(splay), 0.0])
        n = np.array([0.0, 0.0, 1.0])
        p = mcp[i].copy()
        b = FINGER_BASE[i]
        joints[b] = p
        th = 0.0
        for k in range(3):
            th += math.radians(flex[i][k])
            d = math.cos(th) * u + math.sin(th) * n
            if states[i] == "P":  # the pinching index leans towards the thumb
                d = _unit(d + np.array([0.18 * k, 0.0, 0.0]))
            p = p + _PHALANX[i, k] * shape.finger_length * d
            joints[b + k + 1] = p
        nails[i + 1] = math.sin(th) * u - math.cos(th) * n
    _pose_thumb(g.thumb, joints, nails, rng, shape)
    palm = _PALM * np.array([shape.palm_width, 1.0, 1.0])
    web = np.stack([joints[1], joints[2], 0.8 * joints[5] + 0.2 * joints[0]])
    return HandPose(joints=joints, palm=palm, web=web, nail_normals=nails, fingers=g.fingers)


_THUMB_ANGLES = {  # in-plane angle from +y towards +x, elevation towards +z, MCP flexion, IP flexion
    "out": ((45, 62), (5, 20), (0, 10), (0, 15)),
    "side": ((16, 26), (0, 12), (0, 10), (0, 12)),
    "up": ((66, 82), (10, 28), (0, 10), (0, 15)),
    "call": ((62, 82), (5, 20), (0, 10), (0, 12)),
    "three": ((42, 58), (5, 20), (0, 10), (0, 15)),
    "relaxed": ((28, 42), (15, 35), (10, 25), (10, 25)),
}


def _pose_thumb(state: str, joints: np.ndarray, nails: np.ndarray, rng: np.random.Generator, shape: HandShape) -> None:
    u = rng.uniform
    lens = _THUMB_LEN * shape.thumb_length
    cmc = _THUMB_CMC * np.array([shape.palm_width, 1.0, 1.0])
    joints[1] = cmc
    if state in _THUMB_ANGLES:
        (a0, a1), (e0, e1), (f0, f1), (g0, g1) = _THUMB_ANGLES[state]
        a, e = math.radians(u(a0, a1)), math.radians(u(e0, e1))
        d0 = np.array([math.sin(a) * math.cos(e), math.cos(a) * math.cos(e), math.sin(e)])
        d1 = _towards(d0, _FLEX_TOWARDS, u(f0, f1))
        d2 = _towards(d1, _FLEX_TOWARDS, u(g0, g1))
        joints[2] = cmc + lens[0] * d0
        joints[3] = joints[2] + lens[1] * d1
        joints[4] = joints[3] + lens[2] * d2
        c = _FLEX_TOWARDS - float(_FLEX_TOWARDS @ d2) * d2
        nails[0] = -_unit(c)
        return
    # reach for a target (IK)
    mid = lambda f: 0.5 * (joints[FINGER_BASE[f] + 1] + joints[FINGER_BASE[f] + 2])  # middle phalanx centre
    front = np.array([0.0, 0.0, 1.0])
    if state == "pinch":
        a, e = u(30, 45), u(30, 45)
        target = joints[8] + np.array([0.04, -0.03, 0.02])
    else:
        a, e = u(14, 28), u(35, 55)
        if state == "across_ring":
            target = 0.6 * mid(2) + 0.4 * mid(3) + 0.14 * front
        elif state == "across_middle":
            target = 0.6 * mid(1) + 0.4 * mid(2) + 0.14 * front
        elif state == "across_mid_ring":
            target = 0.5 * mid(1) + 0.5 * mid(2) + 0.14 * front
        elif state == "fist":
            target = 0.55 * mid(0) + 0.45 * mid(1) + 0.13 * front
        elif state == "hold_pinky":
            target = 0.3 * mid(2) + 0.7 * mid(3) + 0.14 * front
        elif state == "across_palm":
            target = np.array([-0.10, 0.45, 0.20])
        else:
            raise ValueError(f"unknown thumb pose {state!r}")
        target = target + rng.normal(0, 0.03, 3)
    a, e = math.radians(a), math.radians(e)
    d0 = np.array([math.sin(a) * math.cos(e), math.cos(a) * math.cos(e), math.sin(e)])
    joints[2] = cmc + lens[0] * d0
    hint = _unit(np.array([0.8, 0.55, 0.35]))
    joints[3], joints[4] = two_link(joints[2], target, lens[1], lens[2], hint)
    d2 = _unit(joints[4] - joints[3])
    nails[0] = _unit(hint - float(hint @ d2) * d2)


# ----------------------------------------------------------------------------- #
# orientation and projection
# ----------------------------------------------------------------------------- #
@dataclass
class View:
    base_roll: float
    yaw: float
    pitch: float
    roll: float
    left: bool

    def matrix(self) -> np.ndarray:
        return rot_z(self.roll) @ rot_x(self.pitch) @ rot_y(self.yaw) @ rot_z(self.base_roll)


def sample_view(gesture: str, rng: np.random.Generator, left: bool) -> View:
    """Sample the hand's orientation for ``gesture`` (never rolled far enough to change class)."""
    g = GESTURES[gesture]
    u = rng.uniform
    roll = float(np.clip(rng.normal(0, 10), -MAX_ROLL_JITTER, MAX_ROLL_JITTER))
    base = g.base_roll
    if g.view == "front":
        yaw, pitch = u(-40, 40), u(-25, 25)
        if rng.random() < g.back_p:
            yaw += 180.0
    elif g.view == "fist_side":  # fingers turned towards the camera, thumb up (like) or down (dislike)
        yaw, pitch = math.copysign(u(5, 55), base), u(-15, 15)
    elif g.view == "side":  # mute: the hand seen from the side, index finger up
        yaw, pitch = u(55, 85) * (1 if rng.random() < 0.5 else -1), u(-10, 10)
        roll = float(np.clip(roll * 0.6, -12, 12))
    elif g.view == "ok":
        yaw, pitch = u(15, 50) * (1 if rng.random() < 0.8 else -1), u(-15, 15)
    elif g.view == "relaxed":  # hanging down, palm towards the body, or resting sideways
        r = rng.random()
        if r < 0.65:
            yaw, pitch = u(45, 100) * (1 if rng.random() < 0.5 else -1), u(-15, 15)
        else:
            base = float(rng.choice([90.0, -90.0]))
            yaw, pitch = u(-60, 60), u(-30, 10)
        roll = float(rng.normal(0, 15))
    else:
        raise ValueError(g.view)
    return View(base_roll=base, yaw=float(yaw), pitch=float(pitch), roll=roll, left=left)


@dataclass
class HandGeom:
    """A posed hand in image pixels: what is drawn and what is annotated."""

    label: str
    joints: np.ndarray  # (21, 2) pixels
    depth: np.ndarray  # (21,) larger = nearer the camera
    palm: np.ndarray  # (P, 2)
    palm_depth: float
    web: np.ndarray  # (3, 2)
    palm_normal: np.ndarray  # (3,) camera frame; z > 0: palm towards the camera
    nail_z: np.ndarray  # (5,) camera-z of each distal bone's nail normal
    scale: float  # palm length in pixels
    left: bool
    forearm_dir: np.ndarray  # (2,) unit image direction from the wrist along the forearm
    forearm_foreshortening: float
    fingers: str = ""
    extra: dict = field(default_factory=dict)

    def bone_radii(self) -> list[tuple[int, int, float, float]]:
        """``(a, b, r_a, r_b)`` for every drawn bone, radii in pixels."""
        s = self.scale
        out = [(1, 2, THUMB_RADII[0] * s, THUMB_RADII[1] * s), (2, 3, THUMB_RADII[1] * s, THUMB_RADII[2] * s),
               (3, 4, THUMB_RADII[2] * s, THUMB_RADII[3] * s)]
        for i, b in enumerate(FINGER_BASE):
            for k in range(3):
                out.append((b + k, b + k + 1, FINGER_RADII[i, k] * s, FINGER_RADII[i, k + 1] * s))
        return out

    def extent(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of everything drawn for the hand, in pixels."""
        lo = np.full(2, np.inf); hi = np.full(2, -np.inf)
        for a, b, ra, rb in self.bone_radii():
            lo = np.minimum(lo, np.minimum(self.joints[a] - ra, self.joints[b] - rb))
            hi = np.maximum(hi, np.maximum(self.joints[a] + ra, self.joints[b] + rb))
        r = PALM_EDGE_RADIUS * self.scale
        lo = np.minimum(lo, self.palm.min(0) - r); hi = np.maximum(hi, self.palm.max(0) + r)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def translate(self, dx: float, dy: float) -> None:
        d = np.array([dx, dy])
        self.joints = self.joints + d
        self.palm = self.palm + d
        self.web = self.web + d


def project(pose: HandPose, view: View, scale: float, center: tuple[float, float], label: str) -> HandGeom:
    """Rotate, mirror (left hands) and project ``pose``; the landmarks' centroid lands on ``center``."""
    R = view.matrix()
    mirror = np.array([-1.0 if view.left else 1.0, 1.0, 1.0])

    def cam(p: np.ndarray) -> np.ndarray:
        return (p @ R.T) * mirror

    j, pa, w = cam(pose.joints), cam(pose.palm), cam(pose.web)
    to_img = lambda q: np.stack([q[:, 0] * scale, -q[:, 1] * scale], 1)
    jp = to_img(j)
    off = np.asarray(center, dtype=float) - jp.mean(0)
    fa = cam(np.array([[0.0, -1.0, 0.0]]))[0]  # forearm direction
    fa2 = np.array([fa[0], -fa[1]])
    fl = float(np.linalg.norm(fa2))
    fa2 = fa2 / fl if fl > 1e-6 else np.array([0.0, 1.0])
    return HandGeom(
        label=label, joints=jp + off, depth=j[:, 2].copy(), palm=to_img(pa) + off, palm_depth=float(pa[:, 2].mean()),
        web=to_img(w) + off, palm_normal=cam(np.array([[0.0, 0.0, 1.0]]))[0], nail_z=cam(pose.nail_normals)[:, 2],
        scale=float(scale), left=view.left, forearm_dir=fa2, forearm_foreshortening=fl, fingers=pose.fingers,
    )


def make_hand(label: str, rng: np.random.Generator, *, scale: float, center: tuple[float, float], left: bool,
              shape: HandShape | None = None) -> HandGeom:
    """Pose, orient and project one hand of ``label`` (a gesture or ``no_gesture``)."""
    pose = pose_hand(label, rng, shape)
    view = sample_view(label, rng, left)
    geom = project(pose, view, scale, center, label)
    geom.extra["view"] = view
    return geom
