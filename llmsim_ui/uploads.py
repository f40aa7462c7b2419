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
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{getattr(uploaded, 'name', 'upload')}: not a text (UTF-8) file; expected a "
                          "scenario TOML") from None


def read_trace_upload(uploaded) -> bytes:
    """The bytes of an uploaded trace CSV (at most L.MAX_TRACE_UPLOAD_BYTES)."""
    return _bytes_of(uploaded, L.MAX_TRACE_UPLOAD_BYTES, "a trace CSV")


def scenario_from_text(text: str, traces: dict | None = None, name: str | None = None):
    """A visitor's scenario TOML -> Scenario, traces limited to the shipped ones and
    `traces` (name -> CSV bytes the visitor uploaded). ConfigError prefixed by `name`."""
    if len(text.encode()) > L.MAX_TOML_BYTES:
        raise ConfigError(f"{name or 'scenario'}: above this demo's limit of {L.MAX_TOML_BYTES:,} bytes")
    try:
        return llmsim.loads_scenario(text, traces=traces, trace_policy=TRACE_POLICY)
    except ConfigError as exc:
        if name:
            raise ConfigError(f"{name}: {exc}") from None
        raise


def read_parquet_upload(uploaded, max_bytes: int, max_uncompressed: int = L.MAX_PARQUET_UNCOMPRESSED,
                        max_rows: int = L.MAX_PARQUET_ROWS):
    """A DataFrame from an uploaded Parquet file. The file's footer is read first and the
    file refused if its columns would inflate beyond `max_uncompressed` bytes or hold more
    than `max_rows` rows: a few MB of zstd can decompress to gigabytes."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    name = getattr(uploaded, "name", "upload")
    data = _bytes_of(uploaded, max_bytes, "a Parquet file")
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        meta = pf.metadata
        # decoded, not just decompressed: run-length and dictionary encodings shrink a column
        # far below its in-memory size, so count at least 8 bytes per value as well
        size = max(sum(meta.row_group(i).column(j).total_uncompressed_size
                       for i in range(meta.num_row_groups) for j in range(meta.num_columns)),
                   8 * meta.num_rows * meta.num_columns)
    except (pa.ArrowException, OSError, ValueError, IndexError) as exc:
        raise ConfigError(f"{name}: not a readable Parquet file ({type(exc).__name__})") from None
    if meta.num_rows > max_rows:
        raise ConfigError(f"{name}: {meta.num_rows:,} rows is above this demo's limit of {max_rows:,}")
    if size > max_uncompressed:
        raise ConfigError(f"{name}: its columns inflate to {size:,} bytes, above this demo's limit of "
                          f"{max_uncompressed:,} bytes")
    try:
        return pf.read().to_pandas()
    except (pa.ArrowException, OSError, ValueError, MemoryError) as exc:
        raise ConfigError(f"{name}: not a readable Parquet file ({type(exc).__name__})") from None
