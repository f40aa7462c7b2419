"""Workloads: arrival processes, token-length distributions and request traces.

Every distribution knows its mean and variance (so the load is known before a run) and
its largest possible value (so a request that can never fit is refused before a run).
Lengths are integers >= 1; times are seconds.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np


from llmsim.errors import ConfigError  # noqa: F401  (re-exported)


def _num(table: dict, key: str, where: str, *, positive=True, integer=False, minimum=None,
         maximum=None):
    if key not in table:
        raise ConfigError(f"{where}.{key}: missing (required)")
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}.{key}: {v!r} is not a number")
    if isinstance(v, int) and not -2**63 <= v < 2**63:  # beyond float and int64 (no echo: 4,300 digits)
        # a whole-number bound in full (a seed's "at most 9.22337e+18" read as a float)
        allowed = (f"; allowed: at most {maximum:,}" if isinstance(maximum, int) else
                   f"; allowed: at most {maximum:g}" if maximum is not None else "")
        raise ConfigError(f"{where}.{key}: a whole number of {len(str(abs(v))):,} digits is out of range{allowed}")
    if integer and (not float(v).is_integer()):
        raise ConfigError(f"{where}.{key}: {v!r} must be a whole number")
    if not math.isfinite(v):
        raise ConfigError(f"{where}.{key}: {v!r} must be finite")
    if positive and v <= 0:
        raise ConfigError(f"{where}.{key}: {v!r} must be > 0")
    if minimum is not None and v < minimum:
        raise ConfigError(f"{where}.{key}: {v!r} must be >= {minimum}")
    if maximum is not None and v > maximum:
        raise ConfigError(f"{where}.{key}: {v!r} must be <= {maximum}")
    return int(v) if integer else float(v)


def _check_keys(table: dict, allowed: set[str], where: str):
    extra = set(table) - allowed
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")


MAX_TOKENS = 10_000_000  # largest single prompt or output a distribution may produce


# ----------------------------------------------------------------------- lengths


@dataclass(frozen=True)
class Constant:
    value: int
    name = "constant"

    def sample(self, rng, n):
        return np.full(n, self.value, dtype=np.int64)

    @property
    def mean(self):
        return float(self.value)

    @property
    def var(self):
        return 0.0

    @property
    def max_value(self):
        return self.value

    def to_table(self):
        return {"dist": "constant", "value": self.value}


@dataclass(frozen=True)
class Uniform:
    """Integers low..high inclusive, equally likely."""
    low: int
    high: int
    name = "uniform"

    def sample(self, rng, n):
        return rng.integers(self.low, self.high + 1, size=n, dtype=np.int64)

    @property
    def mean(self):
        return (self.low + self.high) / 2

    @property
    def var(self):
        k = self.high - self.low + 1
        return (k * k - 1) / 12

    @property
    def max_value(self):
        return self.high

    def to_table(self):
        return {"dist": "uniform", "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Geometric:
    """Number of trials to the first success, support 1, 2, ...; p = 1/mean."""
    mean_value: float
    name = "geometric"

    def sample(self, rng, n):
        if self.mean_value == 1:
            return np.ones(n, dtype=np.int64)
        return rng.geometric(1.0 / self.mean_value, size=n).astype(np.int64, copy=False)

    @property
    def mean(self):
        return float(self.mean_value)

    @property
    def var(self):
        p = 1.0 / self.mean_value
        return (1 - p) / (p * p)

    @property
    def max_value(self):
        return math.inf

    def quantile(self, q):
        p = 1.0 / self.mean_value
        if p >= 1:
            return 1
        return math.ceil(math.log1p(-q) / math.log1p(-p))

    def to_table(self):
        return {"dist": "geometric", "mean": self.mean_value}


@functools.lru_cache(maxsize=1024)
def _pmf_moments(dist) -> tuple[float, float]:
    """(mean, variance) of a length law from its probabilities, once per law (the laws are
    frozen dataclasses, equal when their fields are): a table reaches up to a million
    values, and validation, theory and the work budget each read the moments many times."""
    k, p = dist._pmf()
    m = (k * p).sum()
    return float(m), float((k * k * p).sum() - m * m)


class _PmfMoments:
    """Exact mean and variance of a length law given by its probabilities (`_pmf()`:
    values k and probabilities p)."""

    @property
    def mean(self):
        return _pmf_moments(self)[0]

    @property
    def var(self):
        return _pmf_moments(self)[1]


@dataclass(frozen=True)
class Lognormal(_PmfMoments):
    """round(X) clipped to [1, max], X lognormal with mean `mean` and coefficient of
    variation `cv` (of X itself, before rounding and clipping). The reported mean and
    variance are exact for the clipped, rounded distribution."""
    mean_x: float
    cv: float
    max_tokens: int
    name = "lognormal"

    @property
    def _mu_sigma(self):
        s2 = math.log1p(self.cv * self.cv)
        return math.log(self.mean_x) - s2 / 2, math.sqrt(s2)

    def sample(self, rng, n):
        mu, sigma = self._mu_sigma
        x = rng.lognormal(mu, sigma, size=n)
        np.rint(x, out=x)
        np.clip(x, 1, self.max_tokens, out=x)
        return x.astype(np.int64)

    def _pmf(self):
        mu, sigma = self._mu_sigma
        k = np.arange(1, self.max_tokens + 1, dtype=float)
        # P(rint(X) = k) = P(k - 0.5 <= X < k + 0.5); ends absorb the clipped tails
        edges = np.concatenate(([0.0], k[:-1] + 0.5))
        z = (np.log(np.maximum(edges, 1e-300)) - mu) / (sigma * math.sqrt(2))
        from scipy.special import erf  # vectorized: math.erf in a loop took 0.3 s at max 1e6
        cdf = 0.5 * (1 + erf(z))
        cdf[0] = 0.0
        cdf = np.append(cdf, 1.0)
        return k, np.diff(cdf)

    @property
    def max_value(self):
        return self.max_tokens

    def to_table(self):
        return {"dist": "lognormal", "mean": self.mean_x, "cv": self.cv, "max": self.max_tokens}


@dataclass(frozen=True)
class Empirical:
    """Resampled uniformly (with replacement) from observed values, e.g. a trace column."""
    values: tuple
    source: str = ""
    name = "empirical"

    def sample(self, rng, n):
        arr = np.asarray(self.values, dtype=np.int64)
        return arr[rng.integers(0, len(arr), size=n)]

    @property
    def mean(self):
        return float(np.mean(self.values))

    @property
    def var(self):
        return float(np.var(self.values))

    @property
    def max_value(self):
        return int(max(self.values))

    def to_table(self):
        if self.source:
            path, col = self.source.rsplit(":", 1)
            return {"dist": "empirical", "trace": path, "column": col}
        return {"dist": "empirical", "values": list(self.values)}


# Poisson probabilities as scipy.stats.poisson computes them (its pmf, cdf and ppf, bit for bit:
# tests/test_verdict_theory.py), from scipy.special alone: importing scipy.stats takes 0.3-0.7 s,
# and vLLM's and orca's theory (their Markov chains) ask for these in every first verdict of a
# dashboard's server. scipy.special comes with the theory's scipy.optimize.
def poisson_pmf(k, mu):
    """P(N = k) for N ~ Poisson(mu): k integers >= 0, mu >= 0 (arrays broadcast)."""
    from scipy.special import gammaln, xlogy
    return np.clip(np.exp(xlogy(k, mu) - gammaln(k + 1) - mu), 0, 1)


def poisson_cdf(k, mu):
    """P(N <= k) for N ~ Poisson(mu): 0 below k = 0 (arrays broadcast)."""
    from scipy.special import pdtr
    k, mu = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(mu, dtype=float))
    out = np.zeros(k.shape)
    ok = k >= 0
    out[ok] = np.clip(pdtr(np.floor(k[ok]), mu[ok]), 0, 1)
    return out


def poisson_ppf(q: float, mu: float) -> float:
    """The least k with P(N <= k) >= q, for 0 < q < 1 (as a float, like scipy.stats)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"poisson_ppf: q must lie in (0, 1); got {q}")
    from scipy.special import pdtr, pdtrik
    vals = math.ceil(pdtrik(q, mu))
    vals1 = max(vals - 1, 0)
    return float(vals1 if pdtr(vals1, mu) >= q else vals)


