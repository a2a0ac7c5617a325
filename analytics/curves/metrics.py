"""ROC, precision-recall and precision-recall-gain curves, and the areas under them.

Every curve here is built from one table: for each distinct score ``t`` (highest first) the
counts of true and false positives when everything scoring ``>= t`` is called positive. Tied
scores are one threshold, so a group of ties moves the curve in one step, never in an order
that depends on how the input happened to be sorted.

- **ROC**: false-positive rate against true-positive rate; AUROC by the trapezoid rule, which
  with tied scores counts each positive/negative tie as one half (the Mann-Whitney statistic).
- **PR**: recall against precision. Two areas: *average precision* (``kind="ap"``), the step
  sum ``sum_n (R_n - R_{n-1}) P_n`` that scikit-learn's ``average_precision_score`` computes,
  and the *interpolated* area of Davis & Goadrich (ICML 2006): between two neighbouring points
  A and B the curve passes through the confusion matrices ``TP = TP_A + x``,
  ``FP = FP_A + skew * x`` with ``skew = (FP_B - FP_A) / (TP_B - TP_A)``, so precision follows
  a hyperbola, not a straight line; its integral is taken in closed form. Straight lines
  between PR points over-estimate the area and are not offered.
- **PRG** (Flach & Kull, NeurIPS 2015): precision gain ``(prec - pi) / ((1 - pi) prec)`` and
  recall gain ``(rec - pi) / ((1 - pi) rec)``, ``pi`` the share of positives. AUPRG is
  computed as the authors' reference implementation (the ``prg`` package) computes it: the
  curve starts at the empty prediction, a point is inserted where the curve crosses recall
  gain 0 and wherever it crosses precision gain 0 at recall gain >= 0 (both by interpolating
  the counts, which keeps them on the straight PRG segment), and the trapezoid area is summed
  over the segments that start at recall gain >= 0; segments below the x-axis count as
  negative area.

All functions take ``(y_true, scores)``: ``y_true`` a 1-D array of 0/1 (or bool), ``scores``
a 1-D array of finite real numbers where higher means "more likely positive".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dlsys.common import check_int, unknown_name

__all__ = [
    "AllPositivePoints",
    "PRCurve",
    "PRGCurve",
    "ROCCurve",
    "all_positive_points",
    "aupr",
    "auprg",
    "auroc",
    "check_binary_input",
    "interpolate_pr",
    "pr_curve",
    "pr_to_roc",
    "precision_gain",
    "prg_curve",
    "recall_gain",
    "roc_curve",
    "roc_to_pr",
]

AUPR_KINDS = ("ap", "interpolated")

FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------- input checks


def check_binary_input(
    y_true: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.int64], FloatArray]:
    """Validate labels and scores; return them as int64 (0/1) and float64 arrays.

    Raises ``ValueError`` naming the argument for: empty input, arrays that are not 1-D,
    different lengths, labels other than 0/1 (listing the values seen), a single class, and
    scores that are NaN or infinite (giving the count and first position); ``TypeError`` for
    scores that are not real numbers.
    """
    y = np.asarray(y_true)
    s = np.asarray(scores)
    if y.ndim != 1:
        raise ValueError(f"y_true: must be a 1-D array, got shape {y.shape}")
    if s.ndim != 1:
        raise ValueError(f"scores: must be a 1-D array, got shape {s.shape}")
    if y.size == 0 or s.size == 0:
        raise ValueError(
            f"y_true and scores: empty input (got {y.size} labels and {s.size} scores); "
            "need at least one positive and one negative example"
        )
    if y.shape != s.shape:
        raise ValueError(
            f"y_true and scores: lengths differ ({y.size} labels, {s.size} scores); "
            "need one score per label"
        )
    if s.dtype != np.bool_ and (not np.issubdtype(s.dtype, np.number) or np.iscomplexobj(s)):
        raise TypeError(f"scores: must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64)
    bad = ~np.isfinite(s)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"scores: {int(bad.sum())} value(s) are NaN or infinite (first at index {first}: "
            f"{s[first]!r}); every score must be a finite number"
        )
    return _check_labels(y), s


def _check_labels(y_true: ArrayLike) -> NDArray[np.int64]:
    """Labels as int64 0/1 after checking: 1-D, non-empty, binary, both classes present."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true: must be a 1-D array, got shape {y.shape}")
    if y.size == 0:
        raise ValueError("y_true: empty input; need at least one positive and one negative")
    seen = _distinct_values(y)
    if not set(seen) <= {0, 1}:
        raise ValueError(f"y_true: labels must be binary 0/1 (or False/True); saw values {seen}")
    labels = y.astype(np.int64)
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size:
        only = "1 (positive)" if n_pos else "0 (negative)"
        raise ValueError(
            f"y_true: only one class present (all {labels.size} labels are {only}); "
            "need at least one positive and one negative example"
        )
    return labels


