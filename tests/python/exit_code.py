# The program's exit code is forkscope trace's exit code.
import os
import sys

pid = os.fork()
if pid == 0:
    print("child says bye")
    sys.exit(0)
os.waitpid(pid, 0)
print("main exits with 3", file=sys.stderr)
sys.exit(3)
