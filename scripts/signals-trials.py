#!/usr/bin/env python3
"""Gated runs of `signals` (seeds 0..N-1, --time-scale 0): each must tell the
free run's story (SIGSTOP, SIGCONT, SIGTERM; main.1 reaped by SIGTERM), each
process's seq in order, nothing after its exit; the one gap allowed is
main's seq after the SIGTERM, which the exit main reports about main.1 took.
usage: scripts/signals-trials.py BIN N  (docs/reliability/h-sig.md)"""
import json, subprocess, sys
b = sys.argv[1]; n = int(sys.argv[2]); bad = 0
for i in range(n):
    out = subprocess.run([b, 'run', 'signals', '--format', 'jsonl', '--schedule', 'seeded', '--seed', str(i), '--time-scale', '0', '--timeout', '30'], capture_output=True, text=True, timeout=60).stdout
    ev = [json.loads(l) for l in out.splitlines() if l.startswith('{')]
    by = {}
    exited = set(); problems = []
    for e in ev:
        p = e['by'] if e['kind'] == 'reaped' else e['proc']
        if e['kind'] == 'exit': exited.add(e['proc']); continue
        if e['seq'] == 0: continue
        if p in exited: problems.append(f'{p} {e["kind"]} after exit')
        by.setdefault(p, []).append(e['seq'])
    for p, s in by.items():
        if s != sorted(s): problems.append(f'{p} out of order')
        miss = sorted(set(range(1, max(s) + 1)) - set(s))
        term = [e['seq'] for e in ev if e['kind'] == 'signal' and e['signal'] == 'SIGTERM']
        if miss and not (p == 'main' and miss == [term[0] + 1]): problems.append(f'{p} missing {miss}')
    story = [e['signal'] for e in ev if e['kind'] == 'signal']
    reaped = [e.get('signal') for e in ev if e['kind'] == 'reaped' and e['proc'] == 'main.1']
    if story != ['SIGSTOP', 'SIGCONT', 'SIGTERM'] or reaped != ['SIGTERM']: problems.append(f'story {story} {reaped}')
    if problems: bad += 1; print('BAD', i, problems[:3])
print(f'{n} runs, {bad} wrong beyond the exit main reports about main.1 (its seq)')
