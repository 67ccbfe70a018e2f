"""scikit-learn's own MiniBatchKMeans tests, run against gpukmeans.MiniBatchKMeans.

The installed scikit-learn's ``sklearn/cluster/tests/test_k_means.py`` is loaded with
``MiniBatchKMeans`` bound to ours (``KMeans`` too, which ``test_sklearn_suite.py`` runs on
its own), and every test of public behaviour that names ``MiniBatchKMeans`` runs here:
the ``test_minibatch_*`` tests and the ``MiniBatchKMeans`` parametrizations of the shared
ones, dense and sparse (``global_random_seed`` taken as 0 and 1). Left out, and
why, in ``NOT_APPLICABLE``; the rest must pass unchanged.
"""

import pytest

from sklearn_suite import SUITE_PATH, case_id, collect_cases, is_class_named, load_suite

NOT_APPLICABLE = {
    "test_minibatch_update_consistency": "scikit-learn's private _mini_batch_step",
    "test_k_means_function": "sklearn.cluster.k_means",
    # It takes pytest's capsys: tests/test_minibatch.py checks the verbose lines.
    "test_minibatch_kmeans_verbose": "run with capsys in test_minibatch.py",
    "test_minibatch_declared_convergence": "run with capsys in test_minibatch.py",
}


def _names_minibatch(name, values):
    """The ``test_minibatch_*`` tests, and the shared ones parametrized over it."""
    return name.startswith("test_minibatch") or any(
        is_class_named(v, "MiniBatchKMeans") for value in values for v in value)


SUITE = load_suite("sklearn_test_k_means_on_gpukmeans_minibatch",
                   "from sklearn.cluster import k_means\n"
                   "from gpukmeans import KMeans, MiniBatchKMeans, kmeans_plusplus")
CASES = collect_cases(SUITE, NOT_APPLICABLE, left_out="KMeans", keep=_names_minibatch,
                      sparse=True)


@pytest.mark.skipif(SUITE is None, reason=f"scikit-learn's k-means tests are not at {SUITE_PATH}")
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_scikit_learn_minibatch_suite(case):
    name, kwargs = case
    getattr(SUITE, name)(**kwargs)


def test_the_suite_was_found_and_runs_enough():
    if SUITE is None:
        pytest.skip(f"scikit-learn's k-means tests are not installed at {SUITE_PATH}")
    names = {name for name, _ in CASES}
    assert len(names) >= 20, sorted(names)
    assert all(not any(is_class_named(v, "KMeans") for v in kw.values()) for _, kw in CASES)