@dataclass(frozen=True)
class PoissonLength(_PmfMoments):
    """Poisson(mean) token counts, a draw of 0 counted as 1 (the paper's Rybko-Stolyar
    example draws Poisson(32) and Poisson(512) lengths; P(0) is e^-mean). The reported mean
    and variance are those of the law with that floor."""
    mean_value: float
    name = "poisson"

    def sample(self, rng, n):
        x = rng.poisson(self.mean_value, size=n)
        np.maximum(x, 1, out=x)
        return x.astype(np.int64, copy=False)

    def _pmf(self):
        hi = int(self.quantile(1 - 1e-15)) + 1
        k = np.arange(0, hi + 1)
        p = poisson_pmf(k, self.mean_value)
        k = np.maximum(k, 1).astype(float)
        return k, p / p.sum()

    @property
    def max_value(self):
        return math.inf

    def quantile(self, q):
        return max(1, int(poisson_ppf(q, self.mean_value)))

    def to_table(self):
        return {"dist": "poisson", "mean": self.mean_value}


@dataclass(frozen=True)
class _TabulatedLength(_PmfMoments):
    """A law on 1..max given by its probabilities: sampled by inverse CDF, with exact
    mean and variance."""

    def _pmf(self):  # pragma: no cover - subclasses
        raise NotImplementedError

    def sample(self, rng, n):
        k, p = self._pmf()
        cdf = np.cumsum(p)
        cdf /= cdf[-1]
        i = np.searchsorted(cdf, rng.random(n), side="right")
        return k[np.minimum(i, len(k) - 1)].astype(np.int64)


