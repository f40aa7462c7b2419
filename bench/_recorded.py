"""The figures of the last ``--record`` run of each bench script (bench/recorded.json), so
every script prints a figure beside its previous value on this machine."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RECORDED = Path(__file__).with_name("recorded.json")


def previous(section: str) -> dict:
    """The recorded figures of one script ({} when none)."""
    if not RECORDED.exists():
        return {}
    return json.loads(RECORDED.read_text()).get(section, {})


def record(section: str, figures: dict) -> None:
    """Save one script's figures (with when and where) as the previous ones."""
    allf = json.loads(RECORDED.read_text()) if RECORDED.exists() else {}
    allf[section] = dict(figures, _when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                         _where=f"{platform.machine()}, {os.cpu_count()} cores, load average "
                                f"{os.getloadavg()[0]:.1f} at the end")
    RECORDED.write_text(json.dumps(allf, indent=1, sort_keys=True) + "\n")
    print(f"recorded in {RECORDED.name} [{section}]")


def fmt(v, spec: str = ",") -> str:
    """A previous figure for a '[prev]' column: '-' when there is none."""
    return "-" if v is None else format(v, spec)
