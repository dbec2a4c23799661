"""Transfer learning: load weights from a local file in any known layout, new head, optional freezing.

Ullah & Munir's TUTL teacher starts from Sports-1M C3D weights, Hu et al. fine-tune Kinetics
3D-ResNeXt-101, Camarena et al. use torchvision's Kinetics R3D/R(2+1)D. Each source stores its
weights differently; ``load_pretrained`` reads a local file (``torch.load(weights_only=True)``, so a
file cannot run pickled code), maps it onto this package's module names and loads it:

    layout        what the file holds                                     key mapping
    edgekd        an ``edgekd-checkpoint-v1`` dict (train/checkpoint.py)  none
    c3d_sports1m  a plain state dict conv1..conv5b, fc6, fc7, fc8         convX -> features.convX
                  (the public c3d-pytorch port of the Caffe model)
    torchvision   a plain video-ResNet state dict (stem.0.weight, ...)    none
    hara          ``{"state_dict": {"module.conv1.weight": ...}, "arch"}``  strip ``module.``
    pytorchvideo  ``{"model_state": {"blocks.0.conv.conv_t.weight": ...}}``  none (x3d.py keeps
                  (the hub's X3D_XS.pyth ... X3D_M.pyth)                  pytorchvideo's names)
    mmaction2     ``{"meta": ..., "state_dict": {"backbone.conv1...":     strip a DDP ``module.``
                  ..., "cls_head.fc_cls.weight": ...}}`` (TSM .pth files)  (tsm.mmaction2_state_dict)

``layout="auto"`` tells them apart from the file's structure (an MMAction2 file from Hara's, both
keeping a ``state_dict``, by its ``meta`` and its ``backbone.``/``cls_head.`` keys). The classifier
head (the model's ``head_path``) is the one part allowed to differ: a head whose shape does not
fit the target classes is dropped and keeps the model's fresh initialisation. Any other missing,
unexpected or mis-shaped key is an error that lists every one of them, because a silently
half-loaded backbone trains without complaint and just ends up worse. Two absences are expected and allowed: BatchNorm
``num_batches_tracked`` counters (files saved before PyTorch 0.4.1 lack them) and modules a model
declares in ``new_module_prefixes`` (e.g. CE/SE modules that a plain ResNeXt file cannot have).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn

Layout = Literal["auto", "edgekd", "c3d_sports1m", "torchvision", "hara", "pytorchvideo", "mmaction2"]
LAYOUTS = ("edgekd", "c3d_sports1m", "torchvision", "hara", "pytorchvideo", "mmaction2")
_PYTORCHVIDEO_KEY = "blocks.0.conv.conv_t.weight"  # X3D's stem: in every pytorchvideo X3D checkpoint
_MMACTION2_PREFIXES = ("backbone.", "cls_head.")
C3D_CONVS = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
_EDGEKD_FORMAT = "edgekd-checkpoint-v1"  # train/checkpoint.py's FORMAT (not imported: it imports the registry)


class PretrainedMismatchError(ValueError):
    """The file's weights do not fit the model; the message lists every offending key."""


@dataclass
class LoadReport:
    """What ``load_pretrained`` did, key by key."""

    path: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    head_reset: list[str] = field(default_factory=list)  # file's head keys dropped (other class count)
    kept_fresh: list[str] = field(default_factory=list)  # model keys the file lacks by design
    frozen: list[str] = field(default_factory=list)  # parameter names with requires_grad=False
    adapted: list[str] = field(default_factory=list)  # first-conv weights averaged to other in_channels
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. Hara's ``arch``, edgekd's model name

    def summary(self) -> str:
        parts = [f"{len(self.loaded)} tensors loaded from {self.path} ({self.layout} layout)"]
        if self.head_reset:
            parts.append(f"head re-initialised ({', '.join(self.head_reset)})")
        if self.kept_fresh:
            parts.append(f"{len(self.kept_fresh)} new tensors kept fresh")
        if self.adapted:
            parts.append(f"input channels adapted ({', '.join(self.adapted)})")
        if self.frozen:
            parts.append(f"{len(self.frozen)} parameters frozen")
        return "; ".join(parts)


