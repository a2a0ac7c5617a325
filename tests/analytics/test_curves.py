"""ROC/PR/PRG curves and areas: hand-worked cases, scikit-learn, the prg reference, invariances."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from dlsys.analytics.curves.metrics import (
    all_positive_points,
    aupr,
    auprg,
    auroc,
    interpolate_pr,
    pr_curve,
    pr_to_roc,
    precision_gain,
    prg_curve,
    recall_gain,
    roc_curve,
    roc_to_pr,
)

# The example of the prg package's documentation (R create_prg_curve / calc_auprg):
# three positives, three negatives, two tie groups.
Y6 = [1, 1, 0, 0, 1, 0]
S6 = [0.8, 0.8, 0.6, 0.4, 0.4, 0.2]
# thresholds 0.8, 0.6, 0.4, 0.2 -> (TP, FP) = (2, 0), (2, 1), (3, 2), (3, 3)

# A ranking (no ties) whose PRG curve crosses both axes: labels in score order 1 1 0 0 0 0 1 0.
Y8 = [1, 1, 0, 0, 0, 0, 1, 0]
S8 = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]


# ------------------------------------------------------------------ hand-worked: ties


def test_roc_points_and_auroc_by_hand_with_ties():
    c = roc_curve(Y6, S6)
    # TP / 3 and FP / 3 at thresholds inf, 0.8, 0.6, 0.4, 0.2
    np.testing.assert_allclose(c.tpr, [0, 2 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(c.fpr, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_array_equal(c.thresholds, [np.inf, 0.8, 0.6, 0.4, 0.2])
    # trapezoids: 1/3 * 2/3 + 1/3 * (2/3 + 1)/2 + 1/3 * 1 = 4/18 + 5/18 + 6/18 = 5/6;
    # Mann-Whitney: 9 pairs, the two 0.8 positives win 6, the 0.4 positive wins 1 and ties 1
    # -> 7.5 / 9 = 5/6
    assert auroc(Y6, S6) == pytest.approx(5 / 6, abs=1e-15)


def test_pr_points_and_average_precision_by_hand_with_ties():
    c = pr_curve(Y6, S6)
    np.testing.assert_allclose(c.recall, [2 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(c.precision, [1, 2 / 3, 3 / 5, 1 / 2])
    # AP = (2/3 - 0) * 1 + 0 * 2/3 + (1 - 2/3) * 3/5 + 0 * 1/2 = 2/3 + 1/5 = 13/15
    assert aupr(Y6, S6, kind="ap") == pytest.approx(13 / 15, abs=1e-15)


def test_interpolated_aupr_by_hand_with_ties():
    # origin -> (2, 0): precision 1 on recall [0, 2/3]             -> 2/3
    # (2, 0) -> (2, 1) and (3, 2) -> (3, 3): recall does not move   -> 0
    # (2, 1) -> (3, 2): a = 2, b = 3, skew = 1, c = 2, d = 1:
    #   integral (2 + x) / (3 + 2x) dx on [0, 1] = d/c + (a - b/c)/c * ln(1 + c d / b)
    #   = 1/2 + (1/2)/2 * ln(5/3); divided by n_pos = 3
    expected = 2 / 3 + (0.5 + 0.25 * math.log(5 / 3)) / 3  # 0.875902...
    assert aupr(Y6, S6, kind="interpolated") == pytest.approx(expected, abs=1e-14)
    # straight line from (2/3, 2/3) to (1, 3/5) would give 1/3 * (2/3 + 3/5)/2 = 0.2111 for
    # that segment instead of 0.2092: the line over-estimates (Davis & Goadrich 2006)
    straight = 2 / 3 + (1 / 3) * (2 / 3 + 3 / 5) / 2
    assert aupr(Y6, S6, kind="interpolated") < straight


def test_prg_curve_matches_reference_package_example():
    # R: create_prg_curve(c(1,1,0,0,1,0), c(0.8,0.8,0.6,0.4,0.4,0.2)) prints
    #   TP  FP  precision_gain recall_gain is_crossing
    #   0.0 0   NaN            -Inf        0
    #   1.5 0   1.0000000       0.0        1   (recall = pi: TP = 3 * 3 / 6)
    #   2.0 0   1.0000000       0.5        0
    #   2.0 1   0.5000000       0.5        0
    #   3.0 2   0.3333333       1.0        0
    #   3.0 3   0.0000000       1.0        0
    c = prg_curve(Y6, S6)
    np.testing.assert_allclose(c.tp, [0, 1.5, 2, 2, 3, 3])
    np.testing.assert_allclose(c.fp, [0, 0, 0, 1, 2, 3])
    np.testing.assert_allclose(c.recall_gain, [-np.inf, 0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(c.precision_gain[1:], [1, 1, 0.5, 1 / 3, 0])
    assert math.isnan(c.precision_gain[0])
    np.testing.assert_array_equal(c.is_crossing, [False, True, False, False, False, False])
    np.testing.assert_array_equal(c.in_unit_square, [False, True, True, True, True, True])


def test_auprg_matches_reference_package_example():
    # calc_auprg(...) = 0.7083333 in the R documentation; by hand:
    # (0,1)->(0.5,1): 0.5 * 1; (0.5,0.5)->(1,1/3): 0.5 * (0.5 + 1/3)/2 = 5/24; verticals 0
    # -> 1/2 + 5/24 = 17/24
    assert auprg(Y6, S6) == pytest.approx(17 / 24, abs=1e-15)


# ------------------------------------------------------------------ hand-worked: crossings


def test_prg_crossings_by_hand():
    # P = 3, N = 5, n = 8, P/N = 0.6. Cumulative (TP, FP): (1,0) (2,0) (2,1) (2,2) (2,3) (2,4)
    # (3,4) (3,5). RG = 1 - 0.6 FN/TP: -0.2, 0.7 (x5), 1, 1.
    # PG = 1 - 0.6 FP/TP: 1, 1, 0.7, 0.4, 0.1, -0.2, 0.2, 0 (all positive).
    # y-axis crossing on (1,0)->(2,0): TP = P^2/n = 9/8, FP = 0 -> (RG, PG) = (0, 1).
    # x-axis crossing on (2,3)->(2,4) (TP constant): FP = N/P * TP = 10/3 -> (0.7, 0).
    # x-axis crossing on (2,4)->(3,4): straight-line cross at RG = 0.7 + 0.2/0.4 * 0.3 = 0.85,
    #   TP = P^2 / (n - N * 0.85) = 9 / 3.75 = 2.4, FP = 4.
    c = prg_curve(Y8, S8)
    cross = c.is_crossing
    np.testing.assert_allclose(c.tp[cross], [9 / 8, 2, 2.4])
    np.testing.assert_allclose(c.fp[cross], [0, 10 / 3, 4])
    np.testing.assert_allclose(c.recall_gain[cross], [0, 0.7, 0.85], atol=1e-12)
    np.testing.assert_allclose(c.precision_gain[cross], [1, 0, 0], atol=1e-12)
    assert np.all(np.isnan(c.thresholds[cross]))
    keep = c.recall_gain >= 0
    np.testing.assert_allclose(
        c.recall_gain[keep], [0, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.85, 1, 1], atol=1e-12
    )
    np.testing.assert_allclose(
        c.precision_gain[keep], [1, 1, 0.7, 0.4, 0.1, 0, -0.2, 0, 0.2, 0], atol=1e-12
    )
    # area: 0.7 * 1 + 0.15 * (-0.2 + 0)/2 + 0.15 * (0 + 0.2)/2 = 0.7 - 0.015 + 0.015 = 0.7
    assert auprg(Y8, S8) == pytest.approx(0.7, abs=1e-12)
    # AUROC: the positives ranked 1 and 2 beat all 5 negatives, the one ranked 7 beats 1
    # -> 11 / 15;  AP = 1/3 * 1 + 1/3 * 1 + 1/3 * 3/7 = 17/21
    assert auroc(Y8, S8) == pytest.approx(11 / 15, abs=1e-15)
    assert aupr(Y8, S8) == pytest.approx(17 / 21, abs=1e-15)


def test_auprg_can_be_negative():
    # labels in score order 1 0 0 1: P = N = 2, RG = 1 - FN/TP, PG = 1 - FP/TP.
    # (TP, FP) = (1,0) (1,1) (1,2) (2,2) -> (RG, PG) = (0,1) (0,0) (0,-1) (1,0); the point at
    # RG = 0 is on the axis, so nothing is inserted; area = 1 * (-1 + 0)/2 = -0.5
    assert auprg([1, 0, 0, 1], [4.0, 3.0, 2.0, 1.0]) == pytest.approx(-0.5, abs=1e-15)


def test_crossing_on_both_axes_at_once_keeps_its_segment():
    # Found by hypothesis against the reference below. P = 4, N = 2, n = 6, P/N = 2;
    # (TP, FP) = (2,0) (3,2) (4,2): (RG, PG) = (-1, 1) (1/3, -1/3) (1, 0). The y-axis crossing
    # at TP = 16/6 = 8/3 (alpha = 2/3 of the way from (2,0) to (3,2), so FP = 4/3) has PG =
    # 1 - 2 (4/3)/(8/3) = 0: it sits on both axes. Area: 1/3 * (0 - 1/3)/2 + 2/3 * (-1/3 + 0)/2
    # = -1/18 - 1/9 = -1/6. (Rounding used to put an extra x-axis crossing at RG = -2e-16
    # and drop the first segment, giving -1/9.)
    y, s = [1, 1, 0, 0, 1, 1], [0.0, 0.0, -1.0, -1.0, -1.0, -2.0]
    assert auprg(y, s) == pytest.approx(-1 / 6, abs=1e-12)


def test_gain_formulas():
    # pi = 1/2, precision 2/3: (2/3 - 1/2) / ((1/2)(2/3)) = (1/6) / (1/3) = 1/2
    assert precision_gain(2 / 3, 0.5) == pytest.approx(0.5)
    # pi = 0.2, recall 0.5: (0.5 - 0.2) / (0.8 * 0.5) = 0.75; recall = pi -> 0; recall 1 -> 1
    np.testing.assert_allclose(recall_gain([0.5, 0.2, 1.0], 0.2), [0.75, 0.0, 1.0], atol=1e-15)
    assert precision_gain(0.0, 0.3) == -np.inf
    # the curve's gains are the same formulas applied to its precision and recall
    c = prg_curve(Y8, S8)
    real = ~c.is_crossing & (c.tp > 0) & ~((c.tp == 3) & (c.fp == 5))
    prec = c.tp[real] / (c.tp[real] + c.fp[real])
    np.testing.assert_allclose(c.precision_gain[real], precision_gain(prec, 3 / 8), atol=1e-12)
    np.testing.assert_allclose(c.recall_gain[real], recall_gain(c.tp[real] / 3, 3 / 8), atol=1e-12)


# ------------------------------------------------------------------ points and conversions


def test_all_positive_points():
    p = all_positive_points(Y8)  # pi = 3/8
    assert p.roc == (1.0, 1.0)
    assert p.pr == (1.0, 3 / 8)
    assert p.prg == (1.0, 0.0)
    # it is the last point of each curve (threshold at the lowest score)
    assert (roc_curve(Y8, S8).fpr[-1], roc_curve(Y8, S8).tpr[-1]) == p.roc
    assert pr_curve(Y8, S8).precision[-1] == pytest.approx(p.pr[1])
    c = prg_curve(Y8, S8)
    assert (c.recall_gain[-1], c.precision_gain[-1]) == p.prg
    assert all_positive_points(pos_fraction=0.25).pr == (1.0, 0.25)
    with pytest.raises(ValueError, match="exactly one"):
        all_positive_points(Y8, pos_fraction=0.5)


def test_roc_pr_conversion_by_hand_and_on_curves():
    # pi = 1/4, FPR 1/3, TPR 2/3: precision = (1/4)(2/3) / ((1/4)(2/3) + (3/4)(1/3)) = 0.4
    r, p = roc_to_pr(1 / 3, 2 / 3, 0.25)
    assert r == pytest.approx(2 / 3)
    assert p == pytest.approx(0.4)
    f, t = pr_to_roc(r, p, 0.25)
    assert (f, t) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    # every ROC point with TPR > 0 maps onto the PR point of the same threshold
    roc, pr = roc_curve(Y8, S8), pr_curve(Y8, S8)
    keep = roc.tpr[1:] > 0
    r, p = roc_to_pr(roc.fpr[1:][keep], roc.tpr[1:][keep], 3 / 8)
    np.testing.assert_allclose(r, pr.recall[keep])
    np.testing.assert_allclose(p, pr.precision[keep])
    f, t = pr_to_roc(pr.recall[keep], pr.precision[keep], 3 / 8)
    np.testing.assert_allclose(f, roc.fpr[1:][keep], atol=1e-15)
    np.testing.assert_allclose(t, roc.tpr[1:][keep])


def test_conversion_rejects_undefined_points():
    with pytest.raises(ValueError, match="tpr: must be > 0"):
        roc_to_pr([0.2, 0.5], [0.0, 0.5], 0.5)
    with pytest.raises(ValueError, match="pos_fraction: must be strictly between 0 and 1"):
        roc_to_pr(0.2, 0.5, 1.0)
    with pytest.raises(ValueError, match="impossible"):
        pr_to_roc(1.0, 0.1, 0.5)  # FPR would be 0.5 * 0.9 / (0.1 * 0.5) = 9
    with pytest.raises(ValueError, match=r"fpr: every value must lie in \[0, 1\]"):
        roc_to_pr(1.5, 0.5, 0.5)


# ------------------------------------------------------------------ scikit-learn


labels_scores = st.integers(min_value=2, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < n),
        st.one_of(
            # few distinct values: many ties
            st.lists(st.integers(-3, 3).map(float), min_size=n, max_size=n),
            st.lists(
                st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
                min_size=n,
                max_size=n,
            ),
        ),
    )
)


@settings(max_examples=150, deadline=None)
@given(labels_scores)
def test_auroc_and_average_precision_equal_sklearn(ys):
    y, s = ys
    assert auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert aupr(y, s, kind="ap") == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(labels_scores)
def test_curves_equal_sklearn_curves(ys):
    y, s = ys
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
    c = roc_curve(y, s)
    np.testing.assert_allclose(c.fpr, fpr)
    np.testing.assert_allclose(c.tpr, tpr)
    np.testing.assert_array_equal(c.thresholds, thr)
    prec, rec, thr = skm.precision_recall_curve(y, s)
    p = pr_curve(y, s)
    # scikit-learn lists recall decreasing and appends (recall 0, precision 1)
    np.testing.assert_allclose(p.precision, prec[:-1][::-1])
    np.testing.assert_allclose(p.recall, rec[:-1][::-1])
    np.testing.assert_array_equal(p.thresholds, thr[::-1])


# ------------------------------------------------------------------ PRG reference


def _prg_area_reference(y, s):
    """AUPRG from the definitions, written independently of the module.

    PRG segments are straight lines (along TP = TP_A + x, FP = FP_A + skew x both gains are
    affine in 1/TP), so the area over recall gain >= 0 is the sum of trapezoids of each
    segment clipped at recall gain 0, the clip point found on the count line at
    TP = P^2 / n (recall = pi). Crossings of the x-axis need no points: a trapezoid over a
    straight segment is exact whatever the sign of its ends.
    """
    y = np.asarray(y)
    s = np.asarray(s, dtype=float)
    P, N = int(y.sum()), int(len(y) - y.sum())
    pts = [(0.0, 0.0)]
    for t in sorted(set(s.tolist()), reverse=True):
        pts.append((float(y[s >= t].sum()), float((1 - y[s >= t]).sum())))

    def gains(tp, fp):
        if tp == P and fp == N:
            return 1.0, 0.0
        return 1 - P * (P - tp) / (N * tp), 1 - P * fp / (N * tp)

    area = 0.0
    for (tp0, fp0), (tp1, fp1) in itertools.pairwise(pts):
        if tp1 == 0 or tp1 * (len(y)) < P * P:  # segment ends at recall gain < 0
            continue
        if tp0 * len(y) < P * P:  # clip at recall gain 0
            tp_c = P * P / len(y)
            fp0 = fp0 + (tp_c - tp0) * (fp1 - fp0) / (tp1 - tp0)
            tp0 = tp_c
        x0, y0 = gains(tp0, fp0)
        x1, y1 = gains(tp1, fp1)
        area += (x1 - x0) * (y0 + y1) / 2
    return area


@settings(max_examples=150, deadline=None)
@given(labels_scores)
def test_auprg_equals_independent_reference(ys):
    y, s = ys
    assert auprg(y, s) == pytest.approx(_prg_area_reference(y, s), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(labels_scores)
def test_interpolated_area_equals_dense_numerical_integral(ys):
    y, s = ys
    r, p = interpolate_pr(pr_curve(y, s), points_per_segment=400)
    # trapezoids on 400 samples per segment: error O(1/400^2) of each segment's curvature
    assert aupr(y, s, kind="interpolated") == pytest.approx(np.trapezoid(p, r), abs=2e-5)


# ------------------------------------------------------------------ invariances


@settings(max_examples=80, deadline=None)
@given(
    st.integers(min_value=2, max_value=30).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < n),
            st.lists(st.integers(-20, 20), min_size=n, max_size=n),
        )
    ),
    st.sampled_from(["affine", "cube", "exp", "arctan"]),
)
def test_areas_unchanged_by_monotone_transforms(ys, transform):
    y, s = ys
    s = np.asarray(s, dtype=float)
    # strictly increasing maps that keep distinct integers in [-20, 20] distinct
    t = {
        "affine": 3.0 * s - 7.0,
        "cube": s**3,
        "exp": np.exp(s / 4.0),
        "arctan": np.arctan(s / 10.0),
    }[transform]
    assert auroc(y, t) == pytest.approx(auroc(y, s), abs=1e-15)
    assert aupr(y, t) == pytest.approx(aupr(y, s), abs=1e-15)
    assert aupr(y, t, kind="interpolated") == pytest.approx(
        aupr(y, s, kind="interpolated"), abs=1e-12
    )
    assert auprg(y, t) == pytest.approx(auprg(y, s), abs=1e-12)


@given(st.integers(1, 60), st.integers(1, 60))
def test_perfect_ranking_has_all_areas_one(n_pos, n_neg):
    y = np.r_[np.ones(n_pos, dtype=int), np.zeros(n_neg, dtype=int)]
    s = -np.arange(y.size, dtype=float)  # positives score highest
    assert auroc(y, s) == pytest.approx(1.0, abs=1e-12)  # sums of rounded rates
    assert aupr(y, s) == pytest.approx(1.0, abs=1e-12)
    assert aupr(y, s, kind="interpolated") == pytest.approx(1.0, abs=1e-15)
    # PRG: precision gain 1 from recall gain 0 to 1, then a vertical drop to the
    # all-positive point (1, 0): area 1
    assert auprg(y, s) == pytest.approx(1.0, abs=1e-12)


def test_random_ranking_has_auprg_near_zero():
    # A random ranking's precision is pi in expectation at every threshold, i.e. precision
    # gain 0, so the expected AUPRG is about 0. Over K = 100 random orders of n = 1000
    # (pi = 1/2) the per-order spread is about 0.036, so the mean has a standard error of
    # about 0.004 (computed below from the sample). PG is a ratio (E[FP/TP] != E[FP]/E[TP]),
    # which adds a small bias, measured at |0.002| here and |0.013| for pi = 0.2; allow 0.01
    # for it on top of 4 standard errors.
    rng = np.random.default_rng(2026)
    y = np.r_[np.ones(500, dtype=int), np.zeros(500, dtype=int)]
    areas = np.array([auprg(y, rng.permutation(1000).astype(float)) for _ in range(100)])
    se = areas.std(ddof=1) / math.sqrt(areas.size)
    assert abs(areas.mean()) <= 4 * se + 0.01
    # the same for AUROC (exactly 1/2 in expectation): a sanity check on the harness
    assert (
        abs(np.mean([auroc(y, rng.permutation(1000).astype(float)) for _ in range(100)]) - 0.5)
        < 0.01
    )


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("fn", [roc_curve, pr_curve, prg_curve, auroc, aupr, auprg])
def test_bad_input_errors_name_the_problem(fn):
    with pytest.raises(ValueError, match="only one class present"):
        fn([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only one class present"):
        fn([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"labels must be binary 0/1.*saw values \[-1, 1\]"):
        fn([-1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"saw values \[0, 1, 2\]"):
        fn([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"saw values \['no', 'yes'\]"):
        fn(["yes", "no"], [0.1, 0.2])
    with pytest.raises(
        ValueError, match=r"scores: 1 value\(s\) are NaN or infinite \(first at index 1"
    ):
        fn([0, 1, 1], [0.1, float("nan"), 0.3])
    with pytest.raises(ValueError, match=r"lengths differ \(3 labels, 2 scores\)"):
        fn([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="empty input"):
        fn([], [])
    with pytest.raises(ValueError, match="must be a 1-D array"):
        fn([[0, 1]], [[0.1, 0.2]])
    with pytest.raises(TypeError, match="scores: must be real numbers"):
        fn([0, 1], ["a", "b"])


def test_bool_and_float_labels_are_accepted():
    assert auroc([True, False, True], [3.0, 2.0, 1.0]) == auroc([1, 0, 1], [3.0, 2.0, 1.0])
    assert auroc([1.0, 0.0, 1.0], [3, 2, 1]) == pytest.approx(0.5)  # 1 of 2 pairs won
    # hard 0/1 predictions as scores: one threshold besides the origin; 1 of 2 pairs won
    # and 1 tied -> (1 + 0.5) / 2
    assert auroc([1, 0, 1], [True, False, False]) == pytest.approx(0.75)
    with pytest.raises(TypeError, match="scores: must be real numbers, got dtype complex128"):
        auroc([1, 0], [1j, 2j])


def test_unknown_aupr_kind_suggests_the_nearest():
    with pytest.raises(ValueError, match="unknown kind 'interpolate'; did you mean 'interpolated'"):
        aupr(Y6, S6, kind="interpolate")
