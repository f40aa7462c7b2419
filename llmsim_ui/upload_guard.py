"""Bounds on the files Streamlit's upload endpoint keeps in the server's memory.

Streamlit stores every file a session PUTs to ``/_stcore/upload_file/<session>/<id>`` until
the file is deleted or the session ends, with no limit on their number or total size
(``server.maxUploadSize`` bounds one file). A script can therefore fill the server's memory
through any open session, 5 MB at a time. ``install()`` wraps the running server's
upload manager so that an upload is refused with an HTTP error, before it is stored, when

- the session would hold more than ``limits.UPLOAD_FILES_PER_SESSION`` files or
  ``limits.UPLOAD_SESSION_BYTES`` bytes (429: a visitor's widgets hold a few small files),
- or all sessions together would hold more than ``limits.UPLOAD_TOTAL_BYTES`` and no room
  can be made fairly (503): before refusing, the files of sessions that are no longer
  connected go (Streamlit frees them only lazily), then the oldest files of the session
  holding the most bytes, as long as it holds more than the uploading session would. A
  script that opened a few sessions and filled the total used to refuse every other
  visitor's upload, even a 2 kB file, for as long as it stayed connected and minutes after.

The dashboard's widgets show the refusal as an upload error; deleting a file (the
widget's x) or closing the tab gives its room back. The server's start installs the guard
(``llmsim_ui/server_start.lifespan``, before any request is served); app.py installs it
again on every script run (idempotent: a server started otherwise gets it at the first
page view).
"""

from __future__ import annotations

import threading

from llmsim_ui import limits


class UploadRefused(Exception):
    """An upload over a bound, raised when no web framework's HTTP error is available."""


def _http_error(status: int, detail: str) -> Exception:
    try:  # Streamlit's server (Starlette) turns this into the response's status
        from starlette.exceptions import HTTPException
        return HTTPException(status_code=status, detail=detail)
    except ImportError:  # an older, Tornado-served Streamlit
        try:
            from tornado.web import HTTPError
            return HTTPError(status, reason=detail)
        except ImportError:
            return UploadRefused(f"{status}: {detail}")


def refusal(storage: dict, session_id: str, file_id: str, size: int) -> tuple[int, str] | None:
    """(HTTP status, reason) if storing a file of `size` bytes as `file_id` of `session_id`
    would pass a bound of ``limits``, else None; `storage` maps session -> {file id -> record
    with .data} (a file sent again under its id replaces itself)."""
    mine = {k: len(f.data) for k, f in storage.get(session_id, {}).items() if k != file_id}
    if len(mine) + 1 > limits.UPLOAD_FILES_PER_SESSION:
        return 429, (f"this session already holds {len(mine)} uploaded files, the most it may keep; "
                     "remove one (x) or reload the page")
    if sum(mine.values()) + size > limits.UPLOAD_SESSION_BYTES:
        return 429, (f"this session's uploads would pass {limits.UPLOAD_SESSION_BYTES // 2**20} MB; "
                     "remove one (x) or reload the page")
    others = sum(len(f.data) for s, files in storage.items() for k, f in files.items()
                 if not (s == session_id and k == file_id))
    if others + size > limits.UPLOAD_TOTAL_BYTES:
        return 503, "the server holds as many uploaded files as it may; try again in a few minutes"
    return None


def _connected(session_id: str) -> bool:
    """Whether the running server still has this session (True outside a server)."""
    try:
        from streamlit.runtime import Runtime
        return not Runtime.exists() or Runtime.instance().is_active_session(session_id)
    except Exception:  # another Streamlit's internals: never drop a file by mistake
        return True


def make_room(mgr, session_id: str, file_id: str, size: int, connected=_connected) -> bool:
    """Free room for `size` bytes (file `file_id` of `session_id`) beneath the total bound,
    fairly (see the module docstring); True if the file then fits. `connected(session)`
    says whether a session is still open."""
    for s in [s for s in list(mgr.file_storage) if s != session_id and not connected(s)]:
        mgr.remove_session_files(s)
    while True:
        with mgr._lock:
            held = {s: sum(len(f.data) for f in files.values()) for s, files in mgr.file_storage.items() if files}
            mine = held.get(session_id, 0) + size - (len(mgr.file_storage[session_id][file_id].data)
                                                    if file_id in mgr.file_storage.get(session_id, {}) else 0)
            others = sum(held.values()) - held.get(session_id, 0)
            if others + mine <= limits.UPLOAD_TOTAL_BYTES:
                return True
            victim = max((s for s in held if s != session_id), key=held.get, default=None)
            if victim is None or held[victim] <= mine:
                return False
            oldest = next(iter(mgr.file_storage[victim]))
        mgr.remove_file(victim, oldest)


def guard(mgr) -> bool:
    """Wrap `mgr.add_file` (a Streamlit MemoryUploadedFileManager) with the bounds; False if
    `mgr` is not the kind of manager this knows (then it is left as it is)."""
    if getattr(mgr, "_llmsim_upload_guard", False):
        return True
    if not (hasattr(mgr, "file_storage") and hasattr(mgr, "_lock") and hasattr(mgr, "add_file")):
        return False
    add = mgr.add_file
    order = threading.Lock()  # check and store as one step: two uploads at once cannot both pass

    def add_file(session_id, file):
        with order:
            with mgr._lock:  # the manager's own lock: a consistent view of its files
                refused = refusal(mgr.file_storage, session_id, file.file_id, len(file.data))
            if refused and refused[0] == 503 and make_room(mgr, session_id, file.file_id, len(file.data)):
                with mgr._lock:
                    refused = refusal(mgr.file_storage, session_id, file.file_id, len(file.data))
            if refused:
                raise _http_error(*refused)
            add(session_id, file)

    mgr.add_file = add_file
    mgr._llmsim_upload_guard = True
    return True


def install() -> bool:
    """Guard the running server's upload manager; False outside a server (AppTest, bare
    mode) or with a manager of a kind this does not know."""
    try:
        from streamlit.runtime import Runtime
        if not Runtime.exists():
            return False
        mgr = Runtime.instance().uploaded_file_mgr
    except Exception:  # a Streamlit without this runtime API: nothing to guard here
        return False
    return guard(mgr)
