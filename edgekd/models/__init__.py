"""Model registry: build any registered network by name with explicit keyword arguments.

Models never see the recipe; the stage code turns recipe fields into constructor arguments.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch.nn as nn

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator adding a factory under ``name``; a second registration of a name is a bug."""

    def wrap(fn: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build the model registered as ``name``; an unknown name suggests the closest one."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} (known: {', '.join(list_models())})")
    return _REGISTRY[name](**kwargs)


# Importing the family modules registers their factories.
from edgekd.models import c3d  # noqa: E402,F401
