"""The CPU engine's runtime: Numba's cache and threads, one engine call at a time, BLAS
held to one thread, Ctrl-C delivered, and a notice while kernels compile.

Every kernel module of the CPU engine (``_cpu_*.py``) compiles with ``cache=CACHE`` and,
for its parallel loops, ``parallel=prange_only()``; a kernel run once per step also has a
serial twin for one thread (:func:`threaded`).
"""

import contextlib
import functools
import hashlib
import logging
import os
import signal
import sys
import tempfile
import threading
import types

import numba
from numba.core import event as numba_event

from ._cpu_small import WORKER_NICE_INCREMENT, blas_controller, n_row_threads

logger = logging.getLogger("gpukmeans._cpu")

def _kernel_sources_digest():
    """A digest of the CPU engine's kernel sources (every ``_cpu*.py``) and Numba's
    version: what a cached kernel was compiled from.

    Numba checks only the decorated function's own file before it loads that function
    from its cache, not the files of the functions it inlines (Numba's documented
    limitation): after an edit or an update that changes ``_cpu_nearest.py`` alone, a
    kernel of ``_cpu_passes.py`` loaded from the cache would run the old distance code
    inlined in it, while the recompiled kernels run the new: in a development checkout
    a fit's ``inertia_`` and ``-score(X)``, and a streamed and an in-memory fit's
    inertia, differed in their last bits that way (float64, 2 or 3 features)."""
    package = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256(numba.__version__.encode())
    for name in sorted(os.listdir(package)):
        if name.startswith("_cpu") and name.endswith(".py"):
            with open(os.path.join(package, name), "rb") as source:
                digest.update(name.encode() + b"\0" + source.read())
    return digest.hexdigest()[:16]


def _drop_stale_kernels(directory, digest):
    """Remove the cached CPU kernels in ``directory`` (Numba's ``__pycache__`` beside
    the modules) when they were compiled from other sources than ``digest`` says, and
    record it. Only this package's kernels (``_cpu*`` index and data files) go."""
    record = os.path.join(directory, "gpukmeans-kernels.digest")
    try:
        with open(record) as file:
            if file.read().strip() == digest:
                return
    except OSError:
        pass
    for name in os.listdir(directory):
        if name.startswith("_cpu") and name.endswith((".nbi", ".nbc")):
            with contextlib.suppress(OSError):  # another process may have gone first
                os.remove(os.path.join(directory, name))
    with open(record, "w") as file:
        file.write(digest + "\n")


def _ensure_writable_numba_cache():
    """Point Numba's cache at a writable directory before any ``cache=True`` function,
    one that holds only kernels compiled from this package's current sources
    (:func:`_kernel_sources_digest`).

    Numba caches beside the module (``__pycache__``) or else under the home directory,
    and raises at decoration time when it can use neither. In a read-only site-packages
    with no usable home that would make ``import gpukmeans`` fail; a per-user temporary
    directory keeps it working (and the cache useful within a machine): there, kernels
    go to a subdirectory named by the digest. Beside the module, kernels compiled from
    other sources are removed. A ``NUMBA_CACHE_DIR`` the user set is used as it is.
    Returns whether caching is possible at all.
    """
    if numba.config.CACHE_DIR:
        return True
    digest = _kernel_sources_digest()
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    candidates = [here]
    home = os.path.expanduser("~")
    if home and home != "~":
        candidates.append(os.path.join(home, ".cache", "gpukmeans", "numba", digest))
    candidates.append(os.path.join(tempfile.gettempdir(), f"gpukmeans-numba-{os.getuid()}",
                                   digest))
    for path in candidates:
        try:
            os.makedirs(path, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".probe"):
                pass
            if path == here:
                _drop_stale_kernels(here, digest)
        except OSError:
            continue
        if path != here:
            numba.config.CACHE_DIR = path
        return True
    logger.debug("no writable directory for Numba's cache; kernels compile in every process")
    return False


CACHE = _ensure_writable_numba_cache()


