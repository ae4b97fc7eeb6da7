"""Score predictions like the organisers: `python evaluation/compute_metrics.py -s SEGS -g GTS -csv_dir OUT.csv`.

Flags are the organisers' (`-s`, `-g`, `-csv_dir`, `-num_workers`, `-nsd`), with `--kebab-case` forms.
Writes the per-case CSV and `<stem>_summary.csv` beside it, prints the per-modality table, lists
failed cases on stderr. Exit code: 0 all cases scored, 1 some prediction or ground truth failed,
2 bad arguments (missing or unreadable folders, a CSV path that cannot be written: checked first),
130/143 interrupted by SIGINT/SIGTERM (one line; no partial CSV).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from challenge.atomic import writable_file
from challenge.interrupt import run_interruptible
from evaluation.scoring import evaluate_folder, list_cases, write_metrics_csv
from evaluation.summary import format_table, summarise, summary_path, write_summary_csv

_TRUE, _FALSE = {"true", "1", "yes", "y"}, {"false", "0", "no", "n"}


def parse_bool(text: str) -> bool:
    """'true'/'false' (also 1/0, yes/no; any case) -> bool, for `-nsd`."""
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-s", "--seg_dir", "--seg-dir", dest="seg_dir", type=Path, default=Path("test_demo/segs"),
                        help="folder of predictions (<case>.npz with key 'segs')")
    parser.add_argument("-g", "--gt_dir", "--gt-dir", dest="gt_dir", type=Path, default=Path("test_demo/gts"),
                        help="folder of ground truths (<case>.npz with 'gts', and 'spacing' for 3D)")
    parser.add_argument("-csv_dir", "--csv_dir", "--csv-dir", dest="csv_dir", type=Path,
                        default=Path("test_demo/metrics.csv"), help="per-case CSV to write")
    parser.add_argument("-num_workers", "--num_workers", "--num-workers", dest="num_workers", type=int,
                        default=min(5, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("-nsd", "--nsd", dest="nsd", type=parse_bool, default=True, metavar="true|false",
                        help="compute NSD")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_interruptible("compute_metrics", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("seg_dir", "gt_dir"):
        if not getattr(args, name).is_dir():
            print(f"error: {name} {getattr(args, name)} is not a folder", file=sys.stderr)
            return 2
    try:
        cases = list_cases(args.gt_dir)
    except OSError as exc:
        print(f"error: gt_dir {args.gt_dir} cannot be read ({exc.strerror or exc})", file=sys.stderr)
        return 2
    if not cases:
        print(f"error: no *.npz ground truths in {args.gt_dir}", file=sys.stderr)
        return 2
    for target in (args.csv_dir, summary_path(args.csv_dir)):  # before the work, not after it
        problem = writable_file(target)
        if problem is not None:
            print(f"error: {target}: metrics CSV cannot be written ({problem})", file=sys.stderr)
            return 2
    if args.num_workers < 1:
        print(f"error: -num_workers must be >= 1, got {args.num_workers}", file=sys.stderr)
        return 2
    results = evaluate_folder(args.seg_dir, args.gt_dir, args.num_workers, args.nsd)
    write_metrics_csv(results, args.csv_dir, args.nsd)
    stats = summarise(results)
    write_summary_csv(stats, summary_path(args.csv_dir))
    print(format_table(stats))
    print(f"wrote {args.csv_dir} and {summary_path(args.csv_dir)}")
    failed = [r for r in results if r.error]
    if failed:
        print(f"{len(failed)} of {len(results)} case(s) failed:", file=sys.stderr)
        for result in failed:
            print(f"  {result.case}: {result.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
