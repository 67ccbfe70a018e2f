"""Packaging: the wheel carries the CUDA sources, Numba's cache never breaks import,
the README's commands are the ones CI runs, importing prints nothing."""

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(code, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def test_import_prints_nothing_and_loads_no_gpu_stack():
    result = _run(
        "import sys, gpukmeans; "
        "assert 'cupy' not in sys.modules and 'numba' not in sys.modules, sorted(sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_numba_cache_never_breaks_import(tmp_path):
    # A copy of the package whose __pycache__ cannot be created, and a HOME that is a
    # file: Numba could cache nowhere it looks by default. (Tests run as root in CI, so
    # read-only permissions would not stop writes; a file in the way does.)
    site = tmp_path / "site"
    shutil.copytree(ROOT / "gpukmeans", site / "gpukmeans", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "gpukmeans" / "__pycache__").write_text("not a directory")
    fake_home = tmp_path / "home-is-a-file"
    fake_home.write_text("")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(PYTHONPATH=str(site), HOME=str(fake_home), TMPDIR=str(scratch), PYTHONDONTWRITEBYTECODE="1")
    # A problem this small runs on the NumPy engine; the Numba engine's cheapest kernel
    # shows where its kernels are cached.
    code = (
        "import numpy as np, numba, gpukmeans\n"
        "from gpukmeans import KMeans, _cpu_lloyd\n"
        "km = KMeans(2, random_state=0, device='cpu').fit(np.array([[0.,0],[0,1],[9,9],[9,8]]))\n"
        "_cpu_lloyd._group_bounds(0, 1, 1, 1, 1)\n"
        "print(numba.config.CACHE_DIR)\n"
    )
    result = _run(code, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(scratch)), result.stdout
    assert any(Path(result.stdout.strip()).rglob("*.nbi")), "nothing was cached"


def test_cached_kernels_follow_the_sources_they_inline(tmp_path):
    """A kernel loaded from Numba's cache runs the code it was compiled from, inlined
    callees included: Numba checks only the kernel's own file, so after an edit (or an
    update) of ``_cpu_distance.py`` alone, ``_cpu_passes``' cached inertia pass would
    still run the old ``squared_distance_f64``. The cache beside the modules is emptied
    of this package's kernels when their sources change."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "gpukmeans", site / "gpukmeans", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(PYTHONPATH=str(site))
    code = (
        "import numpy as np\n"
        "from gpukmeans._cpu_passes import _assigned_distances\n"
        "X = np.array([[3.0, 4.0]]); C = np.zeros((1, 2)); labels = np.zeros(1, np.int32)\n"
        "print(_assigned_distances(X, C, labels)[0])\n"
    )
    first = _run(code, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "25.0"
    assert any((site / "gpukmeans" / "__pycache__").glob("_cpu_passes*.nbi")), "not cached"
    distance = site / "gpukmeans" / "_cpu_distance.py"
    source = distance.read_text()
    body = "    return _squared_distance_ir(x, c)\n"
    assert source.count(body) == 1
    distance.write_text(source.replace(body, "    return 2 * _squared_distance_ir(x, c)\n"))
    second = _run(code, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "50.0"  # the edited callee, not the cached kernel's


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```(?:bash|sh)\n(.*?)\n```", text, flags=re.S | re.M)


def _code_blocks(path):
    """``(language, text)`` of each fenced block of a Markdown file, indented ones (in a
    list) dedented."""
    return [(language, textwrap.dedent(text)) for language, text in re.findall(
        r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", path.read_text(), flags=re.S | re.M)]


_DOCUMENTATION = [ROOT / "README.md", ROOT / "benchmarks" / "README.md",
                  *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", _DOCUMENTATION, ids=lambda path: str(path.relative_to(ROOT)))
def test_python_blocks_are_whole_statements(path):
    """Every Python block of the documentation parses, and no statement in it is a bare
    word: the sign of a comment wrapped onto a line of its own (two of the README's
    snippets had one, an IndentationError and a NameError for a user who ran them)."""
    for language, block in _code_blocks(path):
        if language != "python":
            continue
        tree = ast.parse(block)
        bare = [node.value.id for node in ast.walk(tree)
                if isinstance(node, ast.Expr) and isinstance(node.value, ast.Name)]
        assert not bare, f"{path.name}: bare words {bare} in\n{block}"


def test_readme_command_blocks_hold_only_commands():
    """Each line of the README's shell blocks is a command or a comment (a wrapped
    comment had left "IDX files" on a line of its own, for a shell to run)."""
    commands = {"gpukmeans", "python3", "pip", "cd", "git"}
    blocks = [block for language, block in _code_blocks(ROOT / "README.md")
              if language in ("", "bash", "sh")]
    assert blocks
    for block in blocks:
        for line in block.splitlines():
            words = line.split()
            assert not words or words[0].startswith("#") or words[0] in commands, line


def _extras():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _names(requirements):
    return {re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0] for requirement in requirements}


def test_extras_never_fight():
    """A CPU-only test install pulls no CUDA wheels, and "cuda12,test" or "cuda13,test"
    installs one CuPy: only the CUDA extras and the nvrtc extra name CuPy."""
    extras = _extras()
    for name, requirements in extras.items():
        cuda = {n for n in _names(requirements) if n.startswith(("cupy", "nvidia-"))}
        if name == "cuda12":
            assert cuda == {"cupy-cuda12x"}
        elif name in ("cuda13", "nvrtc"):
            assert cuda <= {"cupy-cuda13x", "nvidia-cuda-nvrtc"} and "cupy-cuda13x" in cuda
        else:
            assert not cuda, f"the {name} extra pulls CUDA wheels: {sorted(cuda)}"


def test_ci_compiles_the_kernels_and_requires_their_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[nvrtc]"' in ci
    assert "export GPUKMEANS_REQUIRE_KERNEL_TESTS=1" in ci


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in _readme_commands(), f"{ci!r} is not one of the README's commands"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to list tracked files")
def test_wheel_ships_the_kernels(tmp_path):
    kernels = sorted(p.name for p in (ROOT / "kernels").glob("*.cu*"))
    assert kernels, "no CUDA sources in kernels/"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("gpukmeans-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(Path(n).name for n in names if n.startswith("gpukmeans/kernels/"))
    assert shipped == kernels
    # Installed from the wheel, away from the source tree, the loader finds them.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    found = _run(
        "from gpukmeans import _kernels; print(_kernels.kernel_dir())",
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).resolve() == (site / "gpukmeans" / "kernels").resolve()
