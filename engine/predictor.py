"""Gestures from any picture: detect hands, build each model's inputs as training built them, classify.

``GesturePredictor.from_checkpoint(path).predict(image)`` gives one :class:`Hand` per detected hand;
``classify(image, hands)`` scores given boxes/landmarks without a detector (and without labels). The
inputs are rebuilt exactly as in training: the crop is the square :func:`~data_loaders.crop.square_box`
around the hand's box cut with :func:`~data_loaders.crop.cut_square` (the checkpoint's crop size, box scale
and fill), then taken through the crop step's JPEG (quality :data:`~data_loaders.crop.JPEG_QUALITY`) and read
back as :func:`~data_loaders.batches.load_crop` reads a crop file (resized to the model's image size with
PIL's bilinear filter when it differs); a file is decoded as the crop step decodes it (a JPEG drafted to the
smallest scale that still gives every square its crop size). Landmarks are normalised with the checkpoint's
``landmark_norm``, and ``BatchTransform(landmark_norm, image_size, None)`` normalises the batch. A checkpoint
whose preprocessing this code cannot reproduce is refused (:class:`CheckpointMismatchError`, one line naming
it) rather than scored on inputs it never saw.

Probabilities are ``softmax(logits / T)`` with the checkpoint's fitted temperature ``T``
(``ckpt["calibration"]["temperature"]``, 1 when uncalibrated). A hand whose best probability is below
``min_confidence`` is labelled ``"unknown"``; so is a hand without usable landmarks for a landmark-only
model (note ``"no landmarks"``), while fusion scores it on its image branch (``has_landmarks`` False).

A checkpoint whose preprocessing lists the ``handedness`` input (a model trained with ``handedness=True``) gets
each hand's handedness as training encoded it: +1 right, -1 left (the detector's, the person's own hand), 0
when unknown (e.g. ``classify(image, hands)`` with boxes and no handedness).
"""
from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from common.errors import CheckpointMismatchError, UsageError, UserFacingError
from data_loaders.augment import IMAGENET_MEAN, IMAGENET_STD, BatchTransform
from data_loaders.batches import load_crop
from data_loaders.crop import CONTEXTS, FILL, JPEG_QUALITY, RESAMPLE, box_pixels, cut_square, draft_request, square_box
from data_loaders.hand_graph import NUM_NODES
from data_loaders.hand_table import handedness_code
from data_loaders.images import open_rgb
from data_loaders.landmarks import METHODS, normalize_landmarks

BACKENDS = ("torch", "onnxruntime")
UNKNOWN = "unknown"
NOTE_NO_LANDMARKS = "no landmarks"
NOTE_IMAGE_ONLY = "no landmarks: image branch only"
NOTE_LOW_CONFIDENCE = "below min_confidence"
#: Box sources a checkpoint's crops may have been centred on, that prediction can reproduce.
KNOWN_BOX_SOURCES = ("annotation", "landmarks")
TOP_K = 3
#: Inputs a checkpoint's preprocessing may list (``handedness`` only with one of the others).
KNOWN_INPUTS = ("image", "landmarks", "handedness")

log = logging.getLogger(__name__)
Logits = Callable[[dict], np.ndarray]


@dataclass
class HandInput:
    """A hand to classify: its box (normalised x, y, w, h, top-left origin) and, when known, its landmarks
    ((21, 2|3) normalised to the image). ``landmarks_ok`` False marks landmarks a model must not trust."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None = None
    handedness: str | None = None
    handedness_score: float | None = None
    landmarks_ok: bool = True
    mirrored: bool = False  # the picture is mirrored (a selfie view): the hand looks like the other hand

    @property
    def pictured_handedness(self) -> str | None:
        """The hand as the pixels show it, which is what a model trained on ordinary photos learned: in a
        mirrored picture the person's right hand looks like a left hand."""
        if not self.mirrored or self.handedness not in ("left", "right"):
            return self.handedness
        return "left" if self.handedness == "right" else "right"