@dataclass(frozen=True)
class Zipf(_TabulatedLength):
    """Bounded Zipf: P(k) proportional to k^-s on k = 1..max (heavy-tailed lengths)."""
    s: float
    max_tokens: int
    name = "zipf"

    def _pmf(self):
        k = np.arange(1, self.max_tokens + 1, dtype=float)
        w = k ** -self.s
        return k, w / w.sum()

    @property
    def max_value(self):
        return self.max_tokens

    def to_table(self):
        return {"dist": "zipf", "s": self.s, "max": self.max_tokens}


@dataclass(frozen=True)
class BoundedPareto(_TabulatedLength):
    """round(X), X bounded Pareto with shape alpha on [low, high] (density proportional to
    x^-(alpha+1)); the reported mean and variance are those of the rounded law."""
    alpha: float
    low: float
    high: int
    name = "bounded_pareto"

    def _cdf(self, x):
        x = np.clip(x, self.low, self.high)
        a, L, H = self.alpha, self.low, float(self.high)
        return (1 - (L / x) ** a) / (1 - (L / H) ** a)

    def _pmf(self):
        k = np.arange(max(1, int(math.floor(self.low + 0.5))), self.high + 1, dtype=float)
        edges = np.concatenate((k - 0.5, [k[-1] + 0.5]))
        c = self._cdf(edges)
        c[0], c[-1] = 0.0, 1.0
        return k, np.diff(c)

    @property
    def max_value(self):
        return self.high

    def to_table(self):
        return {"dist": "bounded_pareto", "alpha": self.alpha, "low": self.low, "high": self.high}


LENGTH_DISTS = ("constant", "uniform", "geometric", "lognormal", "empirical", "poisson", "zipf",
                "bounded_pareto")


