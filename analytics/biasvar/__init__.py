"""Bias-variance decomposition by simulation, and the ready-made polynomial study.

See :mod:`dlsys.analytics.biasvar.decomposition` for the estimators and the identity check and
:mod:`dlsys.analytics.biasvar.study` for the study behind ``dlsys biasvar``.
"""

from dlsys.analytics.biasvar.decomposition import (
    SCHEMES,
    Datasets,
    Decomposition,
    GaussianNoise,
    NoiseModel,
    PolynomialFit,
    PolynomialRidge,
    decompose,
    decompose_predictions,
    draw_datasets,
    fit_predict,
    predict_datasets,
)
from dlsys.analytics.biasvar.study import (
    BiasVarianceStudy,
    parse_degrees,
    run_biasvar_study,
    true_function,
)

__all__ = [
    "SCHEMES",
    "BiasVarianceStudy",
    "Datasets",
    "Decomposition",
    "GaussianNoise",
    "NoiseModel",
    "PolynomialFit",
    "PolynomialRidge",
    "decompose",
    "decompose_predictions",
    "draw_datasets",
    "fit_predict",
    "parse_degrees",
    "predict_datasets",
    "run_biasvar_study",
    "true_function",
]
