"""Run and score a pipeline the way the CVPR 2025 interactive evaluator does:
`python -m evaluation.interactive -i CASES -g GTS -o WORK --command 'sh predict.sh'`.

The protocol is the organisers' ``CVPR25_iter_eval.py`` (repository
``JunMa11/CVPR-MedSegFMCompetition``), replicated step for step (docs/interactive.md):

- cases run one at a time, in name order; ``WORK/inputs`` holds only the current case,
  ``WORK/outputs`` is shared by all steps and all cases and never emptied (as theirs: a step that
  writes nothing leaves the previous step's output in place, and that one is scored again);
- step 1: the case file as given (with its ``boxes``), unless it has no ``boxes``: then step 1 is
  not run and scores DSC 0, NSD 0, time 0;
- steps 2 to 6: from the last output (all zeros when there is none) one click per class is placed
  (:mod:`evaluation.clicks`), appended to ``clicks`` and ``clicks_order`` (None for a class without
  error), and the input is rewritten with ``imgs``, ``spacing``, ``clicks``, ``clicks_order``,
  ``prev_pred`` (that output as uint8) and ``boxes`` when the case had them;
- each step runs the command once in a fresh process (``--command``: ``INPUT_DIR`` and
  ``OUTPUT_DIR`` set, ``{inputs}``/``{outputs}`` replaced) or container (``--docker``);
- each step is scored over the labels present in the ground truth: DSC per class, NSD at 2.0
  (spacing of the input file, as stored) only when the mean DSC is above 0.2, else 0;
- per case: ``DSC_AUC``/``NSD_AUC`` = trapezoid over the last five steps (the click steps) with unit
  spacing, so between 0 and 4; ``DSC_Final``/``NSD_Final`` = step 6; times per step and total, and
  the limit of 90 s per class on the total (a warning in their script).

Writes ``WORK/metrics.csv`` (the organisers' columns and ours), ``WORK/steps.csv`` (one row per
case and step), ``WORK/classes.csv`` (per class and step: the click given, DSC, NSD),
``WORK/segs/<case>`` (``segs`` of the last output and ``all_segs``, every step's prediction as
uint8) and ``WORK/logs/<case>.log``; prints a summary. Exit code: 0 every step ran and wrote a
readable output, 1 otherwise, 2 bad arguments, 130/143 interrupted.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import integrate

from challenge.atomic import writable_file
from challenge.folders import case_files
from challenge.interactive import ClassClicks, ClickKind, read_interactive_case, read_pickled_array, write_interactive_case
from challenge.interrupt import run_interruptible
from challenge.npz import NpzError, open_npz, read_npz, write_npz
from evaluation.clicks import Click, next_clicks
from evaluation.csvio import write_csv
from evaluation.metrics import NSD_DSC_THRESHOLD, NSD_TOLERANCE, dice, surface_dice
from evaluation.process_run import run_measured
from evaluation.timing import CommandBuilder, docker_command, fixed_command, shell_command

__all__ = ["N_CLICKS", "SECONDS_PER_CLASS", "ClassStep", "StepResult", "CaseResult", "evaluator_labels", "add_next_clicks",
           "score_step", "auc", "run_case", "run_folder", "main"]

N_CLICKS = 5
"""Click steps after the box step."""
SECONDS_PER_CLASS = 90
"""Time allowed per class for all six runs of a case together."""

Prompt = Literal["box", "click", "skipped"]
Output = Literal["new", "stale", "missing", "unreadable", "not run"]


@dataclass(frozen=True)
class ClassStep:
    """One class at one step: the click given as input to this step (None for the box step, or
    when the class had no error), and the class's DSC/NSD (NSD None when the DSC gate failed)."""

    label: int
    click: Click | None
    dsc: float
    nsd: float | None


@dataclass(frozen=True)
class StepResult:
    """One run of the command (step 1 = box, 2..6 = clicks). ``output``: ``new`` (written by this
    run), ``stale`` (left from an earlier step: scored again, as the evaluator does), ``missing``
    (scored as all zeros), ``unreadable`` (zeros; the evaluator would stop), ``not run``."""

    step: int
    prompt: Prompt
    seconds: float
    peak_memory_mib: float | None
    returncode: int | None
    output: Output
    dsc: float
    nsd: float
    classes: tuple[ClassStep, ...]
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.prompt == "skipped" or (self.returncode == 0 and self.output == "new")


