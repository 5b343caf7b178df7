"""ONNX export of a checkpoint, checked against PyTorch, and the onnxruntime classifier that runs it.

``export_checkpoint(ckpt)`` writes ``<checkpoint stem>.onnx`` beside the checkpoint: a graph whose inputs are
the batch fields the model reads (a subset of :data:`ONNX_INPUTS`, batch axis dynamic) and whose output is
the ``(B, C)`` logits, with the checkpoint's class names, preprocessing, model name, temperature and sha256
in the file's metadata (``metadata_props``), so the file alone is enough to predict. Before the file is
written, onnxruntime and PyTorch score the same normalised hands (a crops folder, the checkpoint's own
crops, or synthetic hands) in batches of 1 and more; a different top class or a probability that differs
by :data:`PARITY_LIMIT` or more is an error and nothing is written. A model built with ``handedness=True``
has a ``handedness`` ``(B,)`` float input (+1 right, -1 left, 0 unknown), checked on all three values.

The exporter is torch's TorchScript-based one (``dynamo=False``, still in torch 2.15 with a deprecation
notice): it exports all five models in 0.1-3 s each, where the ``torch.export``-based one took 7-15 s
(MLP, fusion), needs a named-argument wrapper and keeps graph inputs a model never reads.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.errors import CheckpointMismatchError, UsageError, UserFacingError
from common.files import atomic_write_bytes

from .checkpoint import checkpoint_temperature, load_model

log = logging.getLogger(__name__)

#: Graph input names, in graph order; a model's graph takes the subset its ``forward`` reads.
ONNX_INPUTS = ("image", "landmarks", "has_landmarks", "handedness")
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
#: ONNX opset of an export; the TorchScript exporter writes up to :data:`MAX_OPSET`.
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 20
#: What the ``format`` metadata says, and the newest ``format_version`` this code reads.
FORMAT = "hand-gestures-onnx"
FORMAT_VERSION = 1
#: Parity: the hands scored (spread over the crops folder; fewer than PARITY_MIN_HANDS usable is an error),
#: in batches of these sizes and the rest in one more batch (a batch of 1 and larger ones: the dynamic axis).
PARITY_HANDS = 16
PARITY_MIN_HANDS = 16
PARITY_BATCHES = (1, 7)
#: The largest |onnxruntime - PyTorch| difference in any class probability that passes.
PARITY_LIMIT = 1e-4
#: The synthetic set made when no crops are at hand (subjects x frames; a few frames hold two hands).
SYNTH_SUBJECTS, SYNTH_FRAMES, SYNTH_FRAME_SIZE = 2, 16, (256, 192)
INPUT_DTYPES = {"image": np.float32, "landmarks": np.float32, "has_landmarks": np.bool_, "handedness": np.float32}
#: The handedness codes a parity check feeds when its hands do not already hold all three.
HANDEDNESS_CYCLE = (1.0, -1.0, 0.0)


# --------------------------------------------------------------------------- the onnxruntime classifier
def _json_field(meta: Mapping[str, str], key: str, source: Any) -> Any:
    try:
        return json.loads(meta[key])
    except (KeyError, ValueError):
        raise CheckpointMismatchError(f"{source}: ONNX metadata {key!r} is missing or not JSON "
                                      "(re-export it: `hand-gestures export --model CKPT`)") from None


class OnnxClassifier:
    """An exported model in an onnxruntime CPU session: ``clf(batch) -> (B, C)`` logits (numpy).

    ``batch`` is a dict of numpy arrays or torch tensors normalised as for the PyTorch model (see
    :class:`data_loaders.augment.BatchTransform`); only the graph's inputs are fed, other keys are ignored.
    ``class_names``, ``preprocessing``, ``model_name`` and ``temperature`` come from the file's metadata.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX model not found" + (" (it is a folder)" if path.is_dir() else ""))
        self._open(str(path), path)

    @classmethod
    def from_bytes(cls, data: bytes, source: str | Path = "<onnx>") -> OnnxClassifier:
        """A classifier on an in-memory model (the export checks its parity before writing the file)."""
        self = cls.__new__(cls)
        self._open(data, source)
        return self

    def _open(self, model: str | bytes, source: str | Path) -> None:
        import onnxruntime as ort

        self.path = source
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own types for a damaged or non-ONNX file
            first = (str(e).strip().splitlines() or [""])[0]
            raise CheckpointMismatchError(f"{source}: not an ONNX model ({type(e).__name__}: {first})") from None
        self._read_metadata(self.session.get_modelmeta().custom_metadata_map, source)
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        unknown = [n for n in self.input_names if n not in ONNX_INPUTS]
        if unknown or not self.input_names:
            raise CheckpointMismatchError(f"{source}: graph inputs {list(self.input_names)} are not a subset of "
                                          f"{list(ONNX_INPUTS)}")
        self.output_name = self.session.get_outputs()[0].name

    def _read_metadata(self, meta: Mapping[str, str], source: Any) -> None:
        if meta.get("format") != FORMAT:
            raise CheckpointMismatchError(f"{source}: not an ONNX export of this project (no format={FORMAT!r} "
                                          "metadata); make one with `hand-gestures export --model CKPT`")
        version = meta.get("format_version", "")
        if not version.isdigit() or int(version) > FORMAT_VERSION:
            raise CheckpointMismatchError(f"{source}: unsupported export format version {version!r} "
                                          f"(this code reads up to {FORMAT_VERSION})")
        self.class_names = [str(c) for c in _json_field(meta, "class_names", source)]
        self.preprocessing = _json_field(meta, "preprocessing", source)
        self.model_name = meta.get("model_name", "")
        self.checkpoint_sha256 = meta.get("checkpoint_sha256", "")
        try:
            self.temperature = float(meta.get("temperature", ""))
        except ValueError:
            self.temperature = float("nan")
        if not self.class_names or not isinstance(self.preprocessing, dict) or not self.model_name \
                or not math.isfinite(self.temperature) or self.temperature <= 0:
            raise CheckpointMismatchError(f"{source}: ONNX metadata is incomplete (class_names, preprocessing, "
                                          "model_name, temperature > 0); re-export it")

    def __call__(self, batch: Mapping[str, Any]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in batch]
        if missing:
            raise ValueError(f"{self.path}: the batch lacks input(s) {missing} (it has {sorted(batch)})")
        feeds = {}
        for name in self.input_names:
            v = batch[name]
            if isinstance(v, torch.Tensor):
                v = v.detach().cpu().numpy()
            feeds[name] = np.ascontiguousarray(v, dtype=INPUT_DTYPES[name])
        return self.session.run([self.output_name], feeds)[0]


