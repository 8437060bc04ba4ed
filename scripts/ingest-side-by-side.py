#!/usr/bin/env python3
"""Sustained ingest of several forkscope binaries, interleaved run by run.

usage: scripts/ingest-side-by-side.py ROUNDS BIN [BIN ...]   (from the project root)

Each round runs `BIN run benches/stress.toml --max-procs 300 --set
period_ms=0 --set writes=1000 --format jsonl` for every binary in turn (the
order reversed every other round), checks that all 600,000 sleep/wake/write
lines came out, and prints per binary the median events/s over the whole
command and the CPU per event of the whole tree (getrusage of the waited
children). docs/PERFORMANCE.md, "Issue 12, fourth round: probe events over a
pipe (h-pipe)"; scripts/ingest-cpu.py splits the CPU by thread.
"""
import resource, statistics, subprocess, sys, time

if len(sys.argv) < 3:
    sys.exit(__doc__)
bins = sys.argv[2:]; rounds = int(sys.argv[1])
res = {b: [] for b in bins}
for r in range(rounds):
    for b in (bins if r % 2 == 0 else bins[::-1]):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        out = subprocess.run([b, 'run', 'benches/stress.toml', '--max-procs', '300', '--set', 'period_ms=0', '--set', 'writes=1000', '--format', 'jsonl'], capture_output=True).stdout
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        n = sum(1 for l in out.splitlines() if b'"kind":"sleep"' in l or b'"kind":"wake"' in l or b'"kind":"write"' in l)
        if n != 600000:
            sys.exit(f"{b}: {n} of 600000 events came out")
        res[b].append((600000 / wall, cpu / 600000 * 1e6))
for b in bins:
    rates = [x[0] for x in res[b]]; cpus = [x[1] for x in res[b]]
    print(f"{b}: whole command median {statistics.median(rates)/1e3:.0f} k events/s (min {min(rates)/1e3:.0f}, max {max(rates)/1e3:.0f}); CPU per event (rusage of the tree) median {statistics.median(cpus):.2f} µs")