@dataclass
class CaseResult:
    """One case; ``counted`` is whether the evaluator lists it in its CSV (some step left an output)."""

    case: str
    labels: tuple[int, ...] = ()
    steps: list[StepResult] = field(default_factory=list)
    error: str = ""

    @property
    def counted(self) -> bool:
        return any(s.output in ("new", "stale") for s in self.steps)

    @property
    def dscs(self) -> list[float]:
        return [s.dsc for s in self.steps]

    @property
    def nsds(self) -> list[float]:
        return [s.nsd for s in self.steps]

    @property
    def total_seconds(self) -> float:
        return float(sum(s.seconds for s in self.steps))

    @property
    def runtime_upperbound(self) -> int:
        return SECONDS_PER_CLASS * len(self.labels)

    @property
    def over_time_limit(self) -> bool:
        return self.total_seconds > self.runtime_upperbound

    @property
    def failed_steps(self) -> int:
        return sum(not s.ok for s in self.steps)


def evaluator_labels(gts: np.ndarray) -> np.ndarray:
    """The classes the evaluator scores and clicks: the sorted distinct values of the ground truth
    without the first (``np.sort(pd.unique(gts.ravel()))[1:]``), i.e. without 0 when the ground
    truth has background; class k of the prompts is the k-th of these."""
    return np.unique(gts)[1:]


def score_step(gts: np.ndarray, segs: np.ndarray, labels: Sequence[int], spacing: Sequence[float]
               ) -> tuple[float, float, list[float], list[float] | None]:
    """Case DSC, case NSD, per-class DSC and NSD, as the evaluator computes them: DSC per label of
    ``labels`` (mean over them, NaN without labels); NSD at tolerance 2.0 with ``spacing`` for array
    axes (0, 1, 2) only when the mean DSC is above 0.2, else 0.0 (per-class NSD None)."""
    masks = [(gts == label, segs == label) for label in labels]
    label_dsc = [dice(gt, seg) for gt, seg in masks]
    dsc = float(np.mean(label_dsc)) if label_dsc else float("nan")
    if not dsc > NSD_DSC_THRESHOLD:
        return dsc, 0.0, label_dsc, None
    label_nsd = [surface_dice(gt, seg, spacing, NSD_TOLERANCE) for gt, seg in masks]
    return dsc, float(np.mean(label_nsd)), label_dsc, label_nsd


def auc(values: Sequence[float]) -> float:
    """Area under the score-per-click curve: trapezoid over the last :data:`N_CLICKS` values with
    unit spacing (``cumulative_trapezoid(values[-5:], np.arange(5))[-1]``), between 0 and 4."""
    tail = np.asarray(values[-N_CLICKS:], np.float64)
    return float(integrate.cumulative_trapezoid(tail, np.arange(len(tail)))[-1])