# --------------------------------------------------------------------------- export
class _RecordingBatch(dict):
    """A batch dict that notes which keys the model reads."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


class GraphModule(nn.Module):
    """The model with its batch fields as separate tensors (ONNX graphs take tensors, not dicts)."""

    def __init__(self, model: nn.Module, input_names: Sequence[str]) -> None:
        super().__init__()
        self.model, self.input_names = model, tuple(input_names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.input_names, tensors)))


def example_batch(image_size: int | None, n: int = 2) -> dict[str, torch.Tensor]:
    """A normalised batch of ``n`` zero hands, half without landmarks, right and left handed (traced to build
    the graph)."""
    s = image_size or 1
    return {"image": torch.zeros(n, 3, s, s), "landmarks": torch.zeros(n, 21, 2),
            "has_landmarks": torch.arange(n) % 2 == 0, "handedness": 1.0 - 2.0 * (torch.arange(n) % 2)}


def graph_inputs(model: nn.Module, image_size: int | None) -> tuple[str, ...]:
    """The :data:`ONNX_INPUTS` the model's ``forward`` reads, found by running it once."""
    batch = _RecordingBatch(example_batch(image_size))
    with torch.inference_mode():
        model(batch)
    other = sorted(batch.read - set(ONNX_INPUTS))
    if other:
        raise UserFacingError(f"model {getattr(model, 'model_name', '?')} reads batch fields {other} that an "
                              f"ONNX graph cannot take (inputs: {', '.join(ONNX_INPUTS)})")
    return tuple(n for n in ONNX_INPUTS if n in batch.read)


