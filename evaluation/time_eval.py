"""Time a pipeline per case like the organisers:
`python evaluation/time_eval.py -i IMGS -o SEGS (--docker IMAGE | --command CMD) [--repeat N] [--memory 8G]`.

Writes `running_time.csv` (default inside SEGS) and moves each case's output into SEGS; run logs go
to SEGS/logs/. Exit code: 0 every case ran and produced its output, 1 some case failed, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from evaluation.timing import docker_command, fixed_command, parse_memory, shell_command, time_folder, write_timing_csv


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-i", "--imgs-dir", "--test_img_path", dest="imgs_dir", type=Path, required=True,
                        help="folder of input cases (*.npz)")
    parser.add_argument("-o", "--segs-dir", "--save_path", dest="segs_dir", type=Path, required=True,
                        help="folder receiving each case's output, the CSV and the logs")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--docker", metavar="IMAGE", help="run the organisers' docker command with this image")
    how.add_argument("--command", metavar="CMD",
                     help="shell command run once per case; {inputs} and {outputs} become the temporary folders")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case")
    parser.add_argument("--memory", default="8G",
                        help="memory limit: docker -m value; with --command a run whose peak exceeds it fails")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before a run is killed")
    parser.add_argument("--csv", type=Path, default=None, help="output CSV (default SEGS/running_time.csv)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where inputs/ and outputs/ are created (default: a new temporary folder)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        limit = parse_memory(args.memory)
        if args.repeat < 1:
            raise ValueError(f"--repeat must be >= 1, got {args.repeat}")
        if not args.imgs_dir.is_dir():
            raise ValueError(f"imgs dir {args.imgs_dir} is not a folder")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="time_eval_"))
    build = fixed_command(docker_command(args.docker, work, args.memory)) if args.docker else shell_command(args.command)
    try:
        rows = time_folder(args.imgs_dir, args.segs_dir, work, build, args.repeat, args.timeout,
                           None if args.docker else limit, measure_memory=not args.docker)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    csv_path = args.csv or args.segs_dir / "running_time.csv"
    write_timing_csv(rows, csv_path)
    failed = [r for r in rows if r.status != "ok"]
    total = sum(r.time_mean_s for r in rows)
    print(f"{len(rows)} case(s), {len(failed)} failed, mean {total / max(len(rows), 1):.3f} s per case; wrote {csv_path}")
    for row in failed:
        print(f"  {row.case}: {row.status}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
