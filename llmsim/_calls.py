"""One pass over the kernel's call rows for the summary (Numba, cached on disk).

The summary needs, per finished call, three delays and the tokens; read with numpy, each
column is a pass over the call rows (112-byte int rows, 40-byte float rows) and each
selection a fresh array: about 20 ms at 1e6 calls. This loop reads every row once (about
9 ms). Column indices come in as arguments, so a change of llmsim/state.py cannot leave a
stale compiled copy reading the wrong columns.
"""

from __future__ import annotations

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
