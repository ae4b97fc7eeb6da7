"""Launcher run as `python -S measure_child.py REPORT ARGV...`: spawns ARGV, waits, writes
`<exit code> <wall seconds> <peak KiB>` to REPORT, exits with the child's exit code.

Peak memory of the process tree is the larger of two measures:
- the kernel's `ru_maxrss` over the waited-for descendants (exact for each process, but the largest
  single process, not a sum);
- the largest sum of resident sets of the whole tree (the command and every descendant still linked
  to it), sampled every `SAMPLE_SECONDS` from /proc, so processes running side by side add up.

Standard library only and started without `site`, so its own resident set stays near 8 MiB. That
matters because Linux keeps, in a spawned child's `ru_maxrss`, the spawner's high-water mark from
before `exec`: measured from the big parent process, every case would report at least the parent's size.
"""
import os
import resource
import sys
import threading
import time

SAMPLE_SECONDS = 0.02
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def tree_rss_kib(root):
    """Summed resident set (KiB) of `root` and its descendants, found through /proc children lists."""
    total, stack, seen = 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * PAGE_KIB
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                    stack.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError, IndexError):  # the process (or thread) ended meanwhile
            continue
    return total


def main():
    report, argv = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    peak, done = [0], threading.Event()

    def sample():
        while not done.wait(SAMPLE_SECONDS):
            peak[0] = max(peak[0], tree_rss_kib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    peak_kib = max(peak[0], resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    with open(report, "w") as handle:
        handle.write(f"{code} {seconds!r} {peak_kib}")
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
