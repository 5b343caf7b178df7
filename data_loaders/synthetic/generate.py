"""The embedded default dataset: a small SYNTHETIC demonstration set in the HaGRID v2 layout.

``generate_synthetic_hagrid(out)`` draws full frames procedurally (no external
assets): a person (torso, head with a face) in front of a background, one
hand showing one of the 18 HaGRID gestures, and sometimes a second, relaxed
hand lower in the frame labelled ``no_gesture``. Hands come from a kinematic
skeleton of MediaPipe's 21 landmarks (:mod:`data_loaders.synthetic.hand`) drawn
as palm and finger capsules (:mod:`data_loaders.synthetic.render`), so the
annotated landmarks and boxes agree with the pixels.

Synthetic subjects each have a ``user_id``, a skin tone, a look and a
background; the train/val/test split is by subject (70/15/15). Variety and
difficulty: skin tones, backgrounds, lighting, hand scale, position, yaw and
pitch, in-plane rotation up to 22 deg (never enough to turn e.g. peace into
peace_inverted), left and right hands, sloppy fingers, landmark noise,
occasional occluders, blur, low contrast, JPEG compression and about 5 %
empty landmark lists (as HaGRID's auto-markup failures).

The output is written as HaGRID v2::

    <out>/hagrid_dataset_synth/<class>/<uuid>.jpg
    <out>/hagrid_annotations/{train,val,test}/<class>.json
    <out>/README.md, <out>/synth_info.json

It is deterministic by seed (byte-identical files), written atomically, and
reused when ``synth_info.json`` records the same settings. It exists so that
every command of the project can be run and tested without HaGRID; numbers
measured on it are NOT HaGRID results.
"""
from __future__ import annotations

import argparse
import logging
import time
import uuid as uuidlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from PIL import Image, ImageDraw
from tqdm import tqdm

from common.errors import DataError
from common.files import atomic_write_bytes
from common.parallel import mapped, usable_cpus

from ..classes import GESTURES_18, NO_GESTURE
from . import render as R
from .hand import GESTURES, HandGeom, HandShape, make_hand

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
IMAGE_DIR = "hagrid_dataset_synth"
ANNOTATION_DIR = "hagrid_annotations"
INFO_FILE = "synth_info.json"
SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}

DEFAULT_SUBJECTS = 90
DEFAULT_IMAGES_PER_SUBJECT = 16
DEFAULT_IMAGE_SIZE = (384, 288)
DEFAULT_PORTRAIT_P = 0.3
DEFAULT_SECOND_HAND_P = 0.3
DEFAULT_EMPTY_LANDMARKS_P = 0.05
#: Std of the landmark noise, in palm lengths.
DEFAULT_LANDMARK_NOISE = 0.04
OCCLUDER_P = 0.05
BAD_FIT_P = 0.06  # a finger's landmarks fitted badly (larger noise)


# ----------------------------------------------------------------------------- #
# subjects and frames
# ----------------------------------------------------------------------------- #
@dataclass
class Subject:
    index: int
    user_id: str
    split: str
    look: dict
    background: dict
    portrait: bool
    right_handed: bool
    scale: float  # person scale (palm length) as a fraction of the image's short side
    shape: HandShape


@dataclass
class HandOut:
    """One annotated hand: its geometry and what goes into the annotation file."""

    geom: HandGeom
    label: str
    bbox: list[float]  # x, y, w, h normalised
    landmarks: list[list[float]]  # [] when missing
    arm: tuple[np.ndarray, np.ndarray, np.ndarray]  # shoulder, elbow, wrist (pixels)


@dataclass
class FrameSpec:
    uuid: str
    subject: Subject
    gesture: str
    size: tuple[int, int]
    face: tuple[float, float]
    head: tuple[float, float]  # hx, hy (pixels)
    person_scale: float  # pixels
    hands: list[HandOut]  # in annotation order
    occluder: tuple | None
    finish: R.Finish

    @property
    def gesture_hand(self) -> HandOut:
        return next(h for h in self.hands if h.label != NO_GESTURE)