def _prefer_workqueue_threads():
    """Use Numba's own thread pool unless the user chose a threading layer.

    Our parallel loops are coarse (tens of groups per call), so little is gained from
    OpenMP, while libgomp's threads spin actively between parallel regions: on a shared
    or busy machine that made each Lloyd step ten times slower here. The workqueue layer
    sleeps instead. Measured again on 2026-12-01 (2-core AMD EPYC VM, 100,000 x 32
    float32, k=32, 10 iterations, before the workers' nice level was raised): quiet,
    OpenMP's fits were steadier (33 ms median against 35, and a waking thread's delay
    doubled some of workqueue's steps: the harness's float64 k=8 row took 2.8 ms per
    iteration against 5.1; see :func:`_start_niced_workers`); with 2 and 4 busy
    processes beside them, OpenMP's fits took 84 and 158 ms against 57 and 89. (GNU
    OpenMP is not fork-safe either: Numba ends a child forked after its first parallel
    loop.) The workqueue layer cannot run two parallel regions at once, so every public
    call holds :data:`_ENGINE_LOCK` (see :func:`cpu_runtime`), whose first entry starts
    the layer's threads one nice level down (:func:`_start_niced_workers`). An explicit
    ``NUMBA_THREADING_LAYER``, or a layer already started, is left alone. Returns
    whether the workqueue layer was chosen here.
    """
    if os.environ.get("NUMBA_THREADING_LAYER") or numba.config.THREADING_LAYER != "default":
        return False
    try:
        numba.threading_layer()
        return False  # already started: too late to choose
    except ValueError:
        pass
    numba.config.THREADING_LAYER = "workqueue"
    return True


def _start_niced_workers():
    """On Linux, start the workqueue layer's threads one nice level below the caller's
    (:data:`WORKER_NICE_INCREMENT`; elsewhere they start with the first parallel loop, as
    they are).

    The thread that runs a parallel loop takes no share of it in this layer: it wakes
    each worker in turn, then sleeps until all are done. Linux runs a woken thread at
    once on the waker's CPU where it can, so the first worker often preempted the caller
    before it had woken the second, which then started only when the first had finished
    its share: the step took twice as long, about one in five times (2-core AMD EPYC VM,
    100,000 x 32 float32, k=32, one plain step: 2.2 ms or 4.5-5 ms; a raw two-way loop
    of 0.5 ms showed the same; pinning the workers to CPUs did not help, running the
    caller beside a worker on one CPU made every step slow). Under Linux's EEVDF
    scheduler (6.6 on; measured on 6.18) a worker one nice level down has a later
    deadline than the caller, so it does not preempt it on waking, yet keeps nearly its
    share of the CPU (weight 820 against 1024) and still preempts a thread that has used
    its own; older kernels' CFS decides wake-up preemption otherwise (not measured). Stop 23 made the workers ``SCHED_BATCH``, which never
    preempts on waking: beside any other runnable thread (another library's BLAS
    threads, which spin for a while after each call, or a busy process) a woken worker
    then waited out that thread's time slice, and a third to a half of the fits took
    3-5x longer. Measured on that machine (kernel 6.18), 100,000 x 32 float32, k=8,
    10-iteration fits, the workers' settings alternated in one process, 30-40 fits each,
    mean ms, nice +1 / nice 0 / SCHED_BATCH: quiet 7.1 / 9.0 / 11.0; after a NumPy
    Lloyd fit (OpenBLAS on two threads) before each, 9.7 / 9.6 / 27.8 (16 of 30 batch
    fits over twice the quiet median); beside a busy process 10.6 / 10.3 / 21.5, and both
    15.4 / 15.7 / 30.9. Scheduling only: the results do not change.

    Called on the first engine call, not on import: starting Numba's threads fixes the
    ``multiprocessing`` start method (Numba asks for it), which a program may still mean
    to set; and again in a child forked after that, where Numba starts a new pool. The
    workers are the threads that starting the layer adds to the process; if their number
    is not Numba's thread count (another thread started meanwhile, or the pool had
    started already), they are left as they are, and so they are where the caller does
    not run ``SCHED_OTHER`` (a policy the user chose, ``chrt``, which the workers
    inherit), or where ``/proc`` is another PID namespace's. A thread the system refuses
    to change, and those after it, stay as they are.
    """
    tasks = "/proc/self/task"
    if not sys.platform.startswith("linux") or not hasattr(os, "sched_getscheduler"):
        return
    try:
        if (os.sched_getscheduler(0) != os.SCHED_OTHER
                or os.readlink("/proc/self") != str(os.getpid())):
            return
        before = set(os.listdir(tasks))
        numba.get_num_threads()  # starts the layer's threads
        workers = set(os.listdir(tasks)) - before
        if len(workers) != numba.config.NUMBA_NUM_THREADS:
            logger.debug("Numba's workers not identified (%d new threads for %d); left as "
                         "they are", len(workers), numba.config.NUMBA_NUM_THREADS)
            return
        nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICE_INCREMENT)
        for tid in workers:
            os.setpriority(os.PRIO_PROCESS, int(tid), nice)
    except OSError as exc:
        logger.debug("Numba's workers left as they are: %s", exc)


