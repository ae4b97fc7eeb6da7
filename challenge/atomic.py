"""Write a file so that readers see the old file or the whole new one, never a partial one.

The temporary file sits in the target's folder (a rename across file systems is not atomic) and
keeps the target's full name at its end, so writers that pick a format from the suffix
(``.png``, ``.nii.gz``) still do.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "temporary_name", "writable_file"]


def temporary_name(path: Path) -> Path:
    """The hidden name beside ``path`` that :func:`atomic_path` writes first."""
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it over ``path``, on failure remove it.

    >>> with atomic_path(folder / "table.csv") as tmp:   # doctest: +SKIP
    ...     tmp.write_text("a,b\\n")
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def writable_file(path: str | Path) -> str | None:
    """None when :func:`atomic_path` can write ``path`` (its folder is created if needed), else why
    not: checked before hours of work whose result would go there."""
    path = Path(path)
    if path.is_dir():
        return "is a folder"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary_name(path).touch()
        temporary_name(path).unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
