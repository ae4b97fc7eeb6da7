"""Per-case timing like the organisers' `CVPR24_time_eval.py` (docs/reference_systems.md section 1.5, section 1.6).

Each case is copied alone into `<work>/inputs/`, the pipeline runs once per repeat in a fresh
process (or a fresh container), the input is removed, and `<work>/outputs/<case>` is moved to the
segmentation folder. Like the organisers, other files left in `outputs/` stay there across cases.
A failed run (non-zero exit, no output, timeout, peak memory above the limit) is recorded and the
next case runs.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from challenge.atomic import atomic_path
from evaluation.csvio import write_csv
from evaluation.process_run import RunResult, run_measured

__all__ = ["CaseTiming", "parse_memory", "docker_command", "shell_command", "time_case", "time_folder",
           "write_timing_csv"]

TIMING_HEADER = ("case", "runs", "time_mean_s", "time_std_s", "peak_memory_mib", "status")
CommandBuilder = Callable[[Path, Path], list[str]]
"""(inputs folder, outputs folder) -> argv of one run."""


@dataclass(frozen=True)
class CaseTiming:
    """One row of `running_time.csv`: wall seconds over `runs` repeats (population std), peak memory
    over all repeats in MiB (None when not measurable, e.g. in Docker), `status` 'ok' or the problem."""

    case: str
    runs: int
    time_mean_s: float
    time_std_s: float
    peak_memory_mib: float | None
    status: str


def parse_memory(text: str) -> int:
    """Docker-style size ('8G', '512m', '1024k', '2000000' bytes) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)\s*", text.lower())
    if not match:
        raise ValueError(f"memory limit {text!r} is not a size like 8G, 512M or 1048576")
    return int(float(match[1]) * 1024 ** "bkmgt".index(match[2] or "b"))


def docker_command(image: str, work_dir: Path, memory: str = "8G") -> list[str]:
    """The organisers' per-case command, with `$PWD` expanded to `work_dir`:
    `docker container run -m 8G --name <team> --rm -v $PWD/inputs/:/workspace/inputs/
    -v $PWD/outputs/:/workspace/outputs/ <team>:latest /bin/bash -c "sh predict.sh"`.

    `image` is `team` or `team:tag` (tag defaults to `latest`); the container is named after the team.
    """
    name, tag = image.rsplit(":", 1) if ":" in image.rsplit("/", 1)[-1] else (image, "latest")
    name = name.lower()  # the organisers lower-case the team name; image names are lower-case anyway
    team = name.rsplit("/", 1)[-1]
    if not team or not tag:
        raise ValueError(f"docker image {image!r} has no name")
    return ["docker", "container", "run", "-m", memory, "--name", team, "--rm",
            "-v", f"{work_dir.resolve()}/inputs/:/workspace/inputs/",
            "-v", f"{work_dir.resolve()}/outputs/:/workspace/outputs/",
            f"{name}:{tag}", "/bin/bash", "-c", "sh predict.sh"]


def fixed_command(argv: list[str]) -> CommandBuilder:
    """Builder for a command whose folders are fixed in it (the organisers' docker run mounts
    ``$PWD/inputs`` and ``$PWD/outputs``): the same argv for every case."""
    def build(inputs: Path, outputs: Path) -> list[str]:
        return argv
    return build


def shell_command(command: str) -> CommandBuilder:
    """Builder for a shell command line; `{inputs}` and `{outputs}` are replaced by the (quoted)
    temporary input and output folders."""
    def build(inputs: Path, outputs: Path) -> list[str]:
        line = command.replace("{inputs}", shlex.quote(str(inputs))).replace("{outputs}", shlex.quote(str(outputs)))
        return ["/bin/sh", "-c", line]
    return build


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return f": {lines[-1][:200]}" if lines else ""


def _run_problem(run: RunResult, produced: bool, timeout: float | None, limit: int | None) -> str:
    if run.timed_out:
        return f"timed out after {timeout:g} s"
    if run.returncode != 0:
        return f"exit code {run.returncode}"
    if not produced:
        return "no output"
    if limit is not None and run.peak_rss_bytes is not None and run.peak_rss_bytes > limit:
        return f"peak memory {run.peak_rss_bytes / 2**20:.0f} MiB above limit {limit / 2**20:.0f} MiB"
    return ""


def _move_atomic(source: Path, target: Path) -> None:
    """Move across file systems without ever leaving a half-written `target`."""
    with atomic_path(target) as tmp:
        shutil.move(source, tmp)


def time_case(case: Path, work_dir: Path, segs_dir: Path, build: CommandBuilder, repeat: int = 1,
              timeout: float | None = None, memory_limit: int | None = None,
              measure_memory: bool = True) -> CaseTiming:
    """Time `repeat` runs of one case; the last run's output goes to `segs_dir/<case name>`."""
    inputs, outputs = work_dir / "inputs", work_dir / "outputs"
    output, log = outputs / case.name, segs_dir / "logs" / f"{case.stem}.log"
    log.unlink(missing_ok=True)
    shutil.copy(case, inputs / case.name)
    runs, problem = [], ""
    try:
        for index in range(repeat):
            output.unlink(missing_ok=True)
            run = run_measured(build(inputs, outputs), log, timeout)
            runs.append(run)
            issue = _run_problem(run, output.is_file(), timeout, memory_limit if measure_memory else None)
            if issue and not problem:
                problem = f"{issue} (run {index + 1} of {repeat}){_last_line(log)}"
    finally:
        (inputs / case.name).unlink(missing_ok=True)
    if output.is_file():
        _move_atomic(output, segs_dir / case.name)
    seconds = np.array([r.seconds for r in runs])
    peaks = [r.peak_rss_bytes for r in runs if r.peak_rss_bytes is not None]
    peak = max(peaks) / 2**20 if measure_memory and peaks else None
    return CaseTiming(case.name, repeat, float(seconds.mean()), float(seconds.std()), peak, problem or "ok")


def time_folder(imgs_dir: Path, segs_dir: Path, work_dir: Path, build: CommandBuilder, repeat: int = 1,
                timeout: float | None = None, memory_limit: int | None = None, measure_memory: bool = True,
                progress: bool = True) -> list[CaseTiming]:
    """Time every `*.npz` case of `imgs_dir` in name order, one at a time (see the module docstring)."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    cases = sorted(p for p in imgs_dir.iterdir() if p.suffix == ".npz" and p.is_file())
    segs_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("inputs", "outputs"):
        (work_dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(work_dir / sub, 0o777)  # the container runs as a non-root user
    return [time_case(case, work_dir, segs_dir, build, repeat, timeout, memory_limit, measure_memory)
            for case in tqdm(cases, desc="timing", unit="case", disable=not progress)]


def write_timing_csv(rows: Sequence[CaseTiming], path: Path) -> None:
    """`running_time.csv`: case, runs, time_mean_s, time_std_s, peak_memory_mib, status (3 decimals)."""
    write_csv(path, TIMING_HEADER, [[r.case, r.runs, round(r.time_mean_s, 3), round(r.time_std_s, 3),
                                     None if r.peak_memory_mib is None else round(r.peak_memory_mib, 1), r.status]
                                    for r in rows])
