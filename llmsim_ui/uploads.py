"""Everything a visitor hands the dashboard: uploaded files and shared-link parameters.

Each reader bounds its bytes before it decodes, inflates or parses anything, and every
scenario a visitor supplies is read under the trace policy "shipped+uploaded": its
traces can only be the ones shipped with llmsim or CSVs uploaded in the session, never a
path on the server (see llmsim.workload.TraceSource). Errors are ConfigError naming the
field or file, and never quote a file the visitor did not supply.
"""

from __future__ import annotations

import base64
import binascii
import zlib

import llmsim
from llmsim import ConfigError
from llmsim.workload import utf8_text
from llmsim_ui import limits as L

TRACE_POLICY = "shipped+uploaded"


def encode_link_toml(text: str) -> str:
    """Scenario TOML as a compact URL-safe link parameter (zlib + base64, no padding)."""
    return base64.urlsafe_b64encode(zlib.compress(text.encode(), 9)).decode().rstrip("=")


def decode_link_toml(s, field: str = "toml") -> str:
    """The scenario TOML carried by a link parameter. The parameter's length is capped
    before decoding, and inflation stops at L.MAX_TOML_BYTES (zlib's bufsize is only a
    starting size, not a cap: decompressobj with max_length is)."""
    bad = f"link parameter {field}: not a scenario saved by this page (damaged or cut short)"
    if not isinstance(s, str):
        raise ConfigError(bad)
    if len(s) > L.MAX_LINK_CHARS:
        raise ConfigError(f"link parameter {field}: {len(s):,} characters is above this demo's limit of "
                          f"{L.MAX_LINK_CHARS:,}; share a long scenario as a TOML file instead")
    try:
        data = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        raise ConfigError(bad) from None
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, L.MAX_TOML_BYTES + 1)
    except zlib.error:
        raise ConfigError(bad) from None
    if len(out) > L.MAX_TOML_BYTES or d.unconsumed_tail:
        raise ConfigError(f"link parameter {field}: the scenario inflates to more than {L.MAX_TOML_BYTES:,} "
                          f"bytes; allowed: at most {L.MAX_TOML_BYTES:,} bytes of TOML")
    if not d.eof:
        raise ConfigError(bad)
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(bad) from None


def _bytes_of(uploaded, cap: int, what: str) -> bytes:
    name = getattr(uploaded, "name", "upload")
    size = getattr(uploaded, "size", None)
    if isinstance(size, int) and size > cap:
        raise ConfigError(f"{name}: {size:,} bytes is above this demo's limit of {cap:,} bytes for {what}")
    data = uploaded.getvalue()
    if len(data) > cap:
        raise ConfigError(f"{name}: {len(data):,} bytes is above this demo's limit of {cap:,} bytes for {what}")
    return data


def read_toml_upload(uploaded) -> str:
    """The text of an uploaded scenario TOML (at most L.MAX_TOML_BYTES, UTF-8, a byte-order
    mark accepted)."""
    data = _bytes_of(uploaded, L.MAX_TOML_BYTES, "a scenario file")
    return utf8_text(data, getattr(uploaded, "name", "upload"), "a scenario TOML")


def read_trace_upload(uploaded) -> bytes:
    """The bytes of an uploaded trace CSV (at most L.MAX_TRACE_UPLOAD_BYTES)."""
    return _bytes_of(uploaded, L.MAX_TRACE_UPLOAD_BYTES, "a trace CSV")


def scenario_from_text(text: str, traces: dict | None = None, name: str | None = None):
    """A visitor's scenario TOML -> Scenario, traces limited to the shipped ones and
    `traces` (name -> CSV bytes the visitor uploaded). ConfigError prefixed by `name`."""
    if len(text.encode()) > L.MAX_TOML_BYTES:
        raise ConfigError(f"{name or 'scenario'}: above this demo's limit of {L.MAX_TOML_BYTES:,} bytes")
    try:
        from llmsim.config import parse_toml
        table = parse_toml(text[1:] if text.startswith("\ufeff") else text, "scenario")
        _check_editable(table)  # before validating (and drawing) hundreds of engines
        _check_tabulated_lengths(table)  # before their tables are built
        return llmsim.scenario_from_table(table, traces=traces, trace_policy=TRACE_POLICY)
    except ConfigError as exc:
        if name:
            raise ConfigError(f"{name}: {exc}") from None
        raise


