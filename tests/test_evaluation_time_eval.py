"""`evaluation/time_eval.py` with stand-in pipelines: CSV, per-case isolation, failures, memory, docker argv."""
from __future__ import annotations

import contextlib
import csv
import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation.time_eval import main
from evaluation.timing import docker_command, parse_memory

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "evaluation" / "time_eval.py"

# Stand-in pipeline: records what it saw in inputs/, sleeps, writes outputs/<case> with key `segs`.
# Case names steer it: `fail` exits 3 without output, `silent` exits 0 without output,
# `big` holds 200 MiB of touched memory, `pair` runs two child processes holding 150 MiB each at once.
STAND_IN = """
import os, subprocess, sys, time
import numpy as np
inputs, outputs, record = sys.argv[1:4]
names = sorted(os.listdir(inputs))
with open(record, "a") as handle:
    handle.write(",".join(names) + "\\n")
name = names[0]
if "big" in name:
    block = np.ones(200 * 2**20, np.uint8)
if "pair" in name:
    hold = "import time; import numpy as np; block = np.ones(150 * 2**20, np.uint8); time.sleep(0.6)"
    for child in [subprocess.Popen([sys.executable, "-c", hold]) for _ in range(2)]:
        child.wait()
time.sleep(0.3)
if "fail" in name:
    print("Traceback: model exploded", file=sys.stderr)
    sys.exit(3)
if "silent" not in name:
    imgs = np.load(os.path.join(inputs, name))["imgs"]
    np.savez_compressed(os.path.join(outputs, name), segs=np.ones(imgs.shape[:2], np.uint16))
"""


