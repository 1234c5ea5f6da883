"""The machine a measurement ran on: its load right now and its CPU, recorded beside every timing."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def load_average() -> float | None:
    """The machine's 1-minute load average (other jobs sharing the CPUs show here), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what `platform.processor()` says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()
