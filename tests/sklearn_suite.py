"""Loading the installed scikit-learn's ``sklearn/cluster/tests/test_k_means.py`` with
our estimators bound in its place, and listing its parametrized cases: shared by
``test_sklearn_suite.py`` (``KMeans``) and ``test_sklearn_minibatch_suite.py``
(``MiniBatchKMeans``)."""

import inspect
import itertools
import pathlib
import types

import numpy as np
import scipy.sparse as sp
import sklearn

SUITE_PATH = pathlib.Path(sklearn.__file__).parent / "cluster" / "tests" / "test_k_means.py"
SEEDS = (0, 1)
_ORIGINAL_IMPORT = "from sklearn.cluster import KMeans, MiniBatchKMeans, k_means, kmeans_plusplus"


def load_suite(module_name, imports):
    """The suite as a module whose import line is ``imports`` instead, or None where the
    installed file is missing or imports otherwise."""
    if not SUITE_PATH.is_file():
        return None
    source = SUITE_PATH.read_text()
    if _ORIGINAL_IMPORT not in source:
        return None
    module = types.ModuleType(module_name)
    module.__file__ = str(SUITE_PATH)
    exec(compile(source.replace(_ORIGINAL_IMPORT, imports), str(SUITE_PATH), "exec"),
         module.__dict__)
    return module


def is_class_named(value, *names):
    return isinstance(value, type) and value.__name__ in names


def _excluded(value, left_out, sparse):
    """The estimator class the other file runs, and, unless ``sparse``, sparse containers
    and matrices."""
    if isinstance(value, type):
        return (not sparse and issubclass(value, (sp.spmatrix, sp.sparray))
                or value.__name__ == left_out)
    if sp.issparse(value):
        return not sparse
    if isinstance(value, (tuple, list)):
        return any(_excluded(v, left_out, sparse) for v in value)
    return False


def collect_cases(suite, not_applicable, left_out, keep=lambda name, values: True, sparse=False):
    """(test name, kwargs) for every parametrization of the suite's tests, less those in
    ``not_applicable``, those needing a fixture of scikit-learn's, and values that are
    the class ``left_out`` or (unless ``sparse``) sparse. ``keep(name, values)`` is asked
    of each test with every parametrized value tuple it has, before any is left out."""
    if suite is None:
        return []
    cases = []
    for name, function in sorted(vars(suite).items()):
        if not name.startswith("test_") or not callable(function) or name in not_applicable:
            continue
        parameters = inspect.signature(function).parameters
        marks = [m for m in getattr(function, "pytestmark", []) if m.name == "parametrize"]
        if set(parameters) - {"global_random_seed"} - {
            a.strip() for m in marks
            for a in (m.args[0].split(",") if isinstance(m.args[0], str) else m.args[0])
        }:
            continue  # needs a fixture of scikit-learn's (capsys and the like)
        axes, seen = [], []
        for mark in marks:
            names = mark.args[0]
            names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
            values = []
            for value in mark.args[1]:
                if hasattr(value, "values") and hasattr(value, "marks"):  # pytest.param
                    value = value.values if len(names) > 1 else value.values[0]
                value = tuple(value) if len(names) > 1 else (value,)
                seen.append(value)
                if not _excluded(value, left_out, sparse):
                    values.append(dict(zip(names, value)))
            axes.append(values)
        if not keep(name, seen):
            continue
        if "global_random_seed" in parameters:
            axes.append([{"global_random_seed": seed} for seed in SEEDS])
        for combination in itertools.product(*axes):
            kwargs = {}
            for part in combination:
                kwargs.update(part)
            cases.append((name, kwargs))
    return cases


def case_id(case):
    name, kwargs = case
    parts = []
    for key, value in kwargs.items():
        text = getattr(value, "__name__", None) or (
            f"array{np.shape(value)}" if isinstance(value, np.ndarray) else repr(value))
        parts.append(f"{key}={text}"[:40])
    return "-".join([name, *parts])
