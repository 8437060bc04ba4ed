# A fork while another thread runs: Python 3.12+ warns (DeprecationWarning,
# shown for __main__) at the line of the os.fork() call.
import os
import threading
import time

t = threading.Thread(target=time.sleep, args=(0.5,))
t.start()
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
t.join()
print("ok")
