# 20 bare os.fork() children that live about 1 ms each; nobody waits for
# them (the run reaps the orphans).
import os
import time

for i in range(20):
    if os.fork() == 0:
        time.sleep(0.001)
        os._exit(0)
