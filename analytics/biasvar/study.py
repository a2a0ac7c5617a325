"""The ready-made bias-variance study: polynomials learning y = x + sin(1.5 x) + N(0, 0.3).

As in the homework behind dlsys: x on [0, 10], noise variance 0.3, 100 data sets of 50
points split 80/20 into training and test points; least-squares polynomials of degree 1 to
15 fitted on each training set; squared bias, variance, noise and test MSE per degree with
the identity check; the degree with the lowest test MSE; and the order-10 polynomial with
and without an L2 penalty (same data sets). Two figures: bias^2 / variance / test error
against degree, and the degree-1, 3 and 10 fits on one small data set over f.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlsys.analytics.biasvar.decomposition import (
    SCHEMES,
    Decomposition,
    GaussianNoise,
    PolynomialFit,
    PolynomialRidge,
    decompose_predictions,
    draw_datasets,
    predict_datasets,
)
from dlsys.common import check_int, unknown_name, write_json
from dlsys.common.io import atomic_write_text
from dlsys.common.progress import progress

__all__ = [
    "NOISE_VARIANCE",
    "X_RANGE",
    "BiasVarianceStudy",
    "parse_degrees",
    "run_biasvar_study",
    "true_function",
]

NOISE_VARIANCE = 0.3  # variance of the Gaussian noise on y (y units squared)
X_RANGE = (0.0, 10.0)  # inputs x lie in this interval
DEFAULT_RIDGE_ALPHA = 0.01  # L2 penalty of the regularised order-10 polynomial
RIDGE_DEGREE = 10  # the order of the polynomial compared with and without L2
FIT_DEGREES = (1, 3, 10)  # the fits drawn over one data set
FIT_POINTS = 20  # points in the data set those fits are drawn over


def true_function(x: Any) -> np.ndarray:
    """The true function f(x) = x + sin(1.5 x) (x and f in the same, arbitrary units)."""
    x = np.asarray(x, dtype=np.float64)
    return np.asarray(x + np.sin(1.5 * x), dtype=np.float64)


def parse_degrees(text: str | int | list[int] | tuple[int, ...] | range) -> list[int]:
    """Degrees from ``"1-15"``, ``"1,3,10"``, ``"1-5,10"``, an int or a sequence; each >= 1.

    Returns them sorted without repeats.
    """
    if isinstance(text, bool):
        raise TypeError(f"degrees: must be a range like 1-15 or a list like 1,3,10, got {text!r}")
    if isinstance(text, int):
        items: list[int] = [text]
    elif isinstance(text, str):
        items = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                raise ValueError(f"degrees: empty item in {text!r} (use e.g. 1-15 or 1,3,10)")
            lo_s, sep, hi_s = part.partition("-")
            try:
                lo = int(lo_s)
                hi = int(hi_s) if sep else lo
            except ValueError:
                raise ValueError(
                    f"degrees: {part!r} is not an int or a range a-b (use e.g. 1-15 or 1,3,10)"
                ) from None
            if hi < lo:
                raise ValueError(f"degrees: range {part!r} runs backwards")
            items.extend(range(lo, hi + 1))
    else:
        items = list(text)
    if not items:
        raise ValueError("degrees: give at least one degree")
    for d in items:
        check_int("degree", d, minimum=1)
    return sorted({int(d) for d in items})


@dataclass(frozen=True)
class BiasVarianceStudy:
    """The study's numbers (errors in units of y squared).

    ``rows`` holds one :class:`Decomposition` per degree (same order as ``degrees``);
    ``best_degree`` has the lowest test MSE; ``order10`` and ``order10_ridge`` compare the
    order-10 polynomial without and with the L2 penalty ``ridge_alpha``; ``fits`` is the data
    behind the fits figure (x, y of one data set of ``FIT_POINTS`` points, and each degree's
    curve on a grid).
    """

    scheme: str
    seed: int
    n_datasets: int
    n_points: int
    n_train: int
    n_test: int
    noise_variance: float
    degrees: list[int]
    rows: list[Decomposition]
    best_degree: int
    ridge_degree: int
    ridge_alpha: float
    order10: Decomposition
    order10_ridge: Decomposition
    fits: dict[str, Any]

    def table(self) -> list[dict[str, Any]]:
        """One dict per degree: degree, bias2, variance, noise, mse, residual, stderr, ..."""
        return [{"degree": d, **_row(r)} for d, r in zip(self.degrees, self.rows, strict=True)]

    def markdown(self) -> str:
        """The degree table and the order-10 comparison as Markdown."""
        lines = [
            f"y = x + sin(1.5x) + N(0, {self.noise_variance:g}) on [0, 10]; {self.n_datasets} "
            f"data sets of {self.n_points} points ({self.n_train} train / {self.n_test} test), "
            f"scheme {self.scheme}, seed {self.seed}.",
            "",
            "| degree | bias^2 | variance | noise | bias^2+var+noise | test MSE | residual "
            "| std. error | train MSE |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for d, r in zip(self.degrees, self.rows, strict=True):
            total = r.bias2 + r.variance + r.noise
            mark = " (best)" if d == self.best_degree else ""
            lines.append(
                f"| {d}{mark} | {r.bias2:.4f} | {r.variance:.4f} | {r.noise:.4f} | {total:.4f} "
                f"| {r.mse:.4f} | {r.residual:+.4f} | {r.stderr:.4f} | {r.train_mse:.4f} |"
            )
        lines += [
            "",
            f"Best degree (lowest test MSE): {self.best_degree}.",
            "",
            f"| order-{self.ridge_degree} polynomial | bias^2 | variance | test MSE |",
            "| --- | ---: | ---: | ---: |",
            f"| least squares | {self.order10.bias2:.4f} | {self.order10.variance:.4f} "
            f"| {self.order10.mse:.4f} |",
            f"| L2, alpha = {self.ridge_alpha:g} | {self.order10_ridge.bias2:.4f} "
            f"| {self.order10_ridge.variance:.4f} | {self.order10_ridge.mse:.4f} |",
        ]
        return "\n".join(lines) + "\n"


def _row(r: Decomposition) -> dict[str, Any]:
    return {
        "bias2": r.bias2,
        "variance": r.variance,
        "noise": r.noise,
        "mse": r.mse,
        "residual": r.residual,
        "stderr": r.stderr,
        "identity_holds": r.identity_holds(),
        "bias2_corrected": r.bias2_corrected,
        "noise_empirical": r.noise_empirical,
        "train_mse": r.train_mse,
    }


def summary_dict(study: BiasVarianceStudy) -> dict[str, Any]:
    """The study's numbers as plain JSON types (what ``dlsys biasvar --json`` prints)."""
    return {
        "function": "f(x) = x + sin(1.5 x)",
        "x_range": list(X_RANGE),
        "noise_variance": study.noise_variance,
        "scheme": study.scheme,
        "seed": study.seed,
        "n_datasets": study.n_datasets,
        "n_points": study.n_points,
        "n_train": study.n_train,
        "n_test": study.n_test,
        "degrees": study.table(),
        "best_degree": study.best_degree,
        "order10": {
            "degree": study.ridge_degree,
            "ridge_alpha": study.ridge_alpha,
            "least_squares": _row(study.order10),
            "ridge": _row(study.order10_ridge),
        },
    }