def load_pretrained(
    model: nn.Module,
    path: str | Path,
    *,
    layout: Layout = "auto",
    freeze: str | Sequence[str] = "none",
    reset_head: bool = False,
    adapt_in_channels: bool = False,
) -> LoadReport:
    """Load the weights in ``path`` into ``model`` (in place) and return what was loaded.

    ``freeze``: ``"none"``; ``"backbone"`` (every loaded parameter except the head, so the head and
    any freshly initialised module keep training); or a list of module-name prefixes. Frozen
    BatchNorm layers also keep their pretrained running statistics (they stay in eval mode even
    when the model trains). ``reset_head`` re-initialises a head even when its shape fits (e.g.
    400 Kinetics classes to another 400-class dataset). ``adapt_in_channels`` lets the first
    convolution take another number of input channels (RGB weights for a 2-channel flow model)
    by averaging its filters over the input channels and replicating the mean, as in TSN's
    cross-modality initialisation.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {p}")
    if isinstance(freeze, str) and freeze not in ("none", "backbone"):
        raise ValueError(f"freeze must be 'none', 'backbone' or a list of module prefixes, got {freeze!r}")
    if not isinstance(freeze, str):
        _check_prefixes(model, freeze)  # before loading: a typo must not leave a loaded but unfrozen model
    payload = torch.load(p, map_location="cpu", weights_only=True)
    chosen = detect_layout(payload, p) if layout == "auto" else _check_layout(payload, layout, p)
    state, meta = to_model_keys(payload, chosen, p)
    report = LoadReport(path=str(p), layout=chosen, meta=meta)
    _load_matching(model, state, report, reset_head=reset_head, adapt_in_channels=adapt_in_channels)
    if freeze == "backbone":
        head = _head_prefix(model)
        report.frozen = freeze_parameters(model, sorted({_param_owner(k) for k in report.loaded if not _under(k, head)}))
    elif not isinstance(freeze, str):
        report.frozen = freeze_parameters(model, list(freeze))
    return report


# ----------------------------------------------------------------------------- layouts


def detect_layout(payload: Any, path: Path | str = "file") -> str:
    """Tell the layouts apart from the file's structure alone."""
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a dict of weights, got {type(payload).__name__}")
    if payload.get("format") == _EDGEKD_FORMAT:
        return "edgekd"
    if isinstance(payload.get("model_state"), dict) and _PYTORCHVIDEO_KEY in payload["model_state"]:
        return "pytorchvideo"
    if _is_mmaction2(payload):
        return "mmaction2"
    if isinstance(payload.get("state_dict"), dict):
        return "hara"
    keys = [k for k, v in payload.items() if isinstance(v, torch.Tensor)]
    if keys and all(k.startswith("module.") for k in keys):
        return "hara"  # a bare DataParallel state dict: Hara's weights without the wrapper
    if any(k.startswith("stem.") for k in keys):
        return "torchvision"
    if "conv3a.weight" in keys and "fc8.weight" in keys:
        return "c3d_sports1m"
    shown = ", ".join(list(payload)[:8])
    raise ValueError(f"{path}: cannot tell the weights layout from its keys ({shown}, ...); "
                     f"set the layout explicitly to one of {list(LAYOUTS)}")


