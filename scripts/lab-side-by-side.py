#!/usr/bin/env python3
"""The race lab's pace with several forkscope binaries, side by side.

    scripts/lab-side-by-side.py ROUNDS BIN [BIN ...]

For each round and each binary in turn, as `cargo bench --bench engine --
engine` measures them:

- a gated step: `BIN run unlocked-counter --schedule seeded --seed 1
  --set workers=2 --set adds=N --time-scale 0 --format jsonl` with 500
  and 2,000 adds; the difference in wall time over the difference in
  steps (the saved schedule's lines) is one sample, in us/step;
  the long run's wall time and CPU (the whole process tree) too;
- `BIN explore unlocked-counter --set workers=2 --set adds=2`: wall time,
  and the CPU of the whole process tree (getrusage of the waited
  children: forkscope, its runner and the scenario's processes).

Prints each sample, then per binary the median (min-max). Interleaved so
that a change in the machine's load meets every binary alike. Run it
from the project's root.
"""
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def timed(args):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # Output read through a pipe, as the bench reads it.
    subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                   check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def gated(binary, adds, schedule):
    wall, cpu = timed([binary, "run", "unlocked-counter", "--schedule", "seeded",
                     "--seed", "1", "--set", "workers=2", "--set",
                     f"adds={adds}", "--time-scale", "0", "--save-schedule",
                     schedule, "--format", "jsonl"])
    with open(schedule) as f:
        steps = sum(1 for line in f if line.strip() and not line.startswith("#"))
    return wall, steps, cpu


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds = int(sys.argv[1])
    bins = sys.argv[2:]
    per_step = {b: [] for b in bins}
    explore = {b: [] for b in bins}
    explore_cpu = {b: [] for b in bins}
    long_wall = {b: [] for b in bins}
    long_cpu = {b: [] for b in bins}
    with tempfile.TemporaryDirectory() as tmp:
        schedule = os.path.join(tmp, "run.schedule")
        for r in range(rounds):
            for b in bins:
                w1, s1, _ = gated(b, 500, schedule)
                w2, s2, c2 = gated(b, 2000, schedule)
                us = (w2 - w1) * 1e6 / (s2 - s1)
                wall, cpu = timed([b, "explore", "unlocked-counter", "--set",
                                   "workers=2", "--set", "adds=2", "--out", tmp])
                per_step[b].append(us)
                long_wall[b].append(w2)
                long_cpu[b].append(c2)
                explore[b].append(wall)
                explore_cpu[b].append(cpu)
                print(f"round {r} {b}: gated {us:.1f} us/step ({s1} and {s2} steps; "
                      f"the long one {w2:.3f} s wall, {c2:.3f} s CPU), "
                      f"explore {wall:.3f} s wall, {cpu:.3f} s CPU", flush=True)
    for b in bins:
        def fig(v, f):
            return f"{f(statistics.median(v))} ({f(min(v))}-{f(max(v))})"
        print(f"{b}: gated {fig(per_step[b], lambda x: f'{x:.1f}')} us/step, "
              f"the long run {fig(long_wall[b], lambda x: f'{x:.3f}')} s wall, "
              f"{fig(long_cpu[b], lambda x: f'{x:.3f}')} s CPU; "
              f"explore {fig(explore[b], lambda x: f'{x:.3f}')} s wall, "
              f"{fig(explore_cpu[b], lambda x: f'{x:.3f}')} s CPU")


if __name__ == "__main__":
    main()