def add_next_clicks(segs_u8: np.ndarray, gts: np.ndarray, labels: Sequence[int], clicks: list[ClassClicks],
                    order: list[list[ClickKind | None]]) -> list[Click | None]:
    """The evaluator's next click per class on the prediction ``segs_u8``, added to each class's
    ``clicks`` and recorded in its ``clicks_order`` (None for a class without error), in place."""
    given = next_clicks(segs_u8, gts, labels)
    for index, click in enumerate(given):
        order[index].append(None if click is None else click.kind)
        if click is not None:
            clicks[index] = clicks[index].add(click.kind, click.zyx)
    return given


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _read_output(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    """``segs`` of an output file, or None and why not."""
    try:
        segs = read_npz(path, ("segs",))["segs"]
    except NpzError as exc:
        return None, str(exc)
    if segs.shape != shape:
        return None, f"{path}: 'segs' has shape {segs.shape}, the ground truth {shape}"
    if segs.dtype.kind not in "biuf":
        return None, f"{path}: 'segs' has dtype {segs.dtype}"
    return segs, ""


def _last_line(log: Path) -> str:
    """``: <last line the run printed>`` (empty when it printed nothing)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return f": {lines[-1][:200]}" if lines and not lines[-1].startswith("== ") else ""


def _log(log: Path, line: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(line + "\n")


@dataclass(frozen=True)
class _Inputs:
    """What the harness needs of one case, read before anything runs."""

    imgs: np.ndarray
    spacing: np.ndarray  # as stored: the rewritten inputs carry it unchanged
    boxes: np.ndarray | None
    gts: np.ndarray
    gts_in_input: bool


def _load(case: Path, gts_dir: Path | None) -> _Inputs:
    """Read the case (safely) and its ground truth; ValueError says what is wrong."""
    parsed = read_interactive_case(case)
    if parsed.spacing is None:
        raise ValueError(f"{case}: no 'spacing' (the evaluator needs it to rewrite the input and for NSD)")
    if not (np.isfinite(parsed.spacing).all() and (parsed.spacing > 0).all()):
        raise ValueError(f"{case}: spacing must be 3 positive finite numbers, got {parsed.spacing.tolist()}")
    with open_npz(case) as archive:
        spacing = archive.read("spacing")
        boxes = read_pickled_array(archive, "boxes") if "boxes" in archive.keys else None
        if gts_dir is None:
            archive.require("gts")
            gts = archive.read("gts")
    if gts_dir is not None:
        gts = read_npz(gts_dir / case.name, ("gts",))["gts"]
    if gts.shape != parsed.imgs.shape:
        raise ValueError(f"{case}: ground truth shape {gts.shape} differs from the image's {parsed.imgs.shape}")
    if gts.dtype.kind not in "biu":
        raise ValueError(f"{case}: ground truth has dtype {gts.dtype}, expected integer labels")
    labels = evaluator_labels(gts)
    if parsed.boxes is not None and len(parsed.boxes) != len(labels):  # the evaluator runs such a case all the same
        print(f"warning: {case}: {len(parsed.boxes)} boxes for {len(labels)} ground-truth classes", file=sys.stderr)
    return _Inputs(parsed.imgs, spacing, boxes, gts, gts_dir is None)


def _run_step(build: CommandBuilder, inputs: Path, outputs: Path, output: Path, log: Path, timeout: float | None,
              shape: tuple[int, ...]) -> tuple[float, float | None, int, Output, np.ndarray | None, str]:
    before = _signature(output)
    run = run_measured(build(inputs, outputs), log, timeout)
    after = _signature(output)
    peak = None if run.peak_rss_bytes is None else run.peak_rss_bytes / 2**20
    problems = []
    if run.timed_out:
        problems.append(f"timed out after {timeout:g} s")
    elif run.returncode != 0:
        problems.append(f"exit code {run.returncode}{_last_line(log)}")
    segs: np.ndarray | None = None
    status: Output
    if after is None:
        status = "missing"
        problems.append("no output: scored as all zeros")
    else:
        segs, problem = _read_output(output, shape)
        if segs is None:
            status = "unreadable"
            problems.append(f"{problem}: scored as all zeros")
        else:
            status = "stale" if after == before else "new"
            if status == "stale":
                problems.append("no new output: the previous step's output is scored again")
    return run.seconds, peak, run.returncode, status, segs, "; ".join(problems)


def run_case(case: Path, gts_dir: Path | None, work: Path, build: CommandBuilder, timeout: float | None = None,
             keep_inputs: bool = False, verbose: bool = False) -> CaseResult:
    """Run the six steps of one case (module docstring) and score them; never raises for bad data."""
    result = CaseResult(case.name)
    try:
        data = _load(case, gts_dir)
    except (NpzError, ValueError) as exc:
        result.error = str(exc)
        return result
    labels = [int(v) for v in evaluator_labels(data.gts)]
    result.labels = tuple(labels)
    inputs, outputs = work / "inputs", work / "outputs"
    target, output = inputs / case.name, outputs / case.name
    log = work / "logs" / f"{case.stem}.log"
    log.unlink(missing_ok=True)
    shape = tuple(data.gts.shape)
    clicks = [ClassClicks.empty() for _ in labels]
    order: list[list[ClickKind | None]] = [[] for _ in labels]
    all_segs: list[np.ndarray] = []
    last_segs: np.ndarray | None = None  # the last readable output, as stored
    shutil.copy(case, target)
    try:
        for step in range(N_CLICKS + 1):
            given: list[Click | None] = [None] * len(labels)
            if step == 0 and data.boxes is None:
                result.steps.append(StepResult(1, "skipped", 0.0, None, None, "not run", 0.0, 0.0, (),
                                               "no 'boxes': the box step is skipped and scores 0"))
                continue
            if step > 0:
                # the last output, zeros when there is none (or, where the evaluator would stop, an unreadable one)
                readable = result.steps[-1].output in ("new", "stale") and last_segs is not None
                segs_u8 = last_segs.astype(np.uint8) if readable and last_segs is not None else np.zeros(shape, np.uint8)
                given = add_next_clicks(segs_u8, data.gts, labels, clicks, order)
                write_interactive_case(target, data.imgs, data.spacing, boxes=data.boxes, clicks=clicks,
                                       clicks_order=order, prev_pred=segs_u8,
                                       gts=data.gts if data.gts_in_input else None)
                if verbose:
                    for click in given:
                        if click is not None:
                            print(f"  {case.name} step {step + 1}: class {click.label} {click.kind} click at "
                                  f"(z, y, x) = {click.zyx} (error component of {click.error_voxels} voxels)")
            if keep_inputs:
                kept = work / "inputs_kept" / case.stem / f"step{step + 1}.npz"
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(target, kept)
            _log(log, f"== {case.name} step {step + 1} ({'box' if step == 0 else 'click'})")
            seconds, peak, code, status, segs, problem = _run_step(build, inputs, outputs, output, log, timeout, shape)
            if segs is not None:
                last_segs = segs
            scored = segs if segs is not None else np.zeros(shape, np.uint8)
            all_segs.append(scored.astype(np.uint8))
            dsc, nsd, label_dsc, label_nsd = score_step(data.gts, scored, labels, [float(s) for s in data.spacing.ravel()])
            classes = tuple(ClassStep(label, given[i], label_dsc[i], None if label_nsd is None else label_nsd[i])
                            for i, label in enumerate(labels))
            result.steps.append(StepResult(step + 1, "box" if step == 0 else "click", seconds, peak, code, status,
                                           dsc, nsd, classes, problem))
    finally:
        target.unlink(missing_ok=True)
    if last_segs is not None:
        (work / "segs").mkdir(exist_ok=True)
        write_npz(work / "segs" / case.name, {"segs": last_segs, "all_segs": np.stack(all_segs)})
    return result


CASE_HEADER = (["CaseName", "TotalRunningTime"] + [f"RunningTime_{i}" for i in range(1, 7)]
               + ["DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final"] + [f"DSC_{i}" for i in range(1, 7)]
               + [f"NSD_{i}" for i in range(1, 7)] + ["num_class", "runtime_upperbound"]
               + ["over_time_limit", "counted", "failed_steps", "error"])
"""The evaluator's metrics CSV columns, then ours."""
STEP_HEADER = ("case", "step", "prompt", "seconds", "peak_memory_mib", "returncode", "output", "dsc", "nsd", "error")
CLASS_HEADER = ("case", "step", "label", "click", "z", "y", "x", "error_voxels", "dsc", "nsd")


def _case_row(r: CaseResult) -> list[object]:
    if not r.steps:
        return [r.case] + [None] * (len(CASE_HEADER) - 5) + [False, False, 0, r.error]
    problems = "; ".join(f"step {s.step}: {s.error}" for s in r.steps if s.error)
    return ([r.case, r.total_seconds, *(s.seconds for s in r.steps), auc(r.dscs), auc(r.nsds), r.dscs[-1], r.nsds[-1],
             *r.dscs, *r.nsds, len(r.labels), r.runtime_upperbound, r.over_time_limit, r.counted, r.failed_steps,
             problems])


def write_reports(results: Sequence[CaseResult], work: Path) -> None:
    """``metrics.csv``, ``steps.csv`` and ``classes.csv`` in ``work`` (atomic, full precision)."""
    write_csv(work / "metrics.csv", CASE_HEADER, [_case_row(r) for r in results])
    write_csv(work / "steps.csv", STEP_HEADER,
              [[r.case, s.step, s.prompt, s.seconds, None if s.peak_memory_mib is None else round(s.peak_memory_mib, 1),
                s.returncode, s.output, s.dsc, s.nsd, s.error] for r in results for s in r.steps])
    rows = []
    for r in results:
        for s in r.steps:
            for c in s.classes:
                where = c.click.zyx if c.click else (None, None, None)
                rows.append([r.case, s.step, c.label, c.click.kind if c.click else None, *where,
                             c.click.error_voxels if c.click else None, c.dsc, c.nsd])
    write_csv(work / "classes.csv", CLASS_HEADER, rows)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def format_summary(results: Sequence[CaseResult]) -> str:
    """Means over the cases the evaluator counts: the five scores, time, and the curve per step."""
    counted = [r for r in results if r.counted]
    lines = [f"{len(results)} case(s), {len(counted)} counted (some output), "
             f"{sum(r.failed_steps > 0 for r in results)} with failed steps, "
             f"{sum(bool(r.error) for r in results)} not run, "
             f"{sum(r.over_time_limit for r in counted)} over {SECONDS_PER_CLASS} s per class"]
    if counted:
        cells = {"DSC_AUC": _mean([auc(r.dscs) for r in counted]), "NSD_AUC": _mean([auc(r.nsds) for r in counted]),
                 "DSC_Final": _mean([r.dscs[-1] for r in counted]), "NSD_Final": _mean([r.nsds[-1] for r in counted]),
                 "time_s": _mean([r.total_seconds for r in counted])}
        lines.append("  ".join(f"{k:>9}" for k in cells))
        lines.append("  ".join(f"{v:9.4f}" for v in cells.values()))
        lines.append("step      " + "  ".join(f"{i:>6}" for i in range(1, N_CLICKS + 2)))
        for name, pick in (("DSC", lambda s: s.dsc), ("NSD", lambda s: s.nsd)):
            per_step = [_mean([pick(r.steps[i]) for r in counted]) for i in range(N_CLICKS + 1)]
            lines.append(f"{name} mean  " + "  ".join(f"{v:6.4f}" for v in per_step))
    return "\n".join(lines)


def run_folder(imgs_dir: Path, gts_dir: Path | None, work: Path, build: CommandBuilder, timeout: float | None = None,
               keep_inputs: bool = False, verbose: bool = False) -> list[CaseResult]:
    """Every case of ``imgs_dir`` in name order; the reports are rewritten after each case."""
    for sub in ("inputs", "outputs"):
        shutil.rmtree(work / sub, ignore_errors=True)
        (work / sub).mkdir(parents=True)
        os.chmod(work / sub, 0o777)  # a container runs as a non-root user
    results: list[CaseResult] = []
    for case in case_files(imgs_dir):
        result = run_case(case, gts_dir, work, build, timeout, keep_inputs, verbose)
        results.append(result)
        write_reports(results, work)
        if result.error:
            print(f"{case.name}: not run: {result.error}", file=sys.stderr)
        else:
            print(f"{case.name}: DSC_AUC {auc(result.dscs):.4f}  NSD_AUC {auc(result.nsds):.4f}  "
                  f"DSC_Final {result.dscs[-1]:.4f}  NSD_Final {result.nsds[-1]:.4f}  {result.total_seconds:.1f} s"
                  + (f"  ({result.failed_steps} failed step(s))" if result.failed_steps else ""), flush=True)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-i", "--imgs-dir", "--test_img_path", dest="imgs_dir", type=Path, required=True,
                        help="folder of input cases (*.npz with imgs, spacing, boxes)")
    parser.add_argument("-g", "--gts-dir", "--validation_gts_path", dest="gts_dir", type=Path, default=None,
                        help="folder of ground truths (<case>.npz with 'gts'); without it, 'gts' is read from the "
                             "input files and passed on to the command, as the evaluator does for training images")
    parser.add_argument("-o", "--work-dir", "--save_path", dest="work_dir", type=Path, required=True,
                        help="receives the CSVs, segs/, logs/; its inputs/ and outputs/ are emptied first")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--command", metavar="CMD",
                     help="shell command run once per step with INPUT_DIR and OUTPUT_DIR set ({inputs} and "
                          "{outputs} are replaced too)")
    how.add_argument("--docker", metavar="IMAGE", help="run the organisers' docker command (CPU form) with this image")
    parser.add_argument("--memory", default="32G", help="docker -m value (the evaluator's 32G)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before one step's run is killed")
    parser.add_argument("--keep-inputs", action="store_true", help="keep every step's input in WORK/inputs_kept/")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every click")
    return parser