def run_time_eval(*args: str) -> subprocess.CompletedProcess:
    """In this process (the pipeline still runs in fresh child processes); stdout/stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as stop:
            code = stop.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def make_cases(folder: Path, names: list[str]) -> None:
    folder.mkdir()
    for index, name in enumerate(names):
        np.savez_compressed(folder / name, imgs=np.full((8 + index, 9, 3), index, np.uint8),
                            boxes=np.array([[1, 1, 4, 4]]))


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


@pytest.fixture
def stand_in(tmp_path) -> tuple[str, Path]:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    record = tmp_path / "seen.txt"
    return f"{sys.executable} {script} {{inputs}} {{outputs}} {record}", record


def test_two_cases_timed_one_at_a_time(tmp_path, stand_in):
    command, record = stand_in
    make_cases(tmp_path / "imgs", ["2DBox_US_0001.npz", "2DBox_US_0002.npz"])
    before = {p.name: p.read_bytes() for p in (tmp_path / "imgs").iterdir()}
    segs = tmp_path / "segs"
    done = run_time_eval("-i", str(tmp_path / "imgs"), "-o", str(segs), "--command", command, "--repeat", "2")
    assert done.returncode == 0, done.stderr
    assert record.read_text().splitlines() == ["2DBox_US_0001.npz"] * 2 + ["2DBox_US_0002.npz"] * 2
    rows = read_rows(segs / "running_time.csv")
    assert list(rows) == ["2DBox_US_0001.npz", "2DBox_US_0002.npz"]
    for index, (case, row) in enumerate(rows.items()):
        assert (row["runs"], row["status"]) == ("2", "ok")
        assert 0.3 <= float(row["time_mean_s"]) < 30.0 and float(row["time_std_s"]) >= 0.0  # sleeps 0.3 s
        assert float(row["peak_memory_mib"]) > 10  # a Python interpreter with numpy
        with np.load(segs / case) as out:
            assert out["segs"].shape == (8 + index, 9)
    assert {p.name: p.read_bytes() for p in (tmp_path / "imgs").iterdir()} == before  # inputs untouched


def test_failures_are_recorded_and_the_run_goes_on(tmp_path, stand_in):
    command, record = stand_in
    make_cases(tmp_path / "imgs", ["2DBox_US_0001_fail.npz", "2DBox_US_0002_silent.npz", "2DBox_US_0003.npz"])
    segs = tmp_path / "segs"
    done = run_time_eval("-i", str(tmp_path / "imgs"), "-o", str(segs), "--command", command,
                         "--csv", str(tmp_path / "t.csv"))
    assert done.returncode == 1
    rows = read_rows(tmp_path / "t.csv")
    assert rows["2DBox_US_0001_fail.npz"]["status"] == "exit code 3 (run 1 of 1): Traceback: model exploded"
    assert rows["2DBox_US_0002_silent.npz"]["status"] == "no output (run 1 of 1)"
    assert rows["2DBox_US_0003.npz"]["status"] == "ok"
    assert sorted(p.name for p in segs.glob("*.npz")) == ["2DBox_US_0003.npz"]
    assert "Traceback: model exploded" in (segs / "logs" / "2DBox_US_0001_fail.log").read_text()
    assert "  2DBox_US_0001_fail.npz: exit code 3" in done.stderr


def test_peak_memory_and_memory_limit(tmp_path, stand_in):
    command, _ = stand_in
    make_cases(tmp_path / "imgs", ["2DBox_US_0001_big.npz", "2DBox_US_0002.npz"])
    done = run_time_eval("-i", str(tmp_path / "imgs"), "-o", str(tmp_path / "segs"), "--command", command,
                         "--memory", "150M")
    assert done.returncode == 1
    rows = read_rows(tmp_path / "segs" / "running_time.csv")
    big, small = float(rows["2DBox_US_0001_big.npz"]["peak_memory_mib"]), float(rows["2DBox_US_0002.npz"]["peak_memory_mib"])
    assert big >= 200 and small < 150 and big - small >= 190
    assert rows["2DBox_US_0001_big.npz"]["status"].startswith("peak memory ")
    assert rows["2DBox_US_0001_big.npz"]["status"].endswith(" MiB above limit 150 MiB (run 1 of 1)")
    assert rows["2DBox_US_0002.npz"]["status"] == "ok"


def test_peak_memory_adds_up_processes_running_together(tmp_path, stand_in):
    command, _ = stand_in
    make_cases(tmp_path / "imgs", ["2DBox_US_0001_pair.npz", "2DBox_US_0002_big.npz"])
    done = run_time_eval("-i", str(tmp_path / "imgs"), "-o", str(tmp_path / "segs"), "--command", command)
    assert done.returncode == 0, done.stderr
    rows = read_rows(tmp_path / "segs" / "running_time.csv")
    pair, big = (float(rows[f"2DBox_US_000{i}.npz"]["peak_memory_mib"]) for i in ("1_pair", "2_big"))
    # two 150 MiB children side by side (plus three interpreters) against one 200 MiB process
    assert pair >= 300 and 200 <= big < 300


def test_timeout_kills_the_run(tmp_path):
    make_cases(tmp_path / "imgs", ["2DBox_US_0001.npz"])
    done = run_time_eval("-i", str(tmp_path / "imgs"), "-o", str(tmp_path / "segs"), "--command",
                         "sleep 30", "--timeout", "0.5")
    assert done.returncode == 1
    row = read_rows(tmp_path / "segs" / "running_time.csv")["2DBox_US_0001.npz"]
    assert row["status"] == "timed out after 0.5 s (run 1 of 1)" and float(row["time_mean_s"]) < 15


def test_docker_command_is_the_organisers():
    work = Path("/data/run")
    assert docker_command("TeamX", work) == [
        "docker", "container", "run", "-m", "8G", "--name", "teamx", "--rm",
        "-v", "/data/run/inputs/:/workspace/inputs/", "-v", "/data/run/outputs/:/workspace/outputs/",
        "teamx:latest", "/bin/bash", "-c", "sh predict.sh"]
    assert docker_command("ghcr.io/lab/seg:v2", work, "4G")[3:7] == ["-m", "4G", "--name", "seg"]
    assert docker_command("ghcr.io/lab/seg:v2", work)[-4] == "ghcr.io/lab/seg:v2"
    assert parse_memory("8G") == 8 * 2**30 and parse_memory("512m") == 512 * 2**20 and parse_memory("100") == 100
    with pytest.raises(ValueError, match=r"^memory limit 'lots' is not a size like 8G, 512M or 1048576$"):
        parse_memory("lots")


def test_docker_mode_with_a_fake_docker_client(tmp_path):
    # no Docker engine here: a fake `docker` on PATH records its argv and emulates the mounts;
    # the tool runs as a script here, as users run it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(f"""#!{sys.executable}
