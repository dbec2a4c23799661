"""Feature taps by module path (torchdistill style): a forward hook on ``model.get_submodule(path)``
records that module's output (or input), so no model needs changing to expose its features.

A tap spec is ``"<dotted module path>"`` for the module's output or ``"<path>:input"`` for its
first positional input. C3D's default, ``relu7``, is its fc7 activation: "the features before the
last FC" of Hu et al. (``fc8:input`` is the same after dropout).
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
import torch.nn as nn


def default_feature_path(model: nn.Module) -> str:
    """The model's ``feature_path`` (every registered family declares the module whose output is
    the feature its classifier sees, e.g. C3D's ``relu7``)."""
    path = getattr(model, "feature_path", None)
    if not isinstance(path, str) or not path:
        raise ValueError(f"{type(model).__name__} declares no feature_path; set distill.student_features / "
                         "distill.teacher_features to a module path (e.g. 'avgpool' or 'fc:input')")
    return path


def parse_tap(spec: str) -> tuple[str, str]:
    """``"a.b"`` -> ``("a.b", "output")``; ``"a.b:input"`` -> ``("a.b", "input")``."""
    path, _, io = spec.partition(":")
    io = io or "output"
    if io not in ("input", "output") or not path:
        raise ValueError(f"feature tap {spec!r}: expected '<module path>' or '<module path>:input'")
    return path, io


class FeatureTap:
    """Forward hook on one module; ``pop()`` returns what it recorded during the last forward.

    A module that runs more than once per forward (a shared ReLU) is refused at ``pop()``: the
    recorded value would silently be the last call's.
    """

    def __init__(self, model: nn.Module, spec: str) -> None:
        self.spec = spec
        self.path, self.io = parse_tap(spec)
        try:
            module = model.get_submodule(self.path)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            close = difflib.get_close_matches(self.path, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"feature tap {spec!r}: {type(model).__name__} has no module {self.path!r}{hint}") from None
        self._value: torch.Tensor | None = None
        self._calls = 0
        # calls are counted per forward of the whole model: evaluation passes in between (whose
        # values nobody pops) must not count against the next training forward
        self._handles = [model.register_forward_pre_hook(self._reset), module.register_forward_hook(self._hook)]

    def _reset(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._value, self._calls = None, 0

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        value = args[0] if self.io == "input" else output
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"feature tap {self.spec!r}: the module's {self.io} is {type(value).__name__}, not a tensor")
        self._value = value
        self._calls += 1

    def pop(self) -> torch.Tensor:
        """The tapped tensor of the last forward, flattened to ``(B, D)``; clears the tap."""
        if self._value is None:
            raise RuntimeError(f"feature tap {self.spec!r} recorded nothing: was the model run?")
        if self._calls != 1:
            calls = self._calls
            self._value, self._calls = None, 0
            raise RuntimeError(f"feature tap {self.spec!r}: the module ran {calls} times in one forward; "
                               "tap a module that runs once")
        value, self._value, self._calls = self._value, None, 0
        return value.flatten(1)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