def _check_layout(payload: Any, layout: str, path: Path) -> str:
    if layout not in LAYOUTS:
        close = difflib.get_close_matches(layout, LAYOUTS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown weights layout {layout!r}{hint} (known: auto, {', '.join(LAYOUTS)})")
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a dict of weights, got {type(payload).__name__}")
    if layout == "edgekd" and payload.get("format") != _EDGEKD_FORMAT:
        raise ValueError(f"{path}: layout 'edgekd' needs an {_EDGEKD_FORMAT!r} checkpoint; this file has "
                         f"format {payload.get('format')!r}")
    if layout == "pytorchvideo" and not isinstance(payload.get("model_state"), dict):
        raise ValueError(f"{path}: layout 'pytorchvideo' needs a file with a 'model_state' dict (the hub's "
                         f"X3D_*.pyth); this one has keys {list(payload)[:8]}")
    return layout


def _is_mmaction2(payload: dict[str, Any]) -> bool:
    """MMAction2's ``.pth``: ``meta`` beside a ``state_dict`` of ``backbone.``/``cls_head.`` keys
    (a DistributedDataParallel ``module.`` prefix allowed)."""
    state = payload.get("state_dict")
    if "meta" not in payload or not isinstance(state, dict) or not state:
        return False
    return all(str(k).removeprefix("module.").startswith(_MMACTION2_PREFIXES) for k in state)


def to_model_keys(payload: dict[str, Any], layout: str,
                  path: Path | str = "file") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The file's tensors renamed to this package's module names, plus its metadata."""
    meta: dict[str, Any] = {}
    if layout == "edgekd":
        meta = {"model_name": payload.get("model_name"), "classes": payload.get("classes")}
        state = payload["state_dict"]
    elif layout == "hara":
        inner = payload.get("state_dict", payload)
        meta = {k: payload[k] for k in ("arch", "epoch") if k in payload}
        state = {k.removeprefix("module."): v for k, v in inner.items()}
    elif layout == "pytorchvideo":
        meta = {k: payload[k] for k in ("epoch",) if k in payload}
        state = dict(payload["model_state"])
    elif layout == "mmaction2":
        from edgekd.models.tsm import mmaction2_state_dict

        meta = {"meta": payload["meta"]} if "meta" in payload else {}
        state = mmaction2_state_dict(payload)
    elif layout == "c3d_sports1m":
        state = {(f"features.{k}" if k.split(".")[0] in C3D_CONVS else k): v for k, v in payload.items()}
    else:  # torchvision
        state = dict(payload)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: entries that are not tensors in a {layout} state dict: {', '.join(bad)}")
    return state, meta


# ----------------------------------------------------------------------------- matching


def _load_matching(model: nn.Module, state: dict[str, torch.Tensor], report: LoadReport, *, reset_head: bool,
                   adapt_in_channels: bool) -> None:
    own = model.state_dict()
    head = _head_prefix(model)
    fresh_prefixes = tuple(getattr(model, "new_module_prefixes", ()))
    first_conv = _first_conv_weight(model) if adapt_in_channels else None
    head_keys = [k for k in state if _under(k, head)]
    if reset_head or any(k in own and state[k].shape != own[k].shape for k in head_keys):
        report.head_reset = sorted(head_keys)  # the head goes as a unit: never a new weight with an old bias
    unexpected, shapes, to_load = [], [], {}
    for k, v in state.items():
        if k in report.head_reset:
            continue
        if k not in own:
            unexpected.append(k)
        elif v.shape != own[k].shape:
            if k == first_conv and _channels_only(v, own[k]):
                to_load[k] = v.mean(dim=1, keepdim=True).expand_as(own[k]).clone()
                report.adapted.append(f"{k}: {v.shape[1]} -> {own[k].shape[1]} channels")
            else:
                shapes.append(f"{k}: file {list(v.shape)} vs model {list(own[k].shape)}")
        else:
            to_load[k] = v
    missing = []
    for k in own:
        if k in to_load or (k in state and k not in report.head_reset):  # loaded, or listed as mis-shaped
            continue
        if _under(k, head) or k.endswith("num_batches_tracked") or k.startswith(fresh_prefixes):
            report.kept_fresh.append(k)
        else:
            missing.append(k)
    if unexpected or shapes or missing:
        raise PretrainedMismatchError(_mismatch_message(report, missing, unexpected, shapes))
    model.load_state_dict({**own, **to_load}, strict=True)
    report.loaded = sorted(to_load)


def _mismatch_message(report: LoadReport, missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    lines = [f"{report.path} ({report.layout} layout) does not fit the model:"]
    for title, keys in (("missing from the file", missing), ("in the file but not in the model", unexpected),
                        ("shape differs", shapes)):
        if keys:
            lines.append(f"  {title} ({len(keys)}):")
            lines += [f"    {k}" for k in keys]
    lines.append("  only the classifier head may differ; is the file for the same architecture and input size?")
    return "\n".join(lines)


def _channels_only(src: torch.Tensor, dst: torch.Tensor) -> bool:
    """Same filter shape except the input-channel axis."""
    return src.dim() == dst.dim() and src.shape[0] == dst.shape[0] and src.shape[2:] == dst.shape[2:]


def _first_conv_weight(model: nn.Module) -> str | None:
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return f"{name}.weight"
    return None


def _head_prefix(model: nn.Module) -> str:
    head = getattr(model, "head_path", None)
    if not isinstance(head, str) or not isinstance(model.get_submodule(head), nn.Linear):
        raise ValueError(f"{type(model).__name__} must name its classifier nn.Linear in a 'head_path' class attribute")
    return head


def _under(key: str, prefix: str) -> bool:
    """``key`` is ``prefix`` itself or inside module ``prefix`` (module boundaries only: 'fc' is not 'fc6')."""
    return key == prefix or key.startswith(prefix + ".")


def _param_owner(key: str) -> str:
    return key.rsplit(".", 1)[0]


# ----------------------------------------------------------------------------- freezing


def freeze_parameters(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """``requires_grad=False`` for every parameter under the module prefixes; returns their names.

    A prefix that names no module is an error (with a close match), not a silent no-op. BatchNorm
    layers whose parameters are all frozen are kept in eval mode by a forward pre-hook, so their
    running statistics stay the pretrained ones while the rest of the model trains.
    """
    _check_prefixes(model, prefixes)
    frozen = []
    for name, param in model.named_parameters():
        if any(_under(name, p) for p in prefixes):
            param.requires_grad_(False)
            frozen.append(name)
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        all_frozen = bool(params) and not any(q.requires_grad for q in params)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and all_frozen and not getattr(m, "_edgekd_frozen_bn", False):
            m.register_forward_pre_hook(_keep_eval)
            m._edgekd_frozen_bn = True  # type: ignore[assignment]
    return frozen


def _check_prefixes(model: nn.Module, prefixes: Sequence[str]) -> None:
    """Every prefix must name a module; the error lists each unknown one with its closest match."""
    modules = [m for m, _ in model.named_modules() if m]
    unknown = [p for p in prefixes if p not in modules]
    if unknown:
        hints = []
        for p in unknown:
            close = difflib.get_close_matches(p, modules, n=1)
            hints.append(f"{p!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"freeze: no module named {', '.join(hints)} in {type(model).__name__}")


def _keep_eval(module: nn.Module, args: tuple[Any, ...]) -> None:
    module.train(False)
