"""The kernel's own source, run by the Python interpreter: results while Numba compiles.

A cold start compiles the kernel for 10 to 30 s (llmsim/_kernel_cache.py). The dashboard
does not make its first trajectory wait for that: it runs the first chunks of a live run
through ``python_version(core.run_kernel)`` -- the very functions Numba compiles, called
as plain Python on the same arrays -- and switches to the compiled kernel once it is
loaded. All the state lives in the arrays and the kernel resumes exactly where it stopped
(a chunked run equals an unchunked one), so a run that starts in Python and ends compiled
gives the same numbers, bit for bit, as one compiled throughout
(``tests/test_python_tier.py`` checks every shipped scenario, switched half-way).

It is 1,000 to 3,000 times slower than the compiled kernel (a few thousand simulated requests
per second): a tier for the first seconds, not a fallback. Same arithmetic: float64
operations in the same order (Numba compiles without fast-math, so no reassociation or fused
multiply-adds), int64 values far from overflow, Python's floor division and modulo, which
Numba reproduces.
"""

from __future__ import annotations

import threading
import types

from numba.core.dispatcher import Dispatcher

_lock = threading.Lock()
_memo: dict = {}      # id(Numba dispatcher) -> its plain-Python function
_globals: dict = {}   # id(a module's namespace) -> its copy with Python functions


def python_version(f):
    """The plain-Python function of a Numba-compiled one: its ``py_func``, re-bound to a
    copy of its module's namespace in which every compiled function (the ones it calls,
    and theirs) is replaced by its plain-Python version too. Compiles nothing; the real
    modules are left as they are."""
    with _lock:
        return _python(f)


def _python(f):
    if not isinstance(f, Dispatcher):  # NUMBA_DISABLE_JIT=1: already a Python function
        return f
    if id(f) in _memo:
        return _memo[id(f)]
    py = f.py_func
    g = _namespace(py.__globals__)
    fn = types.FunctionType(py.__code__, g, py.__name__, py.__defaults__, py.__closure__)
    _memo[id(f)] = fn
    return fn


def _namespace(mod_globals: dict) -> dict:
    key = id(mod_globals)
    if key not in _globals:
        g = dict(mod_globals)
        _globals[key] = g  # before the recursion: functions of a module call each other
        for name, v in mod_globals.items():
            if isinstance(v, Dispatcher):
                g[name] = _python(v)
    return _globals[key]
