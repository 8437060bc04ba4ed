#!/usr/bin/env python3
"""Runs built-in scenarios' Python listings with python3 and the scenarios
with forkscope (defaults), N times each, and prints what both printed, with
numbers that vary (pids, times) written as N, as a multiset per run.

    scripts/listing-vs-python.py [--runs 5] [--bin target/debug/forkscope] NAME...
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def norm(line, keep_numbers):
    if keep_numbers:
        return line
    return re.sub(r"-?\d+(\.\d+)?", "N", line)


def python_run(src):
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(src)
    try:
        # Line-buffered stdout, as on a terminal.
        boot = ("import sys, runpy; sys.stdout.reconfigure(line_buffering=True); "
                f"runpy.run_path({f.name!r}, run_name='__main__')")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        p = subprocess.run([sys.executable, "-c", boot], capture_output=True, text=True,
                           timeout=60, env=env)
        return p.returncode, p.stdout.splitlines(), p.stderr
    finally:
        os.unlink(f.name)


def forkscope_run(binary, name, extra):
    p = subprocess.run([binary, "run", name, "--format", "jsonl", *extra],
                       capture_output=True, text=True, timeout=60)
    text = "".join(json.loads(l).get("text", "") for l in p.stdout.splitlines()
                   if '"kind":"output"' in l and '"stream":"stdout"' in l)
    return p.returncode, text.splitlines(), p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/debug/forkscope"))
    ap.add_argument("--keep-numbers", action="store_true")
    ap.add_argument("names", nargs="+")
    a = ap.parse_args()
    for name in a.names:
        with open(os.path.join(ROOT, "assets/scenarios", name + ".toml"), "rb") as f:
            src = tomllib.load(f)["source"]
        for who, run in (("python3", lambda: python_run(src)),
                         ("forkscope", lambda: forkscope_run(a.bin, name, []))):
            seen = collections.Counter()
            codes = collections.Counter()
            for _ in range(a.runs):
                code, lines, _err = run()
                codes[code] += 1
                seen[tuple(sorted(norm(l, a.keep_numbers) for l in lines))] += 1
            print(f"{name} {who}: exit codes {dict(codes)}")
            for lines, n in seen.most_common():
                print(f"  {n}x {list(lines)}")


if __name__ == "__main__":
    main()
