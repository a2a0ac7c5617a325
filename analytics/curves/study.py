"""The classifier-curves study: AdaBoost against logistic regression on one binary data set.

One stratified train/test split (seeded), both models fitted on the training part, and on
the test part: ROC, PR and PRG curves, the all-positive classifier's point in each space, and
a table of AUROC, AUPR (average precision and Davis & Goadrich interpolation) and AUPRG.

Data sets: ``breast-cancer`` (scikit-learn's Wisconsin diagnostic set, shipped with
scikit-learn; the positive class is *malignant*) or ``openml:NAME`` / ``openml:ID`` through
``sklearn.datasets.fetch_openml``, which works offline only when the set is already in the
scikit-learn data folder (``data_home``). Nominal OpenML features arrive as ordinal codes
(scikit-learn's ``liac-arff`` parser; no pandas needed) and missing values are imputed with
the training mean inside each model's pipeline.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dlsys.analytics.curves.metrics import (
    all_positive_points,
    aupr,
    auprg,
    auroc,
    interpolate_pr,
    pr_curve,
    prg_curve,
    roc_curve,
)
from dlsys.common import check_int, unknown_name, write_json
from dlsys.common.io import atomic_write_text

__all__ = [
    "DATASETS",
    "MODELS",
    "BinaryDataset",
    "CurvesStudy",
    "ModelResult",
    "load_binary_dataset",
    "make_model",
    "run_curves_study",
]

MODELS = ("adaboost", "logreg")
DATASETS = ("breast-cancer", "openml:NAME", "openml:ID")
MODEL_LABELS = {"adaboost": "AdaBoost", "logreg": "logistic regression"}
DEFAULT_TEST_SIZE = 0.3  # share of examples held out for the curves
ADABOOST_ESTIMATORS = 100  # boosting rounds (decision stumps)
LOGREG_MAX_ITER = 5000  # lbfgs iterations; enough for the standardised breast-cancer set
OPENML_TIMEOUT_S = 10.0  # socket timeout (seconds) while asking OpenML


@dataclass(frozen=True, eq=False)
class BinaryDataset:
    """A binary classification set: features ``X`` (examples x features), labels ``y`` in {0, 1}.

    ``positive`` names the class encoded as 1, ``negative`` the class encoded as 0;
    ``source`` says where it came from.
    """

    name: str
    X: NDArray[np.float64]
    y: NDArray[np.int64]
    positive: str
    negative: str
    source: str


def _binarize(
    target: NDArray[Any], positive: str | None, what: str
) -> tuple[NDArray[np.int64], str, str]:
    """Encode a two-class target as 0/1; the positive class is ``positive`` or the minority."""
    labels = np.asarray([str(v) for v in np.asarray(target).tolist()])
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size != 2:
        shown = ", ".join(repr(c) for c in classes[:10].tolist())
        more = f" and {classes.size - 10} more" if classes.size > 10 else ""
        raise ValueError(
            f"dataset {what}: needs exactly 2 classes for ROC/PR/PRG curves, "
            f"found {classes.size}: {shown}{more}"
        )
    if positive is None:
        # the minority class (the first in sorted order on a tie) is the positive class
        pos = str(classes[int(np.argmin(counts))])
    elif positive in classes.tolist():
        pos = positive
    else:
        raise unknown_name("positive class", positive, classes.tolist())
    neg = str(classes[classes != pos][0])
    return (labels == pos).astype(np.int64), pos, neg


def _load_openml(
    ref: str, data_home: str | os.PathLike[str] | None, timeout_s: float
) -> tuple[Any, Any, str]:
    from sklearn.datasets import fetch_openml, get_data_home

    kwargs: dict[str, Any] = {"data_id": int(ref)} if ref.isdigit() else {"name": ref}
    home = get_data_home(data_home)
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn warns on each network retry
            bunch = fetch_openml(
                **kwargs,
                data_home=data_home,
                as_frame=False,
                parser="liac-arff",
                n_retries=1,
                delay=0.01,
            )
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        key, value = next(iter(kwargs.items()))
        raise FileNotFoundError(
            f"dataset openml:{ref}: not in the scikit-learn cache at {home} and OpenML cannot "
            f"be reached ({getattr(exc, 'reason', exc)}). On a machine with a network run "
            f'python -c "from sklearn.datasets import fetch_openml; '
            f"fetch_openml({key}={value!r}, as_frame=False, parser='liac-arff')\", then copy "
            f"its scikit_learn_data/openml folder to {home}/openml (or pass --data-home / set "
            f"SCIKIT_LEARN_DATA to the folder holding it); or use --dataset breast-cancer"
        ) from exc
    except ValueError as exc:  # sklearn's OpenMLError: no such name or id
        raise ValueError(f"dataset openml:{ref}: OpenML says: {exc}") from exc
    finally:
        socket.setdefaulttimeout(old_timeout)
    X = bunch.data
    if hasattr(X, "toarray"):
        X = X.toarray()
    return np.asarray(X, dtype=np.float64), bunch.target, str(bunch.details.get("name", ref))


def load_binary_dataset(
    dataset: str = "breast-cancer",
    *,
    positive: str | None = None,
    data_home: str | os.PathLike[str] | None = None,
    timeout_s: float = OPENML_TIMEOUT_S,
) -> BinaryDataset:
    """Load ``breast-cancer`` (built in) or ``openml:NAME`` / ``openml:ID`` as a binary set.

    ``positive`` picks the class encoded as 1 (default: *malignant* for breast-cancer, the
    minority class for OpenML sets). OpenML sets come from the scikit-learn cache under
    ``data_home`` or, with a network, from openml.org (``timeout_s`` seconds per request);
    offline and uncached, ``FileNotFoundError`` says how to provide the file.
    """
    if not isinstance(dataset, str):
        raise TypeError(f"dataset: must be a string, got {dataset!r}")
    if dataset == "breast-cancer":
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        names = np.asarray(bunch.target_names)[bunch.target]
        y, pos, neg = _binarize(names, positive or "malignant", "breast-cancer")
        return BinaryDataset(
            name="breast-cancer",
            X=np.asarray(bunch.data, dtype=np.float64),
            y=y,
            positive=pos,
            negative=neg,
            source="scikit-learn load_breast_cancer: Wisconsin diagnostic, 569 examples",
        )
    if dataset.startswith("openml:") and dataset[len("openml:") :].strip():
        ref = dataset[len("openml:") :].strip()
        X, target, name = _load_openml(ref, data_home, timeout_s)
        y, pos, neg = _binarize(target, positive, dataset)
        return BinaryDataset(
            name=f"openml:{name}",
            X=X,
            y=y,
            positive=pos,
            negative=neg,
            source=f"OpenML {ref} via sklearn.datasets.fetch_openml",
        )
    raise unknown_name("dataset", dataset, DATASETS)


def make_model(name: str, seed: int) -> Any:
    """A fresh scikit-learn pipeline for model ``name`` (``adaboost`` or ``logreg``).

    Both impute missing values with the training mean; logistic regression standardises the
    features first (L2 penalty, C = 1); AdaBoost uses 100 decision stumps (SAMME).
    """
    from sklearn.ensemble import AdaBoostClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "adaboost":
        return make_pipeline(
            SimpleImputer(strategy="mean"),
            AdaBoostClassifier(n_estimators=ADABOOST_ESTIMATORS, random_state=seed),
        )
    if name == "logreg":
        return make_pipeline(
            SimpleImputer(strategy="mean"),
            StandardScaler(),
            LogisticRegression(max_iter=LOGREG_MAX_ITER),
        )
    raise unknown_name("model", name, MODELS)


@dataclass(frozen=True)
class ModelResult:
    """One model's areas on the test split (dimensionless) and its curves (lists of floats)."""

    model: str
    auroc: float
    aupr_ap: float
    aupr_interpolated: float
    auprg: float
    roc: dict[str, list[float]]
    pr: dict[str, list[float]]
    prg: dict[str, list[Any]]