def _distinct_values(y: NDArray[Any]) -> list[Any]:
    """The sorted distinct values of ``y`` as plain Python objects (for error messages)."""
    try:
        values = np.unique(y).tolist()
    except TypeError:  # mixed types that do not sort
        values = sorted({repr(v) for v in y.tolist()})
    out: list[Any] = []
    for v in values:
        if isinstance(v, bool):
            out.append(int(v))
        elif isinstance(v, float) and v.is_integer():
            out.append(int(v))
        else:
            out.append(v)
    # bool/float labels 0.0/1.0 count as 0/1; anything else is reported as it came.
    return out


def _check_pos_fraction(pos_fraction: Any) -> float:
    if isinstance(pos_fraction, bool) or not isinstance(pos_fraction, int | float | np.floating):
        raise TypeError(f"pos_fraction: must be a number in (0, 1), got {pos_fraction!r}")
    pi = float(pos_fraction)
    if not 0.0 < pi < 1.0:
        raise ValueError(
            f"pos_fraction: must be strictly between 0 and 1 (the share of positives), "
            f"got {pos_fraction!r}"
        )
    return pi


def _check_unit(name: str, values: ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0.0) or np.any(arr > 1.0):
        raise ValueError(f"{name}: every value must lie in [0, 1], got {arr.tolist()!r}")
    return arr


# --------------------------------------------------------------------------- counts