_ENGINE_LOCK = threading.RLock()
_niced_workers_due = _prefer_workqueue_threads()


def _niced_workers_due_in_child():
    global _niced_workers_due
    _niced_workers_due = True


if _niced_workers_due and hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_niced_workers_due_in_child)


def _start_niced_workers_once():
    """:func:`_start_niced_workers` on the first engine call (of this process, or of a
    child forked after it), where this module chose the layer."""
    global _niced_workers_due
    if _niced_workers_due:
        _niced_workers_due = False
        _start_niced_workers()


# Each kind of data (float32 or float64, dense or CSR, in memory
# or streamed) and each path the shapes choose compiles kernels of its own on its first
# use: a new user read "once" four times in a morning, then "first use only" about ten
# times in an hour (other dtypes, shapes, memmaps, weights).
COMPILE_NOTICE = ("gpukmeans: compiling the CPU kernels for this kind of data (up to a "
                  "minute or two, once per kind of data and shape, then cached on disk; "
                  "`gpukmeans compile` does every kind ahead of time)")


class _CompileNotice(numba_event.Listener):
    """Says, once per public call, that this engine's kernels are being compiled: with an
    empty cache a first fit compiles for up to a minute, which must not look like a hang.

    A WARNING: Python shows it on stderr with no logging set up, so a notebook's first fit
    is not silent for a minute (at INFO, a new user saw nothing for 14 s). Numba raises
    the event only for a real compile, never for a load from the cache: once per
    installation, kind of data and path (:data:`COMPILE_NOTICE`). :func:`warm_up_all`
    (``gpukmeans compile``) compiles everything ahead of time.
    """

    def __init__(self):
        self.announced = False
        self.quiet = False  # see cpu_runtime's new_call
        self.depth = 0  # runtimes entered and not left (under the engine lock)

    def on_start(self, event):
        dispatcher = event.data["dispatcher"]
        module = getattr(dispatcher.py_func, "__module__", None) or ""
        if self.announced or self.quiet or not module.startswith("gpukmeans."):
            return
        self.announced = True
        if CACHE:
            logger.warning(COMPILE_NOTICE)
        else:
            logger.warning("gpukmeans: compiling the CPU kernels (up to a minute or two); "
                           "with no writable cache directory, every process compiles them "
                           "again")

    def on_end(self, event):
        pass


_COMPILE_NOTICE = _CompileNotice()
numba_event.register("numba:compile", _COMPILE_NOTICE)

# The BLAS threads the caller allowed (the fewest of any BLAS library's), which
# gemm_threads' pieces follow, as the outermost cpu_runtime found them before it held
# BLAS to one, and at most the CPUs; None outside.
_CALLER_BLAS_THREADS = [None]


def _blas_threads_now():
    return min((library.num_threads for library in blas_controller().lib_controllers
                if library.user_api == "blas"), default=1)


def _blas_threads_allowed():
    return min(_blas_threads_now(), n_row_threads())


@contextlib.contextmanager
def _caller_blas_threads_kept():
    """Keeps :data:`_CALLER_BLAS_THREADS` for the outermost runtime's duration (once a
    call, not once a step: the CPUs' count is a system call and the environment's
    limits, a few us); entered under the engine's lock, before the limit."""
    if _CALLER_BLAS_THREADS[0] is not None:  # inside another runtime: its caller's
        yield
        return
    _CALLER_BLAS_THREADS[0] = _blas_threads_allowed()
    try:
        yield
    finally:
        _CALLER_BLAS_THREADS[0] = None


