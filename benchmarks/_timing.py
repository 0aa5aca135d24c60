"""Shared timing protocol for the peer comparisons in ``benchmarks/``: pinned, interleaved, load quoted.

Shared machines are noisy: a burst of load that hits one contestant's timed
passes and not the other's distorts a ratio more than any code change. Every
peer comparison therefore

1. pins both sides to the same threads (:func:`pinned`: the same CPU set for
   every thread of the process, one BLAS/OpenMP thread pool size through
   threadpoolctl, Numba's, VLFeat's and OpenCV's thread counts set alike);
2. warms every contestant up untimed (Numba compilation, imports, caches);
3. times the passes interleaved, ``ours, theirs, ours, theirs, ...``
   (:func:`interleaved`; :func:`interleaved_clocks` for wall and CPU time
   of the same passes), so that a change of load hits both alike;
4. prints the load average before and after (:func:`load_line`) next to the
   figures, and reports the best and median pass (:func:`summary`) and ratios
   of the best passes (:func:`ratio`).

Typical use::

    from _timing import interleaved, load_line, pinned, ratio, summary

    with pinned(1):
        t = interleaved({"ours": lambda: ours(x), "vlfeat": lambda: theirs(x)}, repeats=5)
    print(summary(t), ratio(t, "vlfeat", "ours"), load_line())

``benchmarks/`` is not a package: a script in it imports this module as
``_timing`` (Python puts the script's folder first on ``sys.path``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

__all__ = ["interleaved", "interleaved_clocks", "load_line", "pinned", "ratio", "summary"]


def load_line() -> str:
    """The load average and core count, as one line to print next to a timing.

    Returns
    -------
    str
        For example ``"load average 1.42 1.10 0.95 (1, 5, 15 min), 2 cores"``.
    """
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min), {os.cpu_count()} cores"


def _allowed_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


@contextmanager
def pinned(threads: int = 1, cpus: Sequence[int] | None = None) -> Iterator[list[int]]:
    """Run the enclosed code on the same threads for every contestant, then restore the settings.

    Inside the block: every thread of the process (those it has on entry, and those
    created inside the block, which inherit it) may run only on ``cpus``
    (``os.sched_setaffinity`` of each ``/proc/self/task`` entry, where the platform has
    it: on Linux ``sched_setaffinity(0)`` alone pins only the calling thread), native
    thread pools (OpenBLAS, MKL, OpenMP) are limited to ``threads`` through
    threadpoolctl, Numba uses ``threads`` threads (``numba.set_num_threads``, capped at
    ``numba.config.NUMBA_NUM_THREADS``), VLFeat (cyvlfeat, when installed) ``threads``
    threads (``cyvlfeat.generic.generic.set_num_threads``: VLFeat keeps its own OpenMP
    thread count) and OpenCV ``threads`` threads (``cv2.setNumThreads``; 1 means none
    of its own).

    Parameters
    ----------
    threads : int, default 1
        Threads each side may use.
    cpus : sequence of int, optional
        CPU ids to pin the process to; default the first ``threads`` CPUs this
        process may use.

    Yields
    ------
    list of int
        The CPU ids the block runs on.

    Raises
    ------
    ValueError
        If ``threads`` is below 1 or more CPUs are asked for than this process may use.
    """
    if threads < 1:
        raise ValueError(f"pinned: threads must be at least 1, got {threads}")
    allowed = _allowed_cpus()
    chosen = list(cpus) if cpus is not None else allowed[:threads]
    if len(chosen) < threads or not set(chosen) <= set(allowed):
        raise ValueError(f"pinned: {threads} thread(s) on CPUs {chosen} but this process may use only {allowed}")
    undo: list[Callable[[], None]] = []
    try:
        if hasattr(os, "sched_setaffinity"):
            # os.sched_setaffinity(0) pins the calling thread only (Linux): pin every thread the
            # process already has (BLAS/OpenMP pools), so that no contestant runs on other CPUs
            for tid in _thread_ids():
                try:
                    before_t = os.sched_getaffinity(tid)
                    os.sched_setaffinity(tid, chosen)
                except OSError:  # the thread ended meanwhile
                    continue
                undo.append(lambda tid=tid, b=before_t: _set_affinity_quiet(tid, b))
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads)
        undo.append(limiter.restore_original_limits)
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a dependency of the project
            pass
        else:
            n_before = numba.get_num_threads()
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            undo.append(lambda: numba.set_num_threads(n_before))
        if "cyvlfeat" in sys.modules or _importable("cyvlfeat"):
            # VLFeat keeps its own thread count (OpenMP, default: all cores), outside threadpoolctl's view
            from cyvlfeat.generic import generic as vlg

            vl_before = vlg.get_max_threads()
            vlg.set_num_threads(threads)
            undo.append(lambda: vlg.set_num_threads(vl_before))
        if "cv2" in sys.modules or _importable("cv2"):
            import cv2

            cv_before = cv2.getNumThreads()
            cv2.setNumThreads(threads)
            undo.append(lambda: cv2.setNumThreads(cv_before))
        yield chosen
    finally:
        for f in reversed(undo):
            f()


def _thread_ids() -> list[int]:
    """Kernel ids of this process's threads (``/proc/self/task``), or ``[0]`` (the caller) elsewhere."""
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:
        return [0]


