"""scikit-learn's own MiniBatchKMeans tests, run against gpukmeans.MiniBatchKMeans.

The installed scikit-learn's ``sklearn/cluster/tests/test_k_means.py`` is loaded with
``MiniBatchKMeans`` bound to ours (``KMeans`` too, which ``test_sklearn_suite.py`` runs on
its own), and every test of public behaviour that names ``MiniBatchKMeans`` runs here:
the ``test_minibatch_*`` tests and the ``MiniBatchKMeans`` parametrizations of the shared
ones (sparse containers left out, ``global_random_seed`` taken as 0 and 1). Left out, and
why, in ``NOT_APPLICABLE``; the rest must pass unchanged.
"""

import inspect
import itertools
import pathlib
import types

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn

SUITE_PATH = pathlib.Path(sklearn.__file__).parent / "cluster" / "tests" / "test_k_means.py"
SEEDS = (0, 1)

NOT_APPLICABLE = {
    "test_minibatch_update_consistency": "scikit-learn's private _mini_batch_step",
    "test_k_means_function": "sklearn.cluster.k_means",
    "test_dense_sparse": "sparse input",
    "test_predict_dense_sparse": "sparse input",
    "test_predict_does_not_change_cluster_centers": "sparse input",
    # It takes pytest's capsys: tests/test_minibatch.py checks the verbose lines.
    "test_minibatch_kmeans_verbose": "run with capsys in test_minibatch.py",
    "test_minibatch_declared_convergence": "run with capsys in test_minibatch.py",
}


def _load_suite():
    source = SUITE_PATH.read_text()
    original = "from sklearn.cluster import KMeans, MiniBatchKMeans, k_means, kmeans_plusplus"
    if original not in source:
        return None
    source = source.replace(
        original,
        "from sklearn.cluster import k_means\n"
        "from gpukmeans import KMeans, MiniBatchKMeans, kmeans_plusplus",
    )
    module = types.ModuleType("sklearn_test_k_means_on_gpukmeans_minibatch")
    module.__file__ = str(SUITE_PATH)
    exec(compile(source, str(SUITE_PATH), "exec"), module.__dict__)
    return module


def _is_minibatch(value):
    return isinstance(value, type) and value.__name__ == "MiniBatchKMeans"


def _is_estimator_class(value):
    return isinstance(value, type) and value.__name__ in ("KMeans", "MiniBatchKMeans")


def _excluded(value):
    """Sparse containers and matrices, and KMeans (``test_sklearn_suite.py`` runs it)."""
    if isinstance(value, type):
        return issubclass(value, (sp.spmatrix, sp.sparray)) or value.__name__ == "KMeans"
    if sp.issparse(value):
        return True
    if isinstance(value, (tuple, list)):
        return any(_excluded(v) for v in value)
    return False


def _cases(suite):
    """(test name, kwargs) for every MiniBatchKMeans parametrization of the suite."""
    cases = []
    for name, function in sorted(vars(suite).items()):
        if not name.startswith("test_") or not callable(function) or name in NOT_APPLICABLE:
            continue
        parameters = inspect.signature(function).parameters
        marks = [m for m in getattr(function, "pytestmark", []) if m.name == "parametrize"]
        if set(parameters) - {"global_random_seed"} - {
            a.strip() for m in marks
            for a in (m.args[0].split(",") if isinstance(m.args[0], str) else m.args[0])
        }:
            continue  # needs a fixture of scikit-learn's (capsys and the like)
        axes, names_minibatch = [], name.startswith("test_minibatch")
        for mark in marks:
            names = mark.args[0]
            names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
            values = []
            for value in mark.args[1]:
                if hasattr(value, "values") and hasattr(value, "marks"):  # pytest.param
                    value = value.values if len(names) > 1 else value.values[0]
                value = tuple(value) if len(names) > 1 else (value,)
                names_minibatch = names_minibatch or any(_is_minibatch(v) for v in value)
                if not _excluded(value):
                    values.append(dict(zip(names, value)))
            axes.append(values)
        if not names_minibatch:
            continue
        if "global_random_seed" in parameters:
            axes.append([{"global_random_seed": seed} for seed in SEEDS])
        for combination in itertools.product(*axes):
            kwargs = {}
            for part in combination:
                kwargs.update(part)
            cases.append((name, kwargs))
    return cases


def _case_id(case):
    name, kwargs = case
    parts = []
    for key, value in kwargs.items():
        text = getattr(value, "__name__", None) or (
            f"array{np.shape(value)}" if isinstance(value, np.ndarray) else repr(value))
        parts.append(f"{key}={text}"[:40])
    return "-".join([name, *parts])


SUITE = _load_suite() if SUITE_PATH.is_file() else None
CASES = _cases(SUITE) if SUITE is not None else []


@pytest.mark.skipif(SUITE is None, reason=f"scikit-learn's k-means tests are not at {SUITE_PATH}")
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_scikit_learn_minibatch_suite(case):
    name, kwargs = case
    getattr(SUITE, name)(**kwargs)


def test_the_suite_was_found_and_runs_enough():
    if SUITE is None:
        pytest.skip(f"scikit-learn's k-means tests are not installed at {SUITE_PATH}")
    names = {name for name, _ in CASES}
    assert len(names) >= 20, sorted(names)
    assert all(not any(_is_estimator_class(v) and not _is_minibatch(v) for v in kw.values())
               for _, kw in CASES)
