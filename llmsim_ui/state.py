"""Page state: widgets' session-state keys, a saved copy, and the URL's query parameters.

Every input of a page is a ``Field``. Its widget key is ``"<page>.<name>"`` (results and
runs live under the same page prefix), its URL parameter is ``name``. A field's value
comes, in this order, from the widget (already in session state), the URL (a shared
link), the copy saved when the page last ran (Streamlit forgets the state of widgets that
were not drawn, e.g. after visiting another page, which also clears the URL), or its
default. At the end of a run ``publish`` writes the visible fields back to the URL, so the
address bar always holds a link that reproduces the view.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from llmsim_ui.limits import _fmt
from llmsim_ui.markdown import plain
from llmsim_ui.markdown import shown as _shown


_DIGITS = re.compile(r"[+-]?[0-9]{1,400}")  # a whole number as digits (a longer one is read as a float)


@dataclass(frozen=True)
class Field:
    """One input. kind: "float" | "int" | "str" (one of choices, if given) | "list"
    (comma-separated choices) | "bool". lo/hi bound numbers (inclusive)."""
    name: str
    default: Any
    kind: str = "float"
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()
    label: str = ""

    def parse(self, raw: str):
        """The value of a URL parameter; ValueError says what is wrong and what is allowed."""
        raw = str(raw).strip()
        if self.kind in ("float", "int"):
            try:
                if not raw.isascii() or "_" in raw:  # float() also reads "1_000" and non-ASCII digits
                    raise ValueError
                v = float(raw)
            except ValueError:
                raise ValueError(f"{_shown(raw)} is not a number") from None
            if not math.isfinite(v):
                raise ValueError(f"{_shown(raw)} is not a finite number")
            if self.kind == "int":
                if not v.is_integer():
                    raise ValueError(f"{_shown(raw)} is not a whole number")
                # digits are read as they are: through float() 2**63 - 1 became 2**63
                v = int(raw) if _DIGITS.fullmatch(raw) else int(v)
            return self.check(v)
        if self.kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{_shown(raw)} is not 1 or 0")
        if self.kind == "list":
            items = [x.strip() for x in raw.split(",") if x.strip()]
            return self.check(items)
        return self.check(raw)

    def check(self, v):
        """v itself if allowed, else ValueError naming what is allowed."""
        if self.kind in ("float", "int"):
            if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
                raise ValueError(f"{_fmt(v)} is outside the allowed range {_fmt(self.lo)} to {_fmt(self.hi)}")
            return float(v) if self.kind == "float" else int(v)
        if self.kind == "list":
            bad = [x for x in v if self.choices and x not in self.choices]
            if bad:
                raise ValueError(f"unknown value(s) {', '.join(_shown(x) for x in bad[:5])}"
                                 f"{' and more' if len(bad) > 5 else ''}; allowed: {', '.join(self.choices)}")
            return list(dict.fromkeys(v))
        if self.kind == "str" and self.choices and v not in self.choices:
            raise ValueError(f"unknown value {_shown(v)}; allowed: {', '.join(map(str, self.choices))}")
        return v

    def encode(self, v) -> str:
        if self.kind == "list":
            return ",".join(v)
        if self.kind == "bool":
            return "1" if v else "0"
        if self.kind == "float":
            return f"{v:.10g}"
        return str(v)


def _shown_value(f: Field, v) -> str:
    """A field's value in a message, numbers as the range beside them is written ("Using
    20000000 instead" beside "1,000 to 50,000,000"; a recheck as a new user would)."""
    return _fmt(v) if f.kind in ("int", "float") and isinstance(v, (int, float)) else f.encode(v)


