"""One error type whose message is a single line naming the offending file."""
from __future__ import annotations

from pathlib import Path


class ConversionError(ValueError):
    """Bad input for the converter: ``str(err)`` is ``"<file>: <problem>"`` on one line."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


def itk_reason(exc: Exception) -> str:
    """The informative last line of a (multi-line) SimpleITK exception message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return last.removeprefix("sitk::ERROR:").strip()
