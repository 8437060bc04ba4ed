# Reads its stdin, as `forkscope trace read_stdin.py < FILE` gives it;
# a forked child reads the rest.
import os
import sys

first = sys.stdin.readline()
print("main read", first.strip())
pid = os.fork()
if pid == 0:
    print("child read", sys.stdin.read().split(), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
