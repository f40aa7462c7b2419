"""Keep Numba's on-disk cache honest.

Numba checks only the source file of the function it caches, but the kernel in core.py
inlines code from schedulers.py and state.py: after those change (a `git pull`, an
edit), a stale compiled kernel would be loaded silently. So a stamp of the three sources
sits beside the cache; when it differs, llmsim's cached kernels are dropped before Numba
looks at them.
"""

import hashlib
from pathlib import Path

_HERE = Path(__file__).parent
_SOURCES = ("core.py", "schedulers.py", "state.py")


def ensure_fresh_cache() -> None:
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((_HERE / name).read_bytes())
    stamp = digest.hexdigest()
    cache = _HERE / "__pycache__"
    mark = cache / "kernel-sources.sha256"
    try:
        if mark.is_file() and mark.read_text() == stamp:
            return
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        mark.write_text(stamp)
    except OSError:
        pass  # a read-only install: Numba then compiles in memory or uses its own dir
