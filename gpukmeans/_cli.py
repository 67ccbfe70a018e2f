"""The ``gpukmeans`` command (also ``python -m gpukmeans``): demo, fit, info, bench.

Every user error (a bad file, a wrong shape, a non-numeric column, an unknown device, a
GPU asked for where there is none) ends the command with one line on stderr and exit
status 2, before anything is written: outputs are made in a temporary directory and moved
into place only once all of them exist.
"""

import argparse
import contextlib
import csv
import json
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import time

import numpy as np

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

SUBCOMMANDS = ("demo", "fit", "info", "compile", "bench")
DEVICES = ("auto", "cpu", "gpu")
DATA_SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".parquet")
# The formats each data option applies to: given with another, it is an error, not ignored.
FORMAT_OPTIONS = {"--key": (".npz",), "--delimiter": (".csv", ".tsv")}
CSV_DELIMITERS = ",;\t"  # those sniffed when --delimiter is not given
SNIFF_CHARACTERS = 1 << 16  # how much of a CSV file the sniffing reads
UNNAMED = ("", "Unnamed: 0")  # how pandas' to_csv() heads its index, as written and as read back

# The notebook's first example: four round blobs (as in the Python Data Science Handbook).
# The notebook: make_blobs(centers=4, cluster_std=0.5, random_state=0), KMeans(4, random_state=8).
BLOBS = dict(centers=4, cluster_std=0.5, random_state=0)
BLOBS_CLUSTERS = 4
DIGITS_CLUSTERS = 10
MNIST_CLUSTERS = 20  # the notebook's KMeans(20)


class CommandError(Exception):
    """A user error: printed as one line, exit status 2, no traceback.

    The message is the problem alone; :func:`main` puts ``gpukmeans SUBCOMMAND: error:``
    before it, the same prefix wherever the error was found (argparse, the readers, the
    estimator).
    """


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CommandError(message)