def _counts(y: NDArray[np.int64], s: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Thresholds (distinct scores, descending) and cumulative TP, FP at each threshold."""
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    y_sorted = y[order]
    # the last index of each group of tied scores
    ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp = np.cumsum(y_sorted)[ends].astype(np.float64)
    fp = (ends + 1).astype(np.float64) - tp
    return s_sorted[ends], tp, fp


# --------------------------------------------------------------------------- ROC


@dataclass(frozen=True, eq=False)
class ROCCurve:
    """An ROC curve: one point per distinct score, plus the origin.

    ``fpr`` and ``tpr`` are rates in [0, 1]; ``thresholds[k]`` is the score at or above which
    point ``k`` calls an example positive (``+inf`` for the origin, where nothing is);
    ``tp`` and ``fp`` are the counts behind each point (examples); ``n_pos``/``n_neg`` the
    class sizes (examples).
    """

    fpr: FloatArray
    tpr: FloatArray
    thresholds: FloatArray
    tp: FloatArray
    fp: FloatArray
    n_pos: int
    n_neg: int


def roc_curve(y_true: ArrayLike, scores: ArrayLike) -> ROCCurve:
    """ROC curve of ``scores`` against ``y_true`` (every distinct score is a threshold).

    Equals ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.
    """
    y, s = check_binary_input(y_true, scores)
    thr, tp, fp = _counts(y, s)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    tp = np.r_[0.0, tp]
    fp = np.r_[0.0, fp]
    return ROCCurve(
        fpr=fp / n_neg,
        tpr=tp / n_pos,
        thresholds=np.r_[np.inf, thr],
        tp=tp,
        fp=fp,
        n_pos=n_pos,
        n_neg=n_neg,
    )


def auroc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (dimensionless, in [0, 1]); ties count one half."""
    c = roc_curve(y_true, scores)
    return float(np.sum(np.diff(c.fpr) * (c.tpr[1:] + c.tpr[:-1]) / 2.0))


# --------------------------------------------------------------------------- PR


@dataclass(frozen=True, eq=False)
class PRCurve:
    """A precision-recall curve: one point per distinct score, highest threshold first.

    ``recall`` and ``precision`` are in [0, 1]; ``thresholds[k]`` is the score at or above
    which point ``k`` calls an example positive; ``tp``/``fp`` are the counts behind each
    point (examples). There is no point for the empty prediction (its precision is 0/0);
    areas start at recall 0 with the first point's precision.
    """

    recall: FloatArray
    precision: FloatArray
    thresholds: FloatArray
    tp: FloatArray
    fp: FloatArray
    n_pos: int
    n_neg: int


def pr_curve(y_true: ArrayLike, scores: ArrayLike) -> PRCurve:
    """Precision-recall curve of ``scores`` against ``y_true``.

    The points are those of ``sklearn.metrics.precision_recall_curve`` in reverse order,
    without scikit-learn's appended ``(recall 0, precision 1)`` end point.
    """
    y, s = check_binary_input(y_true, scores)
    thr, tp, fp = _counts(y, s)
    n_pos = int(y.sum())
    return PRCurve(
        recall=tp / n_pos,
        precision=tp / (tp + fp),
        thresholds=thr,
        tp=tp,
        fp=fp,
        n_pos=n_pos,
        n_neg=int(y.size - n_pos),
    )


def _interpolated_pr_area(tp: FloatArray, fp: FloatArray, n_pos: int) -> float:
    """Davis & Goadrich area under PR from cumulative counts (origin prepended here).

    On the segment from A to B with ``d = TP_B - TP_A > 0``, precision at ``TP_A + x`` is
    ``(a + x) / (b + c x)`` with ``a = TP_A``, ``b = TP_A + FP_A``, ``c = 1 + skew``. Since
    ``(a + x) / (b + c x) = 1/c + (a - b/c) / (b + c x)``, the integral over ``x`` in
    ``[0, d]`` is ``d/c + (a - b/c)/c * ln(1 + c d / b)``; recall is ``TP / n_pos``, so the
    area is that divided by ``n_pos``. From the origin (``a = b = 0``) precision is the
    constant ``1/c``. Segments with ``d = 0`` add nothing (recall does not move).
    """
    tp0 = np.r_[0.0, tp]
    fp0 = np.r_[0.0, fp]
    d_tp = np.diff(tp0)
    d_fp = np.diff(fp0)
    move = d_tp > 0
    a = tp0[:-1][move]
    b = a + fp0[:-1][move]
    d = d_tp[move]
    c = (d + d_fp[move]) / d
    area = d / c
    has_b = b > 0
    # NB: when b == 0 then a == 0 too, and the log term vanishes (0 * log(inf) avoided).
    area[has_b] += (
        (a[has_b] - b[has_b] / c[has_b]) / c[has_b] * np.log1p(c[has_b] * d[has_b] / b[has_b])
    )
    return float(area.sum() / n_pos)


def aupr(y_true: ArrayLike, scores: ArrayLike, kind: str = "ap") -> float:
    """Area under the precision-recall curve (dimensionless, in [0, 1]).

    ``kind="ap"``: average precision ``sum_n (R_n - R_{n-1}) P_n`` (a step function; equals
    ``sklearn.metrics.average_precision_score``). ``kind="interpolated"``: the exact area
    under Davis & Goadrich's interpolation between neighbouring points (see the module
    docstring).
    """
    if kind not in AUPR_KINDS:
        raise unknown_name("kind", str(kind), AUPR_KINDS)
    c = pr_curve(y_true, scores)
    if kind == "ap":
        recall0 = np.r_[0.0, c.recall]
        return float(np.sum(np.diff(recall0) * c.precision))
    return _interpolated_pr_area(c.tp, c.fp, c.n_pos)


# --------------------------------------------------------------------------- PRG


def precision_gain(precision: ArrayLike, pos_fraction: float) -> FloatArray:
    """Precision gain ``(prec - pi) / ((1 - pi) prec)`` (Flach & Kull 2015); ``-inf`` at 0."""
    pi = _check_pos_fraction(pos_fraction)
    p = _check_unit("precision", precision)
    with np.errstate(divide="ignore"):
        return np.asarray((p - pi) / ((1.0 - pi) * p), dtype=np.float64)


def recall_gain(recall: ArrayLike, pos_fraction: float) -> FloatArray:
    """Recall gain ``(rec - pi) / ((1 - pi) rec)`` (Flach & Kull 2015); ``-inf`` at 0."""
    pi = _check_pos_fraction(pos_fraction)
    r = _check_unit("recall", recall)
    with np.errstate(divide="ignore"):
        return np.asarray((r - pi) / ((1.0 - pi) * r), dtype=np.float64)


def _pg_counts(tp: FloatArray, fp: FloatArray, n_pos: int, n_neg: int) -> FloatArray:
    """Precision gain ``1 - (n_pos FP) / (n_neg TP)`` from counts (0 where all are positive)."""
    fn = n_pos - tp
    tn = n_neg - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        pg = 1.0 - (n_pos * fp) / (n_neg * tp)
    return np.where(tn + fn == 0, 0.0, pg)


def _rg_counts(tp: FloatArray, fp: FloatArray, n_pos: int, n_neg: int) -> FloatArray:
    """Recall gain ``1 - (n_pos FN) / (n_neg TP)`` from counts (1 where all are positive)."""
    fn = n_pos - tp
    tn = n_neg - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        rg = 1.0 - (n_pos * fn) / (n_neg * tp)
    return np.where(tn + fn == 0, 1.0, rg)


@dataclass(frozen=True, eq=False)
class PRGCurve:
    """A precision-recall-gain curve as the ``prg`` reference package builds it.

    Points are ordered by decreasing threshold (``tp`` non-decreasing). The first point is
    the empty prediction (threshold ``+inf``, recall gain ``-inf``, precision gain NaN);
    ``is_crossing`` marks the inserted points where the curve crosses recall gain 0 or
    precision gain 0 (their ``thresholds`` are NaN and their ``tp``/``fp`` are interpolated,
    fractional counts); ``in_unit_square`` marks the points with both gains >= 0, the part
    that is normally drawn. Gains are dimensionless; counts are examples.
    """

    recall_gain: FloatArray
    precision_gain: FloatArray
    thresholds: FloatArray
    tp: FloatArray
    fp: FloatArray
    is_crossing: NDArray[np.bool_]
    in_unit_square: NDArray[np.bool_]
    n_pos: int
    n_neg: int


def _interpolate(
    tp: FloatArray, fp: FloatArray, lo: NDArray[np.intp], alpha: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Counts at ``alpha`` of the way from point ``lo`` to point ``lo + 1``."""
    return (
        tp[lo] + alpha * (tp[lo + 1] - tp[lo]),
        fp[lo] + alpha * (fp[lo + 1] - fp[lo]),
    )


def prg_curve(y_true: ArrayLike, scores: ArrayLike) -> PRGCurve:
    """Precision-recall-gain curve with its crossing points (Flach & Kull 2015).

    Follows ``create_prg_curve`` of the authors' ``prg`` package: the recall-gain-0 crossing
    lies where ``TP = n_pos**2 / n`` (recall = pi) on the segment that first reaches recall
    gain >= 0 (skipped if a point lies exactly on it); a precision-gain-0 crossing is
    inserted on every segment that starts at recall gain >= 0 and whose precision gain
    changes sign, at the recall gain found by straight-line interpolation in PRG space
    (exact: along an interpolated segment both gains are affine in ``1/TP``).
    """
    y, s = check_binary_input(y_true, scores)
    thr, tp, fp = _counts(y, s)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    n = n_pos + n_neg
    tp = np.r_[0.0, tp]
    fp = np.r_[0.0, fp]
    thr = np.r_[np.inf, thr]
    crossing = np.zeros(tp.size, dtype=bool)
    rg = _rg_counts(tp, fp, n_pos, n_neg)
    pg = _pg_counts(tp, fp, n_pos, n_neg)

    # 1. crossing through the y-axis (recall gain 0). The last point (everything positive)
    # has recall gain 1, so j exists; the first (nothing positive) has -inf, so j >= 1.
    j = int(np.flatnonzero(rg >= 0)[0])
    if rg[j] > 0:
        d_tp = tp[j] - tp[j - 1]
        alpha = (n_pos * n_pos / n - tp[j - 1]) / d_tp if d_tp > 0 else 0.5
        new_tp, new_fp = _interpolate(tp, fp, np.array([j - 1]), np.array([alpha]))
        tp = np.insert(tp, j, new_tp)
        fp = np.insert(fp, j, new_fp)
        thr = np.insert(thr, j, np.nan)
        crossing = np.insert(crossing, j, True)
        rg = np.insert(rg, j, 0.0)
        pg = np.insert(pg, j, _pg_counts(new_tp, new_fp, n_pos, n_neg))

    # 2. crossings through the non-negative part of the x-axis (precision gain 0).
    with np.errstate(invalid="ignore"):
        sign_change = pg[:-1] * pg[1:] < 0
    lo = np.flatnonzero(sign_change & (rg[:-1] >= 0))
    if lo.size:
        x0, x1, y0, y1 = rg[lo], rg[lo + 1], pg[lo], pg[lo + 1]
        cross_x = x0 + (-y0) / (y1 - y0) * (x1 - x0)
        d_tp = tp[lo + 1] - tp[lo]
        d_fp = fp[lo + 1] - fp[lo]
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.where(
                d_tp > 0,
                (n_pos * n_pos / (n - n_neg * cross_x) - tp[lo]) / d_tp,
                (n_neg / n_pos * tp[lo] - fp[lo]) / d_fp,
            )
        new_tp, new_fp = _interpolate(tp, fp, lo, alpha)
        at = lo + 1
        # NB: rounding guard. The crossing lies on the segment, so its recall gain is between
        # the ends'; without the clip a crossing next to the y-axis crossing can come out at
        # -2e-16 and drop the segment after it from the area.
        new_rg = np.clip(
            _rg_counts(new_tp, new_fp, n_pos, n_neg), np.minimum(x0, x1), np.maximum(x0, x1)
        )
        tp = np.insert(tp, at, new_tp)
        fp = np.insert(fp, at, new_fp)
        thr = np.insert(thr, at, np.nan)
        crossing = np.insert(crossing, at, True)
        rg = np.insert(rg, at, new_rg)
        pg = np.insert(pg, at, 0.0)

    with np.errstate(invalid="ignore"):
        in_unit = (rg >= 0) & (pg >= 0)
    return PRGCurve(
        recall_gain=rg,
        precision_gain=pg,
        thresholds=thr,
        tp=tp,
        fp=fp,
        is_crossing=crossing,
        in_unit_square=in_unit,
        n_pos=n_pos,
        n_neg=n_neg,
    )


def _prg_area(curve: PRGCurve) -> float:
    """``calc_auprg``: trapezoids over the segments whose start has recall gain >= 0."""
    rg = curve.recall_gain
    pg = curve.precision_gain
    with np.errstate(invalid="ignore"):
        use = rg[:-1] >= 0  # NaN and -inf starts are skipped
    width = rg[1:][use] - rg[:-1][use]
    height = (pg[1:][use] + pg[:-1][use]) / 2.0
    return float(np.sum(width * height))


def auprg(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the precision-recall-gain curve (dimensionless, at most 1).

    As ``calc_auprg`` of the ``prg`` package: only the part with recall gain >= 0 counts,
    parts with negative precision gain count as negative area. A perfect ranking scores 1;
    a random ranking scores about 0.
    """
    return _prg_area(prg_curve(y_true, scores))


# --------------------------------------------------------------------------- points


@dataclass(frozen=True)
class AllPositivePoints:
    """Where the classifier that calls everything positive lies in each space.

    ``roc`` is (FPR, TPR) = (1, 1); ``pr`` is (recall, precision) = (1, pi); ``prg`` is
    (recall gain, precision gain) = (1, 0); ``pos_fraction`` is pi, the share of positives.
    """

    pos_fraction: float
    roc: tuple[float, float]
    pr: tuple[float, float]
    prg: tuple[float, float]


def all_positive_points(
    y_true: ArrayLike | None = None, *, pos_fraction: float | None = None
) -> AllPositivePoints:
    """The all-positive classifier's point in ROC, PR and PRG space.

    Give either the labels ``y_true`` (0/1) or the share of positives ``pos_fraction``.
    """
    if (y_true is None) == (pos_fraction is None):
        raise ValueError("all_positive_points: give exactly one of y_true or pos_fraction")
    if y_true is not None:
        pi = float(_check_labels(y_true).mean())
    else:
        pi = _check_pos_fraction(pos_fraction)
    return AllPositivePoints(pos_fraction=pi, roc=(1.0, 1.0), pr=(1.0, pi), prg=(1.0, 0.0))


def roc_to_pr(fpr: ArrayLike, tpr: ArrayLike, pos_fraction: float) -> tuple[FloatArray, FloatArray]:
    """Map ROC points (FPR, TPR) to PR points (recall, precision) for a class balance.

    Recall equals TPR; ``precision = pi TPR / (pi TPR + (1 - pi) FPR)`` (Davis & Goadrich
    2006, Theorem 3.1: the correspondence is one-to-one where recall is not 0, so TPR = 0 is
    rejected). ``pos_fraction`` is pi, the share of positives.
    """
    pi = _check_pos_fraction(pos_fraction)
    f = _check_unit("fpr", fpr)
    t = _check_unit("tpr", tpr)
    if f.shape != t.shape:
        raise ValueError(f"fpr and tpr: shapes differ ({f.shape} and {t.shape})")
    if np.any(t == 0):
        raise ValueError(
            "tpr: must be > 0 for every point (with TPR = 0 precision is undefined and the "
            "ROC-PR correspondence does not hold)"
        )
    precision = pi * t / (pi * t + (1.0 - pi) * f)
    return t.copy(), precision


def pr_to_roc(
    recall: ArrayLike, precision: ArrayLike, pos_fraction: float
) -> tuple[FloatArray, FloatArray]:
    """Map PR points (recall, precision) back to ROC points (FPR, TPR) for a class balance.

    TPR equals recall; ``FPR = recall pi (1 - precision) / (precision (1 - pi))``. Recall and
    precision must be > 0 (the correspondence holds only there), and the result must be a
    valid rate: a precision below what the class balance allows at that recall is rejected.
    """
    pi = _check_pos_fraction(pos_fraction)
    r = _check_unit("recall", recall)
    p = _check_unit("precision", precision)
    if r.shape != p.shape:
        raise ValueError(f"recall and precision: shapes differ ({r.shape} and {p.shape})")
    if np.any(r == 0) or np.any(p == 0):
        raise ValueError(
            "recall and precision: must be > 0 for every point (the PR-ROC correspondence "
            "holds only where recall is not 0)"
        )
    fpr = r * pi * (1.0 - p) / (p * (1.0 - pi))
    if np.any(fpr > 1.0 + 1e-12):
        worst = int(np.argmax(fpr))
        pw, rw, fw = (float(a.reshape(-1)[worst]) for a in (p, r, fpr))
        raise ValueError(
            f"precision: {pw!r} at recall {rw!r} is impossible with pos_fraction "
            f"{pi!r} (it would need a false-positive rate of {fw:.6g} > 1)"
        )
    return np.minimum(fpr, 1.0), r.copy()


def interpolate_pr(curve: PRCurve, points_per_segment: int = 16) -> tuple[FloatArray, FloatArray]:
    """Dense (recall, precision) samples of the Davis & Goadrich interpolated PR curve.

    Starts at recall 0 with the first point's precision and visits every point of
    ``curve``; between neighbours ``points_per_segment`` samples follow
    ``TP = TP_A + x``, ``FP = FP_A + skew x``. Meant for drawing: the trapezoid area of the
    samples tends to ``aupr(..., kind="interpolated")`` as ``points_per_segment`` grows.
    """
    check_int("points_per_segment", points_per_segment, minimum=1)
    tp0 = np.r_[0.0, curve.tp]
    fp0 = np.r_[0.0, curve.fp]
    first = curve.tp[0] / (curve.tp[0] + curve.fp[0])
    recall = [np.array([0.0])]
    precision = [np.array([first])]
    frac = np.arange(1, points_per_segment + 1, dtype=np.float64) / points_per_segment
    for k in range(curve.tp.size):
        d_tp = tp0[k + 1] - tp0[k]
        d_fp = fp0[k + 1] - fp0[k]
        if d_tp == 0:  # a vertical drop in precision at constant recall
            t = np.array([tp0[k + 1]])
            f = np.array([fp0[k + 1]])
        else:
            t = tp0[k] + frac * d_tp
            f = fp0[k] + frac * d_fp
        recall.append(t / curve.n_pos)
        precision.append(t / (t + f))
    return np.concatenate(recall), np.concatenate(precision)