def onnx_bytes(model: nn.Module, input_names: Sequence[str], image_size: int | None, opset: int,
               metadata: Mapping[str, str]) -> bytes:
    """The serialised ONNX model with ``metadata`` in its ``metadata_props``; batch axis dynamic."""
    import onnx

    example = example_batch(image_size)
    args = tuple(example[n] for n in input_names)
    axes = {n: {0: BATCH_AXIS} for n in (*input_names, OUTPUT_NAME)}
    f = io.BytesIO()
    with warnings.catch_warnings():  # the legacy exporter's deprecation notice, tracer notes on constants
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(GraphModule(model, input_names).eval(), args, f, dynamo=False, input_names=list(input_names),
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=opset,
                          do_constant_folding=True)
    proto = onnx.load_from_string(f.getvalue())
    del proto.metadata_props[:]
    for k, v in metadata.items():
        proto.metadata_props.add(key=k, value=v)
    proto.doc_string = f"hand-gestures {metadata.get('model_name', '')}: inputs {', '.join(input_names)} -> logits"
    return proto.SerializeToString()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_metadata(ckpt: dict, checkpoint: Path) -> dict[str, str]:
    """The ``metadata_props`` of an export: everything :class:`OnnxClassifier` and the predictor need."""
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "model_name": str(ckpt["model_name"]),
        "class_names": json.dumps(list(ckpt["class_names"])),
        "preprocessing": json.dumps(ckpt["preprocessing"]),
        "temperature": repr(checkpoint_temperature(ckpt, checkpoint) or 1.0),
        "checkpoint_name": checkpoint.name,
        "checkpoint_sha256": file_sha256(checkpoint),
    }


# --------------------------------------------------------------------------- parity inputs
@contextlib.contextmanager
def _quiet(logger: str = "data_loaders") -> Iterator[None]:
    """Silence a package's warnings for a moment (a synthetic set of two subjects has no val/test split)."""
    lg = logging.getLogger(logger)
    level = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(level)


def synthetic_crops(folder: Path, crop: Mapping[str, Any]) -> Path:
    """A few synthetic frames (:mod:`data_loaders.synthetic`) cropped into ``folder/crops`` as
    ``hand-gestures crop`` would, with the checkpoint's crop size and box scale; returns the crops folder."""
    from data_loaders.classes import make_class_set
    from data_loaders.crop import DEFAULT_BOX_SCALE, DEFAULT_SIZE, crop_dataset
    from data_loaders.synthetic.generate import generate_synthetic_hagrid

    with _quiet():
        generate_synthetic_hagrid(folder / "synth", n_subjects=SYNTH_SUBJECTS, images_per_subject=SYNTH_FRAMES,
                                  image_size=SYNTH_FRAME_SIZE, seed=0, progress=False)
        crop_dataset(folder / "synth", folder / "crops", class_set=make_class_set(include_no_gesture=True),
                     size=int(crop.get("size") or DEFAULT_SIZE), box_scale=float(crop.get("box_scale") or
                                                                                DEFAULT_BOX_SCALE),
                     workers=1, progress=False)
    return folder / "crops"


def parity_batch(crops_dir: str | Path, preprocessing: Mapping[str, Any], input_names: Sequence[str],
                 n: int = PARITY_HANDS) -> dict[str, torch.Tensor]:
    """Up to ``n`` hands of a crops folder (spread over its manifest) normalised as evaluation normalises
    them, as the graph's inputs. A model that reads ``has_landmarks`` is also checked on hands without
    landmarks: when none of the chosen hands lacks them, every fourth is given none (as the predictor
    does for a hand whose detected landmarks are poor). A model that reads ``handedness`` is checked on
    right, left and unknown hands: when the chosen hands lack one of them, :data:`HANDEDNESS_CYCLE` is fed."""
    from data_loaders.augment import BatchTransform
    from data_loaders.batches import fields, load_crops, usable_rows
    from data_loaders.hand_table import HandTable

    table = usable_rows(HandTable.from_manifest(crops_dir), input_names)
    if len(table) < PARITY_MIN_HANDS:
        raise UserFacingError(f"{crops_dir}: only {len(table)} hand(s) usable by this model; the ONNX parity check "
                              f"needs at least {PARITY_MIN_HANDS}")
    table = table.subset(np.unique(np.linspace(0, len(table) - 1, min(n, len(table))).round().astype(np.int64)))
    norm, size = preprocessing["landmark_norm"], preprocessing.get("image_size")
    batch = fields(table, norm)
    if "image" in input_names:
        batch["image"] = load_crops(table, size)
    batch = BatchTransform(norm, size, None)(batch, train=False)
    if "has_landmarks" in input_names and bool(batch["has_landmarks"].all()):
        off = torch.arange(len(table)) % 4 == 3
        batch["has_landmarks"] = batch["has_landmarks"] & ~off
        batch["landmarks"] = torch.where(off[:, None, None], torch.zeros_like(batch["landmarks"]), batch["landmarks"])
    if "handedness" in input_names and len(torch.unique(batch["handedness"])) < len(HANDEDNESS_CYCLE):
        batch["handedness"] = torch.tensor(HANDEDNESS_CYCLE)[torch.arange(len(table)) % len(HANDEDNESS_CYCLE)]
    return {k: batch[k] for k in input_names}


