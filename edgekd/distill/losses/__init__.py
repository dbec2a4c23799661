"""The KD-loss registry: every distillation loss declared once, with its own parameter block.

A loss is one module in this package (found and imported automatically) that registers a term
function with :func:`register_kd_loss`: a mechanism name (``soft_ce_T``), a frozen dataclass of
its parameters (with an ``errors(path)`` method checking their ranges), the papers' names as
aliases (``ullah``), and short labels for tables. A recipe selects it and sets its parameters in
a block of their own::

    distill:
      method: ullah            # or soft_ce_T: the same loss
      ullah: {alpha: 0.5, temperature: 10}

Every loss has the form ``hard_weight * CE(student, labels) + sum_k w_k * mean_i term_k[i]``: the
term function returns ``hard_weight`` and the weighted per-clip soft terms (:class:`Terms`), so an
unlabelled clip can contribute its soft terms alone. :func:`combine` adds them up.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F

from edgekd.recipe import DistillConfig, RecipeError, build_section

__all__ = ["KDLoss", "Terms", "combine", "get_kd_loss", "kd_loss_labels", "kd_losses", "recipe_errors",
           "register_kd_loss", "resolve"]


@dataclass(frozen=True)
class Terms:
    """One loss evaluated on a batch: the weight of the hard cross-entropy and the soft terms, each
    ``(weight, per-clip values of shape (B,))``; the loss is ``hard_weight * CE + sum w * mean(values)``."""

    hard_weight: float
    soft: tuple[tuple[float, torch.Tensor], ...]


# term(student_logits, teacher_logits, params, student_features, teacher_features) -> Terms
TermFn = Callable[..., Terms]


@dataclass(frozen=True, eq=False)
class KDLoss:
    """One registered loss."""

    name: str  # the mechanism's name, e.g. soft_ce_T
    params: type  # frozen dataclass of its knobs; ``errors(path) -> list[str]`` checks their ranges
    term: TermFn
    aliases: tuple[str, ...] = ()  # the papers' names, e.g. ullah
    labels: Mapping[str, str] = field(default_factory=dict)  # short table labels, e.g. temperature -> T
    features: bool = False  # needs the student's and teacher's features (tapped by module path)
    summary: str = ""
    source: str = ""  # the paper and equation it implements

    def parameters(self, block: Mapping[str, Any] | None = None, path: str = "") -> Any:
        """The typed parameters from a recipe block (defaults for keys it does not set); raises
        RecipeError naming every bad key and value by its dotted ``path``."""
        errs: list[str] = []
        value = build_section(self.params, dict(block or {}), path or f"distill.{self.name}", errs)
        if value is not None and not errs:
            errs += value.errors(path or f"distill.{self.name}")
        if errs:
            raise RecipeError(errs, f"KD loss {self.name}")
        return value


_REGISTRY: dict[str, KDLoss] = {}  # mechanism name and every alias -> the loss


def register_kd_loss(name: str, params: type, *, aliases: tuple[str, ...] = (), labels: Mapping[str, str] | None = None,
                     features: bool = False, summary: str = "", source: str = "") -> Callable[[TermFn], TermFn]:
    """Decorator registering ``term`` under ``name`` and its aliases; a name taken twice is a bug."""

    def wrap(term: TermFn) -> TermFn:
        loss = KDLoss(name, params, term, tuple(aliases), MappingProxyType(dict(labels or {})), features, summary,
                      source)
        for n in (name, *aliases):
            if n in _REGISTRY:
                raise ValueError(f"KD loss name {n!r} is registered twice")
            _REGISTRY[n] = loss
        return term

    return wrap


def _discover() -> None:
    """Import every module of this package: each registers its loss (adding a loss is one file)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def kd_losses() -> list[KDLoss]:
    """Every registered loss once, in registration order."""
    out: list[KDLoss] = []
    for loss in _REGISTRY.values():
        if all(loss is not seen for seen in out):
            out.append(loss)
    return out


