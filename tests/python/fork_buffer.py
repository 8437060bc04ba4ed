# Text still in sys.stdout's buffer when os.fork() copies the process is
# written by both: with a pipe's buffering (--stdout block) it shows twice.
import os

print("before the fork", end=" ")
pid = os.fork()
if pid == 0:
    print("(child)")
    os._exit(0)
os.waitpid(pid, 0)
print("(parent)")