def length_dist(table, where: str, base_dir: Path | None = None):
    """Build a length distribution from its TOML table (see docs/scenario-format.md)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table like {{ dist = \"constant\", value = 512 }}, got {table!r}")
    kind = table.get("dist")
    if kind == "constant":
        _check_keys(table, {"dist", "value"}, where)
        return Constant(_num(table, "value", where, integer=True, maximum=MAX_TOKENS))
    if kind == "uniform":
        _check_keys(table, {"dist", "low", "high"}, where)
        lo = _num(table, "low", where, integer=True, maximum=MAX_TOKENS)
        hi = _num(table, "high", where, integer=True, maximum=MAX_TOKENS)
        if hi < lo:
            raise ConfigError(f"{where}.high: {hi} must be >= low ({lo})")
        return Uniform(lo, hi)
    if kind == "geometric":
        _check_keys(table, {"dist", "mean"}, where)
        return Geometric(_num(table, "mean", where, minimum=1, maximum=MAX_TOKENS / 100))
    if kind == "lognormal":
        _check_keys(table, {"dist", "mean", "cv", "max"}, where)
        return Lognormal(_num(table, "mean", where, minimum=1, maximum=MAX_TOKENS),
                         _num(table, "cv", where, maximum=20),
                         _num(table, "max", where, integer=True, maximum=1_000_000))
    if kind == "poisson":
        _check_keys(table, {"dist", "mean"}, where)
        return PoissonLength(_num(table, "mean", where, minimum=1, maximum=1_000_000))
    if kind == "zipf":
        _check_keys(table, {"dist", "s", "max"}, where)
        return Zipf(_num(table, "s", where, minimum=0.01, maximum=10),
                    _num(table, "max", where, integer=True, maximum=1_000_000))
    if kind == "bounded_pareto":
        _check_keys(table, {"dist", "alpha", "low", "high"}, where)
        alpha = _num(table, "alpha", where, minimum=0.01, maximum=10)
        low = _num(table, "low", where, minimum=1, maximum=1_000_000)
        high = _num(table, "high", where, integer=True, maximum=1_000_000)
        if high <= low:
            raise ConfigError(f"{where}.high: {high} must be > low ({low:g})")
        return BoundedPareto(alpha, low, high)
    if kind == "empirical":
        _check_keys(table, {"dist", "values", "trace", "column"}, where)
        if "values" in table:
            vals = table["values"]
            if not isinstance(vals, list) or not vals or not all(
                    isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_TOKENS for v in vals):
                raise ConfigError(f"{where}.values: must be a non-empty list of whole numbers in [1, {MAX_TOKENS}]")
            return Empirical(tuple(vals))
        if "trace" in table:
            col = table.get("column", "prompt_tokens")
            if col not in ("prompt_tokens", "output_tokens"):
                raise ConfigError(f"{where}.column: {col!r}; allowed: 'prompt_tokens', 'output_tokens'")
            tr = TraceSource.make(base_dir).load(table["trace"], f"{where}.trace")
            vals = tr.prompt if col == "prompt_tokens" else tr.output
            return Empirical(tuple(int(v) for v in vals), f"{table['trace']}:{col}")
        raise ConfigError(f"{where}: empirical needs 'values' (a list) or 'trace' (a CSV path)")
    raise ConfigError(f"{where}.dist: unknown value {kind!r}; allowed: {', '.join(LENGTH_DISTS)}")


# ----------------------------------------------------------------------- traces


@dataclass(frozen=True)
class Trace:
    """Requests as recorded: arrival seconds (from 0), prompt and output tokens."""
    times: np.ndarray = field(repr=False)
    prompt: np.ndarray = field(repr=False)
    output: np.ndarray = field(repr=False)
    path: str = ""

    def __hash__(self):
        return hash((self.path, len(self.times), float(self.times.sum()), int(self.prompt.sum())))

    def __eq__(self, other):
        return isinstance(other, Trace) and self.path == other.path and \
            np.array_equal(self.times, other.times) and np.array_equal(self.prompt, other.prompt) \
            and np.array_equal(self.output, other.output)


TRACE_DIR = Path(__file__).parent / "data" / "traces"
TRACE_COLUMNS = ("arrival_time_s", "prompt_tokens", "output_tokens")
MAX_TRACE_BYTES = 256 * 1024 * 1024  # a trace file read by path (library); uploads are capped lower
MAX_TRACE_ROWS = 20_000_000
TRACE_POLICIES = ("any", "shipped+uploaded")


_WHOLE = re.compile(r"\s*[+-]?[0-9]+\s*")  # a token count as a CSV writes it (ASCII digits)


_TRACE_ROW = np.dtype([("t", "f8"), ("p", "i8"), ("o", "i8")])
# the characters of plain rows: NumPy strips more around a number than Python's float() does
# ("0.0\x1c" is a number to it; tests/test_bad_input.py found it)
_PLAIN_ROWS = re.compile(r"[0-9.eE+\-, \t\n]*")


def _parse_plain_trace(text: str, name: str) -> Trace | None:
    """The trace of a plain, valid CSV, read by NumPy's C reader (``np.loadtxt``), or None when
    the text is not plain (its rows hold more than digits, signs, points, exponents, commas,
    spaces, tabs and line ends) or any row is not what ``parse_trace`` accepts: the row reader
    then decides, and says which line is wrong. It is only a faster road to the same result:
    NumPy parses each field as Python's float() and int() do (``PyOS_string_to_double``; whole
    numbers only for the token counts), and every check of the row reader is made on the arrays
    (tests/test_bad_input.py compares the two on generated texts). A 5 MB trace of 831,660 rows:
    0.26 s and a peak of 48 MB, against 1.7 s with the GIL held and 80 MB (a hostile visitor
    uploaded such files one after another to a hosted demo)."""
    if "\r" in text:  # Windows line ends, as the row reader reads them (a lone \r: not plain)
        text = text.replace("\r\n", "\n")
    head, _, body = text.partition("\n")
    if tuple(h.strip() for h in head.split(",")) != TRACE_COLUMNS or not _PLAIN_ROWS.fullmatch(body) \
            or body.count("\n") > MAX_TRACE_ROWS:  # (max_rows would allocate that many rows up front)
        return None
    try:
        with warnings.catch_warnings():  # an empty body warns; the reader below says so
            warnings.simplefilter("ignore")
            rows = np.loadtxt(io.StringIO(body), delimiter=",", dtype=_TRACE_ROW, ndmin=1, comments=None,
                              quotechar=None)
    except ValueError:
        return None
    t, p, o = rows["t"], rows["p"], rows["o"]
    if not 1 <= len(t) <= MAX_TRACE_ROWS:
        return None
    if not (np.isfinite(t).all() and t[0] >= 0 and (t[1:] >= t[:-1]).all()
            and 1 <= p.min() and p.max() <= MAX_TOKENS and 1 <= o.min() and o.max() <= MAX_TOKENS):
        return None
    return Trace(t - t[0], np.ascontiguousarray(p), np.ascontiguousarray(o), name)


def parse_trace(text: str, name: str = "trace", quote: bool = True) -> Trace:
    """Parse trace CSV text with header arrival_time_s,prompt_tokens,output_tokens.
    Malformed rows raise ConfigError naming the line. quote=False keeps the file's
    content out of every message (a file the person reading the error did not supply):
    the line and the column are named, never the text."""
    if text.startswith("\ufeff"):  # a byte-order mark, as spreadsheet programs write
        text = text[1:]
    plain = _parse_plain_trace(text, name)
    return plain if plain is not None else _read_trace_rows(text, name, quote)


def _read_trace_rows(text: str, name: str, quote: bool) -> Trace:
    """``parse_trace``'s reader of record: row by row, every refusal naming its line."""
    # lines end at \n, \r\n or \r only (str.splitlines() also broke a row at \x1c-\x1e, \x85,
    # \x0b, \x0c, \u2028, \u2029 and cut a quoted field's line break out, gluing "1\n0" into 10)
    rows = csv.reader(io.StringIO(text, newline=""))
    # Python's int() and float() also read "1_000", Arabic-Indic or full-width digits: a CSV's
    # numbers are ASCII digits (and, for the time, a sign, a decimal point and an exponent).
    # Checked row by row only when the text holds such characters at all
    odd = not text.isascii() or "_" in text
    try:
        header = next(rows, None)
    except csv.Error:
        header = ["?"]
    if header is None:
        raise ConfigError(f"{name}: empty file; expected a CSV header {','.join(TRACE_COLUMNS)}")
    header = [h.strip() for h in header]
    if tuple(header) != TRACE_COLUMNS:
        got = f"header is {','.join(header)!r}" if quote else "the first line is not the header"
        raise ConfigError(f"{name}: {got}; expected {','.join(TRACE_COLUMNS)}")
    times, prompt, output = [], [], []
    while True:
        i = rows.line_num + 1  # the row's first line (a quoted field may span several)
        try:
            row = next(rows, None)
        except csv.Error:
            raise ConfigError(f"{name} line {rows.line_num}: not a CSV row") from None
        if row is None:
            break
        if not row or all(not x.strip() for x in row):
            continue
        text_row = repr(",".join(row))  # cut after repr: escapes (\u2028) made a cut row 6 times longer
        shown = (f": {text_row if len(text_row) <= 120 else text_row[:120] + ' …'}" if quote else "")
        if len(row) != 3:
            raise ConfigError(f"{name} line {i}: expected 3 fields, got {len(row)}{shown}")
        try:
            if odd and not (row[0].isascii() and "_" not in row[0] and _WHOLE.fullmatch(row[1])
                            and _WHOLE.fullmatch(row[2])):
                raise ValueError
            t = float(row[0])
            p = int(row[1])
            o = int(row[2])
        except ValueError:
            raise ConfigError(f"{name} line {i}: not numbers{shown} "
                              "(arrival_time_s a number, token counts whole numbers)") from None
        if not math.isfinite(t) or t < 0:
            val = f" {row[0]!r}" if quote else ""
            raise ConfigError(f"{name} line {i}: arrival_time_s{val} must be a finite number >= 0")
        if times and t < times[-1]:
            val = f" {t} is before the previous row ({times[-1]})" if quote else " is before the previous row's"
            raise ConfigError(f"{name} line {i}: arrival_time_s{val}; rows must be in time order")
        if not (1 <= p <= MAX_TOKENS and 1 <= o <= MAX_TOKENS):
            val = f", got {p}, {o}" if quote else ""
            raise ConfigError(f"{name} line {i}: token counts must be in [1, {MAX_TOKENS}]{val}")
        if len(times) >= MAX_TRACE_ROWS:
            raise ConfigError(f"{name}: more than {MAX_TRACE_ROWS:,} request rows; allowed: at most "
                              f"{MAX_TRACE_ROWS:,}")
        times.append(t)
        prompt.append(p)
        output.append(o)
    if not times:
        raise ConfigError(f"{name}: no request rows after the header")
    t0 = times[0]
    return Trace(np.array(times) - t0, np.array(prompt, dtype=np.int64),
                 np.array(output, dtype=np.int64), name)


