# Job control inside a traced program: SIGTSTP (Ctrl-Z's signal, sent with
# os.kill) stops a child, SIGCONT lets it go on. The kernel ignores SIGTSTP
# in an orphaned process group, so this also says that the run's group is
# not orphaned (its leader's parent is in the same session).
import os
import signal
import time

pid = os.fork()
if pid == 0:
    time.sleep(5)
    os._exit(0)
os.kill(pid, signal.SIGTSTP)
_, status = os.waitpid(pid, os.WUNTRACED)
print("child", "stopped" if os.WIFSTOPPED(status) else "exited", flush=True)
print("same group", os.getpgid(pid) == os.getpgrp(), flush=True)
print("same session", os.getsid(pid) == os.getsid(0), flush=True)
os.kill(pid, signal.SIGCONT)
os.kill(pid, signal.SIGTERM)
os.waitpid(pid, 0)
