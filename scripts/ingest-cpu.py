#!/usr/bin/env python3
"""CPU per event of the ingest flood, per thread (docs/PERFORMANCE.md, h-ingest).

usage: scripts/ingest-cpu.py ROUNDS BIN...

Runs `BIN run benches/stress.toml --max-procs 256 --format jsonl --set
period_ms=0 --set writes=1000` (600 000 events) ROUNDS times per binary,
the binaries alternately. For each run: events, wall time, and the CPU per
event of `forkscope run`'s threads (collector, main, stdout; sampled from
/proc/PID/task/*/stat every 20 ms until it exits) and of the rest (the runner
and its workers: getrusage(RUSAGE_CHILDREN) minus those), with the load
average. CPU per event is the figure to compare on a loaded machine.
"""
import subprocess, sys, os, time, resource
ST=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'benches', 'stress.toml')
hz=os.sysconf('SC_CLK_TCK')
def ticks(path):
    try:
        t=open(path).read(); f=t[t.rfind(')')+2:].split()
        return int(f[11])+int(f[12])
    except Exception: return None
R=int(sys.argv[1])
import tempfile
OUT=os.path.join(tempfile.mkdtemp(prefix='ingest-cpu-'), 'out.jsonl')
for r in range(R):
    for b in sys.argv[2:]:
        ru0=resource.getrusage(resource.RUSAGE_CHILDREN)
        out=open(OUT,'wb')
        t0=time.time()
        p=subprocess.Popen([b,'run',ST,'--max-procs','256','--format','jsonl','--set','period_ms=0','--set','writes=1000'],stdout=out,stderr=subprocess.DEVNULL)
        th={}
        while p.poll() is None:
            try:
                for t in os.listdir(f'/proc/{p.pid}/task'):
                    c=open(f'/proc/{p.pid}/task/{t}/comm').read().strip()
                    v=ticks(f'/proc/{p.pid}/task/{t}/stat')
                    if v is not None: th[(t,c)]=max(th.get((t,c),0),v)
            except Exception: pass
            time.sleep(0.02)
        wall=time.time()-t0
        ru1=resource.getrusage(resource.RUSAGE_CHILDREN)
        out.close()
        n=0
        for line in open(OUT,'rb'):
            if b'"kind":"sleep"' in line or b'"kind":"wake"' in line or b'"kind":"write"' in line: n+=1
        total=(ru1.ru_utime-ru0.ru_utime)+(ru1.ru_stime-ru0.ru_stime)
        by={}
        for (t,c),v in th.items():
            k='main' if t==str(p.pid) else c
            by[k]=by.get(k,0)+v/hz
        own=sum(by.values())
        us=lambda s: s/n*1e6 if n else 0
        print(f"{os.path.basename(b):10} {n} ev {wall:.2f}s {n/wall/1000:.0f}k/s | total {us(total):.2f} us/ev | collector {us(by.get('collector',0)):.2f} main {us(by.get('main',0)):.2f} stdout {us(by.get('stdout',0)):.2f} | runner+workers {us(total-own):.2f} | load {open('/proc/loadavg').read().split()[0]}")