def shipped_traces() -> list[str]:
    """File names of the traces shipped in llmsim/data/traces/."""
    return sorted(f.name for f in TRACE_DIR.glob("*.csv")) if TRACE_DIR.is_dir() else []


def read_capped(path, limit: int, label: str) -> bytes:
    """The bytes of a file read by path, at most `limit` of them (never more is read);
    ConfigError prefixed by `label` when it cannot be read or is larger."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read ({exc.strerror or 'error'})") from None
    if len(data) > limit:
        raise ConfigError(f"{label}: larger than {limit:,} bytes; allowed: at most {limit:,} bytes")
    return data


def utf8_text(data: bytes, label: str, expected: str = "") -> str:
    """`data` decoded as UTF-8 (a byte-order mark dropped); ConfigError prefixed by `label`
    when it is not text, followed by "; expected <expected>" when given."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: not a text (UTF-8) file" + (f"; expected {expected}" if expected else "")) \
            from None


def _decode_trace_bytes(data: bytes, name: str) -> str:
    return utf8_text(data, name, f"CSV with header {','.join(TRACE_COLUMNS)}")


@dataclass(frozen=True)
class TraceSource:
    """Where a scenario's trace paths may point (the `trace_policy` of load_scenario).

    policy "any" (command line, API): `traces` by name first, then a path as given —
    relative paths against `base_dir` (the scenario file's folder; the working folder
    when None) — then a shipped trace by file name.
    policy "shipped+uploaded" (a hosted dashboard): only `traces` (files the visitor
    uploaded, by name) and the traces shipped in llmsim/data/traces/ by file name; any
    other path is refused without touching the file system.

    traces: name -> bytes or str (CSV content) or Trace.
    """
    base_dir: Path | None = None
    traces: tuple = ()  # ((name, content), ...), hashable
    policy: str = "any"

    @staticmethod
    def make(base_dir=None, traces=None, policy: str = "any") -> "TraceSource":
        if isinstance(base_dir, TraceSource):
            return base_dir
        if policy not in TRACE_POLICIES:
            raise ConfigError(f"trace_policy: unknown value {policy!r}; allowed: {', '.join(TRACE_POLICIES)}")
        items = tuple(sorted((traces or {}).items(), key=lambda kv: str(kv[0])))
        for k, _ in items:
            if not isinstance(k, str):
                raise ConfigError(f"traces: names must be strings, got {k!r}")
        return TraceSource(Path(base_dir) if base_dir is not None else None, items, policy)

    def load(self, path, where: str) -> Trace:
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{where}: {path!r} must be a trace file name")
        given = dict(self.traces)
        if path in given:
            v = given[path]
            if isinstance(v, Trace):
                return v
            text = _decode_trace_bytes(v, path) if isinstance(v, (bytes, bytearray)) else str(v)
            return parse_trace(text, path)  # the caller supplied it: its lines may be quoted
        shipped = shipped_traces()
        if self.policy == "shipped+uploaded":
            if path in shipped:
                return _read_trace_file(TRACE_DIR / path, path)
            allowed = ", ".join(shipped + [repr(k) + " (uploaded)" for k in given]) or "none"
            raise ConfigError(
                f"{where}: {path!r} is not available here; a scenario in the dashboard can use only the "
                f"traces shipped with llmsim or a trace CSV uploaded in this session; allowed: {allowed}")
        p = Path(path)
        if not p.is_absolute() and self.base_dir is not None:
            p = self.base_dir / p
        if p.is_file():
            return _read_trace_file(p, path)
        if "/" not in path and "\\" not in path and path in shipped:
            return _read_trace_file(TRACE_DIR / path, path)
        raise ConfigError(f"{where}: trace {path!r}: file not found"
                          + (f" (looked in {self.base_dir})" if self.base_dir is not None and not Path(path).is_absolute() else "")
                          + f"; shipped traces: {', '.join(shipped) or 'none'}")


