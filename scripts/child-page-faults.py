#!/usr/bin/env python3
"""Page faults of forkscope's short-lived children, by mapping.

usage: scripts/child-page-faults.py BIN      (from the project root; needs perf)

Records every page fault (`perf record -d -e page-faults -c 1`) of one run
of benches/spawn.toml (1,000 children), matches each fault's address to
the mappings, and prints the faults per child by mapping, and the forker's
(`main`) per child. docs/PERFORMANCE.md, "Where a short-lived child's time
goes".
"""
import collections, re, subprocess, sys, tempfile, os

if len(sys.argv) != 2:
    sys.exit(__doc__)
binary = sys.argv[1]
with tempfile.TemporaryDirectory() as d:
    data = os.path.join(d, 'pf.data')
    subprocess.run(['perf', 'record', '-q', '-d', '-e', 'page-faults', '-c', '1', '-o', data, '--',
                    binary, 'run', 'benches/spawn.toml', '--format', 'jsonl'],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    mm = subprocess.run(['perf', 'script', '-i', data, '--show-mmap-events', '-F', 'pid,addr'],
                        capture_output=True, text=True).stdout
    faults = subprocess.run(['perf', 'script', '-i', data, '-F', 'pid,addr'],
                            capture_output=True, text=True).stdout
maps = []
for line in mm.splitlines():
    m = re.search(r'MMAP.*\[(0x[0-9a-f]+)\((0x[0-9a-f]+)\) @ \S+ .*?\]: (\S+) (.*)$', line)
    if m:
        start = int(m.group(1), 16)
        maps.append((start, start + int(m.group(2), 16), m.group(3) + ' ' + m.group(4).strip().split('/')[-1]))
rows = [l.split() for l in faults.splitlines() if len(l.split()) == 2]
by_pid = collections.Counter(p for p, _ in rows)
forker = by_pid.most_common(1)[0][0]
children = {p for p, n in by_pid.items() if n < 200}

def mapping(addr):
    found = 'unknown'
    for start, end, name in maps:
        if start <= addr < end:
            found = name
    return found

per = collections.Counter(mapping(int(a, 16)) for p, a in rows if p in children)
n = max(len(children), 1)
print(f"{len(children)} children: {sum(per.values()) / n:.1f} faults each; main {by_pid[forker] / n:.1f} per child")
for name, count in per.most_common(15):
    print(f"  {count / n:6.2f}  {name}")