def main(argv=None):
    """Run the ``gpukmeans`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":  # everything after it belongs to the benchmark helper
        return _run_bench(argv[1:])
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["demo", *argv]  # demo is the default subcommand
    # Named from argv, not from the parsed arguments: argparse reports some errors of a
    # subcommand (unrecognized arguments) from the main parser, after the subparser.
    prog = f"gpukmeans {argv[0]}" if argv[0] in SUBCOMMANDS else "gpukmeans"
    previous = _install_interrupt_handler()
    notice = _CompileNoticeHandler()
    try:
        args = _build_parser().parse_args(argv)
        return args.run(args)
    except CommandError as exc:
        message = str(exc).splitlines()[0] if str(exc) else "failed"
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gpukmeans: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `gpukmeans fit ... | head`: the reader left; so do we, quietly
        try:
            sys.stdout = open(os.devnull, "w")  # nothing more to flush at exit
        except OSError:
            pass
        return EXIT_OK
    finally:
        notice.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _exit_interrupted():
    for staging in list(_STAGING):
        shutil.rmtree(staging, ignore_errors=True)
    try:
        sys.stdout.flush()
    except OSError:
        pass
    print("\ngpukmeans: interrupted" if sys.stderr.isatty() else "gpukmeans: interrupted",
          file=sys.stderr, flush=True)
    os._exit(EXIT_INTERRUPTED)


_STAGING = set()
"""Staging directories being filled now: removed if the command is interrupted."""


def _install_interrupt_handler():
    """Ctrl-C ends the command at once: staging directories removed, one line, exit 130.

    Python's own handler raises KeyboardInterrupt wherever the interpreter happens to be,
    and while Numba compiles that can be inside a ctypes callback of llvmlite, where the
    exception is printed and dropped, and the command runs on. The handler runs at the
    same point, but exits instead of raising. Returns the previous handler, or None when
    this is not the main thread (signals cannot be handled there).
    """
    def interrupted(signum, frame):
        if _MOVING["now"]:  # the results are half moved: finish, then stop
            _MOVING["interrupted"] = True
            return
        _exit_interrupted()

    try:
        return signal.signal(signal.SIGINT, interrupted)
    except ValueError:  # not the main thread
        return None


def _build_parser():
    from . import __version__

    parser = _Parser(
        prog="gpukmeans",
        description="k-means on NVIDIA GPUs (CUDA kernels) and CPUs (Numba). "
        "With no subcommand, runs the demo.",
    )
    parser.add_argument("--version", action="version", version=f"gpukmeans {__version__}")
    subparsers = parser.add_subparsers(title="subcommands", metavar="{demo,fit,info,compile,bench}")

    demo = subparsers.add_parser(
        "demo",
        help="cluster the notebook's blobs, scikit-learn's digits and, when available, MNIST "
        "(the default)",
        description="Cluster the notebook's blobs and scikit-learn's 8x8 digits (no download "
        "needed) and, when MNIST is available (--mnist PATH or GPUKMEANS_DATA), all 70,000 "
        "MNIST digits; print a table and write pictures.",
    )
    _add_common(demo)
    demo.add_argument(
        "--mnist", metavar="PATH", type=_path,
        help="directory holding the MNIST IDX files (default: $GPUKMEANS_DATA, then the cache)",
    )
    demo.add_argument(
        "--out", metavar="DIR", type=_path, default=pathlib.Path("gpukmeans-demo"),
        help="where to write the pictures (default: ./gpukmeans-demo)",
    )
    demo.add_argument("--no-plots", action="store_true", help="write no pictures")
    demo.add_argument(
        "--force", action="store_true",
        help="replace files in --out that gpukmeans did not write, or that changed since",
    )
    demo.set_defaults(run=_run_demo)

    fit = subparsers.add_parser(
        "fit",
        help="cluster a .npy, .npz, .csv, .tsv or .parquet file",
        description="Cluster the rows of DATA and write labels, centers and a JSON summary.",
    )
    fit.add_argument("data", metavar="DATA", type=_path, help="a .npy, .npz, .csv, .tsv (tab-separated) or .parquet file")
    fit.add_argument("-k", "--n-clusters", type=_positive_int, required=True, help="number of clusters")
    _add_common(fit)
    fit.add_argument(
        "--out", metavar="DIR", type=_path,
        help="where to write the results (default: ./<DATA name>-kmeans)",
    )
    fit.add_argument("--plot", action="store_true", help="also write the pictures (needs matplotlib)")
    fit.add_argument(
        "--force", action="store_true",
        help="replace files in --out that gpukmeans did not write, or that changed since "
        "(never the input)",
    )
    fit.add_argument("--key", help="the array to cluster in a .npz holding several")
    fit.add_argument(
        "--columns", metavar="COLS",
        help="the columns to cluster, by name or by position from 0, separated by commas: "
        "x,y or 0,2 (default: all)",
    )
    fit.add_argument(
        "--delimiter", metavar="CHAR", type=_delimiter,
        help="the field separator of a .csv: one character, \\t or tab for a tab "
        "(default: ',', ';' or tab, as the file's first lines use)",
    )
    fit.add_argument(
        "--scale", action="store_true",
        help="standardise every feature (scikit-learn's StandardScaler) before clustering, so "
        "that none counts more for its units; centers are still written in the data's units",
    )
    fit.add_argument("--n-init", default="auto", type=_n_init, help="runs from different seeds (default: auto)")
    fit.add_argument("--max-iter", type=_positive_int, default=300, help="iterations per run (default: 300)")
    fit.add_argument("--tol", type=float, default=1e-4, help="convergence tolerance (default: 1e-4)")
    fit.add_argument(
        "--image-shape", metavar="HxW", type=_image_shape,
        help="draw the centers as HxW images (default: 28x28 or 8x8 when the features fit)",
    )
    fit.set_defaults(run=_run_fit)

    info = subparsers.add_parser(
        "info",
        help="the GPU found (or why not), versions, kernel cache",
        description="Show the GPU gpukmeans would use (or why none), the versions of CuPy, "
        "the CUDA driver and Numba, and where compiled kernels are cached.",
    )
    info.set_defaults(run=_run_info)

    compile_ = subparsers.add_parser(
        "compile",
        help="compile the kernels ahead of time (for images, clusters and CI)",
        description="Compile the CPU engine's Numba kernels (float32 and float64) and, on a "
        "usable GPU, the CUDA kernels, into their on-disk caches, so that no later fit "
        "waits for a compile. Problems small enough for the NumPy engine never compile.",
    )
    compile_.add_argument(
        "--device", choices=("all", "cpu", "gpu"), default="all",
        help="which kernels: all (the CPU's, and the GPU's when one is usable), cpu or gpu "
        "(default: all)",
    )
    compile_.set_defaults(run=_run_compile)

    subparsers.add_parser(
        "bench", help="run the benchmarks (arguments go to the benchmark helper)", add_help=False
    )
    parser.set_defaults(run=lambda args: parser.error("a subcommand is needed"))
    return parser


def _add_common(parser):
    parser.add_argument(
        "--device", choices=DEVICES, default="auto",
        help="where to compute: auto (the GPU when one is usable), cpu or gpu (default: auto)",
    )
    parser.add_argument("--seed", type=_seed, default=8, help="random_state of the fits (default: 8, the notebook's)")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text):
    # Checked here, so that the error names --seed, not the estimator's random_state.
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 2**32 - 1:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1, got {text!r}")
    return value


def _n_init(text):
    return "auto" if text == "auto" else _positive_int(text)


def _path(text):
    # An empty argument would be the current folder (pathlib.Path("") is "."): a slip.
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty argument")
    return pathlib.Path(text)


def _delimiter(text):
    # A tab is hard to type in a shell: \t and "tab" name it too.
    value = {"\\t": "\t", "tab": "\t"}.get(text.lower(), text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"expected one character such as ';' or \\t, got {text!r}")
    if value in '"\r\n':  # the quote and line ends are CSV's own
        raise argparse.ArgumentTypeError(f"a quote or a line break cannot separate fields, got {text!r}")
    return value


def _image_shape(text):
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 28x28, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"expected HxW such as 28x28, got {text!r}")
    return height, width


# --- shared pieces -------------------------------------------------------------------------


def _resolve_device(device):
    from ._device import resolve_device

    try:
        return resolve_device(device)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _progress_bars(args):
    """Whether the fits draw progress bars: as asked, else when stderr is a terminal."""
    return sys.stderr.isatty() if args.progress is None else args.progress


def _fit(X, n_clusters, device, args, **params):
    """Fit gpukmeans' KMeans; return ``(model, seconds)``. Bad data is a CommandError."""
    from . import KMeans, progress_bars

    model = KMeans(n_clusters, device=device, random_state=args.seed, **params)
    start = time.perf_counter()
    try:
        with progress_bars(_progress_bars(args)):
            model.fit(X)
    except (ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from None
    return model, time.perf_counter() - start


def _warm_up(device, X, n_clusters):
    """Compile what a fit of ``X`` will run before it is timed, so that the time shown
    excludes compilation: the CUDA kernels (a tiny fit of X's dtype), or the Numba
    kernels of X's dtype and this ``n_clusters`` where the fit is too large for the
    NumPy engine, which compiles nothing. Done once per process: later calls find them."""
    if device == "gpu":
        from . import KMeans

        rng = np.random.default_rng(0)
        KMeans(2, n_init=1, max_iter=2, device=device, random_state=0).fit(
            rng.standard_normal((64, 3)).astype(X.dtype)
        )
        return
    from ._cpu_small import is_small

    if not is_small(*X.shape, n_clusters):
        from ._cpu import warm_up

        warm_up([X.dtype], shapes=[(X.shape[1], n_clusters)])


def _format_table(headers, rows):
    cells = [list(map(str, headers))] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _check_out_dir(out_dir):
    """``out_dir`` made absolute; an error if it exists and is not a directory."""
    out_dir = pathlib.Path(out_dir).absolute()
    if out_dir.is_symlink() and not out_dir.exists():
        raise CommandError(f"--out {out_dir} is a symlink to nothing")
    if out_dir.exists() and not out_dir.is_dir():
        raise CommandError(f"--out {out_dir} exists and is not a directory")
    return out_dir


MANIFEST = ".gpukmeans-outputs.json"
"""In an output directory: the files gpukmeans wrote there last, with their SHA-256, the
command and the input files they came from, so that a later run knows which files it may
replace (its own, unchanged, from the same inputs) and which it must not (anything
else)."""


def _sha256(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _source(inputs):
    """The input files a run reads, as its manifest records them: resolved paths."""
    return sorted(str(pathlib.Path(p).resolve()) for p in inputs)


def _read_manifest(out_dir):
    """``{name: (sha256, command, source)}`` of the files gpukmeans wrote in ``out_dir``;
    ``source``: the :func:`_source` of the run that wrote it, None where the manifest
    predates that record."""
    path = out_dir / MANIFEST
    try:
        if path.is_symlink() or not path.is_file():
            return {}
        entries = json.loads(path.read_text()).get("files", {})
        files = {str(name): (str(entry["sha256"]), str(entry["command"]),
                             None if entry.get("source") is None
                             else sorted(map(str, entry["source"])))
                 for name, entry in entries.items()}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return {}
    # Only plain names of files in out_dir itself: a manifest is never a way to reach (or
    # remove) anything elsewhere.
    return {name: entry for name, entry in files.items()
            if name == pathlib.PurePath(name).name and name not in ("", ".", "..", MANIFEST)
            and "/" not in name and "\\" not in name}


def _ours_unchanged(out_dir, name, manifest):
    """Whether ``out_dir / name`` is a file gpukmeans wrote and nobody changed since."""
    path = out_dir / name
    try:
        return (name in manifest and path.is_file() and not path.is_symlink()
                and _sha256(path) == manifest[name][0])
    except OSError:
        return False


def _plan_output(command, out_dir, names, inputs, force):
    """Refuse, before any work, to write where the files would replace an input (never
    allowed), something that is not a plain file (never), or a file gpukmeans did not
    write, or that changed since, or that a run of another input wrote (allowed with
    --force: the default --out of ``fit`` is named by the data's stem, so that b.npy and
    b.csv share one)."""
    out_dir = _check_out_dir(out_dir)
    inputs = {pathlib.Path(p).resolve() for p in inputs}
    for name in [*names, MANIFEST]:
        target = out_dir / name
        if target.resolve() in inputs:
            raise CommandError(f"writing {name} in --out {out_dir} would overwrite the input "
                               f"{target.resolve()}; choose another --out")
        if target.exists() and not target.is_symlink() and not target.is_file():
            raise CommandError(f"--out {out_dir} holds {name}, which is not a file; move it "
                               "away or choose another --out")
    if force or not out_dir.is_dir():
        return
    manifest = _read_manifest(out_dir)
    foreign = [n for n in names
               if (out_dir / n).is_symlink() or ((out_dir / n).exists()
                                                 and not _ours_unchanged(out_dir, n, manifest))]
    if foreign:
        raise CommandError(
            f"--out {out_dir} already holds {', '.join(foreign)}, "
            "which gpukmeans did not write (or which changed since); pass --force to replace "
            "them, or choose another --out"
        )
    source = _source(inputs)
    # Every result of this command there, not only the names this run writes: the rest
    # would be removed as stale (a clusters.png of another input's run with --plot).
    other_input = sorted(n for n, (_, by, came_from) in manifest.items()
                         if (n in names or by == command) and came_from is not None
                         and came_from != source and _ours_unchanged(out_dir, n, manifest))
    if other_input:
        _, by, came_from = manifest[other_input[0]]
        raise CommandError(
            f"--out {out_dir} already holds {', '.join(other_input)}, the results of "
            f"gpukmeans {by} on {', '.join(came_from) or 'no input file'}, not on "
            f"{', '.join(source) or 'no input file'}; pass --force to replace them, or "
            "choose another --out"
        )


_MOVING = {"now": False, "interrupted": False}
"""While the results move into place, Ctrl-C waits for the moves to end (all or nothing)."""


@contextlib.contextmanager
def _staged_output(command, out_dir, inputs=(), force=False):
    """Yield a temporary directory; on success move its files into ``out_dir``.

    The temporary directory sits in ``out_dir``'s nearest existing ancestor, so the final
    moves are renames on one file system. On failure it is removed and ``out_dir`` is left
    as it was (not even created). Before the moves, the rules of :func:`_plan_output` are
    checked again on the files actually made. Files that an earlier run of the same
    command wrote and this one did not (a clusters.png without --plot) are removed, and
    said so, so that nothing stale sits beside the new results looking current; another
    command's results are left alone (``demo --out`` never removes a ``fit``'s).
    """
    out_dir = _check_out_dir(out_dir)
    ancestor = out_dir
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        staging = pathlib.Path(tempfile.mkdtemp(prefix=".gpukmeans-", dir=ancestor))
    except OSError as exc:
        # Name the folder asked for; where it does not exist yet, also where it failed.
        reason = exc.strerror or exc
        message = (f"cannot write in {out_dir}: {reason}" if ancestor == out_dir
                   else f"cannot create {out_dir}: cannot write in {ancestor}: {reason}")
        raise CommandError(message) from None
    _STAGING.add(staging)
    try:
        yield staging
        names = sorted(item.name for item in staging.iterdir())
        _plan_output(command, out_dir, names, inputs, force)
        manifest = _read_manifest(out_dir) if out_dir.is_dir() else {}
        stale = [n for n, (_, by, _) in manifest.items()
                 if n not in names and by == command and _ours_unchanged(out_dir, n, manifest)]
        changed = [n for n, (_, by, _) in manifest.items()
                   if n not in names and by == command and (out_dir / n).exists()
                   and not _ours_unchanged(out_dir, n, manifest)]
        kept = {n: entry for n, entry in manifest.items()
                if entry[1] != command and _ours_unchanged(out_dir, n, manifest)}
        entries = dict(kept)
        source = _source(inputs)
        entries.update({n: (_sha256(staging / n), command, source) for n in names})
        (staging / MANIFEST).write_text(json.dumps(
            {"files": {n: {"sha256": h, "command": c, "source": src}
                       for n, (h, c, src) in sorted(entries.items())}},
            indent=1) + "\n")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot create --out {out_dir}: {exc.strerror or exc}") from None
        _MOVING["now"] = True
        try:
            for name in stale:
                (out_dir / name).unlink()
                print(f"gpukmeans {command}: removed {out_dir / name}, left by an earlier run",
                      file=sys.stderr)
            for name in changed:
                print(f"gpukmeans {command}: kept {out_dir / name}, from an earlier run but "
                      "changed since (it is not this run's)", file=sys.stderr)
            # Renames replace a symlink itself, never what it points to.
            for name in [*names, MANIFEST]:
                os.replace(staging / name, out_dir / name)
        finally:
            _MOVING["now"] = False
        if _MOVING["interrupted"]:
            _exit_interrupted()
    finally:
        _STAGING.discard(staging)
        shutil.rmtree(staging, ignore_errors=True)


def _plotting_available():
    try:
        from ._plotting import require_matplotlib

        require_matplotlib()
    except ImportError:
        return False
    return True


# --- demo ----------------------------------------------------------------------------------


def _demo_datasets(mnist_path):
    """Return the demo's data sets: ``[(name, X, y, n_clusters, image_shape)]``."""
    from sklearn.datasets import load_digits, make_blobs

    X, y = make_blobs(**BLOBS)
    cases = [("blobs", X, y, BLOBS_CLUSTERS, None)]
    digits = load_digits()
    cases.append(("digits 8x8", digits.data, digits.target, DIGITS_CLUSTERS, (8, 8)))
    mnist = _load_demo_mnist(mnist_path)
    if mnist is not None:
        cases.append(("MNIST 28x28", *mnist, MNIST_CLUSTERS, (28, 28)))
    return cases


def _load_demo_mnist(mnist_path):
    """All 70,000 MNIST digits if available without download, else None (said on stderr)."""
    from .datasets import load_mnist

    try:
        return load_mnist(mnist_path, download=False)
    except (OSError, ValueError) as exc:  # missing, unreadable (permissions) or damaged
        if mnist_path is not None:  # asked for explicitly: its absence is an error
            raise CommandError(f"--mnist {mnist_path}: {exc}") from None
        why = "MNIST was not found" if isinstance(exc, FileNotFoundError) else str(exc)
    print(
        f"MNIST part skipped: {why}; pass --mnist PATH or set GPUKMEANS_DATA to a directory "
        "holding its IDX files.",
        file=sys.stderr,
    )
    return None


def _run_demo(args):
    from sklearn.metrics import adjusted_rand_score

    device = _resolve_device(args.device)
    if not args.no_plots:
        _plan_output("demo", args.out, [], [], args.force)  # before the work, not after it
    plots = not args.no_plots and _plotting_available()
    if not args.no_plots and not plots:
        print("pictures skipped: drawing them needs matplotlib (pip install 'gpukmeans[cli]').", file=sys.stderr)
    cases = _demo_datasets(args.mnist)
    if plots:  # the pictures' names are known now: refuse before the fits, not after
        planned = [f"{name.split()[0].lower()}_{'centroids' if shape else 'clusters'}.png"
                   for name, _, _, _, shape in cases]
        _plan_output("demo", args.out, planned, [], args.force)

    rows, fits = [], []
    for name, X, y, n_clusters, image_shape in cases:
        # Each case's compile just before its fit, so that the blobs show at once.
        _warm_up(device, X, n_clusters)
        model, seconds = _fit(X, n_clusters, device, args)
        fits.append((name, X, model, image_shape))
        rows.append([
            name, X.shape[0], X.shape[1], n_clusters, model.device_, f"{seconds:.3f}",
            f"{model.inertia_:.6g}", f"{adjusted_rand_score(y, model.labels_):.3f}",
        ])
        if name == "blobs":
            print(f"blobs: {n_clusters} centers found on {model.device_} in {seconds:.3f} s:")
            print(np.array2string(model.cluster_centers_, precision=3, suppress_small=True))
            print()

    print(_format_table(
        ["data", "samples", "features", "k", "device", "time (s)", "inertia", "ARI"], rows
    ))
    print("time: one fit, after a warm-up fit (compilation excluded); "
          "ARI: adjusted Rand index against the true labels.")

    if plots:
        with _staged_output("demo", args.out, force=args.force) as staging:
            written = _demo_pictures(fits, staging)
        for filename in written:
            print(f"wrote {args.out / filename}")
    return EXIT_OK


def _demo_pictures(fits, directory):
    from ._plotting import plot_centroid_grid, plot_clusters

    written = []
    for name, X, model, image_shape in fits:
        slug = name.split()[0].lower()
        device = model.device_
        if image_shape is None:
            filename = f"{slug}_clusters.png"
            plot_clusters(
                X, model.labels_, model.cluster_centers_, directory / filename,
                title=f"{name}: k={model.n_clusters} on {device}",
            )
        else:
            filename = f"{slug}_centroids.png"
            sizes = np.bincount(model.labels_, minlength=model.n_clusters)
            plot_centroid_grid(
                model.cluster_centers_, image_shape, directory / filename,
                title=f"{name}: the {model.n_clusters} centroids (k-means on {device})",
                subtitles=[f"{size} images" for size in sizes],
            )
        written.append(filename)
    return written


# --- fit -----------------------------------------------------------------------------------


def _read_data(path, key=None, delimiter=None, columns=None):
    """Read DATA into ``(X, feature_names, index_dropped)``; every problem is a one-line
    CommandError.

    ``columns``, the text of --columns, selects and orders the features; only those are
    checked for numbers. ``index_dropped`` says whether the first column of a CSV file was
    pandas' row index, and left out.
    """
    prefix = str(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise CommandError(f"{prefix}: is a directory; DATA is one {', '.join(DATA_SUFFIXES)} file")
    if suffix not in DATA_SUFFIXES:
        raise CommandError(f"{prefix}: unsupported file type {suffix or '(none)'!r}; use one of {', '.join(DATA_SUFFIXES)}")
    for option, value in (("--key", key), ("--delimiter", delimiter)):
        if value is not None and suffix not in FORMAT_OPTIONS[option]:
            raise CommandError(f"{option} applies to {' and '.join(FORMAT_OPTIONS[option])} files, "
                               f"not to {suffix} ({path})")
    if not path.is_file():
        raise CommandError(f"{prefix}: no such file")
    index_dropped = False
    try:
        if suffix in (".npy", ".npz"):
            _check_numpy_format(path, suffix)
            X = np.load(path, allow_pickle=False) if suffix == ".npy" else _read_npz(path, key)
            X, names = _select_array_columns(X, columns, path)
        elif suffix in (".csv", ".tsv"):
            if suffix == ".tsv" and delimiter is None:
                delimiter = "\t"
            X, names, index_dropped = _read_csv(path, delimiter, columns)
        else:
            X, names = _read_parquet(path, columns)
    except CommandError:
        raise
    except ImportError as exc:
        raise CommandError(f"{prefix}: {exc}") from None
    except Exception as exc:  # whatever a damaged file makes a reader raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CommandError(f"{prefix}: cannot be read as {suffix}: {message}") from None
    return _check_matrix(X, prefix, names if suffix in (".csv", ".tsv", ".parquet") else None), \
        names, index_dropped


# What a .npy file and a .npz archive (a zip) start with.
NPY_MAGIC, NPZ_MAGIC = b"\x93NUMPY", b"PK"  # a zip: an entry, or none


def _check_numpy_format(path, suffix):
    """A .npy or .npz file is what its name says: one saved under the other's name, or
    a file of neither kind, is named as such (NumPy's own errors spoke of pickles, of
    context managers, or of strings in the data)."""
    with open(path, "rb") as file:
        start = file.read(len(NPY_MAGIC))
    kind = (".npy" if start.startswith(NPY_MAGIC) else
            ".npz" if start.startswith(NPZ_MAGIC) else None)
    if kind == suffix:
        return
    if kind is None:
        raise CommandError(f"{path}: is not a NumPy {suffix} file (it does not start as one; "
                           "damaged, or another format)")
    raise CommandError(f"{path}: is a NumPy {kind} file under a {suffix} name; rename it "
                       f"to {path.with_suffix(kind).name}")


# The arrays scipy.sparse.save_npz writes (a CSR/CSC/COO matrix, not arrays to choose from).
SPARSE_NPZ_KEYS = {"format", "shape", "data"}


def _read_npz(path, key):
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.keys())
        if SPARSE_NPZ_KEYS <= set(keys):
            raise CommandError(
                f"{path} holds a scipy.sparse matrix (scipy.sparse.save_npz); the command "
                "clusters dense arrays only: fit it in Python with gpukmeans.KMeans, which "
                "takes sparse input, or save it dense (matrix.toarray()) with numpy.save")
        if not keys:
            raise CommandError(f"{path} holds no array")
        if key is None:
            if len(keys) == 1:
                key = keys[0]
            elif "X" in keys:
                key = "X"
            else:
                raise CommandError(f"{path} holds several arrays ({', '.join(keys)}); choose one with --key")
        if key not in keys:
            raise CommandError(f"{path} has no array {key!r} (it has {', '.join(keys)})")
        return archive[key]


def _select_array_columns(X, columns, path):
    """``(X[:, selected], their names)``, or ``(X, None)`` without --columns. An array's
    columns are named as centers.csv names them: x0, x1, ..."""
    if columns is None or np.ndim(X) != 2:  # a wrong shape is said by _check_matrix
        return X, None
    names = [f"x{i}" for i in range(X.shape[1])]
    positions = _column_positions(columns, names, path)
    return X[:, positions], [names[p] for p in positions]


def _column_positions(columns, names, path):
    """The positions of the columns that --columns COLUMNS selects, in its order.

    Each item is a column name (surrounding spaces aside), else a position counted from 0;
    a name wins, so that a header of years such as ``1990,2000`` can be selected by name.
    """
    positions = []
    for item in (item.strip() for item in columns.split(",")):
        if not item:
            raise CommandError(f"--columns {columns!r}: an empty item; separate names or positions by single commas")
        matches = [i for i, name in enumerate(names) if str(name).strip() == item]
        if len(matches) > 1:
            raise CommandError(f"--columns: {path} has {len(matches)} columns named {item!r}; "
                               f"select one by position ({', '.join(map(str, matches))})")
        if matches:
            position = matches[0]
        elif item.isascii() and item.isdigit():
            position = int(item)
            if position >= len(names):
                raise CommandError(f"--columns: column {position} is out of range: {path} has "
                                   f"{len(names)} columns (0 to {len(names) - 1})")
        else:
            raise CommandError(f"--columns: {path} has no column {item!r} (it has {_list_names(names)})")
        if position in positions:
            raise CommandError(f"--columns: column {item!r} is selected twice")
        positions.append(position)
    return positions


def _list_names(names, most=8):
    shown = ", ".join(repr(str(name)) for name in names[:most])
    return shown if len(names) <= most else f"{shown}, ... ({len(names)} in all)"


def _read_parquet(path, columns):
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("reading .parquet needs pandas and pyarrow: pip install 'gpukmeans[cli]'") from None
    try:
        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise ImportError(f"reading .parquet needs pyarrow: pip install 'gpukmeans[cli]' ({exc})") from None
    names = [str(name) for name in frame.columns]
    if len(frame) == 0 and names:  # its columns may have no numeric type to show: say why first
        raise CommandError(f"{path}: has columns ({_list_names(names)}) but no rows")
    positions = _column_positions(columns, names, path) if columns is not None else range(len(names))
    frame, names = frame.iloc[:, list(positions)], [names[p] for p in positions]
    not_numeric = [
        name for name, dtype in zip(names, frame.dtypes)
        if not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype))
    ]
    if not_numeric:
        raise CommandError(f"{path}: column(s) {', '.join(map(repr, not_numeric))} are not numeric")
    return frame.to_numpy(dtype=np.float64), names


