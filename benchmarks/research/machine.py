"""The machine's load right now, recorded beside every step and timing of the research runs."""

from __future__ import annotations

import os


def load_average() -> float | None:
    """The machine's 1-minute load average (other jobs sharing the CPUs show here), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