# length laws whose exact moments come from a table over 1..max (llmsim.workload), and the
# field that sets max: a link may carry 128 of them, each a different table
# geometric and poisson: their mean, the bound of the page's own mean input (theory tabulates
# their survival up to ~28 means: a link's geometric mean of 100,000 built 2.8 M entries per step)
_TABULATED = {"lognormal": "max", "zipf": "max", "bounded_pareto": "high", "geometric": "mean", "poisson": "mean"}


def _check_tabulated_lengths(table: dict) -> None:
    """The dashboard's length bound (L.MAX_LENGTH, that of its own inputs) on the laws that
    build a table over 1..max: a million-value table takes ~40 ms, so a link of 128 different
    ones held a server core for 5 s; at 65,536 they take 0.3 s in all."""
    wl = table.get("workload")
    places = [("workload", wl)] if isinstance(wl, dict) else []
    workflows = table.get("workflows")
    for i, w in enumerate(workflows if isinstance(workflows, list) else []):
        steps = w.get("steps") if isinstance(w, dict) else None
        for j, step in enumerate(steps if isinstance(steps, list) else []):
            places.append((f"workflows[{i}].steps[{j}]", step))
    for where, d in places:
        for key in ("prompt_tokens", "output_tokens"):
            law = d.get(key) if isinstance(d, dict) else None
            field = _TABULATED.get(law.get("dist")) if isinstance(law, dict) else None
            v = law.get(field) if field else None
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > L.MAX_LENGTH:
                raise ConfigError(f"{where}.{key}.{field}: {v:,} is above this demo's limit of {L.MAX_LENGTH:,} "
                                  f"tokens ({L.CLI_HINT})")


def _check_editable(table: dict) -> None:
    """A network the agents page can show: at most L.MAX_UI_ENGINES engines, L.MAX_UI_WORKFLOWS
    workflows and L.MAX_UI_STEPS steps in all (each gets inputs on the page)."""
    engines, workflows = table.get("engines"), table.get("workflows")
    steps = sum(len(w.get("steps", [])) for w in workflows if isinstance(w, dict)) \
        if isinstance(workflows, list) else 0
    for what, items, hi in (("engines", engines, L.MAX_UI_ENGINES), ("workflows", workflows, L.MAX_UI_WORKFLOWS)):
        if isinstance(items, list) and len(items) > hi:
            raise ConfigError(f"{what}: {len(items):,} is above this demo's limit of {hi} ({L.CLI_HINT})")
    if steps > L.MAX_UI_STEPS:
        raise ConfigError(f"workflows: {steps:,} steps in all is above this demo's limit of {L.MAX_UI_STEPS} "
                          f"({L.CLI_HINT})")
    tables = engines if isinstance(engines, list) else [table.get("engine")]
    distinct = sum(_distinct_replicas(e) for e in tables if isinstance(e, dict))
    if distinct > L.MAX_UI_DISTINCT_REPLICAS:
        where = "engines" if isinstance(engines, list) else "engine"
        raise ConfigError(f"{where}: {distinct:,} different replica configurations in all is above this demo's "
                          f"limit of {L.MAX_UI_DISTINCT_REPLICAS} (identical replicas count once; {L.CLI_HINT})")


def _distinct_replicas(engine: dict) -> int:
    """Engine configurations the theory analyses for one engine table: its different replica
    tables (a list), else 1."""
    reps = engine.get("replicas")
    if not isinstance(reps, list):
        return 1
    return max(1, len({repr(sorted(t.items(), key=lambda kv: str(kv[0]))) if isinstance(t, dict) else repr(t)
                       for t in reps}))

