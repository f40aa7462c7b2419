"""What one request to the hosted demo may ask for, and the message when it asks for more.

The library accepts much larger runs (see llmsim.config); these bounds keep a shared
server responsive. Bigger runs belong on the command line (``python -m llmsim run``).
"""

from __future__ import annotations

MAX_REQUESTS = 200_000          # arrivals per scheduler (or per policy) in one run
MIN_REQUESTS = 1_000            # fewer leave the stability test with too little to go on
MIN_TIMELINE, MAX_TIMELINE = 2, 300   # requests in a Timeline page run (every iteration recorded)
MAX_TIMELINE_ROWS = 60_000      # its iteration log's rows (one per decode token and prefill chunk): ~6 MB drawn
MAX_RATE = 10_000.0             # requests (or workflows) per second
MIN_RATE = 0.001
MIN_LOAD, MAX_LOAD = 0.01, 5.0  # the load rho input: rate = rho x the theory capacity
PRESET_LOAD = 0.8               # where a workload preset starts (its published rate suits other hardware)
NEAR_BOUNDARY = 0.05            # |rate / capacity - 1| below this: a single run may go either way
MAX_BUDGET = 65_536             # tokens per iteration
MAX_BATCH = 8_192               # requests per iteration (0 = no limit)
MIN_KV, MAX_KV = 1_000, 50_000_000
MAX_LENGTH = 65_536             # tokens of one prompt or output
MAX_ITER_MS = 10_000.0          # milliseconds of one iteration's fixed part
MAX_SEED = 2**31 - 1
MAX_PROBES = 16                 # capacity search: probes per scheduler
MAX_SWEEP = 16                  # capacity page: arrival rates per throughput curve
MAX_PRIORITY = 1000
# a network the agents page edits: each engine, workflow and step gets its own inputs (a page
# run draws them all: 1,300 engines took 65 s of server CPU per view before the file was refused)
MAX_UI_ENGINES = 16
MAX_UI_WORKFLOWS = 16
MAX_UI_STEPS = 64
# the theory analyses each different replica of a pool (identical ones once): up to ~0.2 s
# each at the largest budget, so 3 pools of 64 different replicas held a core for 36 s a view
MAX_UI_DISTINCT_REPLICAS = 16   # different engine configurations in all (a plain engine counts 1), as MAX_UI_ENGINES
MAX_TOML_BYTES = 200_000        # a scenario file, uploaded or inflated from a link
MAX_LINK_CHARS = 16_000         # a link's compressed `toml` parameter (the page writes at most 4,000)
MAX_TRACE_UPLOAD_BYTES = 5 * 1024 * 1024  # a trace CSV (server.maxUploadSize is 5 MB too)
# what Streamlit's upload endpoint may keep in memory (llmsim_ui/upload_guard.py): a session's
# widgets hold a few files (a scenario TOML per page, a trace CSV, a sweep Parquet)
UPLOAD_FILES_PER_SESSION = 12
UPLOAD_SESSION_BYTES = 25 * 1024 * 1024        # five files at server.maxUploadSize
UPLOAD_TOTAL_BYTES = 128 * 1024 * 1024         # all sessions together: 25 files at server.maxUploadSize

CLI_HINT = "for bigger runs use the command line: python -m llmsim run scenario.toml"


def check(label: str, value, lo, hi, unit: str = "", why: str = "") -> str | None:
    """None if lo <= value <= hi, else a sentence naming the field, the value and the range;
    `why` follows a value above the range only (where bigger runs can go: said of a value
    below the minimum it made no sense)."""
    if value is None:
        return f"{label}: missing; allowed: {_fmt(lo)} to {_fmt(hi)}{unit}"
    if lo <= value <= hi:
        return None
    side = "above this demo's limit of" if value > hi else "below the minimum of"
    bound = hi if value > hi else lo
    tail = f" ({why})" if why and value > hi else ""
    return f"{label}: {_fmt(value)}{unit} is {side} {_fmt(bound)}{unit}{tail}."


def _fmt(x) -> str:
    if isinstance(x, int):
        # a link's b=1e308 is a whole number of 309 digits: shown as 1e+308, not echoed whole;
        # up to 21 digits it is written out (a seed of 2**63 - 1 read "9.22337e+18", as if
        # rounded; found as a hostile visitor would)
        return f"{x:,}" if abs(x) < 10**21 else f"{float(x):.6g}"
    if isinstance(x, float):
        return f"{x:,.6g}"
    return str(x)
