#!/usr/bin/env python3
"""A child SIGKILLed as soon as it told its parent (docs/reliability/ingest.md).

usage: scripts/killed-after-send-trials.py BIN N
       (EXTRA='--schedule seeded': more arguments for each run)

Runs tests/fixtures/killed-after-send.toml N times. A run is wrong unless the child shows
`sleep, wake, write, sleep, wake, send` first, its `seq` numbers run 1, 2, 3 …
without a gap, and it ends by SIGKILL. Also counts the last event the child
showed before the kill (in its busy loop of `sleep 0` + `write`).
"""
import subprocess, sys, json, os
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fixtures', 'killed-after-send.toml')
b, n = sys.argv[1], int(sys.argv[2])
bad = 0; tails = {}
for i in range(n):
    out = subprocess.run([b, 'run', path, '--format', 'jsonl'] + os.environ.get('EXTRA', '').split(), capture_output=True, text=True).stdout
    ev = [json.loads(l) for l in out.splitlines()]
    kinds = [e['kind'] for e in ev if e['proc'] == 'main.1' and e['kind'] not in ('hello', 'resource', 'reaped', 'exit', 'pending', 'go')]
    first = kinds[:6]
    ok = first == ['sleep', 'wake', 'write', 'sleep', 'wake', 'send'] and any(e['kind'] == 'exit' and e['proc'] == 'main.1' and e.get('signal') == 'SIGKILL' for e in ev)
    # in the loop: sleep, wake, write repeated; the last shown step may end after any of them
    loop = kinds[6:]
    seqs = [e['seq'] for e in ev if e['proc'] == 'main.1' and e['kind'] not in ('exit', 'reaped')]
    if seqs != list(range(1, len(seqs) + 1)):
        ok = False
    last = loop[-1] if loop else '-'
    tails[last] = tails.get(last, 0) + 1
    if not ok:
        bad += 1
        print('BAD run', i, first, seqs[:10], len(seqs)) if bad < 5 else None
print(f'{n} runs, {bad} wrong; last event shown before the kill: {tails}')
