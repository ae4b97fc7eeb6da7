"""Run one command in a fresh process and measure its wall time and peak memory.

Peak memory of the command's process tree is measured by a small launcher (`measure_child.py`):
the larger of the kernel's `ru_maxrss` (the largest peak resident set of any process in the tree
that was waited for) and the largest summed resident set of the tree sampled every 20 ms, so
processes running at the same time add up. Sampling can miss a peak shorter than the interval
(the `ru_maxrss` part still catches it within one process); pages shared between processes count
once per process; the launcher's own ~8 MiB is a floor (a spawned child inherits its spawner's
high-water mark until `exec`). Wall time is measured by the launcher from spawn to exit of the command.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunResult", "run_measured"]

_LAUNCHER = Path(__file__).with_name("measure_child.py")


@dataclass(frozen=True)
class RunResult:
    """Outcome of one run: wall seconds, exit code (negative = killed by that signal), peak RSS in
    bytes (None when the run was killed before it could be read), and whether the timeout killed it."""

    seconds: float
    returncode: int
    peak_rss_bytes: int | None
    timed_out: bool


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_measured(argv: Sequence[str], log_path: Path, timeout: float | None = None) -> RunResult:
    """Run `argv` (no shell unless argv says so), stdout/stderr appended to `log_path`.

    The launcher starts a new process group, so a timeout kills the whole tree; so does an
    exception while waiting (Ctrl-C reaches only the foreground group, not the command's, which
    would otherwise run on orphaned).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="measure_") as tmp, open(log_path, "ab") as log:
        report = Path(tmp) / "report"
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-S", "-E", str(_LAUNCHER), str(report), *argv], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        timer = threading.Timer(timeout, _kill_group, (proc.pid,)) if timeout else None
        if timer:
            timer.start()
        try:
            proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                _kill_group(proc.pid)
                proc.wait()
        outer_seconds = time.perf_counter() - start
        text = report.read_text() if report.is_file() else ""
    if not text:  # killed before reporting (timeout, or the launcher itself failed)
        timed_out = timeout is not None and outer_seconds >= timeout and proc.returncode == -signal.SIGKILL
        return RunResult(outer_seconds, proc.returncode, None, timed_out)
    code, seconds, peak_kib = text.split()
    return RunResult(float(seconds), int(code), int(peak_kib) * 1024, False)
