#!/usr/bin/env python3
"""Cost per short-lived child of several forkscope binaries, side by side.

    scripts/per-child-side-by-side.py ROUNDS BIN [BIN ...]

For each round and each binary in turn: `BIN run benches/spawn.toml` with
0 and with 1,000 children (`--format jsonl`, output discarded); the
difference divided by 1,000 is one sample. Prints, per binary, the median
wall time per child (with min and max), the minor page faults and the CPU
of the whole process tree per child (getrusage of the waited children),
and the machine's busy time per child: CPUs x wall minus the time the
CPUs were idle (cpuidle's counters; this counts other work on the
machine too, and what a task's CPU time leaves out, e.g. RCU callbacks;
both cores stay busy through such a run, so it follows the wall time).
Interleaved so that a change in the machine's state meets every binary
alike (docs/PERFORMANCE.md, "Issue 12, third round on the merged main").
Run it from the project's root.
"""
import glob
import os
import resource
import statistics
import subprocess
import sys
import time


def idle_s():
    """Seconds all CPUs have been idle (0 if cpuidle is not there)."""
    paths = glob.glob("/sys/devices/system/cpu/cpu*/cpuidle/state*/time")
    return sum(int(open(p).read()) for p in paths) / 1e6


def run(binary, children):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    idle = idle_s()
    start = time.perf_counter()
    subprocess.run(
        [binary, "run", "benches/spawn.toml", "--max-procs", "1024",
         "--set", f"children={children}", "--format", "jsonl"],
        stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    busy = (os.cpu_count() or 1) * wall - (idle_s() - idle)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, after.ru_minflt - before.ru_minflt, cpu, busy


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds, binaries = int(sys.argv[1]), sys.argv[2:]
    samples = {b: [] for b in binaries}
    for _ in range(rounds):
        for b in binaries:
            w0, f0, c0, b0 = run(b, 0)
            w1, f1, c1, b1 = run(b, 1000)
            samples[b].append(((w1 - w0) * 1e3, (f1 - f0) / 1000, (c1 - c0) * 1e3,
                               (b1 - b0) * 1e3))
    for b in binaries:
        walls = [s[0] for s in samples[b]]
        faults = [s[1] for s in samples[b]]
        cpus = [s[2] for s in samples[b]]
        busy = [s[3] for s in samples[b]]
        print(f"{b}: wall per child median {statistics.median(walls):.0f} µs "
              f"(min {min(walls):.0f}, max {max(walls):.0f}); "
              f"minor faults per child {statistics.median(faults):.1f}; "
              f"CPU per child {statistics.median(cpus):.0f} µs; "
              f"machine busy per child {statistics.median(busy):.0f} µs")


if __name__ == "__main__":
    main()
