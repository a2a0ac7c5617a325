"""Classifier curves (ROC, PR, PRG), their areas, and the AdaBoost vs logistic regression study.

See :mod:`dlsys.analytics.curves.metrics` for the definitions and
:mod:`dlsys.analytics.curves.study` for the study behind ``dlsys curves``.
"""

from dlsys.analytics.curves.metrics import (
    AllPositivePoints,
    PRCurve,
    PRGCurve,
    ROCCurve,
    all_positive_points,
    aupr,
    auprg,
    auroc,
    check_binary_input,
    interpolate_pr,
    pr_curve,
    pr_to_roc,
    precision_gain,
    prg_curve,
    recall_gain,
    roc_curve,
    roc_to_pr,
)

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