def gemm_threads():
    """The pieces a batch's GEMM labels are made in, each on a thread of the row pool
    with BLAS on one thread (:func:`gpukmeans._cpu_minibatch.batch_labels_by_gemm`):
    Numba's thread count, at most :func:`gpukmeans._cpu_small.n_row_threads` (the
    pool's size: the CPUs this process may run on, at most 8 and what OMP_NUM_THREADS
    or NUMBA_NUM_THREADS allow), and at most the BLAS threads its caller allowed
    (``OPENBLAS_NUM_THREADS``, ``threadpoolctl``: these GEMMs stand for one on BLAS's
    own threads, which they replaced)."""
    allowed = _CALLER_BLAS_THREADS[0]
    if allowed is None:
        allowed = _blas_threads_allowed()
    return max(1, min(numba.get_num_threads(), allowed))


@contextlib.contextmanager
def cpu_runtime(new_call=True):
    """What every public call runs inside (``Engine.runtime``): one engine call at a
    time per process, and BLAS limited to one thread while Numba's threads each call it
    on their own chunk.

    Without the limit, every Numba thread's GEMM would start its own BLAS threads
    (oversubscription), and a multi-threaded GEMM is not guaranteed to sum in the
    same order as a single-threaded one.

    ``new_call``: a public call begins here, so a compile may be announced again
    (:class:`_CompileNotice`), unless this runtime is entered inside another (the
    outermost one is the call: ``gpukmeans compile`` warms every kernel in one). False
    for a pass that a call makes before it enters its engine's runtime (validation's):
    its compile (a second or two) is not announced, or a first fit would announce
    twice, once for it and once for its engine's kernels; and for ``gpukmeans
    compile``'s warm-up, which says itself how long it takes.
    """
    try:
        with _ENGINE_LOCK, _caller_blas_threads_kept(), \
                blas_controller().limit(limits=1, user_api="blas"), _interrupts_not_dropped():
            _start_niced_workers_once()
            quiet = _COMPILE_NOTICE.quiet
            if not new_call:
                _COMPILE_NOTICE.quiet = True
            elif _COMPILE_NOTICE.depth == 0:
                _COMPILE_NOTICE.announced = False
            _COMPILE_NOTICE.depth += 1
            try:
                yield
            finally:
                _COMPILE_NOTICE.depth -= 1
                _COMPILE_NOTICE.quiet = quiet
    except SystemError as exc:
        # Ctrl-C while Numba code runs: the KeyboardInterrupt is raised as a compiled
        # function (or a helper it calls back, such as _numba_unpickle) returns, and
        # CPython reports "returned a result with an exception set": a SystemError caused
        # by it, possibly through another such SystemError. The caller gets its
        # KeyboardInterrupt.
        cause, seen = exc, 0
        while cause is not None and seen < 16:
            if isinstance(cause, KeyboardInterrupt):
                raise KeyboardInterrupt from None
            cause, seen = cause.__cause__ or cause.__context__, seen + 1
        raise


