"""Model registry: names -> factories, inputs, input image sizes and default hyperparameters.

Usage::

    from model_classes import create_model, list_models, model_spec

    model = create_model("gcn", 18, hidden=64, node_features="xy+bone")
    spec = model_spec("gcn")          # spec.inputs, spec.image_size, spec.default_hparams
    again = create_model("gcn", 18, **model.hparams)   # same architecture, fresh weights
    model_inputs("gcn", {"handedness": True})          # ("landmarks", "handedness")

A factory (a function or the model class itself) is ``factory(num_classes, **hparams) -> nn.Module``
whose hyperparameters are keyword arguments with defaults: those defaults are ``default_hparams``.
Each model stores the full resolved dict in ``model.hparams``, which is what a checkpoint stores to
rebuild it. Optional inputs switched on by a hyperparameter (``handedness``) are the spec's
``extra_inputs(hparams)``; :func:`model_inputs` gives a model's full list. This module imports no model module: each registers itself with :func:`register_model`
when :mod:`model_classes` imports it.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

VALID_INPUTS = ("landmarks", "image")
#: Inputs a hyperparameter switches on (a model's ``extra_inputs``), in the order they follow the others.
OPTIONAL_INPUTS = ("handedness",)


class UnknownModelError(KeyError):
    """``create_model``/``model_spec`` got a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownHyperparameterError(TypeError):
    """``create_model`` got hyperparameters the model does not take."""


@dataclass(frozen=True)
class ModelSpec:
    """What the engine needs to know about a model before building it."""

    name: str
    inputs: tuple[str, ...]
    image_size: int | None
    default_hparams: dict[str, Any]
    factory: Callable[..., nn.Module] = field(repr=False, compare=False)
    #: resolved hparams -> the :data:`OPTIONAL_INPUTS` they switch on (None: none ever)
    extra_inputs: Callable[[dict], tuple[str, ...]] | None = field(default=None, repr=False, compare=False)


_REGISTRY: dict[str, ModelSpec] = {}


def _hparam_defaults(factory: Callable[..., nn.Module]) -> dict[str, Any]:
    sig = inspect.signature(factory)
    params = list(sig.parameters.values())
    if not params or params[0].name != "num_classes":
        raise TypeError(f"model factory {factory!r} must take num_classes as its first argument")
    out = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"model factory {factory!r}: no *args/**kwargs, list every hyperparameter")
        if p.default is p.empty:
            raise TypeError(f"model factory {factory!r}: hyperparameter {p.name!r} needs a default")
        out[p.name] = p.default
    return out


def register_model(
    name: str,
    *,
    inputs: tuple[str, ...] | list[str],
    image_size: int | None = None,
    extra_inputs: Callable[[dict], tuple[str, ...]] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``factory(num_classes, **hparams) -> nn.Module`` (a function or a model
    class) under ``name``; returns the factory unchanged. ``extra_inputs(hparams)`` names the
    :data:`OPTIONAL_INPUTS` that hyperparameters switch on (e.g. :func:`handedness_input`)."""
    inputs = tuple(inputs)
    bad = [i for i in inputs if i not in VALID_INPUTS]
    if not inputs or bad:
        raise ValueError(f"model {name!r}: inputs must be a non-empty subset of {VALID_INPUTS}, got {inputs}")
    if ("image" in inputs) != (image_size is not None):
        raise ValueError(f"model {name!r}: image_size is required exactly when the model takes images")

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(
            name=name,
            inputs=inputs,
            image_size=image_size,
            default_hparams=_hparam_defaults(factory),
            factory=factory,
            extra_inputs=extra_inputs,
        )
        return factory

    return deco


def list_models() -> list[str]:
    """Registered model names, in registration order (mlp, cnn, gcn, resnet34, fusion)."""
    return list(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name`` (a copy: editing it changes nothing)."""
    try:
        spec = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; valid names: {', '.join(_REGISTRY)}") from None
    return ModelSpec(
        name=spec.name,
        inputs=spec.inputs,
        image_size=spec.image_size,
        default_hparams=copy.deepcopy(spec.default_hparams),
        factory=spec.factory,
        extra_inputs=spec.extra_inputs,
    )


def check_bool(name: str, value: Any) -> bool:
    """A yes/no hyperparameter must be a bool (``--hparam handedness=true`` parses as JSON ``true``; the
    string ``"True"`` or ``1`` is refused rather than read as a guess)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def handedness_input(hparams: dict) -> tuple[str, ...]:
    """``("handedness",)`` when ``hparams["handedness"]`` is True: the model then reads ``batch["handedness"]``
    ((B,) float: +1 right, -1 left, 0 unknown)."""
    return ("handedness",) if hparams.get("handedness") is True else ()


def model_inputs(name: str, hparams: dict | None = None) -> tuple[str, ...]:
    """Every batch input model ``name`` built with ``hparams`` (defaults filled in) reads: the spec's
    ``inputs`` then the optional ones its hyperparameters switch on. What a checkpoint's
    ``preprocessing["inputs"]`` records, so evaluation, prediction and export supply them."""
    spec = model_spec(name)
    extra = spec.extra_inputs({**spec.default_hparams, **(hparams or {})}) if spec.extra_inputs else ()
    return spec.inputs + tuple(i for i in OPTIONAL_INPUTS if i in extra)


def create_model(name: str, num_classes: int, **hparams: Any) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes; unspecified hyperparameters take their defaults.

    Unlike timm's ``create_model``, a ``None`` value is passed on, not dropped: it can be a real
    choice (``weights=None`` is a randomly initialised ResNet-34, and checkpoints store it so that a
    rebuild never downloads).
    """
    spec = model_spec(name)
    unknown = sorted(set(hparams) - set(spec.default_hparams))
    if unknown:
        raise UnknownHyperparameterError(
            f"model {name!r} has no hyperparameter(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(spec.default_hparams)}"
        )
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    model = spec.factory(num_classes, **hparams)
    model.model_name = name
    return model
