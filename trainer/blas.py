"""One BLAS thread while the trainer runs, without changing the caller's process for good.

The statistics pass and the optimiser run their products on one BLAS thread each (the pass has
its own worker threads; the optimiser's products are gemv-sized, where spinning OpenBLAS workers
only cost time).  One thread is also what makes the statistics independent of how many BLAS
threads the machine would otherwise use: a product split over threads sums in another order.

``threadpoolctl.threadpool_limits`` is process-wide, and two overlapping uses from different
threads (``GridSearchCV(n_jobs=2)`` on the threading backend) leave the process at one thread
for good: the second saves the first's limit as "the original" and restores it.  :func:`one_blas_thread`
counts its users under a lock: the first saves the caller's limits and sets one thread, the last
restores them, from whichever thread leaves last.  While a fit runs, other threads of the process
share OpenBLAS's one pool and so run on one BLAS thread too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import threadpoolctl

_lock = threading.Lock()
_users = 0
_limiter = None  # the threadpoolctl limiter that holds the caller's original limits


def _release_openblas_control() -> None:
    """Let the next change of OpenBLAS's pool come from any thread (newer threadpoolctl releases keep a
    "controlling thread" for OpenBLAS's process-wide pthreads pool and ignores changes from others;
    ``clear_controlling_thread(force=True)`` is its documented way to reset it)."""
    controller = getattr(threadpoolctl, "OpenBLASController", None)
    clear = getattr(controller, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


def _limit() -> None:
    global _limiter
    _release_openblas_control()
    _limiter = threadpoolctl.ThreadpoolController().limit(limits=1, user_api="blas")
    _release_openblas_control()


def _restore() -> None:
    global _limiter
    _release_openblas_control()
    _limiter.restore_original_limits()
    _limiter = None
    _release_openblas_control()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Context manager: BLAS on one thread inside, the caller's limits restored by the last user
    to leave.  Re-entrant and safe to use from several threads at once."""
    global _users
    with _lock:
        if _users == 0:
            _limit()
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _restore()
