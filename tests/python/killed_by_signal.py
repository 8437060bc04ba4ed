# A program that dies of SIGTERM: a shell reports 143 (128 + 15).
import os
import signal

print("about to die", flush=True)
os.kill(os.getpid(), signal.SIGTERM)
