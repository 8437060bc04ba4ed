#!/usr/bin/env python3
"""Cost per short-lived child of several forkscope binaries, side by side.

    scripts/per-child-side-by-side.py ROUNDS BIN [BIN ...]

For each round and each binary in turn: `BIN run benches/spawn.toml` with
0 and with 1,000 children (`--format jsonl`, output discarded); the
difference divided by 1,000 is one sample. Prints, per binary, the median
wall time per child (with min and max), the minor page faults and the CPU
of the whole process tree per child (getrusage of the waited children).
Interleaved so that a change in the machine's state meets every binary
alike (docs/PERFORMANCE.md, "Issue 12, third round on the merged main").
Run it from the project's root.
"""
import resource
import statistics
import subprocess
import sys
import time


def run(binary, children):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [binary, "run", "benches/spawn.toml", "--max-procs", "1024",
         "--set", f"children={children}", "--format", "jsonl"],
        stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, after.ru_minflt - before.ru_minflt, cpu


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds, binaries = int(sys.argv[1]), sys.argv[2:]
    samples = {b: [] for b in binaries}
    for _ in range(rounds):
        for b in binaries:
            w0, f0, c0 = run(b, 0)
            w1, f1, c1 = run(b, 1000)
            samples[b].append(((w1 - w0) * 1e3, (f1 - f0) / 1000, (c1 - c0) * 1e3))
    for b in binaries:
        walls = [s[0] for s in samples[b]]
        faults = [s[1] for s in samples[b]]
        cpus = [s[2] for s in samples[b]]
        print(f"{b}: wall per child median {statistics.median(walls):.0f} µs "
              f"(min {min(walls):.0f}, max {max(walls):.0f}); "
              f"minor faults per child {statistics.median(faults):.1f}; "
              f"CPU per child {statistics.median(cpus):.0f} µs")


if __name__ == "__main__":
    main()
