"""scikit-learn's own k-means tests, run against gpukmeans.

The installed scikit-learn's ``sklearn/cluster/tests/test_k_means.py`` is loaded with
``KMeans`` and ``kmeans_plusplus`` bound to ours, and every test of public behaviour that
applies to ``KMeans`` runs here with its own parametrization, dense and sparse
(``MiniBatchKMeans`` left out, ``global_random_seed`` taken as 0 and 1). Left out, and
why, in ``NOT_APPLICABLE``; the rest must pass unchanged.
"""

import pytest

from sklearn_suite import SUITE_PATH, case_id, collect_cases, load_suite

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
    # It takes pytest's capsys: test_progress.py runs it.
    "test_kmeans_verbose": "run with capsys in test_progress.py",
    # Differences on purpose, documented in docs/exactness.md.
    "test_kmeans_copyx": "copy_x changes nothing in gpukmeans (README); checked there",
    "test_weighted_vs_repeated": (
        "k-means++ draws differ between a weighted sample and its repetition, as in "
        "scikit-learn's own check_estimator xfail"),
}


SUITE = load_suite("sklearn_test_k_means_on_gpukmeans",
                   "from sklearn.cluster import MiniBatchKMeans, k_means\n"
                   "from gpukmeans import KMeans, kmeans_plusplus")
CASES = collect_cases(SUITE, NOT_APPLICABLE, left_out="MiniBatchKMeans", sparse=True)


@pytest.mark.skipif(SUITE is None, reason=f"scikit-learn's k-means tests are not at {SUITE_PATH}")
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_scikit_learn_k_means_suite(case):
    name, kwargs = case
    getattr(SUITE, name)(**kwargs)


def test_the_suite_was_found_and_runs_enough():
    if SUITE is None:
        pytest.skip(f"scikit-learn's k-means tests are not installed at {SUITE_PATH}")
    assert len({name for name, _ in CASES}) >= 25, sorted({name for name, _ in CASES})
