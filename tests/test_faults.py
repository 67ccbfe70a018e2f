"""The command and the datasets under faults: no data lost or silently changed, and one clear
line instead of a traceback. Each input and pre-existing file is compared byte for byte
afterwards; the command runs in-process, and as a subprocess where a signal is sent."""

import http.server
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from gpukmeans import _cli, datasets
from gpukmeans.datasets import load_mnist
from command_checks import run

SUBSET = pathlib.Path(__file__).parent / "data" / "mnist"
ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("no_user_mnist")


def assert_one_line_error(status, err, match):
    assert status == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert match in err, err


def snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def data(tmp_path):
    X = np.random.default_rng(0).standard_normal((150, 2))
    path = tmp_path / "res" / "centers.npy"
    path.parent.mkdir()
    np.save(path, X)
    return path


# ----------------------------------------------------------------------------------------
# Output never overwrites what the command did not write
# ----------------------------------------------------------------------------------------


def test_output_never_replaces_the_input(capsys, data):
    before = snapshot(data.parent)
    for extra in ([], ["--force"]):
        status, _, err = run(capsys, "fit", data, "-k", 3, "--out", data.parent, *extra)
        assert_one_line_error(status, err, "would overwrite the input")
    assert snapshot(data.parent) == before


def test_as_a_subprocess_too_the_input_and_a_users_file_survive(data, tmp_path):
    """The same refusals from the installed command, as a user runs it."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "labels.csv").write_text("mine\n")
    before = snapshot(tmp_path)
    for out, message in ((data.parent, "overwrite the input"), (mine, "did not write")):
        result = subprocess.run(
            [sys.executable, "-m", "gpukmeans", "fit", str(data), "-k", "3", "--out", str(out)],
            capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert snapshot(tmp_path) == before


def test_a_users_file_in_out_is_kept_unless_forced(capsys, data, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "labels.csv").write_text("my own labels\n")
    status, _, err = run(capsys, "fit", data, "-k", 3, "--out", out)
    assert_one_line_error(status, err, "labels.csv, which gpukmeans did not write")
    assert (out / "labels.csv").read_text() == "my own labels\n"
    assert sorted(p.name for p in out.iterdir()) == ["labels.csv"]
    status, _, _ = run(capsys, "fit", data, "-k", 3, "--out", out, "--force")
    assert status == 0 and (out / "labels.csv").read_text() != "my own labels\n"


def test_its_own_earlier_results_are_replaced_and_stale_ones_removed(capsys, data, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "results"
    assert run(capsys, "fit", data, "-k", 3, "--out", out, "--plot")[0] == 0
    assert (out / "clusters.png").is_file()
    status, out_text, err = run(capsys, "fit", data, "-k", 4, "--out", out)  # no --plot now
    assert status == 0, err
    assert not (out / "clusters.png").exists() and "removed" in err and "clusters.png" in err
    assert '"n_clusters": 4' in (out / "summary.json").read_text()
    # Changed by the user since: no longer ours, so not replaced without --force.
    (out / "centers.csv").write_text("edited\n")
    status, _, err = run(capsys, "fit", data, "-k", 3, "--out", out)
    assert_one_line_error(status, err, "centers.csv")
    assert (out / "centers.csv").read_text() == "edited\n"


def test_results_of_another_input_are_kept_unless_forced(capsys, data, tmp_path,
                                                         monkeypatch):
    """fit's default --out is named by the data's stem: b.npy, then b.csv, then
    b.parquet all wrote b-kmeans/, each replacing the last one's results (and its
    clusters.png, as stale) without a word. Another input's results are now kept unless
    forced; the same input's are replaced, as before."""
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    X = np.load(data)
    np.save(tmp_path / "b.npy", X)
    np.savetxt(tmp_path / "b.csv", X, delimiter=",")
    assert run(capsys, "fit", "b.npy", "-k", 3, "--plot")[0] == 0
    out = tmp_path / "b-kmeans"
    before = snapshot(out)
    status, _, err = run(capsys, "fit", "b.csv", "-k", 3)
    assert_one_line_error(status, err, "on " + str(tmp_path / "b.npy"))
    assert str(tmp_path / "b.csv") in err and "--force" in err
    assert snapshot(out) == before
    assert run(capsys, "fit", "b.npy", "-k", 4)[0] == 0  # its own input: replaced
    assert '"n_clusters": 4' in (out / "summary.json").read_text()
    status, _, err = run(capsys, "fit", "b.csv", "-k", 3, "--force")
    assert status == 0, err
    assert str(tmp_path / "b.csv") in (out / _cli.MANIFEST).read_text()
    assert run(capsys, "fit", "b.csv", "-k", 2)[0] == 0


