"""Error types of the inference engine: each message is one line naming what is wrong and where."""
from __future__ import annotations

from pathlib import Path

__all__ = ["CaseError", "ModelError", "RoutingError"]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class CaseError(ValueError):
    """A case cannot be processed: ``str(err)`` is ``"<file>: <problem>"`` on one line.

    The batch runner prints it, skips the case (no output written) and goes on.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = _one_line(problem)
        super().__init__(f"{self.path}: {self.problem}")


class ModelError(RuntimeError):
    """A model folder is missing or unusable (sidecar, model files, runtime compilation)."""

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))


class RoutingError(ValueError):
    """The routing table file is unreadable or inconsistent."""

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))
