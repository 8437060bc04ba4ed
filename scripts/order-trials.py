#!/usr/bin/env python3
"""Runs scenarios N times each (forkscope run --format jsonl) and checks, for
every process: its hello comes first, its own events' seq are 1..n (none
lost; a `reaped` counts as its reaper's), each thread's in the order shown
(threads of one process are shown in time order, which may differ from
the order they took the probe's lock), and nothing of its own comes after
its exit. usage: scripts/order-trials.py BIN N SCENARIO...
(EXTRA='--schedule seeded': more arguments for each run)
(docs/reliability/h-review4.md)"""
import subprocess, sys, json, os
b, n, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
total = bad = 0
for path in paths:
    for i in range(n):
        total += 1
        try:
            out = subprocess.run([b, 'run', path, '--format', 'jsonl'] + os.environ.get('EXTRA', '').split(), capture_output=True, text=True, timeout=60).stdout
        except subprocess.TimeoutExpired:
            print('TIMEOUT', path); bad += 1; continue
        ev = [json.loads(l) for l in out.splitlines() if l.startswith('{')]
        procs = {}
        problems = []
        exited = set()
        for e in ev:
            p = e['proc']; k = e['kind']
            if k in ('exit',):
                exited.add(p); continue
            if k == 'reaped':
                p = e['by']
            if 'seq' not in e or e.get('seq', 0) == 0:
                continue
            if p in exited:
                problems.append(f'{p} {k} after exit')
            procs.setdefault(p, []).append((e['seq'], k, e.get('thread') if k != 'reaped' else None))
        for p, s in procs.items():
            seqs = [x[0] for x in s]
            if s[0][1] != 'hello' and p != 'runner':
                problems.append(f'{p} first is {s[0]}')
            # none lost: the seqs are 1..n (threads of one process may be
            # shown in time order, not in the order they took the lock)
            if sorted(seqs) != list(range(1, len(seqs) + 1)):
                problems.append(f'{p} seqs {sorted(seqs)[:12]}...')
            # in order within each thread
            for t in set(x[2] for x in s):
                ts = [x[0] for x in s if x[2] == t]
                if ts != sorted(ts):
                    problems.append(f'{p} thread {t} out of order')
        if problems:
            bad += 1
            print('BAD', path, i, problems[:3])
print(f'{total} runs, {bad} wrong')