def assign_splits(n_subjects: int, seed: int, fractions: dict[str, float] = SPLIT_FRACTIONS) -> list[str]:
    """Subject index -> split, shuffled by ``seed``; every split gets a subject when there are 3 or more."""
    rng = np.random.default_rng([seed, 2])
    order = rng.permutation(n_subjects)
    n_val = int(round(fractions["val"] * n_subjects))
    n_test = int(round(fractions["test"] * n_subjects))
    if n_subjects >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    out = ["train"] * n_subjects
    for k, s in enumerate(order):
        if k < n_val:
            out[s] = "val"
        elif k < n_val + n_test:
            out[s] = "test"
    return out


def make_subject(index: int, seed: int, split: str, portrait_p: float) -> Subject:
    rng = np.random.default_rng([seed, 0, index])
    return Subject(
        index=index,
        user_id=rng.bytes(32).hex(),
        split=split,
        look=R.sample_look(rng),
        background=R.sample_background(rng),
        portrait=bool(rng.random() < portrait_p),
        right_handed=bool(rng.random() < 0.85),
        scale=float(rng.uniform(0.085, 0.125)),
        shape=HandShape(finger_length=float(rng.uniform(0.9, 1.1)), palm_width=float(rng.uniform(0.9, 1.1)),
                        thumb_length=float(rng.uniform(0.92, 1.08))),
    )


def gesture_schedule(n_subjects: int, images_per_subject: int, seed: int) -> list[list[str]]:
    """Gesture of every frame: a seeded cycle over the 18 classes, so classes are balanced
    (within one) and a subject repeats a gesture only past 18 frames."""
    perm = np.random.default_rng([seed, 3]).permutation(len(GESTURES_18))
    cls = [GESTURES_18[i] for i in perm]
    return [[cls[(s * images_per_subject + k) % len(cls)] for k in range(images_per_subject)] for s in range(n_subjects)]


def _clamp_into(geom: HandGeom, W: int, H: int, margin: float = 2.0) -> None:
    x0, y0, x1, y1 = geom.extent()
    dx = (margin - x0) if x0 < margin else ((W - margin - x1) if x1 > W - margin else 0.0)
    dy = (margin - y0) if y0 < margin else ((H - margin - y1) if y1 > H - margin else 0.0)
    if dx or dy:
        geom.translate(dx, dy)