def _read_trace_file(p: Path, name: str) -> Trace:
    """A trace file read from disk: size-capped, a byte-order mark accepted, and no line
    of it quoted in an error."""
    data = read_capped(p, MAX_TRACE_BYTES, f"trace {name!r}")
    return parse_trace(_decode_trace_bytes(data, f"trace {name!r}"), str(name), quote=False)


def load_trace(path, base_dir=None, traces=None, policy: str = "any", where: str = "trace path") -> Trace:
    """Load a trace CSV by path (see TraceSource for where it may come from)."""
    return TraceSource.make(base_dir, traces, policy).load(path, where)


@dataclass(frozen=True)
class TraceLengths:
    """A trace column replayed in its recorded order (looped when more are asked for)."""
    trace: Trace
    column: str
    name = "trace"

    @property
    def values(self):
        return self.trace.prompt if self.column == "prompt_tokens" else self.trace.output

    def sample(self, rng, n):
        v = self.values
        return np.resize(v, n).astype(np.int64)

    @property
    def mean(self):
        return float(self.values.mean())

    @property
    def var(self):
        return float(self.values.var())

    @property
    def max_value(self):
        return int(self.values.max())

    def to_table(self):
        return None  # implied by the trace arrival process


# ---------------------------------------------------------------------- arrivals


