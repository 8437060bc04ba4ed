# Programs started other ways: os.posix_spawn, a forked child that execs
# echo (os.execvp), and one that execs Python itself again.
import os
import sys

pid = os.posix_spawn("/bin/echo", ["echo", "posix_spawn says hi"], os.environ)
os.waitpid(pid, 0)
pid = os.fork()
if pid == 0:
    os.execvp("echo", ["echo", "execvp in a child"])
os.waitpid(pid, 0)
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-c", "print('python again')"])
os.waitpid(pid, 0)
print("all done")
