#!/usr/bin/env python3
"""Cost of forkscope's Python probe per traced operation.

    scripts/trace-cost.py [--bin target/release/forkscope] [--runs 5]

Runs scripts/trace-cost-program.py (200 os.fork()+waitpid, 200 thread
start+join, 20 000 probe events) plainly and under `forkscope trace`,
alternating, and prints the median of each figure. The difference per
operation is what tracing costs it. Figures in docs/PERFORMANCE.md.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
prog = os.path.join(here, "trace-cost-program.py")
ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=os.path.join(here, "..", "target", "release", "forkscope"))
ap.add_argument("--runs", type=int, default=5)
a = ap.parse_args()
py = subprocess.run(
    ["python3", "-c", "import sys; print(sys.executable)"], capture_output=True, text=True
).stdout.strip()
pat = re.compile(r"fork\+waitpid (\d+) us, thread start\+join (\d+) us, emit ([\d.na]+) us")
plain, traced = [], []
env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
for _ in range(a.runs):
    r = subprocess.run([py, prog], capture_output=True, text=True, env=env)
    plain.append(pat.search(r.stderr).groups())
    r = subprocess.run(
        [a.bin, "trace", "--python", py, "--format", "jsonl", prog],
        capture_output=True, text=True, env=env,
    )
    err = "".join(
        e.get("text", "")
        for e in map(json.loads, r.stdout.splitlines())
        if e["kind"] == "output" and e.get("stream") == "stderr"
    )
    traced.append(pat.search(err).groups())


def med(rows, i):
    return statistics.median(float(r[i]) for r in rows)


print("python", sys.version.split()[0], "runs", a.runs)
for i, what in enumerate(["os.fork()+waitpid", "Thread start+join"]):
    p, t = med(plain, i), med(traced, i)
    print("%-20s plain %7.0f us  traced %7.0f us  cost %+7.0f us" % (what, p, t, t - p))
print("%-20s traced %7.2f us per event" % ("_wire.emit", med(traced, 2)))