@dataclass
class Hand:
    """One classified hand. ``probs`` holds every class's probability (zeros when the hand was not scored)."""

    index: int
    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None
    handedness: str | None
    handedness_score: float | None
    label: str
    probability: float
    top3: list[tuple[str, float]]
    probs: np.ndarray = field(repr=False)
    note: str = ""

    def to_json(self, **context: Any) -> dict:
        """A JSON-ready dict: ``context`` (e.g. source, frame) first, then the hand (floats rounded)."""
        out = dict(context)
        out.update({
            "hand": self.index,
            "box": [round(float(v), 5) for v in self.box],
            "landmarks": (np.round(self.landmarks.astype(float), 5).tolist()
                          if self.landmarks is not None and np.isfinite(self.landmarks).all() else None),
            "handedness": self.handedness,
            "handedness_score": None if self.handedness_score is None else round(float(self.handedness_score), 4),
            "label": self.label,
            "probability": round(self.probability, 5),
            "top3": [[name, round(p, 5)] for name, p in self.top3],
        })
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class InputSpec:
    """What a checkpoint's preprocessing asks for, checked once (see :func:`input_spec`)."""

    inputs: tuple[str, ...]
    image_size: int | None
    landmark_norm: str
    crop_size: int | None  # None only for landmark models, which cut no crop
    box_scale: float | None
    fill: int
    quality: int  # JPEG quality the crop step saved the training crops with
    box_source: str
    box_model: dict | None
    context: str = "square"  # "box": the square outside the hand's box is filled, as the crops were

    @property
    def landmarks_only(self) -> bool:
        return "image" not in self.inputs


def input_spec(pre: dict, path: str | Path) -> InputSpec:
    """Check that ``pre`` (a checkpoint's ``preprocessing``) can be reproduced here; one-line error if not."""
    def refuse(problem: str) -> CheckpointMismatchError:
        return CheckpointMismatchError(f"{path}: cannot reproduce this checkpoint's preprocessing: {problem}")

    inputs = tuple(pre.get("inputs") or ())
    if not set(inputs) & {"image", "landmarks"} or set(inputs) - set(KNOWN_INPUTS):
        raise refuse(f"inputs {list(inputs)} (known: {', '.join(KNOWN_INPUTS)}, with image or landmarks)")
    if "landmarks" in inputs and pre.get("landmark_norm") not in METHODS:
        raise refuse(f"landmark_norm {pre.get('landmark_norm')!r} (known: {', '.join(METHODS)})")
    crop = dict(pre.get("crop") or {})
    spec = InputSpec(inputs=inputs, image_size=pre.get("image_size"), landmark_norm=pre.get("landmark_norm"),
                     crop_size=crop.get("size"), box_scale=crop.get("box_scale"),
                     fill=FILL if crop.get("fill") is None else crop["fill"],
                     quality=JPEG_QUALITY if crop.get("quality") is None else int(crop["quality"]),
                     box_source=crop.get("box_source") or "annotation", box_model=crop.get("box_model"),
                     context=crop.get("context") or "square")
    if "image" in inputs:
        _check_image_preprocessing(spec, pre, crop, refuse)
    if spec.box_model is not None:
        from data_loaders.box_model import BoxModel

        try:
            BoxModel.from_dict(spec.box_model)
        except (ValueError, TypeError, AttributeError) as e:
            raise refuse(f"recorded box_model: {e}") from None
    return spec


def _check_image_preprocessing(spec: InputSpec, pre: dict, crop: dict, refuse: Callable) -> None:
    """The crop and pixel settings an image model was trained with must be ones this code produces."""
    if not isinstance(spec.image_size, int) or spec.image_size <= 0:
        raise refuse(f"image model without a usable image_size ({spec.image_size!r})")
    if spec.context not in CONTEXTS:
        raise refuse(f"crop context {spec.context!r} (known: {', '.join(CONTEXTS)})")
    if spec.box_source not in KNOWN_BOX_SOURCES:
        raise refuse(f"crops centred on box_source {spec.box_source!r} (known: {', '.join(KNOWN_BOX_SOURCES)})")
    if crop.get("resample") not in (None, RESAMPLE):
        raise refuse(f"crop resample {crop['resample']!r} (this code crops with {RESAMPLE!r})")
    for key, want in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        have = pre.get(key)
        if have is not None and not np.allclose(have, want):
            raise refuse(f"image {key} {list(have)} (this code normalises with ImageNet's {list(want)})")
    unknown = [k for k in ("size", "box_scale") if crop.get(k) is None]
    if unknown:  # a guess would score crops unlike its training crops without a word
        raise refuse(f"image model whose preprocessing['crop'] does not record {' and '.join(unknown)} "
                     "(how its training crops were cut)")
    if not (isinstance(spec.crop_size, int) and spec.crop_size > 0 and isinstance(spec.box_scale, (int, float))
            and spec.box_scale > 0):
        raise refuse(f"crop size {spec.crop_size!r}, box_scale {spec.box_scale!r}")


