"""Running the dataset-scale steps on joblib backends, a dask cluster included.

Every parallel step (image cache, vocabulary sampling, encoding, prediction)
maps a module-level function over independent tasks through :func:`imap`.
The backend is a joblib backend name: ``"loky"`` (processes, the default),
``"threading"``, ``"multiprocessing"``, ``"sequential"`` or ``"dask"``.  For
``"dask"`` the tasks go to the ``dask.distributed`` cluster of the active
client, which :func:`dask_client` opens (a scheduler address, or a
:class:`~dask.distributed.LocalCluster` on this machine).

joblib knows the ``"dask"`` backend only through its ``parallel_config``
context (``Parallel(backend="dask")`` alone is refused as an unknown
backend), and that backend needs an active client: :func:`backend_config`
does both, and says clearly when no client is open.

The tasks of a cluster run in other processes, possibly with another working
folder: every path handed to a task must be absolute (callers resolve them).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator

#: Backends the library accepts (joblib's, plus ``"dask"`` through a client).
BACKENDS = ("loky", "threading", "multiprocessing", "sequential", "dask")


def _active_dask_client():
    try:
        from distributed import get_client
    except ImportError:
        raise ValueError("backend 'dask' needs the cluster extra: pip install 'phow-baseline[cluster]'") from None
    try:
        return get_client()
    except ValueError:
        raise ValueError(
            "backend 'dask' needs an open dask.distributed client: use "
            "phow_baseline.parallel.dask_client(scheduler) (the CLI opens one for --backend dask)"
        ) from None


@contextlib.contextmanager
def backend_config(backend: str | None):
    """Joblib's ``parallel_config`` for ``backend`` (``None``: leave joblib's default, loky).

    ``"dask"`` requires an active ``dask.distributed`` client (see
    :func:`dask_client`); without one this raises at once
    (a ``ValueError``) rather than failing inside joblib.

    Parameters
    ----------
    backend : str or None
        One of :data:`BACKENDS`, or None to leave joblib's configuration as
        it is.

    Yields
    ------
    None
        The block runs with ``backend`` as joblib's backend.

    Raises
    ------
    ValueError
        An unknown backend, or ``"dask"`` without the ``distributed``
        package or without an open client.
    """
    from joblib import parallel_config

    if backend is None:
        yield
        return
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "dask":
        _active_dask_client()
    with parallel_config(backend=backend):
        yield


def imap(
    fn: Callable, tasks: Iterable[tuple], *, n_jobs: int = -1, backend: str | None = None, ordered: bool = False
) -> Iterator:
    """Yield ``fn(*task)`` for every task, computed in parallel on ``backend``.

    Results come as they finish (``ordered=False``) or in task order.  With
    ``n_jobs == 1`` and no backend the tasks run here, one after the other.

    Parameters
    ----------
    fn : callable
        A module-level function (picklable, for process and cluster
        backends).
    tasks : iterable of tuple
        The positional arguments of each call; consumed into a list first.
        Paths in them must be absolute for a cluster (see the module notes).
    n_jobs : int, default=-1
        Parallel workers, as joblib counts them (-1: one per core).
    backend : str or None, default=None
        One of :data:`BACKENDS`; None uses joblib's current backend (loky
        unless a ``parallel_config`` is active).
    ordered : bool, default=False
        Yield the results in task order rather than as they finish.

    Yields
    ------
    object
        ``fn(*task)`` for each task; nothing when ``tasks`` is empty.
    """
    from joblib import Parallel, delayed

    tasks = list(tasks)
    if not tasks:
        return
    if backend is None and n_jobs == 1:
        for t in tasks:
            yield fn(*t)
        return
    with backend_config(backend):
        # every joblib backend in use here, dask included (joblib >= 1.3), can stream results
        par = Parallel(n_jobs=n_jobs, return_as="generator" if ordered else "generator_unordered")
        yield from par(delayed(fn)(*t) for t in tasks)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None):
    """Open a ``dask.distributed`` client for the block; close it (and any cluster it made) after.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``).  ``None``
        starts a :class:`~dask.distributed.LocalCluster` on this machine: one
        single-threaded worker process per core (``n_workers`` to choose),
        no dashboard (so that two runs never compete for its port).
    n_workers : int, optional
        Worker processes of the local cluster (default: ``os.cpu_count()``;
        0 or negative also means that).  Ignored with ``scheduler``.

    Yields
    ------
    distributed.Client
        The open client (the active client inside the block).
    """
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        n = n_workers if n_workers and n_workers > 0 else (os.cpu_count() or 1)
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        )
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def dask_client_active() -> bool:
    """Whether a ``dask.distributed`` client is open in this process.

    Returns
    -------
    bool
        False as well when ``distributed`` is not installed.
    """
    try:
        from distributed import get_client
    except ImportError:
        return False
    try:
        get_client()
    except ValueError:
        return False
    return True
