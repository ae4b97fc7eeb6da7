"""Launcher run as `python -S measure_child.py REPORT ARGV...`: spawns ARGV, waits, writes
`<exit code> <wall seconds> <peak RSS KiB>` to REPORT, exits with the child's exit code.

Standard library only and started without `site`, so its own resident set stays near 8 MiB. That
matters because Linux keeps, in a spawned child's `ru_maxrss`, the spawner's high-water mark from
before `exec`: measured from the big parent process, every case would report at least the parent's size.
"""
import os
import resource
import sys
import time

report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status = os.waitpid(pid, 0)
seconds = time.perf_counter() - start
code = os.waitstatus_to_exitcode(status)
with open(report, "w") as handle:
    handle.write(f"{code} {seconds!r} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
sys.exit(code if code >= 0 else 128 - code)