def _read_csv(path, delimiter, columns):
    """Read a CSV file into ``(X, names, index_dropped)``.

    Every line of the file is a sample, or the command says which line is not. The header
    is decided here, from the first line's own fields (a header has a field that is not a
    number), never by pandas: pandas renames repeated names ("1.5", "1.5.1"), which once
    made a repeated first data row look like a header and dropped it. No column is taken
    as an index by the readers: a row with an extra field (an unquoted thousands
    separator) is an error, not a shifted row. The one index recognised is pandas' own,
    the first column of ``df.to_csv()``: unnamed, and holding exactly 0, 1, ..., n - 1.
    """
    import csv

    _check_no_blank_lines(path)
    if delimiter is None:
        delimiter = _sniff_delimiter(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        first = next(_csv_rows(csv.reader(fh, delimiter=delimiter)), None)
    if first is None:
        raise CommandError(f"{path}: holds no data (an empty file)")
    # df.to_csv() of a frame with default column names (0, 1, ...) heads its index with
    # an empty field: a header of numbers, one of them missing.
    text_header = _is_header(first)
    index_header = (not text_header and len(first) > 1 and not first[0].strip()
                    and all(cell.strip() for cell in first[1:]))
    has_header = text_header or index_header
    names = first if has_header else [f"x{i}" for i in range(len(first))]
    try:
        import pandas as pd
    except ImportError:
        table = _CsvRows(path, delimiter, has_header, names)
    else:
        table = _CsvFrame(path, delimiter, has_header, names, pd)
    index_dropped = has_header and first[0].strip() in UNNAMED and table.is_row_index(0)
    if index_header and not index_dropped:
        raise CommandError(f"{path}: line 1 has an empty field")
    offset = 1 if index_dropped else 0
    names = names[offset:]
    positions = _column_positions(columns, names, path) if columns is not None else range(len(names))
    X = table.numbers([p + offset for p in positions])
    return X, [names[p] for p in positions], index_dropped


def _sniff_delimiter(path):
    """The delimiter of a CSV file, among ',', ';' and tab, as its first lines use it; ','
    when they show none (a single column)."""
    import csv

    with open(path, newline="", encoding="utf-8-sig") as fh:
        sample = fh.read(SNIFF_CHARACTERS)
    if len(sample) == SNIFF_CHARACTERS and "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]  # a cut line would count fewer fields
    try:
        return csv.Sniffer().sniff(sample, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _csv_rows(reader):
    """The rows of a csv.reader, less the blank lines that end the file (the only ones
    left after :func:`_check_no_blank_lines`; spaces alone read as one empty field)."""
    return (row for row in reader if row and not (len(row) == 1 and not row[0].strip()))


class _CsvFrame:
    """The body of a CSV file read by pandas: every row has the header's field count."""

    def __init__(self, path, delimiter, has_header, names, pd):
        self.path, self.delimiter, self.has_header, self.names = path, delimiter, has_header, names
        self.pd = pd
        try:
            frame = pd.read_csv(path, sep=delimiter, header=None, skiprows=1 if has_header else 0,
                                index_col=False, encoding="utf-8-sig")
        except pd.errors.EmptyDataError:
            raise CommandError(f"{path}: has a header line but no rows") from None
        except pd.errors.ParserError:
            _raise_for_field_counts(path, len(names), delimiter)
            raise
        if frame.shape[1] != len(names):
            _raise_for_field_counts(path, len(names), delimiter)
        # A short row reads as missing values at its end: NaN, wherever they are.
        self.missing = frame.isna().to_numpy().any()
        self.frame = frame

    def is_row_index(self, position):
        values = self.frame.iloc[:, position]
        return values.dtype.kind in "iuf" and np.array_equal(values.to_numpy(), np.arange(len(values)))

    def numbers(self, positions):
        if self.missing:
            _raise_for_field_counts(self.path, len(self.names), self.delimiter, positions, self.has_header)
        frame = self.frame.iloc[:, positions]
        for position, (_, values) in zip(positions, frame.items()):
            if not self.pd.api.types.is_numeric_dtype(values.dtype):
                bad = (self.pd.to_numeric(values, errors="coerce").isna() & values.notna()).to_numpy()
                row = int(np.flatnonzero(bad)[0]) if bad.any() else 0
                raise CommandError(
                    f"{self.path}: column {self.names[position]!r} is not numeric "
                    f"({values.iloc[row]!r} on line {row + 1 + self.has_header})"
                )
        return frame.to_numpy(dtype=np.float64)


class _CsvRows:
    """The body of a CSV file read by the csv module, where pandas is not installed."""

    def __init__(self, path, delimiter, has_header, names):
        import csv

        self.path, self.names, self.first_line = path, names, 2 if has_header else 1
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(_csv_rows(csv.reader(fh, delimiter=delimiter)))
        self.rows = rows[1:] if has_header else rows
        if not self.rows:
            raise CommandError(f"{path}: has a header line but no rows")
        for line, row in enumerate(self.rows, start=self.first_line):
            if len(row) != len(names):
                raise CommandError(f"{path}: line {line} has {len(row)} fields, not {len(names)}")

    def is_row_index(self, position):
        cells = [row[position] for row in self.rows]
        return (all(_is_number(cell) for cell in cells)
                and np.array_equal(np.array(cells, dtype=np.float64), np.arange(len(cells))))

    def numbers(self, positions):
        for line, row in enumerate(self.rows, start=self.first_line):
            for position in positions:
                cell = row[position]
                if not cell.strip():
                    raise CommandError(f"{self.path}: line {line} has an empty field")
                if not _is_number(cell):
                    raise CommandError(f"{self.path}: column {self.names[position]!r} is not numeric "
                                       f"({cell!r} on line {line})")
        return np.array([[row[p] for p in positions] for row in self.rows],
                        dtype=np.float64).reshape(len(self.rows), len(positions))


def _is_header(first_row):
    """A first line is a header when a field of it is text: neither a number nor empty
    (an empty field in a data row is an error said later, not a reason to drop the row)."""
    return any(cell.strip() and not _is_number(cell) for cell in first_row)


def _check_no_blank_lines(path):
    """A blank line between rows would be skipped by the readers, and the labels would no
    longer line up with the file's lines: an error naming it. Trailing blank lines are
    the end of the file."""
    blank = None
    with open(path, "rb") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                blank = blank or line
            elif blank is not None:
                raise CommandError(f"{path}: line {blank} is blank; every line should be a sample (remove it)")


def _raise_for_field_counts(path, n_fields, delimiter, positions=(), has_header=False):
    """A CommandError naming the first line whose field count is not ``n_fields`` or,
    past the header (whose empty first field may head pandas' index), whose field at one
    of ``positions`` is empty, if there is one."""
    import csv

    with open(path, newline="", encoding="utf-8-sig") as fh:
        for line, row in enumerate(_csv_rows(csv.reader(fh, delimiter=delimiter)), start=1):
            if len(row) != n_fields:
                raise CommandError(
                    f"{path}: line {line} has {len(row)} fields, not {n_fields} as the first "
                    "line (an unquoted thousands separator?)"
                )
            if line > has_header and any(not row[p].strip() for p in positions):
                raise CommandError(f"{path}: line {line} has an empty field")


def _is_number(text):
    """A decimal number as a table holds it ("1_000", which Python's float takes, is not)."""
    if "_" in str(text):
        return False
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _check_matrix(X, prefix, names=None):
    """``X`` as float, or a CommandError; a bad value is placed as the file's reader would
    look for it: a table's sample (counting from 1) and column name, an array's indices."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise CommandError(f"{prefix}: holds {X.dtype} data, not numbers")
    if X.ndim != 2:
        raise CommandError(f"{prefix}: should hold a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.size == 0:
        raise CommandError(f"{prefix}: holds no data (shape {X.shape})")
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    finite = np.isfinite(X)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        where = (f"first in sample {row + 1}, column {names[column]!r}" if names is not None
                 else f"first at row {row}, column {column}, counting from 0")
        raise CommandError(f"{prefix}: holds NaN or infinite values ({where})")
    return X


def _run_fit(args):
    device = _resolve_device(args.device)
    if args.plot and not _plotting_available():
        raise CommandError("--plot needs matplotlib: pip install 'gpukmeans[cli]'")
    X, names, index_dropped = _read_data(args.data, args.key, args.delimiter, args.columns)
    image_shape = args.image_shape
    if image_shape is not None and image_shape[0] * image_shape[1] != X.shape[1]:
        raise CommandError(
            f"--image-shape {image_shape[0]}x{image_shape[1]} does not match "
            f"the {X.shape[1]} features of {args.data}"
        )
    if image_shape is None and X.shape[1] in (64, 784):
        image_shape = (8, 8) if X.shape[1] == 64 else (28, 28)
    out_dir = args.out if args.out is not None else pathlib.Path(f"{args.data.stem}-kmeans")

    planned = ["labels.npy", "labels.csv", "centers.npy", "centers.csv", "summary.json"]
    if args.plot:
        planned += ["clusters.png"] + (["centroids.png"] if image_shape is not None else [])
    _plan_output("fit", out_dir, planned, [args.data], args.force)  # before the work
    if X.shape[0] < args.n_clusters:  # the estimator says it too, but after the note below
        raise CommandError(f"n_samples={X.shape[0]} should be >= n_clusters={args.n_clusters}.")
    if index_dropped:
        print(f"gpukmeans fit: note: the first column of {args.data} is unnamed and holds 0 to "
              f"{X.shape[0] - 1}, the row index pandas' to_csv() writes; it is left out "
              "(to_csv(index=False) writes none)", file=sys.stderr)
    scaler = None
    if args.scale:  # as make_pipeline(StandardScaler(), KMeans(k)) does
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(X)
    X_fit = X if scaler is None else scaler.transform(X)
    _warm_up(device, X_fit, args.n_clusters)  # the time shown excludes a first compile
    with _staged_output("fit", out_dir, inputs=[args.data], force=args.force) as staging:
        model, seconds = _fit(
            X_fit, args.n_clusters, device, args,
            n_init=args.n_init, max_iter=args.max_iter, tol=args.tol,
        )
        written = _write_fit_results(args, X, names, model, seconds, image_shape, staging,
                                     index_dropped=index_dropped, scaler=scaler)

    sizes = np.bincount(model.labels_, minlength=args.n_clusters)
    print(_format_table(
        ["data", "samples", "features", "k", "device", "time (s)", "inertia", "iterations"],
        [[args.data.name, X.shape[0], X.shape[1], args.n_clusters, model.device_,
          f"{seconds:.3f}", f"{model.inertia_:.6g}", model.n_iter_]],
    ))
    print(f"cluster sizes: {' '.join(map(str, sizes))}")
    for filename in written:
        print(f"wrote {out_dir / filename}")
    return EXIT_OK


def _write_fit_results(args, X, names, model, seconds, image_shape, directory, *, index_dropped=False,
                       scaler=None):
    """Write the results of ``model``, fitted on ``X`` or, given a ``scaler``, on
    ``scaler.transform(X)``; return the names of the files written."""
    from . import __version__

    labels = np.asarray(model.labels_)
    centers = np.asarray(model.cluster_centers_)
    if scaler is not None:
        # In the data's units, beside its rows (and drawn as its pixels); the summary keeps
        # the scaler's mean and scale to go back.
        centers = scaler.inverse_transform(centers)
    names = names or [f"x{i}" for i in range(X.shape[1])]
    np.save(directory / "labels.npy", labels)
    np.save(directory / "centers.npy", centers)
    np.savetxt(directory / "labels.csv", labels, fmt="%d", header="label", comments="")
    # The csv module quotes a name holding a comma, a quote or a line break (joined
    # with commas, such a header had more fields than the rows).
    with open(directory / "centers.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([["%.17g" % value for value in row] for row in centers])
    written = ["labels.npy", "labels.csv", "centers.npy", "centers.csv"]
    if args.plot:
        from ._plotting import plot_centroid_grid, plot_clusters

        points, marks, title = X, centers, f"{args.data.name}: k={args.n_clusters} on {model.device_}"
        if scaler is not None and X.shape[1] > 2:
            # The principal axes of the raw data are those of its widest-ranging features;
            # those of the standardised data, which k-means saw, show its clusters.
            points, marks = scaler.transform(X), np.asarray(model.cluster_centers_)
            title += ", standardised"
        plot_clusters(points, labels, marks, directory / "clusters.png", title=title, feature_names=names)
        written.append("clusters.png")
        if image_shape is not None:
            sizes = np.bincount(labels, minlength=args.n_clusters)
            plot_centroid_grid(
                centers, image_shape, directory / "centroids.png",
                title=f"{args.data.name}: the {args.n_clusters} centroids",
                subtitles=[f"{size} rows" for size in sizes],
            )
            written.append("centroids.png")
    summary = {
        "data": str(args.data),
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "feature_names": names,
        "index_column_dropped": bool(index_dropped),
        "n_clusters": int(args.n_clusters),
        "device": model.device_,
        "fit_seconds": seconds,
        "inertia": float(model.inertia_),
        "scaler": None if scaler is None else {
            "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
        },
        "n_iter": int(model.n_iter_),
        "cluster_sizes": np.bincount(labels, minlength=args.n_clusters).tolist(),
        "params": {
            "n_init": args.n_init, "max_iter": args.max_iter, "tol": args.tol, "random_state": args.seed,
            "device": args.device, "columns": args.columns, "scale": args.scale,
        },
        "gpukmeans_version": __version__,
        "files": written,
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return ["summary.json", *written]


# --- info ----------------------------------------------------------------------------------


def _run_info(args):
    from . import __version__
    from ._device import gpu_status

    usable, reason = gpu_status()
    lines = [("gpukmeans", __version__), ("python", sys.version.split()[0])]
    lines += [(name, _version_of(name)) for name in ("numpy", "scikit-learn", "numba")]
    cupy_version, driver, runtime, devices = _cuda_details()
    lines += [
        ("cupy", cupy_version),
        ("CUDA driver", driver),
        ("CUDA runtime", runtime),
        ("GPU", f"usable: {reason}" if usable else f"not usable: {reason}"),
    ]
    lines += [(f"  device {index}", text) for index, text in enumerate(devices)]
    cache = os.environ.get("CUPY_CACHE_DIR")
    lines.append((
        "kernel cache",
        f"{cache} (CUPY_CACHE_DIR)" if cache
        else f"{pathlib.Path('~/.cupy/kernel_cache').expanduser()} (CuPy's default; set CUPY_CACHE_DIR to move it)",
    ))
    lines.append(("numba cache", _numba_cache()))
    lines.append(("default device", "gpu" if usable else "cpu"))
    optional = ", ".join(f"{name} {_version_of(name)}" for name in ("matplotlib", "tqdm", "pandas", "pyarrow"))
    lines.append(("optional", optional))
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name.ljust(width)}  {value}")
    return EXIT_OK


class _CompileNoticeHandler:
    """Shows the CPU engine's "compiling" line on stderr while the command runs, so that a
    first fit's compile never looks like a hang, whatever the logging configuration; every
    other log record is left to it."""

    def __init__(self):
        import logging

        self.logger = logging.getLogger("gpukmeans._cpu")
        self.handler = logging.StreamHandler(sys.stderr)
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.handler.addFilter(
            lambda record: record.getMessage().startswith("gpukmeans: compiling"))
        self.level = self.logger.level
        self.logger.addHandler(self.handler)
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)

    def close(self):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)


def _run_compile(args):
    from ._device import gpu_status

    targets = ["cpu", "gpu"] if args.device == "all" else [args.device]
    usable, reason = gpu_status()
    if args.device == "gpu" and not usable:
        raise CommandError(f"no GPU is usable: {reason}")
    for target in targets:
        if target == "gpu" and not usable:
            print(f"GPU kernels: skipped ({reason})")
            continue
        started = time.perf_counter()
        if target == "cpu":
            from . import _cpu

            print("CPU kernels: compiling every one not yet cached, for every kind of data "
                  "(from an empty cache about 8 minutes on two cores; a fit compiles only what it "
                  "runs)", flush=True)
            _cpu.warm_up_all(announce=False)
            where = _numba_cache()
        else:
            from . import _kernels

            _kernels.compile_all()
            where = os.environ.get("CUPY_CACHE_DIR") or str(
                pathlib.Path("~/.cupy/kernel_cache").expanduser())
        print(f"{target.upper()} kernels: ready in {time.perf_counter() - started:.1f} s, cached in "
              f"{where}")
    return EXIT_OK


def _numba_cache():
    """Where the CPU engine's compiled functions are cached (the CPU engine decides it)."""
    try:
        import numba

        from . import _cpu_runtime
    except Exception as exc:  # a broken Numba: say so rather than fail
        return f"unknown (the CPU engine does not import: {exc})"
    if not _cpu_runtime.CACHE:
        return "none: no writable directory, functions compile in every process"
    if os.environ.get("NUMBA_CACHE_DIR"):
        return f"{numba.config.CACHE_DIR} (NUMBA_CACHE_DIR)"
    return numba.config.CACHE_DIR or str(pathlib.Path(_cpu_runtime.__file__).parent / "__pycache__")


def _version_of(distribution):
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cuda_details():
    """Return ``(cupy version, driver version, runtime version, [device descriptions])``."""
    from ._backend import _cuda_driver_missing

    missing = _cuda_driver_missing()
    no_driver = f"none ({missing})" if missing else None
    try:
        import cupy
    except Exception:
        return "not installed", no_driver or "unknown (no CuPy)", "unknown (no CuPy)", []
    runtime_api = cupy.cuda.runtime

    def version(getter):
        try:
            number = getter()
        except Exception as exc:
            return f"unknown ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        return f"{number // 1000}.{number % 1000 // 10}" if number else "none found"

    driver = no_driver or version(runtime_api.driverGetVersion)
    runtime = version(runtime_api.runtimeGetVersion)
    devices = []
    try:
        for index in range(runtime_api.getDeviceCount()):
            props = runtime_api.getDeviceProperties(index)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            devices.append(
                f"{name}, compute capability {props['major']}.{props['minor']}, "
                f"{props['totalGlobalMem'] / 2**30:.1f} GiB"
            )
    except Exception:
        pass
    return cupy.__version__, driver, runtime, devices


# --- bench ---------------------------------------------------------------------------------


def _run_bench(argv):
    try:
        from . import bench
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.bench":
            raise
        print(
            "gpukmeans bench: error: the benchmark helper (gpukmeans/bench/) is not part of "
            "this installation; run the scripts in benchmarks/ from a source checkout.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return bench.main(argv)
