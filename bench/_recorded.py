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


def cpu_model() -> str:
    """The processor's model name as Linux reports it ("AMD EPYC", "Intel Xeon ..."), or the
    platform's: the 2-core machines here come as more than one kind, whose figures differ by
    10-20% (orca's kernel, 2026-12-07), so a recorded figure says which it was measured on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def recorded_on(section: str) -> str:
    """When and on what machine a script's previous figures were recorded ('' when never)."""
    prev = previous(section)
    return f"previous figures: recorded {prev.get('_when', '?')} on {prev.get('_where', '?')}" if prev else ""


def record(section: str, figures: dict) -> None:
    """Save one script's figures (with when and where) as the previous ones."""
    allf = json.loads(RECORDED.read_text()) if RECORDED.exists() else {}
    allf[section] = dict(figures, _when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                         _where=f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, load average "
                                f"{os.getloadavg()[0]:.1f} at the end")
    RECORDED.write_text(json.dumps(allf, indent=1, sort_keys=True) + "\n")
    print(f"recorded in {RECORDED.name} [{section}]")


def fmt(v, spec: str = ",") -> str:
    """A previous figure for a '[prev]' column: '-' when there is none."""
    return "-" if v is None else format(v, spec)