def as_rgb_image(image: Any) -> Image.Image:
    """An RGB PIL image from a path (EXIF orientation applied), a PIL image (EXIF applied unless it came
    from :func:`~data_loaders.images.open_rgb`, which already did) or an ``(H, W, 3)`` uint8 RGB array.
    Its ``info`` describes its pixels (see :func:`with_true_geometry`)."""
    if isinstance(image, (str, Path)):
        return open_rgb(image)
    if isinstance(image, Image.Image):
        if "original_size" not in image.info:  # not from open_rgb: apply the EXIF orientation here
            image = ImageOps.exif_transpose(image)
        return with_true_geometry(image if image.mode == "RGB" else image.convert("RGB"))
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise UsageError(f"an image array must be (H, W, 3) uint8 RGB, got {a.shape} {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(a[:, :, :3]), "RGB")


def geometry_is_true(img: Image.Image) -> bool:
    """Whether ``img.info``'s ``original_size`` and ``scale`` (what :func:`~data_loaders.images.open_rgb`
    records) describe ``img.size`` to a pixel. A caller who resized or cropped the image kept them (PIL copies
    ``info``), and then they are stale. A drafted JPEG's decoded size is the original size times the draft's
    power of two to a pixel (its recorded scale is one axis's exact ratio), so that factor is tried too."""
    info = img.info
    if "original_size" not in info and "scale" not in info:
        return True
    try:
        orig = tuple(float(v) for v in info["original_size"])
        scale = float(info.get("scale", 1.0))
        if len(orig) != 2 or not (math.isfinite(scale) and scale > 0):
            return False
    except (KeyError, TypeError, ValueError):
        return False
    return any(all(abs(o * f - n) <= 1 for o, n in zip(orig, img.size))
               for f in (scale, 2.0 ** round(math.log2(scale))))


def with_true_geometry(img: Image.Image) -> Image.Image:
    """``img``, or when its recorded geometry is stale (:func:`geometry_is_true`) a copy whose ``info`` says
    the pixels are the whole picture at scale 1 (boxes are normalised: they still fall on the same hands)."""
    if geometry_is_true(img):
        return img
    out = img.copy()
    out.info.update(original_size=img.size, scale=1.0)
    return out


def image_wh(img: Image.Image) -> tuple[int, int]:
    """The full picture's ``(w, h)`` that normalised boxes and landmarks refer to."""
    return tuple(img.info["original_size"]) if "original_size" in img.info and geometry_is_true(img) else img.size


def usable_landmarks(hand: HandInput) -> bool:
    """True when the hand has 21 finite landmarks that its source did not flag as degenerate."""
    lm = hand.landmarks
    if lm is None or not hand.landmarks_ok:
        return False
    lm = np.asarray(lm)
    return lm.ndim == 2 and lm.shape[0] == NUM_NODES and lm.shape[1] >= 2 and bool(np.isfinite(lm[:, :2]).all())


def checked_box(box: Sequence[float], i: int) -> tuple[float, float, float, float]:
    b = tuple(float(v) for v in box)
    if len(b) != 4 or not all(math.isfinite(v) for v in b) or b[2] <= 0 or b[3] <= 0:
        raise UsageError(f"hand {i}: box must be 4 finite numbers x, y, w, h with w, h > 0, got {list(box)}")
    return b  # type: ignore[return-value]


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class TorchLogits:
    """The PyTorch backend: the checkpoint's model in eval mode, batches moved to its device."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model, self.device = model.eval().to(device), device

    @torch.inference_mode()
    def __call__(self, batch: dict) -> np.ndarray:
        out = self.model({k: v.to(self.device) for k, v in batch.items()})
        return out.float().cpu().numpy()


class OnnxLogits:
    """The onnxruntime backend: helper class :class:`engine.export.OnnxClassifier` on numpy inputs."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def __call__(self, batch: dict) -> np.ndarray:
        return np.asarray(self.classifier({k: v.numpy() for k, v in batch.items()}), dtype=np.float32)


def onnx_file_for(checkpoint: Path, onnx_path: str | Path | None) -> Path:
    """The ONNX file to run: ``onnx_path``, or ``<checkpoint stem>.onnx`` beside the checkpoint."""
    path = Path(onnx_path) if onnx_path is not None else checkpoint.with_suffix(".onnx")
    if not path.is_file():
        raise UserFacingError(f"{path}: ONNX model not found; make it with `hand-gestures export --model {checkpoint}`"
                              + (" or pass --onnx PATH" if onnx_path is None else ""))
    return path


def warn_if_stale(onnx: Path, recorded_sha256: str, checkpoint: Path) -> None:
    """One warning when ``checkpoint`` is not the file ``onnx`` was exported from (its sha256, recorded at
    export, differs: recalibrated or retrained since). Nothing to compare when the checkpoint is absent."""
    if checkpoint.suffix == ".onnx" or not checkpoint.is_file():
        return
    from .export import file_sha256

    if recorded_sha256 != file_sha256(checkpoint):
        log.warning("%s was not exported from the current %s (recalibrated or retrained since?): "
                    "`hand-gestures export --model %s` brings it up to date", onnx, checkpoint, checkpoint)


def checked_temperature(t: Any, path: str | Path) -> float:
    if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise CheckpointMismatchError(f"{path}: calibration temperature must be a finite number > 0, got {t!r}")
    return float(t)


def _path_of(image: Any, path: str | Path | None) -> Path | None:
    """The file the image came from (``path``, or the image argument when it is a path), else None."""
    if path is not None:
        return Path(path)
    return Path(image) if isinstance(image, (str, Path)) else None


class GesturePredictor:
    """A checkpoint (or its ONNX export) ready to classify hands in any picture.

    ``predict(image)`` detects hands with MediaPipe (a :class:`~data_loaders.detect.HandDetector` made on the
    first call from ``detector``, a config, unless a detector instance is given) and classifies them;
    ``classify(image, hands)`` needs no detector. Use it as a context manager, or call :meth:`close`, to
    release a detector it made (a detector passed in stays its owner's).
    """

    def __init__(self, logits: Logits, *, class_names: Sequence[str], model_name: str, preprocessing: dict,
                 temperature: float = 1.0, detector: Any = None, min_confidence: float = 0.0,
                 source: str | Path = "<model>") -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise UsageError(f"min_confidence must be a probability in [0, 1], got {min_confidence}")
        self._logits = logits
        self.class_names = list(class_names)
        self.model_name = model_name
        self.preprocessing = dict(preprocessing)
        self.spec = input_spec(self.preprocessing, source)
        self.temperature = checked_temperature(temperature, source)
        self.min_confidence = float(min_confidence)
        self.source = str(source)
        self._transform = BatchTransform(self.spec.landmark_norm, self.spec.image_size, None)
        self._detector_spec = detector
        self._detector: Any = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, backend: str = "torch", onnx_path: str | Path | None = None,
                        detector: Any = None, min_confidence: float = 0.0,
                        device: str | torch.device = "cpu") -> GesturePredictor:
        """Load ``path`` (a ``.pt`` checkpoint, or a ``.onnx`` export, which implies onnxruntime).

        ``backend="onnxruntime"`` runs ``onnx_path`` (default: ``<checkpoint stem>.onnx``) and reads the class
        names, preprocessing and temperature from its metadata; ``device`` is the torch backend's.
        """
        path = Path(path)
        if path.suffix == ".onnx":
            backend, onnx_path = "onnxruntime", path
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        kw = {"detector": detector, "min_confidence": min_confidence}
        if backend == "onnxruntime":
            from .export import OnnxClassifier

            onnx = onnx_file_for(path, onnx_path)
            clf = OnnxClassifier(onnx)
            warn_if_stale(onnx, clf.checkpoint_sha256, path)
            return cls(OnnxLogits(clf), class_names=clf.class_names, model_name=clf.model_name,
                       preprocessing=clf.preprocessing, temperature=clf.temperature, source=onnx, **kw)
        from .checkpoint import checkpoint_temperature, load_model
        from .distributed import resolve_device

        dev = resolve_device(str(device))
        model, ckpt = load_model(path, map_location="cpu")
        temperature = checkpoint_temperature(ckpt, path) or 1.0
        return cls(TorchLogits(model, dev), class_names=ckpt["class_names"], model_name=ckpt["model_name"],
                   preprocessing=ckpt["preprocessing"], temperature=temperature, source=path, **kw)

    # ------------------------------------------------------------------ detector
    @property
    def detector(self) -> Any:
        """The hand detector, made on first use from the config given (default: ``DetectorConfig()``)."""
        if self._detector is None:
            spec = self._detector_spec
            if spec is not None and hasattr(spec, "detect"):
                self._detector = spec
            else:
                from data_loaders.detect import DetectorConfig, HandDetector

                self._detector = HandDetector(spec if spec is not None else DetectorConfig())
        return self._detector

    def close(self) -> None:
        """Release the detector this predictor made (not one it was given)."""
        own = self._detector is not None and self._detector is not self._detector_spec
        if own:
            self._detector.close()
        self._detector = None

    def __enter__(self) -> GesturePredictor:  # noqa: PYI034 -- typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ prediction
    def predict(self, image: Any, *, detector: Any = None, path: str | Path | None = None) -> list[Hand]:
        """Detect and classify every hand in ``image`` (path, PIL image or ``(H, W, 3)`` uint8 RGB array),
        top to bottom. ``detector`` overrides the predictor's own (e.g. one tracking detector per video);
        ``path`` names the file an image object was read from (see :meth:`batch`; implied by a path)."""
        img = as_rgb_image(image)
        det = detector or self.detector
        mirrored = bool(getattr(getattr(det, "config", None), "mirrored", False))
        found = det.detect(np.asarray(img))
        return self._classify(img, [replace(self.hand_input(d, img), mirrored=mirrored) for d in found],
                              _path_of(image, path))

    def hand_input(self, det: Any, img: Image.Image) -> HandInput:
        """A detected hand (anything with ``box``, ``landmarks``, ``handedness``, ``handedness_score``,
        ``landmarks_ok``) as this model's input: its box is the detector's (the default box model) or, for a
        checkpoint whose crops were centred on landmark boxes of a recorded box model, that model's."""
        box, wh = det.box, image_wh(img)
        if self.spec.box_source == "landmarks" and self.spec.box_model and det.landmarks_ok:
            from data_loaders.box_model import BoxModel, landmark_box

            box = landmark_box(np.asarray(det.landmarks)[:, :2], wh, BoxModel.from_dict(self.spec.box_model))
        x, y, w, h = (float(v) for v in box)  # a hand collapsed to a point still gets a (1-pixel) box
        box = (x, y, max(w, 1.0 / wh[0]), max(h, 1.0 / wh[1]))
        return HandInput(box=box, landmarks=det.landmarks, handedness=det.handedness,
                         handedness_score=det.handedness_score, landmarks_ok=det.landmarks_ok)

    def classify(self, image: Any, hands: Sequence[HandInput], *, path: str | Path | None = None) -> list[Hand]:
        """Classify given hands of ``image`` (no detector, no labels); one :class:`Hand` per input, in order.
        ``path``: as for :meth:`predict`."""
        return self._classify(as_rgb_image(image), hands, _path_of(image, path))

    def _classify(self, img: Image.Image, hands: Sequence[HandInput], path: Path | None) -> list[Hand]:
        hands = list(hands)
        boxes = [checked_box(h.box, i) for i, h in enumerate(hands)]
        usable = np.array([usable_landmarks(h) for h in hands], dtype=bool)
        scored = np.flatnonzero(usable) if self.spec.landmarks_only else np.arange(len(hands))
        probs = np.zeros((len(hands), len(self.class_names)))
        if len(scored):
            batch = self.batch(img, [boxes[i] for i in scored], [hands[i].landmarks for i in scored], usable[scored],
                               path=path, handedness=[hands[i].pictured_handedness for i in scored])
            probs[scored] = softmax(self._logits(batch), self.temperature)
        done = set(scored.tolist())
        return [self._hand(i, h, boxes[i], probs[i], i in done, usable[i]) for i, h in enumerate(hands)]

    def batch(self, img: Image.Image, boxes: Sequence[tuple], landmarks: Sequence, usable: np.ndarray, *,
              path: str | Path | None = None, handedness: Sequence[str | None] | None = None) -> dict:
        """The normalised model batch for these hands, built as training builds it: ``image`` for image models,
        ``landmarks`` and ``has_landmarks`` for landmark models (fusion: all three), and ``handedness`` (from
        ``"right"``/``"left"``/None per hand; all unknown when not given) for models that read it. ``path``: the
        file ``img`` was read from, decoded again as the crop step decodes it when that differs (a drafted JPEG)."""
        img = with_true_geometry(img)
        spec, wh = self.spec, image_wh(img)
        raw: dict[str, torch.Tensor] = {}
        if "image" in spec.inputs:
            squares = [square_box(b, wh, spec.box_scale) for b in boxes]
            src = self._crop_source(img, wh, squares, path)
            keeps = [box_pixels(b, wh) if spec.context == "box" else None for b in boxes]
            raw["image"] = torch.from_numpy(np.stack([self._training_crop(src, sq, k) for sq, k in zip(squares, keeps)]))
        if "landmarks" in spec.inputs:
            lm = np.zeros((len(boxes), NUM_NODES, 2), dtype=np.float32)
            if usable.any():
                idx = np.flatnonzero(usable)
                lm[idx] = normalize_landmarks(np.stack([np.asarray(landmarks[i])[:, :2] for i in idx]),
                                              spec.landmark_norm, image_size=np.tile(np.asarray(wh), (len(idx), 1)),
                                              bbox=np.asarray([boxes[i] for i in idx]))
            raw["landmarks"] = torch.from_numpy(lm)
            raw["has_landmarks"] = torch.from_numpy(np.asarray(usable, dtype=bool))
        if "handedness" in spec.inputs:
            codes = [handedness_code(h) for h in (handedness or [None] * len(boxes))]
            raw["handedness"] = torch.tensor(codes, dtype=torch.float32)
        return self._transform(raw, train=False)

    def _crop_source(self, img: Image.Image, wh: tuple[int, int], squares: Sequence[tuple], path: Path | None):
        """The picture the crop step would cut these squares from: ``img``, or for a file the JPEG decode
        drafted to the smallest scale that still gives every square ``crop_size`` pixels
        (:func:`~data_loaders.crop.draft_request`, as ``hand-gestures crop`` asks for it)."""
        want = draft_request(wh, (sq[2] for sq in squares), self.spec.crop_size) if path is not None else None
        if want is None:
            return img
        drafted = open_rgb(path, draft_to=want)
        return drafted if tuple(drafted.info["original_size"]) == tuple(wh) else img  # the file changed: keep img

    def _training_crop(self, img: Image.Image, square: tuple[int, int, int], keep: tuple | None = None) -> np.ndarray:
        """One ``(3, S, S)`` uint8 crop exactly as training read it: cut, saved as the crop step's JPEG, read
        back by :func:`~data_loaders.batches.load_crop` (resized with PIL when the model's size differs)."""
        spec = self.spec
        buf = io.BytesIO()
        cut_square(img, square, spec.crop_size, spec.fill, keep=keep).save(buf, format="JPEG", quality=spec.quality)
        buf.seek(0)
        return load_crop(buf, spec.image_size)  # type: ignore[arg-type] -- PIL reads file objects too

    def _hand(self, i: int, h: HandInput, box: tuple, p: np.ndarray, scored: bool, usable: bool) -> Hand:
        lm = None if h.landmarks is None else np.asarray(h.landmarks, dtype=np.float32)
        base = {"index": i, "box": box, "landmarks": lm, "handedness": h.handedness,
                "handedness_score": h.handedness_score}
        if not scored:
            return Hand(**base, label=UNKNOWN, probability=0.0, top3=[], probs=p, note=NOTE_NO_LANDMARKS)
        order = np.argsort(-p, kind="stable")[:TOP_K]
        top = [(self.class_names[j], float(p[j])) for j in order]
        label, prob = top[0]
        note = "" if usable or self.spec.landmarks_only or "landmarks" not in self.spec.inputs else NOTE_IMAGE_ONLY
        if prob < self.min_confidence:
            label, note = UNKNOWN, "; ".join(filter(None, [note, NOTE_LOW_CONFIDENCE]))
        return Hand(**base, label=label, probability=prob, top3=top, probs=p, note=note)