def test_a_crafted_manifest_reaches_nothing_outside_out(capsys, data, tmp_path):
    import hashlib
    import json

    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    out = tmp_path / "results"
    out.mkdir()
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    (out / _cli.MANIFEST).write_text(json.dumps({"files": {
        "../precious.txt": {"sha256": digest, "command": "fit"},
        str(outside): {"sha256": digest, "command": "fit"},
        "labels.csv": {"sha256": "0" * 64, "command": "fit"}}}))
    (out / "labels.csv").write_text("mine\n")  # listed, but its hash is not ours
    status, _, err = run(capsys, "fit", data, "-k", 3, "--out", out)
    assert_one_line_error(status, err, "labels.csv")
    assert run(capsys, "fit", data, "-k", 3, "--out", out, "--force")[0] == 0
    assert outside.read_text() == "keep me\n"


def test_another_commands_results_are_never_stale(capsys, data, tmp_path):
    """demo --out into a fit's folder removed the fit's results as 'left by an earlier
    run'; only a run of the same command may."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "results"
    assert run(capsys, "fit", data, "-k", 3, "--out", out)[0] == 0
    fit_files = {n: b for n, b in snapshot(out).items() if str(n) != _cli.MANIFEST}
    assert run(capsys, "demo", "--out", out)[0] == 0
    after = snapshot(out)
    assert all(after[n] == b for n, b in fit_files.items())
    assert run(capsys, "fit", data, "-k", 3, "--out", out)[0] == 0  # still its own files


def test_links_and_folders_in_out_are_never_written_through(capsys, data, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    user = tmp_path / "user.json"
    user.write_text("{}\n")
    (out / _cli.MANIFEST).symlink_to(user)
    (out / "labels.npy").mkdir()
    status, _, err = run(capsys, "fit", data, "-k", 3, "--out", out, "--force")
    assert_one_line_error(status, err, "labels.npy, which is not a file")
    (out / "labels.npy").rmdir()
    assert run(capsys, "fit", data, "-k", 3, "--out", out)[0] == 0
    assert user.read_text() == "{}\n" and not (out / _cli.MANIFEST).is_symlink()
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    status, _, err = run(capsys, "fit", data, "-k", 3, "--out", dangling)
    assert_one_line_error(status, err, "symlink to nothing")


def test_a_link_where_an_output_goes_is_replaced_only_with_force(capsys, data, tmp_path):
    """A symlink named like an output is refused without --force; with it, the link is
    replaced by the new file and the file it pointed to is left alone (docs/cli.md said
    'refused even with --force': a helper's find)."""
    out = tmp_path / "results"
    out.mkdir()
    user = tmp_path / "mine.csv"
    user.write_text("mine\n")
    (out / "labels.csv").symlink_to(user)
    status, _, err = run(capsys, "fit", data, "-k", 3, "--out", out)
    assert_one_line_error(status, err, "labels.csv, which gpukmeans did not write")
    assert run(capsys, "fit", data, "-k", 3, "--out", out, "--force")[0] == 0
    assert user.read_text() == "mine\n" and not (out / "labels.csv").is_symlink()
    assert (out / "labels.csv").read_text().startswith("label\n")


def test_the_demo_refuses_a_users_picture_before_any_fit(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    out.mkdir()
    (out / "blobs_clusters.png").write_bytes(b"my picture")
    status, stdout, err = run(capsys, "demo", "--out", out)
    assert status == 2 and "Traceback" not in err  # after the 'MNIST part skipped' notice
    assert "blobs_clusters.png, which gpukmeans did not write" in err.strip().splitlines()[-1]
    assert stdout == ""  # no fit ran
    assert (out / "blobs_clusters.png").read_bytes() == b"my picture"


def test_a_closed_pipe_ends_the_command_quietly(tmp_path, data):
    """`gpukmeans fit ... | head -1` ended in a BrokenPipeError traceback."""
    result = subprocess.run(
        f"{sys.executable} -m gpukmeans fit {data} -k 3 --out {tmp_path / 'o'} | head -c 1",
        shell=True, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_the_demo_can_run_twice_into_its_folder(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    assert run(capsys, "demo", "--out", out)[0] == 0
    first = snapshot(out)
    assert run(capsys, "demo", "--out", out)[0] == 0
    assert set(snapshot(out)) == set(first)


# ----------------------------------------------------------------------------------------
# Tables: every row a sample, or the line that is not
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("pandas", [True, False], ids=["pandas", "csv-module"])
def test_a_headerless_first_row_that_repeats_a_value_is_data(capsys, tmp_path, pandas, monkeypatch):
    if not pandas:
        monkeypatch.setitem(sys.modules, "pandas", None)
    path = tmp_path / "points.csv"
    path.write_text("1.5,1.5\n0,0\n5,5\n9,9\n")
    status, out, err = run(capsys, "fit", path, "-k", 2, "--out", tmp_path / "out")
    assert status == 0, err
    assert "| 4 " in out or " 4 " in out.splitlines()[2]
    assert np.load(tmp_path / "out" / "labels.npy").shape == (4,)


@pytest.mark.parametrize("pandas", [True, False], ids=["pandas", "csv-module"])
@pytest.mark.parametrize("text, line", [
    ("a,b\n1,234.5,2\n2,000,3\n", 2),  # unquoted thousands separators
    ("a,b\n1,2\n3\n5,6\n", 3),  # a field missing
    ("1,2\n3,4,5\n", 2),  # headerless, one too many
])
def test_a_row_with_the_wrong_number_of_fields_is_an_error_naming_the_line(
        capsys, tmp_path, pandas, monkeypatch, text, line):
    if not pandas:
        monkeypatch.setitem(sys.modules, "pandas", None)
    path = tmp_path / "table.csv"
    path.write_text(text)
    status, _, err = run(capsys, "fit", path, "-k", 1, "--out", tmp_path / "out")
    assert_one_line_error(status, err, f"line {line} has")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("pandas", [True, False], ids=["pandas", "csv-module"])
@pytest.mark.parametrize("text, samples, match", [
    ("\ufeff1.0,2.0\n3.0,4.0\n5.0,6.0\n7,8\n", 4, None),  # a BOM, no header
    ("1,,3\n4,5,6\n", None, "line 1 has an empty field"),  # not a header for it
    ("v\n1\n\n3\n", None, "line 3 is blank"),
    ("\na,b\n1,2\n", None, "line 1 is blank"),
    ("a,b\n1,2\n3,4\n\n\n", 2, None),  # trailing blank lines end the file
    ("a,b\n1,2\n3,x\n", None, "on line 3"),
])
def test_boms_empty_fields_and_blank_lines(capsys, tmp_path, pandas, monkeypatch, text, samples,
                                           match):
    if not pandas:
        monkeypatch.setitem(sys.modules, "pandas", None)
    path = tmp_path / "table.csv"
    path.write_bytes(text.encode("utf-8"))
    status, _, err = run(capsys, "fit", path, "-k", 1, "--out", tmp_path / "out")
    if match is None:
        assert status == 0, err
        assert np.load(tmp_path / "out" / "labels.npy").shape == (samples,)
        assert "\ufeff" not in (tmp_path / "out" / "centers.csv").read_text(encoding="utf-8")
    else:
        assert_one_line_error(status, err, match)


def test_a_header_without_rows_says_so(capsys, tmp_path):
    pytest.importorskip("pandas")
    path = tmp_path / "empty.csv"
    path.write_text("a,b\n")
    status, _, err = run(capsys, "fit", path, "-k", 1)
    assert_one_line_error(status, err, "no rows")


# ----------------------------------------------------------------------------------------
# Ctrl-C: a KeyboardInterrupt, and exit 130 with one line
# ----------------------------------------------------------------------------------------


LIBRARY_FIT = """
import sys, numpy as np
from gpukmeans import KMeans
X = np.random.default_rng(0).standard_normal((200_000, 16)).astype(np.float32)
# From given centers, so that the fit goes straight to the Numba engine's Lloyd steps
# (its k-means++ steps are small enough for NumPy). Compile first, on data large enough
# for the Numba engine: a Ctrl-C during Numba's compilation can land in an llvmlite
# ctypes callback, which drops it.
KMeans(256, init=X[:256], n_init=1, max_iter=2, device="cpu").fit(X[:30000])
print("ready", flush=True)
try:
    KMeans(256, init=X[:256], n_init=1, max_iter=100_000, tol=0, device="cpu").fit(X)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""


def _interrupt_when_ready(command, env, after=1.0, ready=b"ready"):
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               cwd=ROOT)
    if ready is not None:
        assert process.stdout.readline().strip() == ready
    time.sleep(after)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    return process.returncode, out.decode(), err.decode()


def test_ctrl_c_inside_numba_code_reaches_the_caller_as_keyboard_interrupt():
    """It used to arrive as SystemError: CPUDispatcher(...) returned a result with an
    exception set."""
    code, out, err = _interrupt_when_ready([sys.executable, "-c", LIBRARY_FIT], dict(os.environ),
                                           after=2.0)
    assert "KeyboardInterrupt" in out and code == 0, (code, out, err)
    assert "SystemError" not in err


def test_a_ctrl_c_dropped_on_the_way_still_reaches_the_caller():
    """llvmlite prints and drops a KeyboardInterrupt raised in its ctypes callbacks (while
    Numba compiles): the engine remembers the interrupt and raises it when the call ends."""
    from gpukmeans import _cpu

    with pytest.raises(KeyboardInterrupt):
        with _cpu.cpu_runtime():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.5)
            except KeyboardInterrupt:
                pass  # dropped, as llvmlite's callback does
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with _cpu.cpu_runtime():  # and a call with no interrupt ends normally
        pass


def test_ctrl_c_during_a_fit_command_is_one_line_and_exit_130(tmp_path):
    X = np.random.default_rng(0).standard_normal((200_000, 16)).astype(np.float32)
    np.save(tmp_path / "big.npy", X)
    before = snapshot(tmp_path)
    command = [sys.executable, "-m", "gpukmeans", "fit", str(tmp_path / "big.npy"), "-k", "256",
               "--max-iter", "100000", "--tol", "0", "--device", "cpu", "--out",
               str(tmp_path / "out")]
    code, out, err = _interrupt_when_ready(command, dict(os.environ), after=8.0, ready=None)
    assert code == 130, (code, out, err)
    assert err.strip().splitlines()[-1] == "gpukmeans: interrupted" and "Traceback" not in err, err
    assert snapshot(tmp_path) == before and not list(tmp_path.glob(".gpukmeans-*"))


# ----------------------------------------------------------------------------------------
# MNIST files: damaged, unreadable; mirrors that lie, trickle, reset
# ----------------------------------------------------------------------------------------


def _damaged_deflate(data):
    """A gzip member whose deflate stream is corrupt past the header (zlib.error)."""
    damaged = bytearray(data)
    for i in range(40, min(len(damaged), 400)):
        damaged[i] ^= 0x55
    return bytes(damaged)


@pytest.fixture
def mnist_copy(tmp_path):
    directory = tmp_path / "mnist"
    directory.mkdir()
    for path in SUBSET.glob("*.gz"):
        (directory / path.name).write_bytes(path.read_bytes())
    return directory


def test_a_damaged_deflate_stream_is_a_value_error_and_one_line(capsys, mnist_copy):
    path = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(_damaged_deflate(path.read_bytes()))
    before = snapshot(mnist_copy)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        load_mnist(mnist_copy, download=False)
    status, _, err = run(capsys, "demo", "--mnist", mnist_copy, "--no-plots")
    assert_one_line_error(status, err, "could not be read")
    assert snapshot(mnist_copy) == before


def test_an_unreadable_folder_or_file_is_a_permission_error_not_delete_advice(
        capsys, mnist_copy, monkeypatch):
    # Tests run as root, whom permissions do not stop: the refusal is injected.
    real_is_file = pathlib.Path.is_file

    def is_file(self):
        if self.parent == mnist_copy:
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_file(self)

    monkeypatch.setattr(pathlib.Path, "is_file", is_file)
    with pytest.raises(PermissionError, match="cannot look into .*permission denied"):
        load_mnist(mnist_copy, download=False)
    status, _, err = run(capsys, "demo", "--mnist", mnist_copy, "--no-plots")
    assert_one_line_error(status, err, "permission denied")
    monkeypatch.undo()

    def no_open(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(datasets, "open", no_open, raising=False)
    with pytest.raises(PermissionError) as info:
        load_mnist(mnist_copy, download=False)
    assert "delete" not in str(info.value) and "permission denied" in str(info.value)


@pytest.fixture
def mirrors():
    """Local HTTP mirrors, each with its own behaviour: "good", "damaged" (a damaged
    deflate stream), "trickle" (one byte every 0.2 s), "slow-headers" (the same, in the
    headers), "reset" (the connection cut after
    half of the body), "missing" (404)."""
    files = {f"/{path.name}": path.read_bytes() for path in SUBSET.glob("*.gz")}

    def handler(behaviour):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                try:
                    self.serve()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up
                    pass

            def serve(self):
                body = files.get(self.path)
                if body is None or behaviour == "missing":
                    self.send_error(404)
                    return
                if behaviour == "damaged":
                    body = _damaged_deflate(body)
                if behaviour == "slow-headers":  # never gets past the status line
                    for byte in b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n" * 100:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.2)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if behaviour == "trickle":
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(0.2)
                elif behaviour == "reset":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                else:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler

    servers, urls = [], {}
    for behaviour in ("good", "damaged", "trickle", "slow-headers", "reset", "missing"):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(behaviour))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(server)
        urls[behaviour] = f"http://127.0.0.1:{server.server_address[1]}/"
    yield urls
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("bad", ["damaged", "trickle", "slow-headers", "reset", "missing"])
def test_a_bad_mirror_is_given_up_and_the_next_one_used(tmp_path, mirrors, subset_checksums,
                                                         monkeypatch, bad):
    monkeypatch.setattr(datasets, "_DOWNLOAD_DEADLINE", 1.5)
    start = time.monotonic()
    X, _ = load_mnist(tmp_path / "d", subset="test", mirrors=[mirrors[bad], mirrors["good"]],
                      verbose=False)
    assert X.shape == (1000, 784)
    assert time.monotonic() - start < 30  # the trickle would take hours
    assert not list((tmp_path / "d").glob(".*"))  # no partial file left


@pytest.mark.parametrize("slow", ["trickle", "slow-headers"])
def test_a_trickling_mirror_alone_ends_in_a_clear_error(tmp_path, mirrors, subset_checksums,
                                                        monkeypatch, slow):
    monkeypatch.setattr(datasets, "_DOWNLOAD_DEADLINE", 1.0)
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="gave up after"):
        load_mnist(tmp_path / "d", subset="test", mirrors=[mirrors[slow]], verbose=False)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "d").exists()  # no partial file, nor the directory it made
