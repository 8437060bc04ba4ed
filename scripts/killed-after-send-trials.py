#!/usr/bin/env python3
"""A child SIGKILLed as soon as it told its parent (docs/reliability/ingest.md).

usage: scripts/killed-after-send-trials.py BIN N

Runs the scenario below N times. A run is wrong unless the child shows
`sleep, wake, write, sleep, wake, send` first, its `seq` numbers run 1, 2, 3 …
without a gap, and it ends by SIGKILL. Also counts the last event the child
showed before the kill (in its busy loop of `sleep 0` + `write`).
"""
import subprocess, sys, json, os, tempfile
SCENARIO = '''name = "killed-after-send"
title = "a child killed as soon as it said so"
explain = "x"
[values]
v = 0
[pipes.p]
ends = ["a", "b"]
[roles.main]
steps = [
  { spawn = "child", as = "c" },
  { recv = "a" },
  { signal = "c", sig = "KILL" },
  { join = "c" },
]
[roles.child]
steps = [
  { sleep_ms = 0 },
  { write = "v", value = "1" },
  { sleep_ms = 0 },
  { send = "b", value = "1" },
  { sleep_ms = 0 },
  { loop = [ { sleep_ms = 0 }, { write = "v", value = "2" } ] },
]
'''
path = os.path.join(tempfile.mkdtemp(prefix='killed-after-send-'), 'killed.toml')
open(path, 'w').write(SCENARIO)
b, n = sys.argv[1], int(sys.argv[2])
bad = 0; tails = {}
for i in range(n):
    out = subprocess.run([b, 'run', path, '--format', 'jsonl'], capture_output=True, text=True).stdout
    ev = [json.loads(l) for l in out.splitlines()]
    kinds = [e['kind'] for e in ev if e['proc'] == 'main.1' and e['kind'] not in ('hello', 'resource', 'reaped', 'exit')]
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
