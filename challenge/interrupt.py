"""Stop a command cleanly on Ctrl-C or ``kill``: one line, no traceback, no partial file.

SIGINT and SIGTERM raise :class:`Interrupted` in the main thread; it is a ``BaseException``, so
every ``atomic_path`` being written removes its temporary file on the way out. The exit code is
the shell's ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM).
"""
from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType

__all__ = ["Interrupted", "run_interruptible"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """Raised by the signal handler; ``signum`` is the signal received."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def run_interruptible(program: str, run: Callable[[], int]) -> int:
    """``run()``, or on SIGINT/SIGTERM the line ``<program>: interrupted by SIGINT; ...`` and ``128 + signal``."""
    previous = {signum: signal.signal(signum, _raise) for signum in _SIGNALS}
    try:
        return run()
    except Interrupted as exc:
        for signum in _SIGNALS:  # a second signal during clean-up must not raise again
            signal.signal(signum, signal.SIG_IGN)
        print(f"{program}: interrupted by {exc}; finished outputs are kept, no partial file is left",
              file=sys.stderr, flush=True)
        return 128 + exc.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