def _box_overlap(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter / max(area, 1e-9)


def _annotate(geom: HandGeom, rng: np.random.Generator, W: int, H: int, *, empty_p: float, noise: float) -> tuple[list, list]:
    """Noisy normalised landmarks (or [] now and then) and the box around the drawn hand."""
    lm = geom.joints + rng.normal(0, noise * geom.scale, geom.joints.shape)
    if rng.random() < BAD_FIT_P:
        f = int(rng.integers(5))
        idx = [1, 2, 3, 4] if f == 0 else list(range(1 + 4 * f, 5 + 4 * f))
        lm[idx] += rng.normal(0, 0.12 * geom.scale, (4, 2))
    empty = rng.random() < empty_p
    x0, y0, x1, y1 = geom.extent()
    if not empty:
        x0, y0 = min(x0, float(lm[:, 0].min())), min(y0, float(lm[:, 1].min()))
        x1, y1 = max(x1, float(lm[:, 0].max())), max(y1, float(lm[:, 1].max()))
    m = 0.04 * max(x1 - x0, y1 - y0) + 1.0
    x0, y0 = max(0.0, x0 - m), max(0.0, y0 - m)
    x1, y1 = min(float(W), x1 + m), min(float(H), y1 + m)
    box = [round(x0 / W, 6), round(y0 / H, 6), round((x1 - x0) / W, 6), round((y1 - y0) / H, 6)]
    if empty:
        return box, []
    norm = np.clip(lm / np.array([W, H]), 0.0, 1.0)
    return box, [[round(float(x), 6), round(float(y), 6)] for x, y in norm]


def sample_frame(subject: Subject, gesture: str, k: int, seed: int, image_size: tuple[int, int], *,
                 second_hand_p: float = DEFAULT_SECOND_HAND_P, empty_landmarks_p: float = DEFAULT_EMPTY_LANDMARKS_P,
                 landmark_noise: float = DEFAULT_LANDMARK_NOISE) -> tuple[FrameSpec, np.random.Generator]:
    """Everything about frame ``k`` of ``subject`` except its pixels. Returns the spec and the
    frame's random generator (rendering draws from it after the spec, so the spec never
    depends on the drawing code)."""
    rng = np.random.default_rng([seed, 1, subject.index, k])
    u = rng.uniform
    W, H = (image_size[1], image_size[0]) if subject.portrait else image_size
    frame_uuid = str(uuidlib.UUID(bytes=rng.bytes(16), version=4))
    Lp = subject.scale * min(W, H) * u(0.92, 1.1)
    hy = 1.12 * Lp
    hx = hy * subject.look["face_aspect"]
    face = (u(0.3, 0.7) * W, u(0.2, 0.42) * H)
    left = not subject.right_handed if rng.random() < 0.8 else subject.right_handed
    side = 1.0 if left else -1.0  # image side of the hand's shoulder (the person faces the camera)
    Lh = Lp * u(0.9, 1.3)

    def place(label: str, s: float, L: float) -> tuple[float, float]:
        where = GESTURES[label].place
        if where == "side":
            return face[0] + s * u(1.7, 3.0) * Lp, face[1] + u(-0.8, 1.6) * Lp
        if where == "chest":
            return face[0] + s * u(1.0, 2.6) * Lp, face[1] + u(1.8, 3.0) * Lp
        if where == "low":
            return face[0] + s * u(1.3, 2.8) * Lp, H - u(0.7, 1.4) * L
        return face  # mouth: moved below

    g = make_hand(gesture, rng, scale=Lh, center=place(gesture, side, Lh), left=left, shape=subject.shape)
    if GESTURES[gesture].place == "mouth":
        mx, my = R.mouth_position(face, hy)
        finger_mid = 0.5 * (g.joints[6] + g.joints[7])
        g.translate(mx - finger_mid[0] + u(-0.1, 0.1) * hx, my - finger_mid[1] + u(-0.1, 0.1) * hy)
    _clamp_into(g, W, H)
    geoms = [g]
    if rng.random() < second_hand_p:
        L2 = Lp * u(0.9, 1.2)
        for _try in range(3):
            g2 = make_hand(NO_GESTURE, rng, scale=L2, center=place(NO_GESTURE, -side, L2), left=not left, shape=subject.shape)
            _clamp_into(g2, W, H)
            if _box_overlap(g.extent(), g2.extent()) < 0.15:
                geoms.append(g2)
                break
    # arms: forearm along the hand's axis, upper arm to the shoulder
    shoulder_y = face[1] + hy * 1.05 + 0.75 * Lp
    hands = []
    for gg in geoms:
        s = -1.0 if not gg.left else 1.0
        shoulder = np.array([face[0] + s * 1.7 * Lp, shoulder_y])
        wrist = gg.joints[0].copy()
        # the forearm follows the hand's axis, bent down and outwards (an inverted hand's arm comes in sideways)
        bias = np.array([0.2 * s, 0.0]) if gg.label == NO_GESTURE else np.array([0.5 * s, 1.0])  # relaxed arms hang
        d = gg.forearm_dir * max(gg.forearm_foreshortening, 0.4) + bias
        d = d / max(float(np.linalg.norm(d)), 1e-6)
        elbow = wrist + d * 2.4 * Lp * max(gg.forearm_foreshortening, 0.5)
        box, lms = _annotate(gg, rng, W, H, empty_p=empty_landmarks_p, noise=landmark_noise)
        hands.append(HandOut(geom=gg, label=gg.label, bbox=box, landmarks=lms, arm=(shoulder, elbow, wrist)))
    if len(hands) == 2 and rng.random() < 0.5:
        hands.reverse()  # HaGRID does not order boxes by role
    occluder = None
    if rng.random() < OCCLUDER_P:
        x0, y0, x1, y1 = g.extent()
        cx, cy = u(x0, x1), u(y0, y1)
        w, h = u(0.3, 0.6) * Lh, u(0.5, 1.0) * Lh
        occluder = ((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), R.random_color(rng), bool(rng.random() < 0.5))
    fin = R.sample_finish(rng)
    spec = FrameSpec(uuid=frame_uuid, subject=subject, gesture=gesture, size=(W, H), face=face, head=(hx, hy),
                     person_scale=Lp, hands=hands, occluder=occluder, finish=fin)
    return spec, rng


def render_frame(spec: FrameSpec, rng: np.random.Generator) -> bytes:
    """Draw the frame and return its JPEG bytes."""
    W, H = spec.size
    k = R.SS
    bg = R.render_background(spec.subject.background, (W, H), rng)
    canvas = Image.fromarray(bg).resize((W * k, H * k), Image.NEAREST)  # reduce(k) gives it back exactly
    draw = ImageDraw.Draw(canvas)
    look = spec.subject.look
    face = (spec.face[0] * k, spec.face[1] * k)
    hx, hy = spec.head[0] * k, spec.head[1] * k
    Lp = spec.person_scale * k
    light = np.array(spec.finish.light_dir) * -1.0  # highlights face the light
    R.draw_torso(draw, look, face, hy, Lp, H * k)
    for behind_head in (True, False):  # the relaxed hand is behind the head, the gesture hand in front
        for h in spec.hands:
            if (h.label == NO_GESTURE) == behind_head:
                sh, el, wr = h.arm
                R.draw_arm(draw, look, sh * k, el * k, wr * k, Lp)
                R.draw_hand(draw, h.geom, look["skin"], light, k)
        if behind_head:
            R.draw_head(draw, look, face, hx, hy)
    if spec.occluder is not None:
        (x0, y0, x1, y1), col, round_ = spec.occluder
        box = (x0 * k, y0 * k, x1 * k, y1 * k)
        if round_:
            draw.rounded_rectangle(box, radius=min(x1 - x0, y1 - y0) * k * 0.3, fill=col)
        else:
            draw.ellipse(box, fill=col)
    img = canvas.reduce(k)
    return R.finish_frame(img, spec.finish, rng)



def annotation_record(spec: FrameSpec) -> dict:
    """The HaGRID v2 record of a frame."""
    g = spec.gesture_hand.geom
    return {
        "bboxes": [h.bbox for h in spec.hands],
        "labels": [h.label for h in spec.hands],
        "united_bbox": None,
        "united_label": None,
        "user_id": spec.subject.user_id,
        "hand_landmarks": [h.landmarks for h in spec.hands],
        "leading_hand": "left" if g.left else "right",
        "meta": {"synthetic": True},
    }


def _settings(n_subjects, images_per_subject, image_size, portrait_p, seed, second_hand_p, empty_landmarks_p,
              landmark_noise) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "n_subjects": int(n_subjects),
        "images_per_subject": int(images_per_subject),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "portrait_p": float(portrait_p),
        "seed": int(seed),
        "second_hand_p": float(second_hand_p),
        "empty_landmarks_p": float(empty_landmarks_p),
        "landmark_noise": float(landmark_noise),
        "split_fractions": dict(SPLIT_FRACTIONS),
    }


