"""scikit-learn's own k-means tests, run against gpukmeans.

The installed scikit-learn's ``sklearn/cluster/tests/test_k_means.py`` is loaded with
``KMeans`` and ``kmeans_plusplus`` bound to ours, and every test of public behaviour that
applies to a dense ``KMeans`` runs here with its own parametrization (sparse containers
and ``MiniBatchKMeans`` left out, ``global_random_seed`` taken as 0 and 1). Left out, and
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
    # Private functions of scikit-learn, not behaviour of an estimator.
    "test_relocate_empty_clusters": "scikit-learn's private _relocate_empty_clusters_*",
    "test_euclidean_distance": "scikit-learn's private _euclidean_*_wrapper",
    "test_inertia": "scikit-learn's private _inertia_*",
    "test_is_same_clustering": "scikit-learn's private _is_same_clustering",
    "test_minibatch_update_consistency": "MiniBatchKMeans",
    "test_sample_weight_init": "scikit-learn's private KMeans._init_centroids",
    "test_sample_weight_zero": "scikit-learn's private KMeans._init_centroids",
    # scikit-learn's own k_means function and MiniBatchKMeans.
    "test_k_means_function": "sklearn.cluster.k_means",
    "test_minibatch_kmeans_partial_fit_init": "MiniBatchKMeans",
    "test_minibatch_kmeans_verbose": "MiniBatchKMeans",
    "test_minibatch_kmeans_warning_init_size": "MiniBatchKMeans",
    "test_minibatch_sensible_reassign": "MiniBatchKMeans",
    "test_minibatch_reassign": "MiniBatchKMeans",
    "test_minibatch_with_many_reassignments": "MiniBatchKMeans",
    "test_minibatch_kmeans_init_size": "MiniBatchKMeans",
    "test_minibatch_declared_convergence": "MiniBatchKMeans",
    "test_minibatch_iter_steps": "MiniBatchKMeans",
    # Sparse input: gpukmeans refuses it with a TypeError (README).
    "test_dense_sparse": "sparse input",
    "test_predict_dense_sparse": "sparse input",
    "test_predict_does_not_change_cluster_centers": "sparse input",
    # It takes pytest's capsys: test_progress.py runs it.
    "test_kmeans_verbose": "run with capsys in test_progress.py",
    # Differences on purpose, documented in the README.
    "test_kmeans_copyx": "copy_x changes nothing in gpukmeans (README); checked there",
    "test_weighted_vs_repeated": (
        "k-means++ draws differ between a weighted sample and its repetition, as in "
        "scikit-learn's own check_estimator xfail"),
}


def _load_suite():
    source = SUITE_PATH.read_text()
    original = "from sklearn.cluster import KMeans, MiniBatchKMeans, k_means, kmeans_plusplus"
    if original not in source:
        return None
    source = source.replace(
        original,
        "from sklearn.cluster import MiniBatchKMeans, k_means\n"
        "from gpukmeans import KMeans, kmeans_plusplus",
    )
    module = types.ModuleType("sklearn_test_k_means_on_gpukmeans")
    module.__file__ = str(SUITE_PATH)
    exec(compile(source, str(SUITE_PATH), "exec"), module.__dict__)
    return module


def _excluded(value):
    """Sparse containers and matrices, and MiniBatchKMeans: not for a dense KMeans."""
    if isinstance(value, type):
        return issubclass(value, (sp.spmatrix, sp.sparray)) or value.__name__ == "MiniBatchKMeans"
    if sp.issparse(value):
        return True
    if isinstance(value, (tuple, list)):
        return any(_excluded(v) for v in value)
    return False


def _cases(suite):
    """(test name, kwargs) for every applicable parametrization of the suite."""
    cases = []
    for name, function in sorted(vars(suite).items()):
        if not name.startswith("test_") or not callable(function) or name in NOT_APPLICABLE:
            continue
        parameters = inspect.signature(function).parameters
        if set(parameters) - {"global_random_seed"} - {
            a.strip() for m in getattr(function, "pytestmark", []) if m.name == "parametrize"
            for a in (m.args[0].split(",") if isinstance(m.args[0], str) else m.args[0])
        }:
            continue  # needs a fixture of scikit-learn's (capsys and the like)
        axes = []
        for mark in getattr(function, "pytestmark", []):
            if mark.name != "parametrize":
                continue
            names = mark.args[0]
            names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
            values = []
            for value in mark.args[1]:
                if hasattr(value, "values") and hasattr(value, "marks"):  # pytest.param
                    value = value.values if len(names) > 1 else value.values[0]
                value = tuple(value) if len(names) > 1 else (value,)
                if not _excluded(value):
                    values.append(dict(zip(names, value)))
            axes.append(values)
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
def test_scikit_learn_k_means_suite(case):
    name, kwargs = case
    getattr(SUITE, name)(**kwargs)


def test_the_suite_was_found_and_runs_enough():
    if SUITE is None:
        pytest.skip(f"scikit-learn's k-means tests are not installed at {SUITE_PATH}")
    assert len({name for name, _ in CASES}) >= 25, sorted({name for name, _ in CASES})
