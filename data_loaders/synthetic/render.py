"""Drawing for the synthetic demonstration set: backgrounds, a person, hands.

Everything is procedural (PIL ``ImageDraw`` and numpy, no external assets).
The foreground is drawn at twice the output size and reduced, which smooths
edges cheaply. Hands are drawn from the projected skeleton of
:mod:`data_loaders.synthetic.hand` (palm polygon, tapered finger capsules with an
outline, shading and nails, sorted back to front by depth), so the annotated
landmarks sit on the drawn fingers. These are demonstration pictures, not
photographs: numbers measured on them say nothing about HaGRID.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .hand import FINGER_BASE, FINGER_RADII, PALM_EDGE_RADIUS, THUMB_RADII, HandGeom

SS = 2  # supersampling factor of the foreground

#: Skin tones from light to dark (sRGB).
SKIN_TONES = (
    (250, 224, 205), (241, 204, 176), (232, 190, 155), (214, 168, 128), (196, 146, 105),
    (170, 120, 84), (141, 96, 66), (112, 74, 52), (86, 58, 42), (64, 45, 35),
)
HAIR_COLORS = ((25, 20, 18), (55, 38, 28), (92, 64, 40), (150, 110, 70), (200, 170, 110), (120, 120, 120), (160, 60, 30))
BG_STYLES = ("gradient", "room", "noise", "tiles", "curtain")

Color = tuple[int, int, int]


def _c(col, f: float = 1.0, add: float = 0.0) -> Color:
    return tuple(int(max(0, min(255, round(v * f + add)))) for v in col)  # type: ignore[return-value]


def _mix(a, b, t: float) -> Color:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def random_color(rng: np.random.Generator, lo: int = 30, hi: int = 230) -> Color:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))  # type: ignore[return-value]


# ----------------------------------------------------------------------------- #
# backgrounds
# ----------------------------------------------------------------------------- #
def sample_background(rng: np.random.Generator) -> dict:
    """A subject's surroundings: a style, a palette and a few fixed shapes (normalised coords)."""
    style = str(rng.choice(BG_STYLES))
    base = random_color(rng, 40, 235)
    shapes = []
    for _ in range(int(rng.integers(1, 5))):
        x0, y0 = rng.uniform(-0.1, 0.9, 2)
        w, h = rng.uniform(0.1, 0.5, 2)
        shapes.append(((float(x0), float(y0), float(x0 + w), float(y0 + h)), random_color(rng, 20, 240),
                       str(rng.choice(["rect", "ellipse", "frame"]))))
    return {
        "style": style, "base": base, "second": _mix(base, random_color(rng), 0.5),
        "angle": float(rng.uniform(0, math.pi)), "shapes": shapes,
        "floor": float(rng.uniform(0.6, 0.85)), "tile": int(rng.integers(18, 48)),
        "noise": float(rng.uniform(4, 18)),
    }


