# os.kill of a child that is gone raises ProcessLookupError; the traceback
# must look as it does without forkscope (no probe frames).
import os
import signal

pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
os.kill(pid, signal.SIGTERM)
