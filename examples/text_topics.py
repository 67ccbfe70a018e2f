"""Clustering a text collection: sparse TF-IDF rows, straight into KMeans.

The documents are the docstrings (module, class, function) of the installed scikit-learn,
so nothing is downloaded. TfidfVectorizer gives a scipy.sparse CSR matrix with one row per
docstring and one column per term, each row of unit length; KMeans clusters it as it is,
never densified (a dense copy would be thousands of times larger). The terms with the
largest weight in a cluster's center are the words its documents share: the clusters
come out as topics.

Run: ``python examples/text_topics.py [OUT_DIR]`` (default ``examples/output/``); prints the
top terms of each cluster and writes ``text_topics.png``.
"""

import ast
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import matplotlib.pyplot as plt
import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer

from gpukmeans import KMeans

N_CLUSTERS = 8
N_TOP_TERMS = 8


def docstrings(package_dir):
    """The docstrings of every module, class and function under ``package_dir`` (its
    tests left out)."""
    documents = []
    for path in sorted(pathlib.Path(package_dir).rglob("*.py")):
        if "tests" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = ast.get_docstring(node)
                if text and len(text) > 40:
                    documents.append(text)
    return documents


def main(out_dir=pathlib.Path(__file__).parent / "output"):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    documents = docstrings(pathlib.Path(sklearn.__file__).parent)
    # Words only (no numbers or parameter names with digits), in at least 3 documents.
    vectorizer = TfidfVectorizer(stop_words="english", min_df=3, max_df=0.5,
                                 token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    X = vectorizer.fit_transform(documents)  # scipy.sparse CSR, float64, unit rows
    print(f"{X.shape[0]} docstrings x {X.shape[1]} terms, "
          f"{X.nnz / X.shape[0]:.0f} non-zeros per row ({100 * X.nnz / np.prod(X.shape):.2f}% dense)")
    model = KMeans(n_clusters=N_CLUSTERS, n_init=3, random_state=0).fit(X)
    terms = vectorizer.get_feature_names_out()
    sizes = np.bincount(model.labels_, minlength=N_CLUSTERS)

    fig, axes = plt.subplots(2, N_CLUSTERS // 2, figsize=(12, 5.6))
    for cluster, ax in enumerate(axes.ravel()):
        top = np.argsort(model.cluster_centers_[cluster])[::-1][:N_TOP_TERMS]
        print(f"cluster {cluster} ({sizes[cluster]} docstrings): {', '.join(terms[top])}")
        ax.barh(np.arange(N_TOP_TERMS)[::-1], model.cluster_centers_[cluster, top],
                color=plt.cm.tab10(cluster % 10))
        ax.set_yticks(np.arange(N_TOP_TERMS)[::-1], terms[top], fontsize=9)
        ax.set_xticks([])
        ax.set_title(f"cluster {cluster}: {sizes[cluster]} docstrings", fontsize=10)
    fig.suptitle(f"scikit-learn's {X.shape[0]} docstrings, TF-IDF (sparse) and KMeans(k={N_CLUSTERS}):"
                 " each cluster's heaviest terms")
    fig.tight_layout()
    path = out_dir / "text_topics.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main(*sys.argv[1:2])