@dataclass(frozen=True)
class CurvesStudy:
    """The study's numbers: data set, split sizes (examples), all-positive points, per model."""

    dataset: str
    source: str
    positive_class: str
    negative_class: str
    seed: int
    n_train: int
    n_test: int
    n_test_positive: int
    pos_fraction: float
    all_positive: dict[str, list[float]]
    models: list[ModelResult] = field(default_factory=list)

    def table(self) -> list[dict[str, Any]]:
        """One row per model: AUROC, AUPR (AP and interpolated) and AUPRG."""
        return [
            {
                "model": m.model,
                "auroc": m.auroc,
                "aupr_ap": m.aupr_ap,
                "aupr_interpolated": m.aupr_interpolated,
                "auprg": m.auprg,
            }
            for m in self.models
        ]

    def markdown(self) -> str:
        """The table as Markdown, with the data set and class balance above it."""
        lines = [
            f"Data set: {self.dataset} ({self.source}); positive class {self.positive_class!r}; "
            f"test split {self.n_test} examples, {self.n_test_positive} positive "
            f"(pi = {self.pos_fraction:.4f}); seed {self.seed}.",
            "",
            "| model | AUROC | AUPR (AP) | AUPR (interpolated) | AUPRG |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for m in self.models:
            lines.append(
                f"| {m.model} | {m.auroc:.4f} | {m.aupr_ap:.4f} | {m.aupr_interpolated:.4f} "
                f"| {m.auprg:.4f} |"
            )
        ap = self.all_positive
        lines += [
            "",
            f"All-positive classifier: ROC (FPR, TPR) = ({ap['roc'][0]:g}, {ap['roc'][1]:g}); "
            f"PR (recall, precision) = ({ap['pr'][0]:g}, {ap['pr'][1]:.4f}); "
            f"PRG (recall gain, precision gain) = ({ap['prg'][0]:g}, {ap['prg'][1]:g}).",
        ]
        return "\n".join(lines) + "\n"


def _parse_models(models: str | list[str] | tuple[str, ...]) -> list[str]:
    names = [m.strip() for m in models.split(",")] if isinstance(models, str) else list(models)
    names = [m for m in names if m]
    if not names:
        raise ValueError(f"models: give at least one of {', '.join(MODELS)}, got {models!r}")
    for m in names:
        if m not in MODELS:
            raise unknown_name("model", m, MODELS)
    if len(set(names)) != len(names):
        raise ValueError(f"models: each model at most once, got {names}")
    return names


def _plot(study: CurvesStudy, path: Path) -> None:
    from dlsys.common.plotting import save_figure, subplots

    pi = study.pos_fraction
    fig, axes = subplots(1, 3, figsize=(15, 5))
    ax_roc, ax_pr, ax_prg = axes
    data: dict[str, Any] = {"pos_fraction": pi, "all_positive": study.all_positive, "models": {}}
    for m in study.models:
        label = MODEL_LABELS[m.model]
        ax_roc.plot(m.roc["fpr"], m.roc["tpr"], label=f"{label} (AUROC {m.auroc:.3f})")
        ax_pr.plot(
            m.pr["recall_dense"],
            m.pr["precision_dense"],
            label=f"{label} (AP {m.aupr_ap:.3f}, interp. {m.aupr_interpolated:.3f})",
        )
        ax_pr.plot(m.pr["recall"], m.pr["precision"], ".", ms=3, color=ax_pr.lines[-1].get_color())
        rg = np.asarray(m.prg["recall_gain"], dtype=np.float64)
        pg = np.asarray(m.prg["precision_gain"], dtype=np.float64)
        keep = rg >= 0
        ax_prg.plot(rg[keep], pg[keep], label=f"{label} (AUPRG {m.auprg:.3f})")
        data["models"][m.model] = {"roc": m.roc, "pr": m.pr, "prg": m.prg}
    ap = study.all_positive
    marker: dict[str, Any] = {"marker": "*", "s": 160, "color": "red", "zorder": 5}
    ax_roc.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="random ranking")
    ax_roc.scatter(*ap["roc"], label="all-positive classifier", **marker)
    ax_roc.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    random_pr = f"random ranking (precision {pi:.3f})"
    ax_pr.axhline(pi, linestyle="--", color="grey", lw=1, label=random_pr)
    ax_pr.scatter(*ap["pr"], label="all-positive classifier", **marker)
    ax_pr.set(xlabel="recall", ylabel="precision", title="precision-recall (D&G interpolation)")
    ax_prg.plot([0, 1], [1, 0], ":", color="grey", lw=1, label="F1-gain = 0.5 isometric")
    ax_prg.axhline(0, color="grey", lw=1, linestyle="--", label="random ranking (precision gain 0)")
    ax_prg.scatter(*ap["prg"], label="all-positive classifier", **marker)
    ax_prg.set(xlabel="recall gain", ylabel="precision gain", title="precision-recall-gain")
    for ax in axes:
        ax.set_xlim(-0.02, 1.02)
        ax.grid(True, lw=0.3)
        ax.legend(loc="lower left", fontsize=8)
    ax_roc.set_ylim(-0.02, 1.02)
    ax_pr.set_ylim(-0.02, 1.02)
    low = min(
        (
            min(np.asarray(m.prg["precision_gain"])[np.asarray(m.prg["recall_gain"]) >= 0])
            for m in study.models
        ),
        default=0.0,
    )
    ax_prg.set_ylim(max(-1.0, min(-0.05, low - 0.05)), 1.05)
    fig.suptitle(
        f"{study.dataset}: test split of {study.n_test} examples, pi = {pi:.3f} "
        f"(positive class {study.positive_class!r})"
    )
    save_figure(fig, path, data=data)


