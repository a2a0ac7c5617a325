"""The AdaBoost vs logistic regression curves study and ``dlsys curves``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from dlsys.analytics.curves.metrics import aupr, auprg
from dlsys.analytics.curves.study import (
    _binarize,
    load_binary_dataset,
    make_model,
    run_curves_study,
)
from dlsys.cli.main import main


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("curves")
    study = run_curves_study(out, seed=3)
    return study, out


def test_breast_cancer_study_table_and_files(study_dir):
    study, out = study_dir
    # 569 examples, 212 malignant (the positive class); a stratified 30% split keeps
    # round(0.3 * 569) = 171 test examples, of them 64 malignant (212 * 171 / 569 = 63.7)
    assert study.positive_class == "malignant"
    assert (study.n_train, study.n_test, study.n_test_positive) == (398, 171, 64)
    assert study.pos_fraction == pytest.approx(64 / 171)
    assert study.all_positive == {"roc": [1.0, 1.0], "pr": [1.0, 64 / 171], "prg": [1.0, 0.0]}
    assert [m.model for m in study.models] == ["adaboost", "logreg"]
    for m in study.models:
        # both models separate this set well; the exact values are checked against
        # scikit-learn and the metrics module on the same split below
        assert 0.9 < m.auroc <= 1.0
        assert 0.8 < m.aupr_ap <= 1.0 and 0.8 < m.aupr_interpolated <= 1.0
        assert 0.0 < m.auprg <= 1.0
    for name in ("curves.png", "curves.json", "summary.json", "summary.md"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["model"] for r in summary["table"]] == ["adaboost", "logreg"]
    assert "| adaboost |" in (out / "summary.md").read_text()


def test_study_areas_match_sklearn_on_the_same_split(study_dir):
    from sklearn.model_selection import train_test_split

    study, _ = study_dir
    data = load_binary_dataset("breast-cancer")
    split_seed, *model_seeds = np.random.SeedSequence(3).generate_state(3)
    X_tr, X_te, y_tr, y_te = train_test_split(
        data.X, data.y, test_size=0.3, stratify=data.y, random_state=int(split_seed)
    )
    for k, m in enumerate(study.models):
        model = make_model(m.model, int(model_seeds[k])).fit(X_tr, y_tr)
        s = model.predict_proba(X_te)[:, 1]
        assert m.auroc == pytest.approx(roc_auc_score(y_te, s), abs=1e-12)
        assert m.aupr_ap == pytest.approx(average_precision_score(y_te, s), abs=1e-12)
        # the areas scikit-learn lacks, from the metrics module (tested against the prg
        # package's examples and by hand in test_curves.py) on the same scores
        assert m.auprg == pytest.approx(auprg(y_te, s), abs=1e-12)
        assert m.aupr_interpolated == pytest.approx(aupr(y_te, s, kind="interpolated"), abs=1e-12)


def test_same_seed_same_bytes(tmp_path, study_dir):
    _, first = study_dir
    run_curves_study(tmp_path, seed=3)
    for name in ("curves.png", "curves.json", "summary.json", "summary.md"):
        assert (tmp_path / name).read_bytes() == (first / name).read_bytes(), name


def test_unknown_model_and_dataset_suggest_the_nearest():
    with pytest.raises(ValueError, match="unknown model 'logrg'; did you mean 'logreg'"):
        run_curves_study(models="adaboost,logrg")
    with pytest.raises(ValueError, match="unknown dataset 'breast_cancer'; did you mean"):
        run_curves_study(dataset="breast_cancer")
    with pytest.raises(ValueError, match="unknown model 'svm'"):
        make_model("svm", 0)
    with pytest.raises(ValueError, match="models: give at least one"):
        run_curves_study(models="")


def test_openml_offline_says_how_to_provide_the_set(tmp_path):
    # No network here (and an empty data_home): the fetch fails fast with a name-resolution
    # error; a 2 s socket timeout bounds it where DNS hangs. With a network the name does
    # not exist on OpenML and a ValueError names it instead.
    with pytest.raises((FileNotFoundError, ValueError), match="openml:dlsys-no-such-set-7"):
        load_binary_dataset("openml:dlsys-no-such-set-7", data_home=tmp_path / "skl", timeout_s=2.0)
    try:
        load_binary_dataset("openml:dlsys-no-such-set-7", data_home=tmp_path, timeout_s=2.0)
    except FileNotFoundError as exc:
        msg = str(exc)
        assert "fetch_openml(name='dlsys-no-such-set-7'" in msg
        assert "--data-home" in msg and "breast-cancer" in msg
    except ValueError:
        pass  # online: OpenML answered that the name does not exist


def test_binarize_picks_the_minority_and_checks_two_classes():
    y, pos, neg = _binarize(np.array(["b", "a", "b", "b"]), None, "t")
    assert (pos, neg) == ("a", "b")
    np.testing.assert_array_equal(y, [0, 1, 0, 0])
    y, pos, _ = _binarize(np.array(["b", "a", "b"]), "b", "t")
    np.testing.assert_array_equal(y, [1, 0, 1])
    with pytest.raises(ValueError, match=r"needs exactly 2 classes.*found 3: 'a', 'b', 'c'"):
        _binarize(np.array(["a", "b", "c"]), None, "t")
    with pytest.raises(ValueError, match="unknown positive class 'x'"):
        _binarize(np.array(["a", "b"]), "x", "t")


def test_cli_json_is_one_document(capsys):
    assert main(["curves", "--models", "logreg", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dataset"] == "breast-cancer"
    assert [r["model"] for r in doc["table"]] == ["logreg"]
    assert set(doc["table"][0]) == {"model", "auroc", "aupr_ap", "aupr_interpolated", "auprg"}


def test_cli_bad_input_is_one_line_exit_2(capsys, tmp_path):
    out = tmp_path / "o"
    assert main(["curves", "--models", "adaboost,logrg", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dlsys: error: unknown model 'logrg'")
    assert "\n" not in err
    assert not out.exists()  # nothing half-written
    assert main(["curves", "--dataset", "iris"]) == 2
    assert "unknown dataset 'iris'" in capsys.readouterr().err


def _write_cached_openml_set(home, name="dlsys-toy", did=424242):
    """A tiny binary OpenML set laid out as scikit-learn's fetch_openml cache stores it.

    Every response lives gzipped under ``<home>/openml/openml.org/<URL path>.gz``; the ARFF
    has two numeric features (one with missing values, '?'), one nominal feature and the
    nominal target ``class`` in {no, yes}. Returns the number of 'yes' examples.
    """
    import gzip
    import hashlib
    from urllib.parse import urlparse

    def put(url, payload):
        path = home / "openml" / "openml.org" / (urlparse(url).path.lstrip("/") + ".gz")
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wb") as fh:
            fh.write(payload if isinstance(payload, bytes) else json.dumps(payload).encode())

    rng = np.random.default_rng(0)
    n = 60
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    cls = np.where(x1 + 0.5 * rng.normal(size=n) > 0.6, "yes", "no")
    colour = rng.choice(["red", "green"], size=n)
    rows = [
        f"{float(a)!r},{'?' if b > 1.5 else repr(float(b))},{c},{k}"
        for a, b, c, k in zip(x1, x2, colour, cls, strict=True)
    ]
    arff = "\n".join(
        [
            "@RELATION toy",
            "@ATTRIBUTE x1 NUMERIC",
            "@ATTRIBUTE x2 NUMERIC",
            "@ATTRIBUTE colour {red,green}",
            "@ATTRIBUTE class {no,yes}",
            "@DATA",
            *rows,
        ]
    ).encode()
    api = "https://www.openml.org/api/v1/json/data"
    data_url = f"https://www.openml.org/data/v1/download/{did}/{name}.arff"
    put(
        f"{api}/list/data_name/{name}/limit/2/status/active/",
        {"data": {"dataset": [{"did": did, "name": name, "version": 1, "status": "active"}]}},
    )
    put(
        f"{api}/{did}",
        {
            "data_set_description": {
                "id": str(did),
                "name": name,
                "version": "1",
                "status": "active",
                "format": "ARFF",
                "url": data_url,
                "file_id": str(did),
                "md5_checksum": hashlib.md5(arff).hexdigest(),
                "default_target_attribute": "class",
                "description": "toy set for the dlsys tests",
            }
        },
    )
    kinds = [("x1", "numeric"), ("x2", "numeric"), ("colour", "nominal"), ("class", "nominal")]
    features = [
        {
            "index": str(i),
            "name": nm,
            "data_type": dt,
            "is_target": str(nm == "class").lower(),
            "is_ignore": "false",
            "is_row_identifier": "false",
            "number_of_missing_values": "0",
        }
        for i, (nm, dt) in enumerate(kinds)
    ]
    put(f"{api}/features/{did}", {"data_features": {"feature": features}})
    put(
        f"{api}/qualities/{did}",
        {"data_qualities": {"quality": [{"name": "NumberOfInstances", "value": f"{n}.0"}]}},
    )
    put(data_url, arff)
    return int((cls == "yes").sum())


def test_cached_openml_set_loads_offline_by_name_and_id(tmp_path):
    n_yes = _write_cached_openml_set(tmp_path)
    d = load_binary_dataset("openml:dlsys-toy", data_home=tmp_path, timeout_s=2.0)
    assert d.name == "openml:dlsys-toy"
    assert d.X.shape == (60, 3)  # nominal 'colour' arrives as its ordinal code
    assert np.isnan(d.X[:, 1]).any()  # the '?' entries
    assert set(np.unique(d.X[:, 2])) <= {0.0, 1.0}
    assert (d.positive, d.negative) == ("yes", "no")  # the minority class
    assert int(d.y.sum()) == n_yes
    by_id = load_binary_dataset("openml:424242", data_home=tmp_path, timeout_s=2.0)
    np.testing.assert_array_equal(by_id.y, d.y)
    # the whole study runs on it (missing values imputed inside each pipeline)
    study = run_curves_study(dataset="openml:dlsys-toy", data_home=tmp_path, test_size=0.5)
    assert study.n_test == 30 and 0.5 < study.models[1].auroc <= 1.0
