#!/usr/bin/env python3
"""Lists the processes of one run that are still alive, and fails if any are.

A run is marked by an environment variable that every process it starts
inherits (the runner, every scenario process, exec'd programs):

    export FORKSCOPE_RUN_MARK=$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
    ... run forkscope, cargo test ...
    python3 scripts/leftovers.py FORKSCOPE_RUN_MARK=$FORKSCOPE_RUN_MARK [--wait-s 5]

Only processes carrying that exact NAME=VALUE are looked at, never every
process named forkscope on the machine. This script and its ancestors (the
shell that started it carries the mark too) are left out. Zombies are left
out: they hold no memory and their parent (or init) reaps them.
"""
import os
import sys
import time


def ancestors():
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            pid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError):
            break
    return pids


def marked(mark, skip):
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        state = stat[stat.rindex(b")") + 2 :].split()[0].decode()
        if mark in env and state != "Z":
            found.append(f"{name} {state} {cmd}")
    return found


def main():
    args = sys.argv[1:]
    wait_s = 5.0
    if "--wait-s" in args:
        i = args.index("--wait-s")
        wait_s = float(args[i + 1])
        del args[i : i + 2]
    if len(args) != 1 or "=" not in args[0]:
        print(__doc__, file=sys.stderr)
        return 2
    mark = args[0].encode()
    skip = ancestors()
    deadline = time.monotonic() + wait_s
    while True:
        found = marked(mark, skip)
        if not found or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if found:
        print(f"{len(found)} process(es) of this run are still alive:", file=sys.stderr)
        for line in found:
            print("  " + line, file=sys.stderr)
        return 1
    print("nothing of this run is left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