def run_curves_study(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    dataset: str = "breast-cancer",
    models: str | list[str] | tuple[str, ...] = MODELS,
    seed: int = 0,
    test_size: float = DEFAULT_TEST_SIZE,
    positive: str | None = None,
    data_home: str | os.PathLike[str] | None = None,
) -> CurvesStudy:
    """Run the study and return its numbers; with ``out_dir``, also write its files there.

    Files: ``curves.png`` (ROC, PR and PRG panels) with ``curves.json`` (the plotted data),
    ``summary.json`` (this result) and ``summary.md`` (the table). Same arguments, same
    bytes. ``out_dir`` should be a staging folder (see :func:`dlsys.common.output_dir`);
    files are written into it directly.
    """
    from sklearn.model_selection import train_test_split

    check_int("seed", seed, minimum=0)
    if (
        isinstance(test_size, bool)
        or not isinstance(test_size, int | float)
        or not 0 < test_size < 1
    ):
        raise ValueError(
            f"test_size: must be a fraction strictly between 0 and 1, got {test_size!r}"
        )
    names = _parse_models(models)
    data = load_binary_dataset(dataset, positive=positive, data_home=data_home)
    split_seed, *model_seeds = np.random.SeedSequence(seed).generate_state(1 + len(MODELS))
    X_tr, X_te, y_tr, y_te = train_test_split(
        data.X, data.y, test_size=test_size, stratify=data.y, random_state=int(split_seed)
    )
    if y_te.min() == y_te.max():
        raise ValueError(
            f"test_size: {test_size!r} leaves a test split with one class only; use a larger one"
        )
    pts = all_positive_points(y_te)
    results = []
    for name in names:
        model = make_model(name, int(model_seeds[MODELS.index(name)]))
        model.fit(X_tr, y_tr)
        scores = model.predict_proba(X_te)[:, 1]
        roc = roc_curve(y_te, scores)
        pr = pr_curve(y_te, scores)
        prg = prg_curve(y_te, scores)
        r_dense, p_dense = interpolate_pr(pr)
        results.append(
            ModelResult(
                model=name,
                auroc=auroc(y_te, scores),
                aupr_ap=aupr(y_te, scores, kind="ap"),
                aupr_interpolated=aupr(y_te, scores, kind="interpolated"),
                auprg=auprg(y_te, scores),
                roc={
                    "fpr": roc.fpr.tolist(),
                    "tpr": roc.tpr.tolist(),
                    "thresholds": roc.thresholds.tolist(),
                },
                pr={
                    "recall": pr.recall.tolist(),
                    "precision": pr.precision.tolist(),
                    "thresholds": pr.thresholds.tolist(),
                    "recall_dense": r_dense.tolist(),
                    "precision_dense": p_dense.tolist(),
                },
                prg={
                    "recall_gain": prg.recall_gain.tolist(),
                    "precision_gain": prg.precision_gain.tolist(),
                    "thresholds": prg.thresholds.tolist(),
                    "is_crossing": prg.is_crossing.tolist(),
                },
            )
        )
    study = CurvesStudy(
        dataset=data.name,
        source=data.source,
        positive_class=data.positive,
        negative_class=data.negative,
        seed=seed,
        n_train=int(y_tr.size),
        n_test=int(y_te.size),
        n_test_positive=int(y_te.sum()),
        pos_fraction=pts.pos_fraction,
        all_positive={"roc": list(pts.roc), "pr": list(pts.pr), "prg": list(pts.prg)},
        models=results,
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _plot(study, out / "curves.png")
        write_json(out / "summary.json", summary_dict(study))
        atomic_write_text(out / "summary.md", study.markdown())
    return study


def summary_dict(study: CurvesStudy) -> dict[str, Any]:
    """The study without the curve arrays: what ``dlsys curves --json`` prints."""
    return {
        "dataset": study.dataset,
        "source": study.source,
        "positive_class": study.positive_class,
        "negative_class": study.negative_class,
        "seed": study.seed,
        "n_train": study.n_train,
        "n_test": study.n_test,
        "n_test_positive": study.n_test_positive,
        "pos_fraction": study.pos_fraction,
        "all_positive": study.all_positive,
        "table": study.table(),
    }
