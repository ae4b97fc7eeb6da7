"""Fill the OpenVINO compiled-model cache: ``python -m infer.warm_cache [--models DIR]``.

Compiles every model folder the routing table names, so a later ``python -m infer`` imports the
compiled blobs instead of compiling (the Docker build runs this). Exit code 1 when a folder is
missing or does not compile.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from infer.cli import DEFAULT_MODELS
from infer.errors import ModelError, RoutingError
from infer.models import load_model
from infer.routing import DEFAULT_ROUTING, load_routing
from infer.session import host_threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infer.warm_cache", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS,
                        help=f"model folders (default: {DEFAULT_MODELS})")
    parser.add_argument("--routing", type=Path, default=DEFAULT_ROUTING, help="routing table naming the folders")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache folder (default: MODELS/ov_cache)")
    args = parser.parse_args(argv)
    try:
        table = load_routing(args.routing)
    except RoutingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache_dir = args.cache_dir or args.models / "ov_cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in sorted({route.model for route in table.routes}):
        folder = args.models / name
        start = time.perf_counter()
        try:
            load_model(folder, "openvino", host_threads(), cache_dir)
        except ModelError as exc:
            failed += 1
            hint = f"; {table.export_hint(folder)}" if not folder.is_dir() else ""
            print(f"error: {exc}{hint}", file=sys.stderr)
            continue
        print(f"{folder}: compiled into {cache_dir} in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
