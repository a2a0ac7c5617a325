"""Bias-variance decomposition of expected test error by simulation.

For a known true function ``f``, a noise model with variance ``sigma^2`` and a learner ``g``
fitted on a random training set ``D``, the expected squared error at a test point ``x`` splits
exactly as

    E_{D, eps}[(y - g_D(x))^2] = (f(x) - E_D[g_D(x)])^2 + Var_D[g_D(x)] + sigma^2
                                  squared bias            variance          noise

We draw ``R`` training sets, fit ``g`` on each, predict at ``m`` test points and estimate:
``gbar(x_j)`` = mean over data sets; squared bias = mean over ``j`` of ``(gbar - f)^2``;
variance = mean over ``j`` of the (population, ``ddof=0``) variance over data sets; noise =
the noise model's ``sigma^2``; test MSE = mean of ``(y_rj - g_r(x_j))^2``. (Unlike mlxtend's
``bias_variance_decomp``, whose "bias" is measured against the noisy targets and so contains
the noise, bias here is measured against ``f``.)

The identity check: the residual ``MSE - (bias^2 + variance + noise)`` is the mean of
``d_rj = (y_rj - g_rj)^2 - (f_j - gbar_j)^2 - (g_rj - gbar_j)^2 - sigma^2``. Writing
``y = f + eps`` and summing over data sets, the terms without test noise cancel and the
residual is the mean, over the *independent* test-noise values ``eps``, of
``eps^2 - sigma^2 + 2 (f - g) eps``: zero in expectation, because the test noise is
independent of the fits. So the identity holds *within sampling error*, and that error is
known given the fits: ``Var = Var[eps^2] + 4 (f - g)^2 sigma^2 + 4 (f - g) E[eps^3]`` per
noise value, from the noise model's moments. ``stderr`` is the square root of the summed
variances divided by the number of noise values:

- ``fixed-x`` (fresh noise on the same ``x`` for every data set, test targets included):
  ``R m`` noise values, ``g = g_r(x_j)``.
- ``fixed-test`` (one test set, drawn once; independent training sets): only ``m`` noise
  values, shared by all data sets, ``g = gbar(x_j)``; with few test points the residual is
  correspondingly larger.

The plug-in squared bias is biased upwards by ``Var/R``; ``bias2_corrected`` subtracts the
unbiased estimate of that term.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dlsys.common import check_int, check_memory, check_positive, format_bytes, unknown_name

__all__ = [
    "SCHEMES",
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
    "predict_datasets",
]

SCHEMES = ("fixed-x", "fixed-test")

FloatArray = NDArray[np.float64]
FitPredict = Callable[[FloatArray, FloatArray, FloatArray], ArrayLike]


class NoiseModel(Protocol):
    """Additive noise: ``variance`` (units of y squared) and ``sample(rng, size)``."""

    variance: float

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> FloatArray:
        """Draw noise values of the given shape from ``rng``."""
        ...


@dataclass(frozen=True)
class GaussianNoise:
    """Zero-mean normal noise with variance ``variance`` (units of y squared; 0 means none)."""

    variance: float

    def __post_init__(self) -> None:
        v = self.variance
        check_positive("noise variance", v, allow_zero=True)
        if math.isinf(float(v) * float(v)):  # moments() and the standard error square it
            raise ValueError(
                f"noise variance: must be below 1.3e154 (its square must be a finite float), "
                f"got {v!r}"
            )

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> FloatArray:
        """Draw ``size`` values from N(0, variance)."""
        return rng.normal(0.0, math.sqrt(self.variance), size=size)

    def moments(self) -> tuple[float, float]:
        """``(E[eps^3], Var[eps^2])`` = ``(0, 2 variance^2)`` for a normal distribution."""
        return 0.0, 2.0 * self.variance**2


def _check_noise(noise: Any) -> float:
    if isinstance(noise, int | float) and not isinstance(noise, bool):
        return GaussianNoise(float(noise)).variance
    v = getattr(noise, "variance", None)
    if not callable(getattr(noise, "sample", None)) or v is None:
        raise TypeError(
            f"noise: must be a variance (number >= 0) or an object with .variance and "
            f".sample(rng, size), got {noise!r}"
        )
    return check_positive("noise variance", v, allow_zero=True)


def _as_noise(noise: Any) -> Any:
    _check_noise(noise)
    return GaussianNoise(float(noise)) if isinstance(noise, int | float) else noise


MOMENT_SAMPLES = 1 << 18  # draws used to estimate a noise model's moments without moments()


def _noise_moments(model: Any, seed: int) -> tuple[float, float]:
    """``(E[eps^3], Var[eps^2])`` of the noise: from ``model.moments()`` or by sampling."""
    if callable(getattr(model, "moments", None)):
        mu3, var_sq = model.moments()
        return float(mu3), float(var_sq)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6D6F6D]))
    eps = np.asarray(model.sample(rng, MOMENT_SAMPLES), dtype=np.float64)
    return float(np.mean(eps**3)), float(np.var(eps**2))


def _eval_f(f: Callable[[FloatArray], ArrayLike], x: FloatArray) -> FloatArray:
    if not callable(f):
        raise TypeError(f"f: must be a callable taking an array of x, got {f!r}")
    out = np.asarray(f(x), dtype=np.float64)
    if out.shape != x.shape:
        raise ValueError(f"f: returned shape {out.shape} for input of shape {x.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError("f: returned NaN or infinite values")
    return out


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class Datasets:
    """``R`` simulated data sets sharing one set of ``m`` test inputs.

    ``x_train``/``y_train`` have shape (R, n_train); ``x_test`` has shape (m,); ``y_test`` has
    shape (R, m) (rows identical under ``fixed-test``); ``f_test`` is f at ``x_test``;
    ``noise_variance``, ``noise_mu3`` and ``noise_var_sq`` are the noise's ``E[eps^2]``,
    ``E[eps^3]`` and ``Var[eps^2]`` (units of y to the 2nd, 3rd and 4th power).
    """

    scheme: str
    x_train: FloatArray
    y_train: FloatArray
    x_test: FloatArray
    y_test: FloatArray
    f_test: FloatArray
    noise_variance: float
    noise_mu3: float = 0.0
    noise_var_sq: float = 0.0


def _split_sizes(n_points: int, test_fraction: float) -> tuple[int, int]:
    check_int("n_points", n_points, minimum=2)
    tf = test_fraction
    if isinstance(tf, bool) or not isinstance(tf, int | float) or not 0.0 < tf < 1.0:
        raise ValueError(f"test_fraction: must be strictly between 0 and 1, got {tf!r}")
    n_test = round(n_points * tf)
    if n_test < 1 or n_test > n_points - 1:
        raise ValueError(
            f"test_fraction: {tf!r} of n_points {n_points} leaves {n_test} test and "
            f"{n_points - n_test} training points; both must be >= 1"
        )
    return n_points - n_test, n_test


#: Bytes of one spawned ``numpy.random.SeedSequence`` (382 measured with tracemalloc over
#: 100000 children, numpy 2), one per data set.
_SEED_BYTES = 400


def _check_dataset_memory(n_datasets: int, n_points: int, n_train: int, n_test: int) -> None:
    """Refuse data sets that cannot fit before drawing them (see :func:`check_memory`).

    Per data set: its SeedSequence, float64 x_train and y_train (8 n_train bytes each) and
    y_test (8 n_test), and the (R, n_test) float64 predictions of one estimator with about
    three temporaries of that size in :func:`decompose_predictions`. Degrees multiply the
    time, not the memory: one degree's predictions are freed before the next.
    """
    per_set = _SEED_BYTES + 8 * (2 * n_train + n_test) + 4 * 8 * n_test
    field = "n_datasets" if n_datasets >= n_points else "n_points"
    check_memory(
        field,
        n_datasets * per_set + 16 * n_points,  # + the fixed-x grid and its permutation
        "use fewer data sets or points per data set",
        what=f"{n_datasets} data sets of {n_points} points at {format_bytes(per_set)} each",
    )


def draw_datasets(
    f: Callable[[FloatArray], ArrayLike],
    noise: Any,
    *,
    scheme: str = "fixed-x",
    n_datasets: int = 100,
    n_points: int = 50,
    test_fraction: float = 0.2,
    x_range: tuple[float, float] = (0.0, 10.0),
    seed: int = 0,
) -> Datasets:
    """Draw ``n_datasets`` data sets of ``n_points`` points ``y = f(x) + noise``.

    ``fixed-x``: ``x`` is the grid ``linspace(*x_range, n_points)``, split once at random
    into training and test points (``test_fraction`` of them); every data set draws fresh
    noise for all points, test targets included. ``fixed-test``: a test set of
    ``round(test_fraction n_points)`` points (x uniform on ``x_range``) is drawn once, before
    any training set; each data set then draws its ``n_train`` training x uniformly, redrawing
    any that coincide with a test x, and fresh noise. ``noise`` is a variance (Gaussian) or a
    :class:`NoiseModel`. Streams come from ``SeedSequence(seed).spawn``, one per data set.
    """
    if scheme not in SCHEMES:
        raise unknown_name("scheme", str(scheme), SCHEMES)
    model = _as_noise(noise)
    n_datasets = check_int("n_datasets", n_datasets, minimum=2)
    n_train, n_test = _split_sizes(n_points, test_fraction)
    lo, hi = (float(v) for v in x_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"x_range: must be two finite numbers lo < hi, got {x_range!r}")
    check_int("seed", seed, minimum=0)
    _check_dataset_memory(n_datasets, n_points, n_train, n_test)
    mu3, var_sq = _noise_moments(model, int(seed))
    root, *streams = np.random.SeedSequence(int(seed)).spawn(n_datasets + 1)
    rng0 = np.random.default_rng(root)
    x_train = np.empty((n_datasets, n_train))
    y_train = np.empty((n_datasets, n_train))
    y_test = np.empty((n_datasets, n_test))
    if scheme == "fixed-x":
        grid = np.linspace(lo, hi, n_points)
        perm = rng0.permutation(n_points)
        xtr, x_test = grid[perm[:n_train]], grid[perm[n_train:]]
        f_tr, f_test = _eval_f(f, xtr), _eval_f(f, x_test)
        for r, ss in enumerate(streams):
            rng = np.random.default_rng(ss)
            x_train[r] = xtr
            y_train[r] = f_tr + model.sample(rng, n_train)
            y_test[r] = f_test + model.sample(rng, n_test)
    else:
        x_test = rng0.uniform(lo, hi, n_test)
        f_test = _eval_f(f, x_test)
        y_test[:] = f_test + model.sample(rng0, n_test)
        for r, ss in enumerate(streams):
            rng = np.random.default_rng(ss)
            xs = rng.uniform(lo, hi, n_train)
            clash = np.isin(xs, x_test)
            while clash.any():  # never put a test input into a training set
                xs[clash] = rng.uniform(lo, hi, int(clash.sum()))
                clash = np.isin(xs, x_test)
            x_train[r] = xs
            y_train[r] = _eval_f(f, xs) + model.sample(rng, n_train)
    return Datasets(
        scheme=scheme,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        f_test=f_test,
        noise_variance=float(model.variance),
        noise_mu3=mu3,
        noise_var_sq=var_sq,
    )


# --------------------------------------------------------------------------- learners


@dataclass(frozen=True)
class PolynomialFit:
    """Least-squares polynomial of degree ``degree`` >= 1 as a fit-predict callable.

    Uses ``numpy.polynomial.Polynomial.fit``, which maps the training inputs onto [-1, 1]
    before solving, so degree 15 on x in [0, 10] stays well conditioned.
    """

    degree: int

    def __post_init__(self) -> None:
        d = self.degree
        check_int("degree", d, minimum=1)

    def __call__(self, x_train: FloatArray, y_train: FloatArray, x_test: FloatArray) -> FloatArray:
        """Fit on (x_train, y_train) and return the predictions at ``x_test``."""
        if x_train.size <= self.degree:
            raise ValueError(
                f"degree: {self.degree} needs at least {self.degree + 1} training points, "
                f"got {x_train.size}"
            )
        poly = np.polynomial.Polynomial.fit(x_train, y_train, self.degree)
        return np.asarray(poly(x_test), dtype=np.float64)


@dataclass(frozen=True)
class PolynomialRidge:
    """Polynomial of degree ``degree`` fitted with an L2 penalty ``alpha`` (a callable).

    The training inputs are mapped onto [-1, 1] (as ``Polynomial.fit`` does), the powers
    ``t, t^2, ..., t^degree`` standardised on the training set, and ``||Z b - (y - mean y)||^2
    + alpha ||b||^2`` minimised; the intercept is not penalised. ``alpha = 0`` is ordinary
    least squares, the same fit as :class:`PolynomialFit`. ``alpha`` is in units of the
    squared error sum (the penalty and the residual sum of squares are added as they are,
    like scikit-learn's ``Ridge``).
    """

    degree: int
    alpha: float

    def __post_init__(self) -> None:
        PolynomialFit(self.degree)  # validates degree
        check_positive("ridge alpha", self.alpha, allow_zero=True)

    def __call__(self, x_train: FloatArray, y_train: FloatArray, x_test: FloatArray) -> FloatArray:
        """Fit on (x_train, y_train) and return the predictions at ``x_test``."""
        if self.alpha == 0 and x_train.size <= self.degree:
            raise ValueError(
                f"degree: {self.degree} needs at least {self.degree + 1} training points "
                f"without a penalty, got {x_train.size}"
            )
        lo, hi = float(np.min(x_train)), float(np.max(x_train))
        if hi == lo:
            raise ValueError("x_train: all training inputs are equal; cannot fit a polynomial")
        powers = np.arange(1, self.degree + 1)

        def features(x: FloatArray) -> FloatArray:
            return np.asarray((2.0 * (x - lo) / (hi - lo) - 1.0)[:, None] ** powers)

        z = features(x_train)
        mu, sd = z.mean(axis=0), z.std(axis=0)
        sd[sd == 0] = 1.0
        z = (z - mu) / sd
        y_mean = float(np.mean(y_train))
        a = np.vstack([z, math.sqrt(self.alpha) * np.eye(self.degree)])
        b = np.r_[y_train - y_mean, np.zeros(self.degree)]
        coef = np.linalg.lstsq(a, b, rcond=None)[0]
        return np.asarray(((features(x_test) - mu) / sd) @ coef + y_mean, dtype=np.float64)


def fit_predict(
    estimator: Any, x_train: FloatArray, y_train: FloatArray, x_test: FloatArray
) -> FloatArray:
    """Fit ``estimator`` on one training set and predict at ``x_test``.

    ``estimator`` is a scikit-learn regressor (an object with ``fit``/``predict``; a clone
    is fitted, on inputs of shape (n, 1)) or a callable ``(x_train, y_train, x_test) ->
    predictions``.
    """
    if hasattr(estimator, "fit") and hasattr(estimator, "predict"):
        try:
            from sklearn.base import clone

            model = clone(estimator)
        except TypeError:  # not a scikit-learn estimator: copy it instead
            model = copy.deepcopy(estimator)
        model.fit(x_train.reshape(-1, 1), y_train)
        out = model.predict(x_test.reshape(-1, 1))
    elif callable(estimator):
        out = estimator(x_train, y_train, x_test)
    else:
        raise TypeError(
            "estimator: must have fit/predict (a scikit-learn regressor) or be a callable "
            f"(x_train, y_train, x_test) -> predictions, got {estimator!r}"
        )
    pred = np.asarray(out, dtype=np.float64).reshape(-1)
    if pred.shape != x_test.shape:
        raise ValueError(
            f"estimator: returned {pred.size} predictions for {x_test.size} test points"
        )
    return pred


# --------------------------------------------------------------------------- decomposition


@dataclass(frozen=True)
class Decomposition:
    """Estimated parts of the expected test MSE (all in units of y squared).

    ``mse`` is the mean test squared error; ``bias2``, ``variance`` and ``noise`` (the
    noise model's variance) its parts; ``residual = mse - (bias2 + variance + noise)`` and
    ``stderr`` its standard error (see the module docstring); ``noise_empirical`` is the mean
    squared test noise actually drawn; ``bias2_corrected`` removes the ``Var/R`` upward bias
    of the plug-in ``bias2``. ``train_mse`` is the mean training error when known (else NaN).
    """

    scheme: str
    n_datasets: int
    n_test: int
    bias2: float
    variance: float
    noise: float
    mse: float
    residual: float
    stderr: float
    noise_empirical: float
    bias2_corrected: float
    train_mse: float = float("nan")

    def identity_holds(self, z: float = 3.0) -> bool:
        """Whether ``|residual| <= z * stderr`` (MSE = bias^2 + variance + noise).

        A rounding allowance of ``1e-9 * max(1, mse)`` covers the noise-free case.
        """
        return abs(self.residual) <= z * self.stderr + 1e-9 * max(1.0, self.mse)


def decompose_predictions(
    predictions: ArrayLike, data: Datasets, *, train_mse: float = float("nan")
) -> Decomposition:
    """Decompose the test error of ``predictions`` (shape (R, m)) on the data sets ``data``."""
    g = np.asarray(predictions, dtype=np.float64)
    R, m = data.y_test.shape
    if g.shape != (R, m):
        raise ValueError(f"predictions: shape must be {(R, m)}, got {g.shape}")
    if R < 2:
        raise ValueError(f"data: needs at least 2 data sets for a variance, got {R}")
    if not np.all(np.isfinite(g)):
        raise ValueError("predictions: contain NaN or infinite values")
    sigma2 = data.noise_variance
    f = data.f_test
    gbar = g.mean(axis=0)
    var_j = g.var(axis=0)
    sq_err = (data.y_test - g) ** 2
    bias2 = float(np.mean((gbar - f) ** 2))
    variance = float(np.mean(var_j))
    mse = float(np.mean(sq_err))
    # Variance of the residual given the fits, from the test noise alone (module docstring):
    # each independent noise value eps enters as eps^2 - sigma^2 + 2 (f - g) eps, whose
    # variance is Var[eps^2] + 4 (f - g)^2 sigma^2 + 4 (f - g) E[eps^3].
    gap = f - g if data.scheme == "fixed-x" else (f - gbar)[None, :]
    term_var = data.noise_var_sq + 4.0 * gap**2 * sigma2 + 4.0 * gap * data.noise_mu3
    stderr = float(math.sqrt(max(float(np.sum(term_var)), 0.0)) / gap.size)
    return Decomposition(
        scheme=data.scheme,
        n_datasets=int(R),
        n_test=int(m),
        bias2=bias2,
        variance=variance,
        noise=sigma2,
        mse=mse,
        residual=mse - (bias2 + variance + sigma2),
        stderr=stderr,
        noise_empirical=float(np.mean((data.y_test - f) ** 2)),
        bias2_corrected=bias2 - variance / (R - 1),
        train_mse=float(train_mse),
    )


def predict_datasets(estimator: Any, data: Datasets) -> tuple[FloatArray, float]:
    """Fit ``estimator`` on every training set: test predictions (R, m) and mean train MSE."""
    R = data.x_train.shape[0]
    pred = np.empty((R, data.x_test.size))
    train_err = 0.0
    for r in range(R):
        both = fit_predict(
            estimator, data.x_train[r], data.y_train[r], np.r_[data.x_test, data.x_train[r]]
        )
        pred[r] = both[: data.x_test.size]
        train_err += float(np.mean((both[data.x_test.size :] - data.y_train[r]) ** 2))
    return pred, train_err / R


def decompose(
    estimator: Any,
    f: Callable[[FloatArray], ArrayLike],
    noise: Any,
    *,
    scheme: str = "fixed-x",
    n_datasets: int = 100,
    n_points: int = 50,
    test_fraction: float = 0.2,
    x_range: tuple[float, float] = (0.0, 10.0),
    seed: int = 0,
) -> Decomposition:
    """Squared bias, variance, noise and test MSE of ``estimator`` learning ``f`` under ``noise``.

    ``estimator``: a scikit-learn regressor or a callable ``(x_train, y_train, x_test) ->
    predictions``; ``noise``: a variance (Gaussian noise) or a :class:`NoiseModel`. See
    :func:`draw_datasets` for the sampling schemes and sizes.
    """
    data = draw_datasets(
        f,
        noise,
        scheme=scheme,
        n_datasets=n_datasets,
        n_points=n_points,
        test_fraction=test_fraction,
        x_range=x_range,
        seed=seed,
    )
    pred, train_mse = predict_datasets(estimator, data)
    return decompose_predictions(pred, data, train_mse=train_mse)