def _fits(seed: int, degrees: tuple[int, ...]) -> dict[str, Any]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x666974]))
    x = np.sort(rng.uniform(*X_RANGE, FIT_POINTS))
    y = true_function(x) + GaussianNoise(NOISE_VARIANCE).sample(rng, FIT_POINTS)
    grid = np.linspace(*X_RANGE, 400)
    curves = {str(d): PolynomialFit(d)(x, y, grid).tolist() for d in degrees}
    return {
        "x": x.tolist(),
        "y": y.tolist(),
        "grid": grid.tolist(),
        "f": true_function(grid).tolist(),
        "fits": curves,
    }


def _plot_tradeoff(study: BiasVarianceStudy, path: Path) -> None:
    from dlsys.common.plotting import save_figure, subplots

    d = study.degrees
    bias2 = [r.bias2 for r in study.rows]
    var = [r.variance for r in study.rows]
    mse = [r.mse for r in study.rows]
    fig, ax = subplots(figsize=(7, 4.5))
    ax.plot(d, bias2, "o-", label="squared bias")
    ax.plot(d, var, "s-", label="variance")
    ax.plot(d, mse, "^-", label="test MSE")
    ax.plot(
        d,
        [r.bias2 + r.variance + r.noise for r in study.rows],
        ":",
        color="black",
        label="bias² + variance + noise",
    )
    noise = f"noise σ² = {study.noise_variance:g}"
    ax.axhline(study.noise_variance, linestyle="--", color="grey", label=noise)
    best = f"best degree {study.best_degree}"
    ax.axvline(study.best_degree, linestyle="--", color="red", lw=1, label=best)
    ax.set_yscale("log")
    ax.set_xlabel("polynomial degree")
    ax.set_ylabel("error (y units squared, log scale)")
    ax.set_title(
        f"bias-variance trade-off: {study.n_datasets} data sets, "
        f"{study.n_train} train / {study.n_test} test points ({study.scheme})"
    )
    ax.set_xticks(d)
    ax.grid(True, lw=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, data={"degrees": study.table(), "best_degree": study.best_degree})


