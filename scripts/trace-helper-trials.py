#!/usr/bin/env python3
"""Gated runs of the Manager / ProcessPoolExecutor programs in tests/python/:
N runs each with one seed (5); per program: exit codes that differ from
python3's, distinct stdout texts, distinct per-process step lists, and
whether the stdout lines equal python3's (the unlocked Manager counter is
expected not to: a race decides its value).

    scripts/trace-helper-trials.py target/debug/forkscope "$(python3 -c 'import sys; print(sys.executable)')" 20
"""
import json, subprocess, sys, hashlib, collections, time
exe, py = sys.argv[1], sys.argv[2]
progs = [("manager_queue.py", []), ("manager_value_dict.py", []), ("process_pool_executor.py", []),
         ("manager_start_methods.py", ["fork"]), ("manager_start_methods.py", ["spawn"]),
         ("manager_start_methods.py", ["forkserver"]), ("manager_value_unlocked.py", [])]
N = int(sys.argv[3])
for name, args in progs:
    ref = subprocess.run([py, "tests/python/" + name] + args, capture_output=True, text=True)
    outs, scheds, bad, t0 = collections.Counter(), collections.Counter(), 0, time.time()
    for i in range(N):
        r = subprocess.run([exe, "trace", "--python", py, "--format", "jsonl", "--timeout", "60",
                            "--schedule", "seeded", "--seed", "5", "tests/python/" + name] + args,
                           capture_output=True, text=True)
        ev = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        out = "".join(e["text"] for e in ev if e["kind"] == "output" and e.get("stream") == "stdout")
        steps = collections.defaultdict(list)
        for e in ev:
            if e["kind"] == "pending":
                steps[e.get("thread") or e["proc"]].append(e["action"] + ("!" if e.get("retry") else ""))
        if r.returncode != ref.returncode:
            bad += 1
        outs[out] += 1
        scheds[hashlib.md5(json.dumps(sorted(steps.items())).encode()).hexdigest()[:8]] += 1
    same_as_py = sorted(out.splitlines()) == sorted(ref.stdout.splitlines()) if len(outs) == 1 else None
    print("%-28s %-10s runs %d, bad exit %d, distinct outputs %d, distinct step lists %d, = python3 lines %s, %.1fs/run"
          % (name, " ".join(args), N, bad, len(outs), len(scheds), same_as_py, (time.time() - t0) / N))