def get_kd_loss(name: str) -> KDLoss:
    """The loss registered as ``name`` (a mechanism or a paper's name); unknown names get a suggestion."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown distill.method {name!r}{hint} (known: {', '.join(_names())})")
    return _REGISTRY[name]


def _names() -> list[str]:
    return [f"{loss.name} ({', '.join(loss.aliases)})" if loss.aliases else loss.name for loss in kd_losses()]


def resolve(cfg: DistillConfig) -> tuple[KDLoss, Any]:
    """The loss ``cfg.method`` selects and its typed parameters (block ``distill.<method>``)."""
    loss = get_kd_loss(cfg.method)
    return loss, loss.parameters(cfg.blocks.get(cfg.method), f"distill.{cfg.method}")


# Flat distill keys of earlier versions -> the method whose block they now belong in
_LEGACY = {"alpha": "ullah", "temperature": "ullah", "tau": "camarena", "weight": "camarena", "lambda1": "hu",
           "lambda2": "hu", "student_features": "hu", "teacher_features": "hu"}


def legacy_key_message(key: str, path: str = "distill") -> str | None:
    """How to rewrite a flat ``distill.<key>`` of earlier versions, or None for other keys."""
    method = _LEGACY.get(key)
    if method is None:
        return None
    loss = _REGISTRY[method]
    return (f"{path}.{key}: KD loss parameters now live in the method's own block; write "
            f"`distill: {{method: {method}, {method}: {{{key}: ...}}}}` (or method/block {loss.name}), and sweep "
            f"`distill.{method}.{key}` ({method} = {loss.name} takes "
            f"{', '.join(f.name for f in dataclasses.fields(loss.params))})")


def recipe_errors(cfg: DistillConfig) -> list[str]:
    """Every problem with the recipe's ``distill`` section that the registry can see: an unknown
    method, blocks that name no loss (with the rewrite of flat keys of earlier versions), and each
    block's own keys, types and ranges."""
    errs: list[str] = []
    if cfg.method not in _REGISTRY:
        close = difflib.get_close_matches(cfg.method, list(_REGISTRY), n=1)
        errs.append(f"distill.method: unknown KD loss {cfg.method!r}"
                    + (f", did you mean {close[0]!r}?" if close else f" (known: {', '.join(_names())})"))
    for key, block in cfg.blocks.items():
        path = f"distill.{key}"
        if key not in _REGISTRY:
            legacy = legacy_key_message(key)
            if legacy:
                errs.append(legacy)
                continue
            close = difflib.get_close_matches(key, [*_REGISTRY, *DISTILL_KEYS, *_LEGACY], n=1)
            if close and close[0] in _LEGACY:
                errs.append(f"{path}: unknown key, did you mean distill.{close[0]}? That too has moved: "
                            + str(legacy_key_message(close[0])))
            else:
                errs.append(f"{path}: unknown key" + (f", did you mean distill.{close[0]}?" if close else
                                                       f" (a KD loss block or one of {', '.join(DISTILL_KEYS)})"))
            continue
        if not isinstance(block, Mapping):
            errs.append(f"{path}: expected a mapping of {key}'s parameters, got {block!r}")
            continue
        try:
            _REGISTRY[key].parameters(block, path)
        except RecipeError as e:
            errs += e.errors
    aliased = {}
    for key in cfg.blocks:
        if key in _REGISTRY:
            aliased.setdefault(_REGISTRY[key].name, []).append(key)
    for name, keys in aliased.items():
        if len(keys) > 1:
            errs.append(f"distill: blocks {', '.join(keys)} set the same loss ({name}); keep one")
    return errs


DISTILL_KEYS = tuple(f.name for f in dataclasses.fields(DistillConfig) if not f.metadata.get("blocks"))


def kd_loss_labels() -> dict[str, str]:
    """``{"distill.ullah.temperature": "T", ...}``: short labels of every loss parameter under each of
    its names, for sweep tables."""
    out = {}
    for name, loss in _REGISTRY.items():
        for param, label in loss.labels.items():
            out[f"distill.{name}.{param}"] = label
    return out


def combine(terms: Terms, student_logits: torch.Tensor, labels: torch.Tensor,
            labelled: torch.Tensor | None = None) -> torch.Tensor:
    """``hard_weight * CE + sum_k w_k * mean(term_k)``. With ``labelled`` (a bool mask), the
    cross-entropy averages over the labelled clips only (none: no hard term); soft terms average
    over every clip."""
    loss = None
    if labelled is None:
        loss = terms.hard_weight * F.cross_entropy(student_logits.float(), labels)
    elif bool(labelled.any()):
        loss = terms.hard_weight * F.cross_entropy(student_logits.float()[labelled], labels[labelled])
    for weight, values in terms.soft:
        part = weight * values.mean()
        loss = part if loss is None else loss + part
    assert loss is not None, "a KD loss needs a hard term or at least one soft term"
    return loss


_discover()