_README = """# Synthetic HaGRID-format demonstration set

**This is not HaGRID.** Every frame was drawn procedurally by `data_loaders/synthetic/`
(`hand-gestures synth`): a cartoon person with one hand showing one of the 18 HaGRID gestures,
sometimes a second relaxed hand labelled `no_gesture`. It exists so that the whole pipeline
(cropping, training, evaluation, reports) can run without downloading HaGRID.
**Numbers measured on it are not HaGRID results** and say nothing about real-world accuracy.

* Layout: HaGRID v2 (`{image_dir}/<class>/<uuid>.jpg`, `hagrid_annotations/{{train,val,test}}/<class>.json`);
  every record has `"meta": {{"synthetic": true}}`.
* Subjects: {n_subjects} synthetic people, split by subject (train/val/test {splits}).
* Frames: {n_images} ({n_hands} hands, {n_no_gesture} `no_gesture`, {n_empty} with an empty landmark list).
* Landmarks are the drawn skeleton plus noise, normalised to the image, MediaPipe's 21-point order;
  boxes are the drawn hand's extent plus a small margin.
* Settings and counts: `synth_info.json`. Same settings and seed give byte-identical files.
"""


def generate_synthetic_hagrid(
    out_dir: str | Path,
    *,
    n_subjects: int = DEFAULT_SUBJECTS,
    images_per_subject: int = DEFAULT_IMAGES_PER_SUBJECT,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    portrait_p: float = DEFAULT_PORTRAIT_P,
    seed: int = 0,
    second_hand_p: float = DEFAULT_SECOND_HAND_P,
    empty_landmarks_p: float = DEFAULT_EMPTY_LANDMARKS_P,
    landmark_noise: float = DEFAULT_LANDMARK_NOISE,
    progress: bool = True,
    workers: int | None = None,
) -> dict:
    """Write the synthetic demonstration set to ``out_dir`` (HaGRID v2 layout); return its stats.

    ``image_size`` is (W, H) of landscape frames; a subject films in portrait (H, W) with
    probability ``portrait_p``. When ``out_dir/synth_info.json`` records the same settings
    the existing set is reused (``stats["reused"]``). Files of an older synthetic set in the
    same folder are replaced; a folder holding other HaGRID annotations is refused. Frames are drawn in
    ``workers`` processes (default: one per usable CPU); the output does not depend on how many.
    """
    out = Path(out_dir)
    if n_subjects < 1 or images_per_subject < 1:
        raise ValueError("n_subjects and images_per_subject must be at least 1")
    if min(image_size) < 64:
        raise ValueError(f"image_size {image_size} is too small (at least 64 px a side)")
    settings = _settings(n_subjects, images_per_subject, image_size, portrait_p, seed, second_hand_p,
                         empty_landmarks_p, landmark_noise)
    reused = _reusable(out, settings)
    if reused is not None:
        return reused
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / INFO_FILE, orjson.dumps({"complete": False, "settings": settings},
                                                     option=orjson.OPT_INDENT_2))
    subjects = [make_subject(i, seed, split, portrait_p) for i, split in enumerate(assign_splits(n_subjects, seed))]
    schedule = gesture_schedule(n_subjects, images_per_subject, seed)
    frame_kw = dict(second_hand_p=second_hand_p, empty_landmarks_p=empty_landmarks_p, landmark_noise=landmark_noise)
    jobs = [(subj, gesture, k, seed, image_size, frame_kw) for subj in subjects
            for k, gesture in enumerate(schedule[subj.index])]
    written = _Written()
    n_workers = usable_cpus() if workers is None else max(1, workers)
    # every frame has its own seeded generator, so the files are the same for any number of workers
    with mapped(_draw_frame, jobs, n_workers, chunksize=8) as frames, \
            tqdm(total=len(jobs), desc="synth frames", unit="img", disable=None if progress else True) as bar:
        for spec, jpeg in frames:  # in job order
            written.add_frame(out, spec, jpeg)
            bar.update(1)
    written.write_annotations(out)
    _prune(out, written.paths)
    stats = written.stats(subjects)
    _write_readme_and_info(out, settings, stats)
    stats.update(out_dir=str(out), reused=False, seconds=round(time.perf_counter() - t0, 2))
    return stats