def _set_affinity_quiet(tid: int, cpus) -> None:
    try:
        os.sched_setaffinity(tid, cpus)
    except OSError:  # the thread ended meanwhile
        pass


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def interleaved_clocks(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    *,
    warmup: int = 1,
    verbose: bool = True,
    file=None,
) -> dict[str, dict[str, list[float]]]:
    """:func:`interleaved` on both clocks at once: each pass's wall time and this process's CPU time.

    Parameters
    ----------
    fns : dict of str to callable
        Name -> function of no arguments (one timed pass).
    repeats : int
        Timed passes per contestant (at least 1).
    warmup : int, default 1
        Untimed calls per contestant before the first timed round.
    verbose : bool, default True
        Print :func:`load_line` before and after the timed rounds.
    file : file-like, optional
        Where to print (default ``sys.stdout``).

    Returns
    -------
    dict
        ``{"wall": {name: [s, ...]}, "cpu": {name: [s, ...]}}``: per contestant the
        ``repeats`` pass times in seconds, wall (``time.perf_counter``) and CPU
        (``time.process_time``: every thread of this process, not worker processes),
        in the order they ran.

    Raises
    ------
    ValueError
        If ``fns`` is empty, ``repeats`` < 1 or ``warmup`` < 0.
    """
    if not fns:
        raise ValueError("interleaved: no function to time")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"interleaved: repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    out = file if file is not None else sys.stdout
    for f in fns.values():
        for _ in range(warmup):
            f()
    if verbose:
        print(f"  [timing] before: {load_line()}", file=out, flush=True)
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            t, c = time.perf_counter(), time.process_time()
            f()
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - t)
    if verbose:
        print(f"  [timing] after:  {load_line()}", file=out, flush=True)
    return {"wall": wall, "cpu": cpu}


def interleaved(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    *,
    warmup: int = 1,
    clock: str = "wall",
    verbose: bool = True,
    file=None,
) -> dict[str, list[float]]:
    """Time each contestant ``repeats`` times, interleaved: ``a, b, a, b, ...``.

    Every function is first called ``warmup`` times untimed (compilation,
    imports, caches); then round ``r`` times each function once, in the order
    of ``fns``. Outputs are dropped at once, as a streaming pipeline does.

    Parameters
    ----------
    fns : dict of str to callable
        Name -> function of no arguments (one timed pass: for example all the
        images, one after another).
    repeats : int
        Timed passes per contestant (at least 1).
    warmup : int, default 1
        Untimed calls per contestant before the first timed round.
    clock : {"wall", "cpu"}, default "wall"
        ``"wall"``: ``time.perf_counter``; ``"cpu"``: ``time.process_time``
        (this process's CPU time in seconds, every thread; robust to other
        processes sharing the cores, but blind to time spent in worker processes).
    verbose : bool, default True
        Print :func:`load_line` before and after the timed rounds.
    file : file-like, optional
        Where to print (default ``sys.stdout``).

    Returns
    -------
    dict of str to list of float
        Name -> the ``repeats`` pass times in seconds, in the order they ran.

    Raises
    ------
    ValueError
        If ``fns`` is empty, ``repeats`` < 1, ``warmup`` < 0 or ``clock`` is unknown.
    """
    if clock not in ("wall", "cpu"):
        raise ValueError(f"interleaved: clock must be 'wall' or 'cpu', got {clock!r}")
    return interleaved_clocks(fns, repeats, warmup=warmup, verbose=verbose, file=file)[clock]


def summary(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Best and median pass of each contestant.

    Parameters
    ----------
    times : dict of str to list of float
        What :func:`interleaved` returns (seconds).

    Returns
    -------
    dict of str to dict
        Name -> ``{"best_s", "median_s", "repeats"}`` (seconds; repeats as a float count).
    """
    return {
        name: {"best_s": min(ts), "median_s": statistics.median(ts), "repeats": float(len(ts))}
        for name, ts in times.items()
    }


def ratio(times: dict[str, list[float]], slower: str, faster: str, *, stat: str = "best") -> float:
    """How many times faster ``faster`` ran than ``slower``: ``time(slower) / time(faster)``.

    Parameters
    ----------
    times : dict of str to list of float
        What :func:`interleaved` returns (seconds).
    slower, faster : str
        Names in ``times`` (the peer and ours, usually).
    stat : {"best", "median"}, default "best"
        Which pass of each to compare.

    Returns
    -------
    float
        The ratio (above 1: ``faster`` was faster).
    """
    pick = {"best": min, "median": statistics.median}[stat]
    return pick(times[slower]) / pick(times[faster])