def parity_inputs(ckpt: dict, check_data: str | Path | None,
                  input_names: Sequence[str]) -> tuple[dict[str, torch.Tensor], str]:
    """The hands of the parity check and where they came from: ``check_data`` (a crops folder), else the
    checkpoint's ``args["crops_dir"]`` when it still holds usable crops, else synthetic hands."""
    from common.errors import DataError
    from data_loaders.manifest import MANIFEST_NAME

    pre = ckpt["preprocessing"]
    if check_data is not None:
        if not (Path(check_data) / MANIFEST_NAME).is_file():
            raise UserFacingError(f"--check-data {check_data}: not a crops folder (no {MANIFEST_NAME}); make one "
                                  f"with `hand-gestures crop --out {check_data}`, or leave the option out")
        return parity_batch(check_data, pre, input_names), f"crops folder {check_data}"
    crops_dir = (ckpt.get("args") or {}).get("crops_dir")
    if crops_dir and (Path(crops_dir) / MANIFEST_NAME).is_file():
        try:
            return parity_batch(crops_dir, pre, input_names), f"the checkpoint's crops folder {crops_dir}"
        except (DataError, UserFacingError) as e:
            log.warning("parity check: cannot use the checkpoint's crops (%s); using synthetic hands", e)
    with tempfile.TemporaryDirectory(prefix="hand-gestures-parity-") as tmp:
        batch = parity_batch(synthetic_crops(Path(tmp), pre.get("crop") or {}), pre, input_names)
    return batch, "synthetic hands (data_loaders.synthetic, seed 0)"


# --------------------------------------------------------------------------- parity check
@dataclass
class Parity:
    n: int
    batch_sizes: tuple[int, ...]
    max_abs_prob_diff: float
    max_abs_logit_diff: float
    n_argmax_differ: int

    @property
    def ok(self) -> bool:
        return self.n_argmax_differ == 0 and self.max_abs_prob_diff < PARITY_LIMIT  # False for NaN


def batch_sizes(n: int) -> tuple[int, ...]:
    """:data:`PARITY_BATCHES` then the rest of ``n`` hands in one batch."""
    sizes, left = [], n
    for b in PARITY_BATCHES:
        if left > 0:
            sizes.append(min(b, left))
            left -= sizes[-1]
    return tuple(sizes + ([left] if left > 0 else []))


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def check_parity(model: nn.Module, clf: OnnxClassifier, batch: Mapping[str, torch.Tensor],
                 temperature: float = 1.0) -> Parity:
    """Score ``batch`` with PyTorch and onnxruntime in batches of :func:`batch_sizes`; compare the
    probabilities (``softmax(logits / temperature)``, what a user sees) and their argmax."""
    n = len(next(iter(batch.values())))
    sizes = batch_sizes(n)
    ends = np.cumsum(sizes)
    parts = [{k: v[e - b:e] for k, v in batch.items()} for b, e in zip(sizes, ends)]
    with torch.inference_mode():  # all PyTorch first: onnxruntime's spinning threads would slow it down
        ref = [model(dict(p)).float().cpu().numpy() for p in parts]
    got = [np.asarray(clf(p), dtype=np.float32) for p in parts]
    r, g = np.concatenate(ref), np.concatenate(got)
    if r.shape != g.shape:
        return Parity(n, sizes, float("inf"), float("inf"), n)
    return Parity(n, sizes, float(np.abs(_softmax(r, temperature) - _softmax(g, temperature)).max()),
                  float(np.abs(r - g).max()), int((r.argmax(1) != g.argmax(1)).sum()))