import shutil, sys
from pathlib import Path
open({str(tmp_path / 'argv.txt')!r}, "a").write(repr(sys.argv[1:]) + "\\n")
mounts = dict(reversed(a.split(":")) for a in sys.argv[1:] if a.endswith("/workspace/inputs/") or a.endswith("/workspace/outputs/"))
for case in Path(mounts["/workspace/inputs/"]).glob("*.npz"):
    shutil.copy(case, Path(mounts["/workspace/outputs/"]) / case.name)
""")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    make_cases(tmp_path / "imgs", ["3DBox_CT_0001.npz"])
    work = tmp_path / "work"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, str(SCRIPT), "-i", str(tmp_path / "imgs"), "-o", str(tmp_path / "segs"),
                           "--docker", "myteam", "--work-dir", str(work)], capture_output=True, encoding="utf-8",
                          cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "argv.txt").read_text().splitlines() == [repr(docker_command("myteam", work)[1:])]
    row = read_rows(tmp_path / "segs" / "running_time.csv")["3DBox_CT_0001.npz"]
    assert (row["status"], row["peak_memory_mib"]) == ("ok", "")  # the container's memory is not ours to see
    assert (tmp_path / "segs" / "3DBox_CT_0001.npz").is_file()
    assert stat.S_IMODE((work / "outputs").stat().st_mode) == 0o777


def test_bad_arguments(tmp_path):
    done = run_time_eval("-i", str(tmp_path / "nope"), "-o", str(tmp_path / "s"), "--command", "true")
    assert done.returncode == 2 and f"error: imgs dir {tmp_path / 'nope'} is not a folder" in done.stderr
    done = run_time_eval("-i", str(tmp_path), "-o", str(tmp_path / "s"), "--command", "true", "--docker", "x")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr


def test_peak_memory_is_not_inflated_by_the_parent(tmp_path):
    # a spawned child keeps its spawner's pre-exec high-water mark; the launcher keeps that floor small
    import resource

    from evaluation.process_run import run_measured

    parent_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run = run_measured(["true"], tmp_path / "log")
    assert run.returncode == 0 and run.peak_rss_bytes < 16 * 2**20 < parent_kib * 1024


def test_an_interrupted_measurement_kills_the_command_it_started(tmp_path):
    import signal
    import threading
    import time

    from evaluation.process_run import run_measured

    pid_file = tmp_path / "pid"
    command = [sys.executable, "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
               "time.sleep(60)"]

    def interrupt_when_started() -> None:
        for _ in range(200):
            if pid_file.is_file() and pid_file.read_text():
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    # Ctrl-C as a terminal delivers it, even where this run was started with SIGINT ignored
    # (nohup ... & without job control).
    caller_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_when_started, daemon=True).start()
    started = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_measured(command, tmp_path / "log")
    finally:
        signal.signal(signal.SIGINT, caller_handler)
    assert time.perf_counter() - started < 30
    child = Path(f"/proc/{pid_file.read_text()}/stat")

    def running() -> bool:  # a zombie waiting for a reaper is dead too
        try:
            return child.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except FileNotFoundError:
            return False

    for _ in range(100):
        if not running():
            break
        time.sleep(0.05)
    assert not running()
