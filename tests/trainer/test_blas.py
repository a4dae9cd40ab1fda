"""trainer/blas.py: one BLAS thread inside, the caller's limits back afterwards, also when several
threads fit at once (scikit-learn's threading backend)."""

import threading

from threadpoolctl import threadpool_info, threadpool_limits

from direct_edge.trainer.blas import one_blas_thread


def blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_one_blas_thread_inside_and_the_callers_limit_after():
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        with one_blas_thread():
            assert set(blas_threads()) == {1}
            with one_blas_thread():  # re-entrant
                assert set(blas_threads()) == {1}
            assert set(blas_threads()) == {1}
        assert blas_threads() == before


def test_overlapping_users_in_threads_restore_the_callers_limit():
    """The failure this guards against: the second of two overlapping threadpool_limits(1) saved
    the first's 1 as the original and left the whole process on one thread."""
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        entered, release = threading.Barrier(3), threading.Event()

        def fit_like() -> None:
            with one_blas_thread():
                entered.wait()
                release.wait()

        workers = [threading.Thread(target=fit_like) for _ in range(2)]
        for w in workers:
            w.start()
        entered.wait()
        assert set(blas_threads()) == {1}
        release.set()
        for w in workers:
            w.join()
        assert blas_threads() == before
