"""Every script in examples/ runs (on CPU here) and writes a picture that is not blank."""

import pathlib
import runpy
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"

# script -> (picture written, its (width, height) in pixels)
PICTURES = {
    "cluster_std.py": ("cluster_std.png", (1280, 340)),
    "wrong_k.py": ("wrong_k.png", (1020, 350)),
    "scaled_axis.py": ("scaled_axis.png", (1000, 400)),
    "mickey.py": ("mickey.png", (900, 440)),
    "pca_mnist.py": ("pca_mnist.png", (1000, 340)),
    "cosine_text.py": ("cosine_text.png", (1400, 440)),
    "text_topics.py": ("text_topics.png", (1200, 560)),
}


def test_every_example_is_tested():
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == sorted(PICTURES)


@pytest.mark.parametrize("script", sorted(PICTURES))
def test_example_writes_its_picture(script, tmp_path, monkeypatch, capsys):
    from matplotlib.image import imread

    # No full MNIST: pca_mnist.py must fall back to the subset bundled in tests/data.
    monkeypatch.setenv("GPUKMEANS_DATA", str(tmp_path / "no_mnist_here"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no_cache"))
    if script == "pca_mnist.py":  # the same code on fewer digits, to keep the suite fast
        namespace = runpy.run_path(str(EXAMPLES / script))
        namespace["main"].__globals__["N_SAMPLES"] = 1500
        namespace["main"](tmp_path / "out")
    else:  # exactly as `python examples/SCRIPT OUT_DIR` runs it
        monkeypatch.setattr(sys, "argv", [str(EXAMPLES / script), str(tmp_path / "out")])
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")

    filename, (width, height) = PICTURES[script]
    path = tmp_path / "out" / filename
    assert f"wrote {path}" in capsys.readouterr().out
    image = imread(path)
    assert image.shape[:2] == (height, width)
    rgb = image[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05, "nearly uniform picture"
    assert len(np.unique(np.round(rgb, 2), axis=0)) > 20, "too few colours"


def test_pca_mnist_falls_back_to_bundled_subset(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUKMEANS_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    namespace = runpy.run_path(str(EXAMPLES / "pca_mnist.py"))
    X, y, source = namespace["load_digits_images"]()
    assert X.shape == (namespace["N_SAMPLES"], 784) == (5000, 784) and 0 <= X.min() and X.max() <= 1
    assert "subset" in source


def test_docs_hold_one_rendering_of_each_picture():
    """docs/ shows every example's and the demo's picture, at the size they are drawn."""
    from matplotlib.image import imread

    docs = EXAMPLES.parent / "docs"
    expected = {f"example_{name}": size for name, size in PICTURES.values()}
    expected = {name.removesuffix(".png") + ".png": size for name, size in expected.items()}
    expected.update({
        "demo_blobs_clusters.png": (640, 520),
        "demo_digits_centroids.png": (650, 310),
        "demo_mnist_centroids.png": (650, 570),
    })
    for name, (width, height) in expected.items():
        image = imread(docs / name)
        assert image.shape[:2] == (height, width), name
        assert (docs / name).stat().st_size < 100_000, f"{name}: keep docs pictures small"