@dataclass(frozen=True)
class Poisson:
    rate: float
    name = "poisson"
    cv = 1.0
    sorted_times = True  # times() is nondecreasing (a cumulative sum of draws >= 0)

    def times(self, rng, n):
        x = rng.exponential(1.0 / self.rate, size=n)
        return np.cumsum(x, out=x)  # in place: one array fewer

    def to_table(self):
        return {"process": "poisson", "rate": self.rate}


@dataclass(frozen=True)
class Deterministic:
    rate: float
    name = "deterministic"
    cv = 0.0
    sorted_times = True

    def times(self, rng, n):
        return np.arange(1, n + 1, dtype=float) / self.rate

    def to_table(self):
        return {"process": "deterministic", "rate": self.rate}


@dataclass(frozen=True)
class GammaArrivals:
    """Renewal arrivals with gamma inter-arrival times: mean 1/rate, coefficient of
    variation cv (cv > 1: bursty; cv = 1: Poisson)."""
    rate: float
    cv: float
    name = "gamma"
    sorted_times = True  # a cumulative sum of draws >= 0

    def times(self, rng, n):
        shape = 1.0 / (self.cv * self.cv)
        x = rng.gamma(shape, 1.0 / (self.rate * shape), size=n)
        return np.cumsum(x, out=x)

    def to_table(self):
        return {"process": "gamma", "rate": self.rate, "cv": self.cv}