def _draw_frame(job: tuple) -> tuple[FrameSpec, bytes]:
    """One frame's spec and JPEG bytes (a pool task: everything it needs travels in ``job``)."""
    subject, gesture, k, seed, image_size, frame_kw = job
    spec, rng = sample_frame(subject, gesture, k, seed, image_size, **frame_kw)
    return spec, render_frame(spec, rng)


def _reusable(out: Path, settings: dict) -> dict | None:
    """The stats of a complete set made with ``settings`` in ``out``, else None; refuses a folder
    that holds HaGRID annotations but no ``synth_info.json`` (it may be a real HaGRID copy)."""
    info_path = out / INFO_FILE
    old = None
    if info_path.is_file():
        try:
            old = orjson.loads(info_path.read_bytes())
        except orjson.JSONDecodeError:
            old = {}
    if old and old.get("complete") and old.get("settings") == settings:
        stats = dict(old.get("counts", {}))
        stats.update(out_dir=str(out), reused=True, seconds=0.0)
        log.info("synthetic set in %s is up to date; reusing it", out)
        return stats
    if old is None and (out / ANNOTATION_DIR).exists():
        raise DataError(out, f"{ANNOTATION_DIR}/ exists but no {INFO_FILE}: it may be a real HaGRID copy; "
                             "write the synthetic set to another folder")
    return None