def _plot_fits(fits: dict[str, Any], path: Path) -> None:
    from dlsys.common.plotting import save_figure, subplots

    fig, ax = subplots(figsize=(7, 4.5))
    ax.scatter(fits["x"], fits["y"], s=18, color="black", zorder=3, label="data y")
    ax.plot(fits["grid"], fits["f"], lw=2.5, color="grey", label="f(x) = x + sin(1.5x)")
    for deg, curve in fits["fits"].items():
        ax.plot(fits["grid"], curve, label=f"g{deg}(x)")
    ys = np.asarray(fits["y"])
    pad = 0.25 * float(np.ptp(ys))
    ax.set_ylim(float(ys.min()) - pad, float(ys.max()) + pad)  # degree 10 may swing off-scale
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"least-squares polynomials on {len(fits['x'])} points")
    ax.grid(True, lw=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, data=fits)


def run_biasvar_study(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    degrees: Any = "1-15",
    n_datasets: int = 100,
    n_points: int = 50,
    test_fraction: float = 0.2,
    noise_variance: float = NOISE_VARIANCE,
    ridge_alpha: float = DEFAULT_RIDGE_ALPHA,
    scheme: str = "fixed-x",
    seed: int = 0,
    quiet: bool = True,
) -> BiasVarianceStudy:
    """Run the study and return its numbers; with ``out_dir``, also write its files there.

    Files: ``tradeoff.png`` / ``tradeoff.json`` (bias^2, variance, test MSE against degree),
    ``fits.png`` / ``fits.json`` (g1, g3, g10 over one data set and f), ``summary.json``
    and ``summary.md`` (the tables), ``degrees.csv``. Same arguments, same bytes.
    ``out_dir`` should be a staging folder (see :func:`dlsys.common.output_dir`).
    """
    degs = parse_degrees(degrees)
    if scheme not in SCHEMES:
        raise unknown_name("scheme", str(scheme), SCHEMES)
    PolynomialRidge(RIDGE_DEGREE, ridge_alpha)  # validates alpha before any work
    noise = GaussianNoise(noise_variance)
    data = draw_datasets(
        true_function,
        noise,
        scheme=scheme,
        n_datasets=n_datasets,
        n_points=n_points,
        test_fraction=test_fraction,
        x_range=X_RANGE,
        seed=seed,
    )
    n_train = data.x_train.shape[1]
    too_high = [d for d in degs if d >= n_train]
    if too_high:
        raise ValueError(
            f"degree: {too_high[0]} needs at least {too_high[0] + 1} training points, but each "
            f"data set has {n_train}; lower the degrees or raise n_points"
        )
    rows = []
    for d in progress(degs, total=len(degs), desc="degrees", quiet=quiet):
        pred, train_mse = predict_datasets(PolynomialFit(d), data)
        rows.append(decompose_predictions(pred, data, train_mse=train_mse))
    best = degs[int(np.argmin([r.mse for r in rows]))]
    if RIDGE_DEGREE in degs:
        order10 = rows[degs.index(RIDGE_DEGREE)]
    else:
        pred, train_mse = predict_datasets(PolynomialFit(RIDGE_DEGREE), data)
        order10 = decompose_predictions(pred, data, train_mse=train_mse)
    pred, train_mse = predict_datasets(PolynomialRidge(RIDGE_DEGREE, ridge_alpha), data)
    order10_ridge = decompose_predictions(pred, data, train_mse=train_mse)
    study = BiasVarianceStudy(
        scheme=scheme,
        seed=seed,
        n_datasets=int(n_datasets),
        n_points=int(n_points),
        n_train=int(n_train),
        n_test=int(data.x_test.size),
        noise_variance=float(noise.variance),
        degrees=degs,
        rows=rows,
        best_degree=best,
        ridge_degree=RIDGE_DEGREE,
        ridge_alpha=float(ridge_alpha),
        order10=order10,
        order10_ridge=order10_ridge,
        fits=_fits(seed, FIT_DEGREES),
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _plot_tradeoff(study, out / "tradeoff.png")
        _plot_fits(study.fits, out / "fits.png")
        write_json(out / "summary.json", summary_dict(study))
        atomic_write_text(out / "summary.md", study.markdown())
        atomic_write_text(out / "degrees.csv", _csv(study))
    return study


def _csv(study: BiasVarianceStudy) -> str:
    cols = ["degree", "bias2", "variance", "noise", "mse", "residual", "stderr", "train_mse"]
    lines = [",".join(cols)]
    for row in study.table():
        lines.append(",".join(repr(float(row[c])) if c != "degree" else str(row[c]) for c in cols))
    return "\n".join(lines) + "\n"