@contextlib.contextmanager
def _interrupts_not_dropped():
    """A Ctrl-C during the block reaches the caller as a KeyboardInterrupt, even one that
    lands while Numba compiles, inside an llvmlite ctypes callback, which prints the
    exception and drops it: the interrupt is remembered, and raised when the block ends.

    Only where Python's own SIGINT handler is in place, in the main thread: a program's
    (or the command's) own handler is left alone.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    interrupted = []

    def remember_and_raise(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, remember_and_raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted:  # raised, and dropped on the way
        raise KeyboardInterrupt


def prange_only():
    """Numba's ``parallel`` option with only the explicit ``prange`` loops parallel.

    With ``parallel=True`` Numba also turns array expressions, ``np.zeros`` and
    reductions such as ``a.min()`` into parallel regions of their own. Each costs a
    thread-pool launch (about 0.1 ms here), which on a small array is all cost: twenty
    ``row.min()`` made a k=20 Elkan step 2 ms slower. A new dict each time: Numba
    consumes the one it is given.
    """
    return dict(
        comprehension=False, reduction=False, inplace_binop=False, setitem=False,
        numpy=False, stencil=False, fusion=False, prange=True,
    )



# A call whose work (a kernel's ``work`` estimate: multiply-adds, plus ROW_WORK a
# sample for its bookkeeping) is below SERIAL_MAX_WORK runs serially even where Numba has
# more threads: waking the workers of this 2-core VM (its idle vCPUs halted) costs a
# parallel region 0.4-0.6 ms, not the 0.1 of a quiet call. Two threads, ms, parallel /
# serial (benchmarks: the kernels alternated in one process): a 1,024-row MNIST batch's
# E-step at k=10 (8e6 work) 0.35 / 0.22, at k=100 (8e7) 1.41 / 1.94; a Lloyd step of
# 10,000 x 32, k=32 (1.2e7) 0.70 / 0.58, of 30,000 x 32, k=32 (3.7e7) 1.26 / 1.37, of
# 20,000 x 8, k=8 (5.3e6) 0.39 / 0.24, of 100,000 x 2, k=32 (2.6e7) 1.23 / 1.32.
ROW_WORK = 200
SERIAL_MAX_WORK = 2 * 10**7


class ThreadedKernel:
    """A kernel with ``prange`` loops: run on Numba's threads, or by its serial twin (the
    same source compiled without them) where Numba runs one thread or the call is small
    (``work(*args)`` below :data:`SERIAL_MAX_WORK`).

    Starting a parallel region of the workqueue layer costs about 0.1 ms even on one
    thread (:func:`_prefer_workqueue_threads`: the caller wakes a worker and sleeps
    until it is done), several times that when the workers' CPUs have gone idle: a
    tenth of a mini-batch step at k=10 on MNIST, and of a small fit's Lloyd step. The
    twin runs the same groups in the same order with the same arithmetic, so both give
    the same bits (the thread-count tests compare them).

    The twin is another Python function on the same code, named ``<kernel>_serial``: Numba
    keys its cache files by the function's qualified name, not by its compile options,
    so both versions are cached side by side. Compiled on its first call, like any
    kernel (``gpukmeans compile`` compiles both: :func:`gpukmeans._cpu.warm_up`).
    """

    def __init__(self, kernel, work):
        self.parallel = kernel
        self.work = work
        py_func = kernel.py_func
        twin = types.FunctionType(py_func.__code__, py_func.__globals__,
                                  py_func.__name__ + "_serial", py_func.__defaults__,
                                  py_func.__closure__)
        twin.__qualname__ = py_func.__qualname__ + "_serial"
        twin.__module__ = py_func.__module__
        twin.__doc__ = py_func.__doc__
        # The kernel's own options (nogil, fastmath, ...) but the threads.
        options = {name: value for name, value in kernel.targetoptions.items()
                   if name not in ("parallel", "nopython")}
        self.serial = numba.njit(cache=CACHE, **options)(twin)
        functools.update_wrapper(self, py_func)

    def runs_serially(self, *args):
        """Whether a call with these arguments runs the serial twin."""
        return numba.get_num_threads() == 1 or self.work(*args) < SERIAL_MAX_WORK

    def __call__(self, *args):
        if self.runs_serially(*args):
            return self.serial(*args)
        return self.parallel(*args)


def threaded(work):
    """Decorator, over ``njit(parallel=prange_only(), ...)``: see :class:`ThreadedKernel`.
    ``work(*args)`` estimates a call's work; :func:`rows_times` makes the usual one."""
    return lambda kernel: ThreadedKernel(kernel, work)


def always_parallel(*args):
    """A ``work`` estimate for a kernel whose work is not known before the call: parallel
    wherever Numba has more than one thread. The bounded E-steps (Hamerly, Elkan,
    Yinyang): how many samples the bounds settle is not known before the step, and run
    serially on two threads, fits of 10,000 x 32 to 60,000 x 64 took 1.1-2.4x as long."""
    return SERIAL_MAX_WORK


def rows_times(per_row):
    """A ``work`` estimate: ``n_samples x (per_row(*args) + ROW_WORK)``, X the first
    argument."""
    return lambda X, *args: X.shape[0] * (per_row(X, *args) + ROW_WORK)


def set_num_threads(n_threads):
    """Set Numba's thread count (for tests of thread-count independence, and the
    benchmarks). Setting it starts Numba's threads: as the engine's first call would,
    one nice level down (:func:`_start_niced_workers`)."""
    with _ENGINE_LOCK:
        _start_niced_workers_once()
    numba.set_num_threads(n_threads)
