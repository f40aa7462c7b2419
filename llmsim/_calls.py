"""One pass over the kernel's call rows for the summary (Numba, cached on disk).

The summary needs, per finished call, three delays and the tokens; read with numpy, each
column is a pass over the call rows (112-byte int rows, 40-byte float rows) and each
selection a fresh array: about 20 ms at 1e6 calls. This loop reads every row once (about
9 ms), and large runs read it in two halves on two threads (``finished_delays_split``).
Column indices come in as arguments, so a change of llmsim/state.py cannot leave a stale
compiled copy reading the wrong columns.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import threading

from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")  # x / 0: inf, as numpy
def finished_delays(ci, cf, c_state, st_done, c_p, c_d, f_ready, f_first, f_finish, ttft, tbt, e2e):
    """For the calls (rows of ci, cf) in state st_done, in call order: ttft = first - ready,
    tbt = (finish - first) / output tokens, e2e = finish - ready written to the front of
    ttft, tbt, e2e (each at least as long as ci). Returns (finished calls, their prompt +
    output tokens). The arithmetic is numpy's: float64 differences, the int64 count
    converted to float64 before dividing."""
    j = 0
    tokens = 0
    for i in range(ci.shape[0]):
        if ci[i, c_state] == st_done:
            r = cf[i, f_ready]
            f = cf[i, f_first]
            fn = cf[i, f_finish]
            d = ci[i, c_d]
            ttft[j] = f - r
            tbt[j] = (fn - f) / d
            e2e[j] = fn - r
            tokens += ci[i, c_p] + d
            j += 1
    return j, tokens


# Below this many calls a second thread costs more than it saves (a thread start is ~0.1 ms;
# the pass over 2**17 calls ~1.5 ms).
PARALLEL_MIN = 2 ** 17


def two_threads(n: int) -> bool:
    """Whether work over n calls (or lengths, or delays) is worth a second thread here."""
    return n >= PARALLEL_MIN and cores() >= 2


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Background:
    """fn() started on a thread of its own; ``result()`` waits for it and returns its value
    (or raises its exception)."""

    def __init__(self, fn):
        self._out = self._err = None

        def run():
            try:
                self._out = fn()
            except BaseException as e:  # re-raised by result(), in the caller's thread
                self._err = e

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self):
        self._thread.join()

    def result(self):
        self.join()
        if self._err is not None:
            raise self._err
        return self._out


def in_parallel(*fns):
    """Run the functions at once, the first in this thread and each other in a thread of its
    own (they must release the GIL to gain: compiled nogil code, numpy's sorts and ufuncs);
    their results in order. An exception in any of them is raised here, after all finish."""
    others = [Background(f) for f in fns[1:]]
    try:
        first = fns[0]()
    finally:
        for b in others:
            b.join()
    return [first] + [b.result() for b in others]


def finished_delays_split(ci, cf, c_state, st_done, c_p, c_d, f_ready, f_first, f_finish, ttft, tbt, e2e):
    """finished_delays with the call rows in two halves, one per thread (the pass is bound by
    memory traffic, 152 bytes per call: two cores read it about twice as fast). The second
    half's delays are written after the first half's rows, then moved down to follow the
    first half's: the same arrays, values and order as one pass."""
    n = ci.shape[0]
    if not two_threads(n):
        return finished_delays(ci, cf, c_state, st_done, c_p, c_d, f_ready, f_first, f_finish, ttft, tbt, e2e)
    h = n // 2
    cols = (c_state, st_done, c_p, c_d, f_ready, f_first, f_finish)
    (j0, tok0), (j1, tok1) = in_parallel(
        lambda: finished_delays(ci[:h], cf[:h], *cols, ttft, tbt, e2e),
        lambda: finished_delays(ci[h:], cf[h:], *cols, ttft[h:], tbt[h:], e2e[h:]))
    if j0 < h and j1 > 0:
        for x in (ttft, tbt, e2e):
            x[j0:j0 + j1] = x[h:h + j1]  # overlapping ranges: numpy copies safely
    return j0 + j1, tok0 + tok1


MADV_POPULATE_WRITE = 23  # Linux >= 5.14
_CHUNK = 2 << 20          # one transparent huge page


def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        f = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    f.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    f.restype = ctypes.c_int
    return f


_MADVISE = _madvise()


def prefault(n: int, *arrays) -> Background | None:
    """Map the pages of fresh arrays (numpy's large zeros/empty: untouched memory) on a
    second thread while this thread goes on: the kernel then writes its call rows into pages
    the OS has already zeroed instead of stopping at each first touch (about 8% of a W1 run
    at 1e6 calls). The arrays are rows of the same calls (or workflows), filled front to
    back together, so the thread maps the same share of each in turn, a huge page (2 MiB) of
    the largest at a time. ``madvise(MADV_POPULATE_WRITE)`` maps pages as a write would
    without changing their contents, so it may race the kernel's writes to the same rows.
    Only for n rows worth a thread (``two_threads``), and only where the OS has it (Linux
    5.14 or later; elsewhere, or on refusal, it stops and nothing changes). Returns the
    thread (its result: bytes mapped), or None."""
    if _MADVISE is None or not two_threads(n):
        return None
    page = mmap.PAGESIZE
    ranges = []
    for a in arrays:
        lo = -(-a.ctypes.data // page) * page  # whole pages inside the array
        hi = (a.ctypes.data + a.nbytes) // page * page
        if hi > lo:
            ranges.append((lo, hi))
    if not ranges:
        return None
    steps = -(-max(hi - lo for lo, hi in ranges) // _CHUNK)

    def run(arrays=arrays):  # holds the arrays: their memory stays mapped while it runs
        done = 0
        for k in range(steps):
            for lo, hi in ranges:
                a = lo + (hi - lo) * k // steps // page * page
                b = hi if k == steps - 1 else lo + (hi - lo) * (k + 1) // steps // page * page
                if b > a:
                    if _MADVISE(a, b - a, MADV_POPULATE_WRITE) != 0:
                        return done  # not supported here (EINVAL) or no memory: the kernel faults as before
                    done += b - a
        return done

    return Background(run)