def _env_command(command: str) -> CommandBuilder:
    shell = shell_command(command)

    def build(inputs: Path, outputs: Path) -> list[str]:
        return ["env", f"INPUT_DIR={inputs}", f"OUTPUT_DIR={outputs}", *shell(inputs, outputs)]
    return build


def main(argv: list[str] | None = None) -> int:
    return run_interruptible("interactive", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("imgs_dir", "gts_dir"):
        folder = getattr(args, name)
        if folder is not None and not folder.is_dir():
            print(f"error: {name} {folder} is not a folder", file=sys.stderr)
            return 2
    problem = writable_file(args.work_dir / "metrics.csv")
    if problem is not None:
        print(f"error: {args.work_dir}: reports cannot be written ({problem})", file=sys.stderr)
        return 2
    if not case_files(args.imgs_dir):
        print(f"error: no *.npz cases in {args.imgs_dir}", file=sys.stderr)
        return 2
    work = args.work_dir.resolve()
    if args.docker:
        build = fixed_command(docker_command(args.docker, work, args.memory))
    else:
        build = _env_command(args.command)
        print(f"command per step: {shlex.join(build(work / 'inputs', work / 'outputs'))}")
    results = run_folder(args.imgs_dir, args.gts_dir, work, build, args.timeout, args.keep_inputs, args.verbose)
    print(format_summary(results))
    print(f"wrote {work / 'metrics.csv'}, {work / 'steps.csv'}, {work / 'classes.csv'}")
    bad = [r for r in results if r.error or r.failed_steps]
    for r in bad:
        print(f"  {r.case}: {r.error or f'{r.failed_steps} failed step(s)'}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
