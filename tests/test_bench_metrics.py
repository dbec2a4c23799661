"""ROC/AUC, top-k, Wilson interval and confusion matrix against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekd.bench.metrics import (
    auc_mann_whitney,
    confusion_csv,
    confusion_matrix,
    macro_ovr_auc,
    roc_curve,
    top_k_accuracy,
    trapezoid_auc,
    wilson_interval,
)


def test_roc_points_and_auc_without_ties() -> None:
    # positives at 0.9, 0.6, 0.3; negatives at 0.8, 0.4.
    # pairs (pos > neg): 0.9>0.8, 0.9>0.4, 0.6>0.4 -> 3 of 6 -> AUC 0.5
    y = np.array([1, 0, 1, 0, 1])
    s = np.array([0.9, 0.8, 0.6, 0.4, 0.3])
    curve = roc_curve(y, s)
    np.testing.assert_allclose(curve.fpr, [0, 0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(curve.tpr, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.8, 0.6, 0.4, 0.3])
    assert trapezoid_auc(curve.fpr, curve.tpr) == pytest.approx(0.5)
    assert auc_mann_whitney(y, s) == pytest.approx(0.5)


def test_auc_with_ties_counts_one_half() -> None:
    # positives 0.7, 0.5; negatives 0.5, 0.2. Pairs: 0.7>0.5 (1), 0.7>0.2 (1), 0.5=0.5 (0.5), 0.5>0.2 (1) -> 3.5/4
    y = np.array([1, 1, 0, 0])
    s = np.array([0.7, 0.5, 0.5, 0.2])
    curve = roc_curve(y, s)
    # the tied score moves the curve diagonally from (0, 0.5) to (0.5, 1)
    np.testing.assert_allclose(curve.fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(curve.tpr, [0, 0.5, 1, 1])
    assert trapezoid_auc(curve.fpr, curve.tpr) == pytest.approx(0.875)
    assert auc_mann_whitney(y, s) == pytest.approx(0.875)
    # every score tied: chance
    assert auc_mann_whitney([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)
    flat = roc_curve([1, 0, 1, 0], [0.3] * 4)
    assert trapezoid_auc(flat.fpr, flat.tpr) == pytest.approx(0.5)


def test_auc_agrees_with_rank_formula_on_random_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, size=40)
        y[:2] = [0, 1]
        s = rng.integers(0, 6, size=40) / 5.0  # many ties
        c = roc_curve(y, s)
        assert trapezoid_auc(c.fpr, c.tpr) == pytest.approx(auc_mann_whitney(y, s))


def test_roc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="positives and negatives"):
        roc_curve([1, 1], [0.2, 0.4])
    assert math.isnan(auc_mann_whitney([0, 0], [0.2, 0.4]))


def test_macro_auc_skips_a_class_absent_from_the_test_set() -> None:
    # 3 classes, class 2 never occurs in the labels
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]])
    labels = np.array([0, 1, 1, 0])
    res = macro_ovr_auc(probs, labels)
    # class 0: pos scores 0.6, 0.3; neg 0.2, 0.5 -> pairs 0.6>0.2, 0.6>0.5, 0.3>0.2 -> 3/4
    # class 1: pos 0.7, 0.4; neg 0.3, 0.3 -> 4/4
    assert res["per_class"][0] == pytest.approx(0.75)
    assert res["per_class"][1] == pytest.approx(1.0)
    assert math.isnan(res["per_class"][2])
    assert res["undefined"] == [2] and res["scored"] == [0, 1]
    assert res["macro_auc"] == pytest.approx(0.875)
    assert sorted(res["curves"]) == [0, 1]


def test_macro_auc_single_class_test_set_is_undefined() -> None:
    res = macro_ovr_auc(np.full((3, 2), 0.5), np.zeros(3, dtype=int))
    assert math.isnan(res["macro_auc"]) and res["scored"] == [] and res["undefined"] == [0, 1]


def test_top_k() -> None:
    probs = np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([2, 0, 0])
    assert top_k_accuracy(probs, labels, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(probs, labels, 2) == pytest.approx(2 / 3)
    assert top_k_accuracy(probs, labels, 3) == pytest.approx(1.0)
    assert math.isnan(top_k_accuracy(probs, labels, 5))  # fewer than 5 classes: undefined, not 1.0


def test_wilson_interval_hand_values() -> None:
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208)/1.38416 = 0.716828, half 0.24655 -> [0.4902, 0.9433]
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.49016, abs=1e-4) and hi == pytest.approx(0.94332, abs=1e-4)
    lo, hi = wilson_interval(0, 20)  # stays inside [0, 1] where the normal approximation gives [0, 0]
    assert lo == 0.0 and hi == pytest.approx(0.16113, abs=1e-4)
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.16113, abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 3)


def test_confusion_matrix_and_csv() -> None:
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    text = confusion_csv(cm, ["walk", "run", "sit"])
    assert text.splitlines() == ["true\\predicted,walk,run,sit", "walk,1,1,0", "run,0,1,0", "sit,1,0,2"]
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 3]), np.array([0, 0]), 3)


def test_benchmark_app_latency_is_read_in_its_printed_unit():
    """benchmark_app prints microseconds below 1 ms (seen on an AMD EPYC: "Median: 936.44 us") and
    milliseconds above; both must come back in ms."""
    from edgekd.bench.benchmark_app import parse_latency_ms

    fast = ("[ INFO ] Count:            75382 iterations\n[ INFO ] Duration:         1000.01 ms\n"
            "[ INFO ] Latency:\n[ INFO ]    Median:        936.44 us\n[ INFO ]    Average:       950.26 us\n"
            "[ INFO ]    Min:           7.76 us\n[ INFO ]    Max:           96.41 us\n")
    slow = "[ INFO ] Latency:\n[ INFO ]    Median:        2.75 ms\n[ INFO ]    Average:       2.80 ms\n"
    assert parse_latency_ms(fast) == pytest.approx(0.93644)
    assert parse_latency_ms(fast, "Average") == pytest.approx(0.95026)
    assert parse_latency_ms(fast, "Max") == pytest.approx(0.09641)
    assert parse_latency_ms(slow) == pytest.approx(2.75)
    assert parse_latency_ms("[ INFO ]    Median:        1.5 s\n") == pytest.approx(1500.0)
    assert parse_latency_ms("[ INFO ] Duration: 1000.01 ms\n") is None  # no latency block: None, not the duration
