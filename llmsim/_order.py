"""Exact order statistics of a long float64 array by radix selection (Numba, cached on disk).

The summary's p50 and p99 of a run's delays need four order statistics of each of three
arrays of up to millions of values. numpy's partition (introselect) costs about 15 ms per
array at 1e6 values: two partitions each reorder the array. Here the values' bits, mapped
to unsigned keys in the floats' order, are counted 16 bits at a time: one pass over the
array counts the top 16 bits, a second collects the values in the bin that holds the
rank (and counts their next 16 bits), and the following passes run over that bin only,
which is small: about 2.5 ms per array at 1e6 values, and the array is only read.

A bin holding most of the array (a run of nearly equal values: tbt is often one value for
most calls) takes a pass over most of the array per 16 bits; ``simulate._order_stats``
finds such runs first, by sampling, and selects only between them.

Compiling it costs about 2 s of CPU, holding the GIL. The library and the command line
compile it on first use (``compile_here``); the dashboard's server must not freeze its
sessions for that, so it turns ``compile_here`` off: its compile process writes the
selection to Numba's cache after the kernel, and until it is there (``ready()``) the summary
selects with numpy's partitions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_SIGN = np.uint64(1 << 63)
_BINS = 1 << 16
_SORT_BELOW = 1024  # values left in a bin: sorted instead of counted again

# whether order_stats may be compiled in this process when Numba's cache lacks it
compile_here = True


@njit(cache=True, nogil=True, inline="always")
def _key(bits):
    """A float64's bits as an unsigned key in the floats' order: a negative float's bits
    all flipped, any other's sign bit set."""
    return ~bits if bits & _SIGN else bits | _SIGN


@njit(cache=True, nogil=True, inline="always")
def _digit(key, shift):
    """The 16 bits of key from bit shift up, as an index."""
    return np.int64((key >> np.uint64(shift)) & np.uint64(0xFFFF))


@njit(cache=True, nogil=True)
def _histogram(bits, shift):
    h = np.zeros(_BINS, np.int64)
    for i in range(bits.shape[0]):
        h[_digit(_key(bits[i]), shift)] += 1
    return h


@njit(cache=True, nogil=True)
def _bin_of(h, r):
    """(the bin of h holding rank r, the number of values in the bins below it)."""
    below = 0
    b = 0
    while below + h[b] <= r:
        below += h[b]
        b += 1
    return b, below


@njit(cache=True, nogil=True)
def _gather(bits, shift, b, size):
    """(the size values of bits whose digit at shift is b, the histogram of their digit at
    shift - 16 (zeros below bit 16), whether they are all the same bits)."""
    out = np.empty(size + 1, np.uint64)
    h = np.zeros(_BINS + 1, np.int64)
    nxt = shift >= 16
    first = np.uint64(0)
    for i in range(bits.shape[0]):
        if _digit(_key(bits[i]), shift) == b:
            first = bits[i]
            break
    diff = np.uint64(0)
    m = 0
    if size * 8 < bits.shape[0]:  # few in the bin: its branch is rarely taken, so well predicted
        for i in range(bits.shape[0]):
            v = bits[i]
            k = _key(v)
            if _digit(k, shift) == b:
                out[m] = v
                m += 1
                diff |= v ^ first
                if nxt:
                    h[_digit(k, shift - 16)] += 1
    else:  # many: without a branch on the value (a bin of a third would mispredict a third)
        for i in range(bits.shape[0]):
            v = bits[i]
            k = _key(v)
            inb = _digit(k, shift) == b
            out[m] = v  # kept only if in the bin: the next free place moves on then
            m += inb
            diff |= (v ^ first) * np.uint64(inb)
            if nxt:
                h[_digit(k, shift - 16) if inb else _BINS] += 1  # the last bin: ignored
    return out[:size], h[:_BINS], diff == 0


@njit(cache=True, nogil=True)
def _pick(bits, r):
    """sorted(floats of bits)[r] for a short bits (at most _SORT_BELOW values): an insertion
    sort, which compiles in a fraction of numpy's sort's time."""
    v = bits.view(np.float64).copy()
    for i in range(1, v.shape[0]):
        x = v[i]
        j = i - 1
        while j >= 0 and v[j] > x:
            v[j + 1] = v[j]
            j -= 1
        v[j + 1] = x
    return v[r]


@njit(cache=True, nogil=True)
def _narrow(bits, h, r, shift):
    """sorted(floats of bits)[r]; the keys of bits agree above bit shift + 16, and h counts
    their digits at shift."""
    while True:
        b, below = _bin_of(h, r)
        if h[b] == bits.shape[0]:  # all in the one bin: on to the next digit
            if shift < 16:
                return bits.view(np.float64)[0]  # every bit alike: one value
            shift -= 16
            h = _histogram(bits, shift)
            continue
        bits, h, alike = _gather(bits, shift, b, h[b])
        r -= below
        if alike:
            return bits.view(np.float64)[0]
        if bits.shape[0] <= _SORT_BELOW or shift < 16:
            return _pick(bits, r)
        shift -= 16


@njit(cache=True, nogil=True)
def order_stats(x, ks, out):
    """out[j] = sorted(x)[ks[j]] for the ascending ranks ks (int64); x: 1-D contiguous
    float64 without NaN, left as it is. Returns out (float64, as long as ks)."""
    bits = x.view(np.uint64)
    top = np.int64(48)  # not a literal 48: one compiled copy of each callee, not one per constant
    h1 = _histogram(bits, top)
    cur = -1  # the first-level bin whose values are in cand
    cand, h2, alike, base = bits[:0], h1, False, 0
    for j in range(ks.shape[0]):
        k = ks[j]
        b, below = _bin_of(h1, k)
        if h1[b] == bits.shape[0]:
            out[j] = _narrow(bits, h1, k, top)
            continue
        if b != cur:  # ranks in the same first-level bin share its values
            cand, h2, alike = _gather(bits, top, b, h1[b])
            cur, base = b, below
        r = k - base
        if alike:
            out[j] = cand.view(np.float64)[0]
        elif cand.shape[0] <= _SORT_BELOW:
            out[j] = _pick(cand, r)
        else:
            out[j] = _narrow(cand, h2, r, top - 16)
    return out


def on_disk() -> bool:
    """Whether Numba's cache holds order_stats (loading it takes about 0.1 s). A surprise
    counts as "no", so a server never compiles it (numpy's partitions, as before)."""
    from llmsim._kernel_cache import in_cache
    return in_cache(order_stats, False)


def ready() -> bool:
    """Whether a call of order_stats runs without compiling it here, or may compile it."""
    return bool(order_stats.signatures) or compile_here or on_disk()
