# Five children made with os.fork() in a loop; each prints and exits with
# its number; the parent waits for them all.
import os

kids = []
for i in range(5):
    pid = os.fork()
    if pid == 0:
        print("child", i, "of", os.getppid() == os.getppid())
        os._exit(i)
    kids.append(pid)
codes = sorted(os.waitstatus_to_exitcode(os.waitpid(k, 0)[1]) for k in kids)
print("parent saw", codes)
