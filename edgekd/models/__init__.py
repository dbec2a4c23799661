"""Model registry: build any registered network by name with explicit keyword arguments.

Models never see the recipe; the stage code turns recipe fields into constructor arguments.

A model registered with ``streams=True`` can also run one frame at a time: its ``step_module()``
is a module taking a frame and its carried state as explicit inputs and returning this frame's
logits and the new state (``tsm.TSMStep``), which export writes as the streaming graph.

Every factory takes ``num_classes`` and the keywords ``input_size`` (T, H, W; ignored by networks
with global pooling), ``width_mult``, ``dropout`` and ``in_channels`` (2 for optical flow). Every
model class names two modules, so distillation and transfer learning need no per-model code:
``feature_path`` (its output, flattened, is the feature the classifier sees; tap it with a forward
hook) and ``head_path`` (the classifier ``nn.Linear``), and has ``forward_features(x)`` returning
that feature as ``(N, D)``.

    family         names                                              file
    C3D            c3d_teacher, c3d_student                           c3d.py
    video ResNet   r3d_18, r3d_34, mc3_18, r2plus1d_18 (torchvision)  video_resnet.py
    3D-ResNeXt     resnext3d_50, resnext3d_101, resnext3d_101_ce/_se,  resnext3d.py
                   resnext3d_101_ce_res2 .. _res5 (one CE module, Hu Table 2)
    X3D            x3d_xs, x3d_s, x3d_m (pytorchvideo names)          x3d.py
    TSM            tsm_mobilenetv2, tsm_mobilenetv2_online,           tsm.py
                   tsm_resnet50 (MMAction2 names; clips of input_size[0] frames)
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

import torch.nn as nn

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}
_STREAMING: set[str] = set()


def register_model(name: str, *, streams: bool = False) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator adding a factory under ``name``; a second registration of a name is a bug.
    ``streams``: its models have a per-frame ``step_module()`` (see the module docstring)."""

    def wrap(fn: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        if streams:
            _STREAMING.add(name)
        return fn

    return wrap


def streaming_models() -> list[str]:
    """Names of the models that stream frame by frame (``register_model(..., streams=True)``), sorted."""
    return sorted(_STREAMING)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def model_accepts(name: str, argument: str) -> bool:
    """Whether the registered factory ``name`` takes keyword ``argument`` (e.g. ``zero_init_residual``)."""
    factory = _REGISTRY.get(name)
    return factory is not None and argument in inspect.signature(factory).parameters


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build the model registered as ``name``; an unknown name suggests the closest one."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} (known: {', '.join(list_models())})")
    return _REGISTRY[name](**kwargs)


# Importing the family modules registers their factories.
from edgekd.models import c3d, resnext3d, tsm, video_resnet, x3d  # noqa: E402,F401