@dataclass
class PageState:
    """The fields of one page and their values (see the module docstring)."""
    page: str
    fields: list[Field]
    url_errors: list[str] = field(default_factory=list)
    from_url: set[str] = field(default_factory=set)  # the fields this run's restore read from the URL
    url_refused: dict = field(default_factory=dict)  # field name -> index in url_errors of its message

    def __post_init__(self):
        self.by_name = {f.name: f for f in self.fields}

    def key(self, name: str) -> str:
        return f"{self.page}.{name}"

    @property
    def _saved(self) -> dict:
        return st.session_state.setdefault(f"{self.page}._saved", {})

    def restore(self, use_url: bool = True) -> "PageState":
        """Put every field's value in session state before its widget is drawn.
        use_url=False ignores the URL (its values belong to another view)."""
        qp = st.query_params if use_url else {}
        saved = self._saved
        for f in self.fields:
            k = self.key(f.name)
            if k in st.session_state:
                continue
            if f.name in qp:
                try:
                    st.session_state[k] = f.parse(qp[f.name])
                    self.from_url.add(f.name)
                    continue
                except ValueError as exc:
                    what = f.label or f.name
                    self.url_refused[f.name] = len(self.url_errors)
                    self.url_errors.append(
                        f"Link parameter {f.name}={_shown(qp[f.name])} ({what}): {exc}. "
                        f"Using {_shown_value(f, saved.get(f.name, f.default))} instead.")
            st.session_state[k] = saved.get(f.name, f.default)
        return self

    def used_instead(self, name: str, what: str) -> None:
        """Where a preset, the link's load or a file decides a refused link parameter's value,
        its message names that value (it named the field's default)."""
        if name in self.url_refused:
            i = self.url_refused[name]
            self.url_errors[i] = self.url_errors[i].rsplit(" Using ", 1)[0] + f" Using {what} instead."

    def get(self, name: str):
        return st.session_state.get(self.key(name), self.by_name[name].default)

    def w(self, name: str, options=None) -> dict:
        """Keyword arguments for the field's widget: its key and its current value as the
        widget's own default (value= / index= / default=).

        Passing the value although session state holds it matters: when the browser loses
        a widget's state (seen after a run interrupted by Stop and resumed), it reports the
        widget's default, which must then be the current value, not the first option or
        the minimum."""
        f = self.by_name[name]
        v = self.get(name)
        # persist_state="session": Streamlit keeps the widget's value while it is not drawn (another
        # page, or a panel that hides it). Without it, Streamlit dropped the widget's value on a page
        # switch and the value restore() had set before the widget first showed came back: a geometric
        # mean typed as 256 was 100 again after a visit to another page (found as a new user would).
        kw = {"key": self.key(name), "persist_state": "session"}
        if f.kind == "list":
            opts = list(options if options is not None else f.choices)
            kw["default"] = [x for x in v if x in opts]
        elif options is not None:
            opts = list(options)
            kw["index"] = opts.index(v) if v in opts else 0
        else:
            kw["value"] = v
        return kw

    def set(self, name: str, value) -> None:
        """Change a field before its widget is drawn (in a callback or a restore)."""
        st.session_state[self.key(name)] = value

    def show_url_errors(self) -> None:
        for msg in self.url_errors:
            st.error(plain(msg), icon=":material/link_off:")

    def publish(self, names=None, extra: dict | None = None) -> None:
        """Write the named fields (default: all) to the URL and to the saved copy."""
        names = [f.name for f in self.fields] if names is None else list(names)
        params = {}
        saved = self._saved
        for n in names:
            v = self.get(n)
            saved[n] = v
            params[n] = self.by_name[n].encode(v)
        st.session_state[f"{self.page}._published"] = names
        params.update(extra or {})
        if dict(st.query_params) != params:
            st.query_params.from_dict(params)


def published(page: str) -> dict:
    """The values page `page` last published ({field: value}): those its panel showed, not the
    hidden ones its saved copy also keeps. Empty before its first publish."""
    saved = st.session_state.get(f"{page}._saved", {})
    return {n: saved[n] for n in st.session_state.get(f"{page}._published", []) if n in saved}
