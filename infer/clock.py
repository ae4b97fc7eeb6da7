"""Seconds since this process started, for the startup figure (process start -> first encoder call)."""
from __future__ import annotations

import os
import time

__all__ = ["process_start", "since_process_start"]

_IMPORTED = time.perf_counter()


def process_start() -> float:
    """``time.perf_counter()`` value at process start.

    Linux: the kernel's start time of this process (``/proc/self/stat``, clock-tick resolution),
    so interpreter start-up and imports are included. Elsewhere: when this module was imported.
    """
    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime, ticks since boot
        return time.perf_counter() - (time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED


def since_process_start(perf_time: float) -> float:
    """Seconds from process start to the ``time.perf_counter()`` value ``perf_time``."""
    return perf_time - process_start()
