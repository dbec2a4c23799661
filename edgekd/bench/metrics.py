"""Accuracy metrics of the bench report: top-k, one-vs-rest ROC/AUC, a Wilson interval, confusion.

Written with numpy only (no scikit-learn dependency for five formulas). Conventions, chosen so a
reader can check any number by hand:

- ROC points are taken at every distinct score, highest first; tied scores move the curve
  diagonally, so the trapezoidal area under it equals the Mann-Whitney probability
  ``P(s_pos > s_neg) + 0.5 P(s_pos == s_neg)`` (the usual, tie-aware AUC).
- One-vs-rest AUC of a class is undefined when the test set has no positives (class absent) or no
  negatives (only that class). Such classes get NaN and are left out of the macro mean, which says
  how many classes it averaged; they are never silently scored 0.5 or 0.
- The 95% interval of accuracy is the **Wilson score interval**: unlike the normal approximation it
  stays inside [0, 1] and is sensible at 0% or 100% on small test sets.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "RocCurve",
    "auc_mann_whitney",
    "confusion_csv",
    "confusion_matrix",
    "macro_ovr_auc",
    "roc_curve",
    "top_k_accuracy",
    "trapezoid_auc",
    "wilson_interval",
]

_Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class RocCurve:
    """One ROC curve: false/true positive rates at decreasing thresholds, from (0, 0) to (1, 1)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray  # threshold[i] gives (fpr[i+1], tpr[i+1]): predict positive if score >= it


def _binary_inputs(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    return y, s


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> RocCurve:
    """ROC of binary labels (truthy = positive) against scores; needs both classes present."""
    y, s = _binary_inputs(y_true, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC needs positives and negatives, got {n_pos} positive and {n_neg} negative")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # index of the last item of each distinct score
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    return RocCurve(np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], s[last_of_tie])


def trapezoid_auc(x: np.ndarray, y: np.ndarray) -> float:
    """Area under a piecewise-linear curve through (x, y) (x non-decreasing)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def auc_mann_whitney(y_true: np.ndarray, scores: np.ndarray) -> float:
    """AUC from average ranks (ties count one half): an independent check of ``trapezoid_auc(roc)``.

    NaN when a class is missing, because the probability it estimates is then undefined.
    """
    y, s = _binary_inputs(y_true, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0  # mean of 1-based ranks a+1 .. b
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def macro_ovr_auc(probs: np.ndarray, labels: np.ndarray) -> dict[str, object]:
    """One-vs-rest AUC per class and their mean over the classes where it is defined.

    Returns ``{"macro_auc", "per_class" (NaN where undefined), "scored" (class indices averaged),
    "undefined" (indices skipped, absent from or the only class of the test set), "curves"}``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs must be (N, K) with N = len(labels); got {probs.shape} and {labels.shape}")
    per_class, curves, scored, undefined = [], {}, [], []
    for k in range(probs.shape[1]):
        pos = labels == k
        if pos.all() or not pos.any():
            per_class.append(math.nan)
            undefined.append(k)
            continue
        curve = roc_curve(pos, probs[:, k])
        curves[k] = curve
        per_class.append(trapezoid_auc(curve.fpr, curve.tpr))
        scored.append(k)
    macro = float(np.mean([per_class[k] for k in scored])) if scored else math.nan
    return {"macro_auc": macro, "per_class": per_class, "scored": scored, "undefined": undefined, "curves": curves}


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the ``k`` highest scores (NaN when k > classes or no rows).

    Ties at the k-th score are broken by class index (stable sort), as argmax does for top-1.
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if k < 1:
        raise ValueError(f"top_k_accuracy: k must be >= 1, got {k}")
    if len(labels) == 0 or k > probs.shape[1]:
        return math.nan
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (nan, nan) when n == 0."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"wilson_interval: need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` counts, rows = true class, columns = predicted class."""
    labels = np.asarray(labels).astype(np.int64)
    preds = np.asarray(preds).astype(np.int64)
    if labels.shape != preds.shape:
        raise ValueError(f"labels and preds differ in shape: {labels.shape} vs {preds.shape}")
    bad = (labels < 0) | (labels >= num_classes) | (preds < 0) | (preds >= num_classes)
    if bad.any():
        raise ValueError(f"class index outside [0, {num_classes}) at positions {np.flatnonzero(bad)[:5].tolist()}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def confusion_csv(cm: np.ndarray, class_names: Sequence[str]) -> str:
    """CSV text: header ``true\\predicted`` + class names, then one row per true class."""
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(class_names)} class names")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["true\\predicted", *class_names])
    for name, row in zip(class_names, cm):
        writer.writerow([name, *(int(v) for v in row)])
    return buf.getvalue()