@dataclass
class _Written:
    """What a run has written: annotation records by split and class, the files, and counts."""

    ann: dict[str, dict[str, dict]] = field(default_factory=lambda: {s: defaultdict(dict) for s in SPLIT_FRACTIONS})
    paths: set[Path] = field(default_factory=set)
    counts: Counter = field(default_factory=Counter)
    per_class: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def add_frame(self, out: Path, spec: FrameSpec, jpeg: bytes) -> None:
        """Write one frame's image and keep its annotation record for :meth:`write_annotations`."""
        split, gesture = spec.subject.split, spec.gesture
        path = out / IMAGE_DIR / gesture / f"{spec.uuid}.jpg"
        atomic_write_bytes(path, jpeg)
        self.paths.add(path)
        self.ann[split][gesture][spec.uuid] = annotation_record(spec)
        self.counts[f"images_{split}"] += 1
        self.per_class[gesture][split] += 1
        for h in spec.hands:
            self.counts["hands"] += 1
            self.counts["no_gesture_hands"] += h.label == NO_GESTURE
            self.counts["empty_landmarks"] += not h.landmarks

    def write_annotations(self, out: Path) -> None:
        for split, by_class in self.ann.items():
            for cls in sorted(by_class):
                path = out / ANNOTATION_DIR / split / f"{cls}.json"
                atomic_write_bytes(path, orjson.dumps(by_class[cls]))
                self.paths.add(path)

    def stats(self, subjects: list[Subject]) -> dict:
        n_split_subjects = Counter(s.split for s in subjects)
        return {
            "n_subjects": len(subjects),
            "n_images": sum(self.counts[f"images_{s}"] for s in SPLIT_FRACTIONS),
            "n_hands": self.counts["hands"],
            "n_no_gesture": self.counts["no_gesture_hands"],
            "n_empty_landmarks": self.counts["empty_landmarks"],
            "splits": {s: {"subjects": n_split_subjects[s], "images": self.counts[f"images_{s}"]}
                       for s in SPLIT_FRACTIONS},
            "per_class": {c: {s: self.per_class[c][s] for s in SPLIT_FRACTIONS}
                          for c in GESTURES_18 if c in self.per_class},
        }


def _write_readme_and_info(out: Path, settings: dict, stats: dict) -> None:
    """The set's README and the ``synth_info.json`` that marks it complete (written last)."""
    readme = _README.format(
        image_dir=IMAGE_DIR, n_subjects=stats["n_subjects"],
        splits="/".join(str(stats["splits"][s]["subjects"]) for s in SPLIT_FRACTIONS) + " subjects",
        n_images=stats["n_images"], n_hands=stats["n_hands"], n_no_gesture=stats["n_no_gesture"],
        n_empty=stats["n_empty_landmarks"],
    )
    atomic_write_bytes(out / "README.md", readme.encode())
    atomic_write_bytes(out / INFO_FILE, orjson.dumps({
        "complete": True, "synthetic": True, "format": "hagrid_v2",
        "note": "synthetic demonstration set drawn by data_loaders.synthetic; numbers on it are not HaGRID results",
        "settings": settings, "counts": stats,
    }, option=orjson.OPT_INDENT_2))


def _prune(out: Path, keep: set[Path]) -> None:
    """Remove images and annotation files of an earlier synthetic set that this run did not write."""
    for top, pattern in ((out / IMAGE_DIR, "*/*"), (out / ANNOTATION_DIR, "*/*")):
        if not top.is_dir():
            continue
        for p in top.glob(pattern):
            if p.is_file() and p not in keep and (p.suffix in (".jpg", ".json") or ".tmp" in p.name):
                p.unlink()


def parse_size(text: str) -> tuple[int, int]:
    """``"384x288"`` -> (384, 288); a single number N means N x 3N/4."""
    t = text.lower().replace("*", "x")
    try:
        if "x" in t:
            w, h = (int(v) for v in t.split("x"))
        else:
            w = int(t); h = int(round(w * 3 / 4))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 384x288, got {text!r}") from None
    if min(w, h) < 64:
        raise argparse.ArgumentTypeError(f"size {w}x{h} is too small (at least 64 px a side)")
    return w, h


def describe(stats: dict) -> str:
    """What :func:`generate_synthetic_hagrid` wrote, in a few lines for the console."""
    sp = stats.get("splits", {})
    what = "reused" if stats.get("reused") else f"written in {stats.get('seconds', 0):.1f} s"
    return "\n".join([
        f"synthetic HaGRID-format demonstration set {what}: {stats['out_dir']}",
        f"  {stats['n_images']} frames, {stats['n_hands']} hands ({stats['n_no_gesture']} no_gesture, "
        f"{stats['n_empty_landmarks']} without landmarks), {stats['n_subjects']} subjects",
        "  " + ", ".join(f"{s}: {v['images']} frames / {v['subjects']} subjects" for s, v in sp.items()),
        "  NOTE: synthetic demonstration data; numbers measured on it are not HaGRID results.",
    ])