# --------------------------------------------------------------------------- the export step
@dataclass
class ExportReport:
    """What an export wrote and how its parity check went."""

    path: Path
    n_checked: int
    max_abs_prob_diff: float
    same_argmax: bool
    input_source: str
    model_name: str = ""
    input_names: tuple[str, ...] = ()
    opset: int = DEFAULT_OPSET
    batch_sizes: tuple[int, ...] = ()
    max_abs_logit_diff: float = 0.0
    size_bytes: int = 0
    export_seconds: float = 0.0
    check_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            (f"exported {self.model_name} to {self.path} ({self.size_bytes / 1e6:.1f} MB, opset {self.opset}, "
             f"inputs {', '.join(self.input_names)}, dynamic batch) in {self.export_seconds:.1f} s"),
            (f"parity with PyTorch on {self.n_checked} hands from {self.input_source} (batches of "
             f"{', '.join(map(str, self.batch_sizes))}): {'same' if self.same_argmax else 'DIFFERENT'} top class, "
             f"max |dprobability| {self.max_abs_prob_diff:.1e} (limit {PARITY_LIMIT:.0e}), "
             f"max |dlogit| {self.max_abs_logit_diff:.1e}; checked in {self.check_seconds:.1f} s"),
        ]


def _checked_opset(opset: int | None) -> int:
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"--opset: {opset!r} is not an ONNX opset the exporter writes ({MIN_OPSET}-{MAX_OPSET})")
    return opset


def export_checkpoint(checkpoint: str | Path, out: str | Path | None = None, *, check_data: str | Path | None = None,
                      opset: int | None = None) -> ExportReport:
    """Export ``checkpoint`` to ONNX at ``out`` (default ``<checkpoint stem>.onnx`` beside it) after a parity
    check against PyTorch (see the module docstring); the file is written atomically, and only when the
    check passes. ``check_data``: a crops folder whose hands the check scores. Returns the report."""
    checkpoint = Path(checkpoint)
    out = Path(out) if out is not None else checkpoint.with_suffix(".onnx")
    opset = _checked_opset(opset)
    model, ckpt = load_model(checkpoint)
    if out.resolve() == checkpoint.resolve():
        raise UsageError(f"--out: {out} is the checkpoint itself")
    t0 = time.perf_counter()
    size = ckpt["preprocessing"].get("image_size")
    names = graph_inputs(model, size)
    metadata = export_metadata(ckpt, checkpoint)
    try:
        data = onnx_bytes(model, names, size, opset, metadata)
    except Exception as e:  # noqa: BLE001 -- the exporter raises many types; the model is the user's
        first = (str(e).strip().splitlines() or [""])[0]
        raise UserFacingError(f"{checkpoint}: ONNX export of model {ckpt['model_name']!r} failed "
                              f"({type(e).__name__}: {first})") from None
    t1 = time.perf_counter()
    clf = OnnxClassifier.from_bytes(data, out)
    batch, source = parity_inputs(ckpt, check_data, names)
    parity = check_parity(model, clf, batch, clf.temperature)
    if not parity.ok:
        raise UserFacingError(
            f"{out}: ONNX parity check failed, file not written: on {parity.n} hands from {source}, "
            f"{parity.n_argmax_differ} top class(es) differ from PyTorch, max |dprobability| "
            f"{parity.max_abs_prob_diff:.2e} (limit {PARITY_LIMIT:.0e}), max |dlogit| {parity.max_abs_logit_diff:.2e}")
    atomic_write_bytes(out, data)
    return ExportReport(path=out, n_checked=parity.n, max_abs_prob_diff=parity.max_abs_prob_diff, same_argmax=True,
                        input_source=source, model_name=str(ckpt["model_name"]), input_names=names, opset=opset,
                        batch_sizes=parity.batch_sizes, max_abs_logit_diff=parity.max_abs_logit_diff,
                        size_bytes=len(data), export_seconds=t1 - t0, check_seconds=time.perf_counter() - t1)


def export_all(models_dir: str | Path, *, check_data: str | Path | None = None,
               opset: int | None = None) -> list[ExportReport]:
    """:func:`export_checkpoint` for every best checkpoint in ``models_dir`` (``*.pt``, not ``*.last.pt``)."""
    from .evaluate import find_checkpoints

    paths = find_checkpoints(models_dir)
    if not paths:
        raise FileNotFoundError(f"{models_dir}: no checkpoints (*.pt) to export")
    return [export_checkpoint(p, check_data=check_data, opset=opset) for p in paths]