def render_background(bg: dict, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``(H, W, 3)`` uint8 background for one frame (camera shifts a little between frames)."""
    W, H = size
    xx = (np.arange(W, dtype=np.float32) / W)[None, :]
    yy = (np.arange(H, dtype=np.float32) / H)[:, None]
    base = np.array(bg["base"], np.float32); second = np.array(bg["second"], np.float32)
    dx, dy = (float(v) for v in rng.uniform(-0.05, 0.05, 2))
    t = np.float32(np.cos(bg["angle"])) * (xx + dx) + np.float32(np.sin(bg["angle"])) * (yy + dy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    style = bg["style"]
    # smooth blotches (all styles; strongest for "noise"), as a per-pixel brightness offset
    amp = 40.0 if style == "noise" else 14.0
    small = rng.normal(0, 1, (5, 7, 3)).astype(np.float32)
    blot = Image.fromarray(((small * 0.5 + 2) * 50).clip(0, 255).astype(np.uint8)).resize((W, H), Image.BILINEAR)
    img = np.asarray(blot, np.float32) * (amp / 50) - 2 * amp
    img += base
    img += (second - base) * t[..., None]
    if style == "room":
        floor = (yy > bg["floor"] + dy)[..., None]
        img = np.where(floor, img * 0.7 + second * 0.2, img)
    elif style == "tiles":
        k = bg["tile"]
        gy = (np.arange(H)[:, None] + int(dy * H)) % k < 2
        gx = (np.arange(W)[None, :] + int(dx * W)) % k < 2
        img = np.where((gy | gx)[..., None], img * 0.8, img)
    elif style == "curtain":
        img *= (0.85 + 0.15 * np.sin((xx + dx) * 40.0 + 3 * np.sin(yy * 5)))[..., None]
    out = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for (x0, y0, x1, y1), col, kind in bg["shapes"]:
        box = ((x0 + dx) * W, (y0 + dy) * H, (x1 + dx) * W, (y1 + dy) * H)
        if kind == "rect":
            draw.rectangle(box, fill=col)
        elif kind == "ellipse":
            draw.ellipse(box, fill=col)
        else:
            draw.rectangle(box, outline=col, width=max(2, W // 80))
    return np.asarray(out)


# ----------------------------------------------------------------------------- #
# primitives (coordinates already in canvas pixels)
# ----------------------------------------------------------------------------- #
def capsule(draw: ImageDraw.ImageDraw, p0, p1, r0: float, r1: float, fill: Color) -> None:
    """A tapered capsule: two discs joined by a quadrilateral."""
    p0 = np.asarray(p0, float); p1 = np.asarray(p1, float)
    d = p1 - p0
    n = float(np.hypot(*d))
    if n > 1e-6:
        nv = np.array([-d[1], d[0]]) / n
        quad = [tuple(p0 + nv * r0), tuple(p1 + nv * r1), tuple(p1 - nv * r1), tuple(p0 - nv * r0)]
        draw.polygon(quad, fill=fill)
    for p, r in ((p0, r0), (p1, r1)):
        if r > 0.3:
            draw.ellipse((p[0] - r, p[1] - r, p[0] + r, p[1] + r), fill=fill)


# ----------------------------------------------------------------------------- #
# person
# ----------------------------------------------------------------------------- #
def sample_look(rng: np.random.Generator) -> dict:
    """A subject's appearance."""
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    skin = _c(skin, float(rng.uniform(0.94, 1.05)), float(rng.uniform(-6, 6)))
    return {
        "skin": skin,
        "hair": HAIR_COLORS[int(rng.integers(len(HAIR_COLORS)))],
        "hair_style": str(rng.choice(["short", "long", "bald", "bun", "short"])),
        "shirt": random_color(rng, 15, 240),
        "long_sleeves": bool(rng.random() < 0.45),
        "beard": bool(rng.random() < 0.2),
        "glasses": bool(rng.random() < 0.2),
        "face_aspect": float(rng.uniform(0.68, 0.82)),
        "iris": _c(random_color(rng, 20, 120), 0.6),
    }


def draw_torso(draw, look: dict, face: tuple[float, float], hy: float, L: float, H: int) -> None:
    fx, fy = face
    y0 = fy + hy * 1.05
    sw = 2.1 * L
    shirt = look["shirt"]
    draw.rectangle((fx - 0.28 * L, fy + 0.5 * hy, fx + 0.28 * L, y0 + 0.5 * L), fill=_c(look["skin"], 0.85))  # neck
    draw.ellipse((fx - sw, y0 + 0.25 * L, fx + sw, y0 + 2.6 * L), fill=shirt)
    draw.rectangle((fx - sw * 0.97, y0 + 1.4 * L, fx + sw * 0.97, H + 10), fill=shirt)
    draw.polygon([(fx - 0.35 * L, y0 + 0.3 * L), (fx + 0.35 * L, y0 + 0.3 * L), (fx, y0 + 0.9 * L)], fill=_c(look["skin"], 0.88))


def draw_head(draw, look: dict, face: tuple[float, float], hx: float, hy: float) -> None:
    fx, fy = face
    skin, hair = look["skin"], look["hair"]
    style = look["hair_style"]
    if style == "long":
        draw.rounded_rectangle((fx - 1.25 * hx, fy - 1.05 * hy, fx + 1.25 * hx, fy + 1.5 * hy), radius=hx, fill=hair)
    if style == "bun":
        draw.ellipse((fx - 0.45 * hx, fy - 1.45 * hy, fx + 0.45 * hx, fy - 0.75 * hy), fill=hair)
    for s in (-1, 1):  # ears
        draw.ellipse((fx + s * 0.97 * hx - 0.17 * hx, fy - 0.2 * hy, fx + s * 0.97 * hx + 0.17 * hx, fy + 0.25 * hy), fill=_c(skin, 0.93))
    draw.ellipse((fx - hx, fy - hy, fx + hx, fy + hy), fill=skin)
    # soft shading on one side of the face
    draw.chord((fx - hx, fy - hy, fx + hx, fy + hy), 60, 150, fill=_c(skin, 0.93))
    if style != "bald":
        draw.chord((fx - 1.07 * hx, fy - 1.12 * hy, fx + 1.07 * hx, fy + 0.35 * hy), 180, 360, fill=hair)
    if look["beard"]:
        draw.chord((fx - hx, fy - hy, fx + hx, fy + hy), 28, 152, fill=_c(hair, 1.0, 10))
    brow = _c(hair, 0.8)
    for s in (-1, 1):
        ex, ey = fx + s * 0.38 * hx, fy - 0.06 * hy
        draw.line((ex - 0.2 * hx, ey - 0.2 * hy, ex + 0.2 * hx, ey - 0.22 * hy), fill=brow, width=max(1, int(0.07 * hx)))
        draw.ellipse((ex - 0.18 * hx, ey - 0.07 * hy, ex + 0.18 * hx, ey + 0.07 * hy), fill=(235, 235, 230))
        draw.ellipse((ex - 0.07 * hx, ey - 0.07 * hy, ex + 0.07 * hx, ey + 0.07 * hy), fill=look["iris"])
        if look["glasses"]:
            draw.ellipse((ex - 0.3 * hx, ey - 0.2 * hy, ex + 0.3 * hx, ey + 0.2 * hy), outline=(30, 30, 30), width=max(1, int(0.05 * hx)))
    if look["glasses"]:
        draw.line((fx - 0.08 * hx, fy - 0.08 * hy, fx + 0.08 * hx, fy - 0.08 * hy), fill=(30, 30, 30), width=max(1, int(0.05 * hx)))
    draw.line((fx + 0.02 * hx, fy + 0.0 * hy, fx + 0.08 * hx, fy + 0.3 * hy), fill=_c(skin, 0.78), width=max(1, int(0.06 * hx)))
    draw.ellipse((fx - 0.13 * hx, fy + 0.28 * hy, fx + 0.13 * hx, fy + 0.36 * hy), fill=_c(skin, 0.8))
    lip = _mix(_c(skin, 0.8), (170, 60, 70), 0.4)
    my = fy + 0.52 * hy
    draw.ellipse((fx - 0.28 * hx, my - 0.07 * hy, fx + 0.28 * hx, my + 0.08 * hy), fill=lip)
    draw.line((fx - 0.27 * hx, my, fx + 0.27 * hx, my), fill=_c(lip, 0.6), width=max(1, int(0.035 * hx)))


def mouth_position(face: tuple[float, float], hy: float) -> tuple[float, float]:
    return face[0], face[1] + 0.52 * hy


def draw_arm(draw, look: dict, shoulder, elbow, wrist, L: float) -> None:
    """Upper arm (sleeve) from the shoulder to the elbow and forearm to the wrist."""
    skin, shirt = look["skin"], look["shirt"]
    capsule(draw, shoulder, elbow, 0.48 * L, 0.38 * L, _c(shirt, 0.92))
    fore = _c(skin, 0.92)
    if look["long_sleeves"]:
        e = np.asarray(elbow, float); w = np.asarray(wrist, float)
        cut = e + (w - e) * 0.8
        capsule(draw, cut, wrist, 0.27 * L, 0.24 * L, fore)
        capsule(draw, elbow, cut, 0.38 * L, 0.31 * L, _c(shirt, 0.88))
    else:
        capsule(draw, elbow, wrist, 0.35 * L, 0.24 * L, fore)


# ----------------------------------------------------------------------------- #
# hands
# ----------------------------------------------------------------------------- #
def draw_hand(draw, geom: HandGeom, skin: Color, light: np.ndarray, k: float = SS) -> None:
    """Draw ``geom`` (pixel coords of the output image) on a canvas ``k`` times larger."""
    J = geom.joints * k
    s = geom.scale * k
    palm_side = geom.palm_normal[2] > 0
    back = _c(skin, 0.97)
    palm_col = _mix(skin, (255, 196, 186), 0.22) if palm_side else back
    outline = _c(skin, 0.55)
    ow = max(1.0, 0.025 * s)
    lv = np.asarray(light, float)  # 2-D unit vector pointing to the light

    elements: list[tuple[float, int, list]] = []
    # palm (with its rounded edge) and the thumb web
    palm_pts = [tuple(p) for p in geom.palm * k]
    r_edge = PALM_EDGE_RADIUS * s
    shade = 0.86 + 0.14 * abs(float(geom.palm_normal[2]))
    elements.append((geom.palm_depth, 0, [("poly", palm_pts, r_edge, _c(palm_col, shade))]))
    # thumb base + web
    web = [tuple(p) for p in geom.web * k]
    tb = [("poly", web, 0.0, _c(palm_col, shade * 0.97)),
          ("bone", J[1], J[2], THUMB_RADII[0] * s, THUMB_RADII[1] * s, _c(palm_col, shade * 0.98))]
    elements.append((0.5 * (geom.depth[1] + geom.depth[2]) + 0.01, 1, tb))
    # thumb phalanges
    elements.append((float(geom.depth[3:5].mean()) + 0.02, 2, [
        ("bone", J[2], J[3], THUMB_RADII[1] * s, THUMB_RADII[2] * s, back),
        ("bone", J[3], J[4], THUMB_RADII[2] * s, THUMB_RADII[3] * s, back),
        ("nail", 0),
    ]))
    for i, b in enumerate(FINGER_BASE):
        parts = [("bone", J[b + q], J[b + q + 1], FINGER_RADII[i, q] * s, FINGER_RADII[i, q + 1] * s, back) for q in range(3)]
        parts.append(("nail", i + 1))
        elements.append((float(geom.depth[b + 1:b + 4].mean()) + 0.01, 3 + i, parts))
    elements.sort(key=lambda e: (e[0], e[1]))

    tips = (4, 8, 12, 16, 20)
    for depth, _order, parts in elements:
        f = 1.0 + 0.12 * float(np.clip(depth, -1, 1))
        # outline pass
        for p in parts:
            if p[0] == "poly":
                _, pts, r, _col = p
                if len(pts) >= 3:
                    draw.polygon(pts, fill=outline)
                for a, bb in zip(pts, pts[1:] + pts[:1]):
                    if r > 0:
                        capsule(draw, a, bb, r + ow, r + ow, outline)
            elif p[0] == "bone":
                _, a, bb, ra, rb, _col = p
                capsule(draw, a, bb, ra + ow, rb + ow, outline)
        # fill pass: shadow body, lit core, highlight
        for p in parts:
            if p[0] == "poly":
                _, pts, r, col = p
                col = _c(col, f)
                if len(pts) >= 3:
                    draw.polygon(pts, fill=col)
                for a, bb in zip(pts, pts[1:] + pts[:1]):
                    if r > 0:
                        capsule(draw, a, bb, r, r, col)
            elif p[0] == "bone":
                _, a, bb, ra, rb, col = p
                col = _c(col, f)
                capsule(draw, a, bb, ra, rb, _c(col, 0.86))
                off = lv * 0.25 * (ra + rb) / 2
                capsule(draw, a + off, bb + off, ra * 0.72, rb * 0.72, col)
                off2 = lv * 0.45 * (ra + rb) / 2
                capsule(draw, a + off2, bb + off2, ra * 0.25, rb * 0.25, _c(col, 1.08, 6))
            elif p[0] == "nail":
                n = p[1]
                if geom.nail_z[n] > 0.25:
                    t = tips[n]
                    a, bb = J[t - 1], J[t]
                    r = (THUMB_RADII[3] if n == 0 else FINGER_RADII[n - 1, 3]) * s * 0.6
                    capsule(draw, a + (bb - a) * 0.5, a + (bb - a) * 0.88, r, r, _mix(_c(skin, f), (255, 225, 215), 0.3))


# ----------------------------------------------------------------------------- #
# finishing
# ----------------------------------------------------------------------------- #
@dataclass
class Finish:
    """Photometric settings of one frame."""

    gain: float
    tint: tuple[float, float, float]
    light_dir: tuple[float, float]
    light_strength: float
    vignette: float
    noise: float
    blur: float
    contrast: float
    jpeg_quality: int


def sample_finish(rng: np.random.Generator) -> Finish:
    ang = float(rng.uniform(0, 2 * math.pi))
    return Finish(
        gain=float(rng.uniform(0.75, 1.15)),
        tint=tuple(float(v) for v in rng.uniform(0.92, 1.08, 3)),
        light_dir=(math.cos(ang), math.sin(ang)),
        light_strength=float(rng.uniform(0.0, 0.35)),
        vignette=float(rng.uniform(0.0, 0.35)),
        noise=float(rng.uniform(1.0, 7.0)),
        blur=float(rng.uniform(0.7, 1.8)) if rng.random() < 0.1 else 0.0,
        contrast=float(rng.uniform(0.35, 0.6)) if rng.random() < 0.08 else 1.0,
        jpeg_quality=int(rng.integers(60, 93)),
    )


def finish_frame(img: Image.Image, fin: Finish, rng: np.random.Generator) -> bytes:
    """Lighting, vignette, contrast, blur, sensor noise and JPEG compression; returns JPEG bytes."""
    if fin.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(fin.blur))
    a = np.asarray(img, np.float32)
    H, W = a.shape[:2]
    yy = (np.arange(H, dtype=np.float32)[:, None] / H - 0.5)
    xx = (np.arange(W, dtype=np.float32)[None, :] / W - 0.5)
    light = 1.0 + fin.light_strength * 2 * (fin.light_dir[0] * xx + fin.light_dir[1] * yy)
    light = (light - fin.vignette * 1.5 * (xx * xx + yy * yy)) * fin.gain
    light = light.astype(np.float32)
    a = a * light[..., None] * np.array(fin.tint, np.float32)
    if fin.contrast != 1.0:
        m = a.mean()
        a = m + (a - m) * np.float32(fin.contrast)
    a += (rng.standard_normal((H, W, 1), dtype=np.float32) * np.float32(fin.noise))  # luminance noise
    buf = io.BytesIO()
    Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=fin.jpeg_quality)
    return buf.getvalue()