@dataclass(frozen=True)
class TraceArrivals:
    """Replays a trace's arrival times (and, unless lengths are given, its lengths).

    replay: the rows a run replays (its num_requests; set by the Scenario), None for the
    whole trace. The rate and cv are the replayed part's: a run of the first 1,000 rows
    offers their load, not the whole trace's."""
    trace: Trace
    rate_scale: float = 1.0
    replay: int | None = None
    name = "trace"

    @property
    def replayed_times(self) -> np.ndarray:
        """The arrival times a run replays once through (all rows when it loops the trace)."""
        t = self.trace.times
        return t if self.replay is None or self.replay >= len(t) else t[:max(self.replay, 1)]

    @property
    def rate(self):
        t = self.replayed_times
        span = float(t[-1])
        return (len(t) - 1) / span * self.rate_scale if span > 0 else math.inf

    @property
    def cv(self):
        gaps = np.diff(self.replayed_times)
        return float(gaps.std() / gaps.mean()) if len(gaps) > 1 and gaps.mean() > 0 else 0.0

    @staticmethod
    def _period(last: float, rows: int) -> float:
        """How far apart the trace's copies lie when a run loops it (last: its last arrival,
        sped up): its span and one mean gap."""
        return last + last / max(rows - 1, 1)

    def last_time(self, n: int) -> float:
        """The n-th arrival's time (``times(rng, n)[-1]``, the same operations on the two rows
        it needs) without building the n times."""
        t = self.trace.times
        reps, pos = divmod(n - 1, len(t))
        return float(t[pos] / self.rate_scale + self._period(t[-1] / self.rate_scale, len(t)) * reps)

    def times(self, rng, n):
        base = self.trace.times / self.rate_scale
        if n <= len(base):
            return base[:n].copy()
        # loop the trace end to end, one mean gap apart, when more requests are asked for
        period = self._period(base[-1], len(base))
        reps = -(-n // len(base))
        return (base[None, :] + period * np.arange(reps)[:, None]).ravel()[:n]

    def to_table(self):
        t = {"process": "trace", "path": self.trace.path}
        if self.rate_scale != 1.0:
            t["speedup"] = self.rate_scale
        return t


ARRIVALS = ("poisson", "deterministic", "gamma", "trace")
MAX_RATE = 1e6
MIN_RATE = 1e-9  # below this a run of any length sees no arrival (and 1/rate overflows)


def arrival_process(table, where: str, base_dir: Path | None = None):
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table like {{ process = \"poisson\", rate = 3.0 }}, got {table!r}")
    kind = table.get("process")
    if kind == "poisson":
        _check_keys(table, {"process", "rate"}, where)
        return Poisson(_num(table, "rate", where, minimum=MIN_RATE, maximum=MAX_RATE))
    if kind == "deterministic":
        _check_keys(table, {"process", "rate"}, where)
        return Deterministic(_num(table, "rate", where, minimum=MIN_RATE, maximum=MAX_RATE))
    if kind == "gamma":
        _check_keys(table, {"process", "rate", "cv"}, where)
        return GammaArrivals(_num(table, "rate", where, minimum=MIN_RATE, maximum=MAX_RATE),
                             _num(table, "cv", where, minimum=0.01, maximum=100))
    if kind == "trace":
        _check_keys(table, {"process", "path", "speedup"}, where)
        scale = _num(table, "speedup", where, minimum=1e-6, maximum=1e4) if "speedup" in table else 1.0
        return TraceArrivals(TraceSource.make(base_dir).load(table.get("path"), f"{where}.path"), scale)
    raise ConfigError(f"{where}.process: unknown value {kind!r}; allowed: {', '.join(ARRIVALS)}")


def with_rate(arrival, rate: float):
    """The same arrival process at another mean rate (requests per second)."""
    if isinstance(arrival, Poisson):
        return Poisson(rate)
    if isinstance(arrival, Deterministic):
        return Deterministic(rate)
    if isinstance(arrival, GammaArrivals):
        return GammaArrivals(rate, arrival.cv)
    if isinstance(arrival, TraceArrivals):
        return replace(arrival, rate_scale=rate * arrival.rate_scale / arrival.rate)
    raise TypeError(arrival)
