# Processes and threads that would outlive a stopped run: forked sleepers,
# a Process, a program started with subprocess, a thread; main sleeps too.
import multiprocessing as mp
import os
import subprocess
import threading
import time


def nap():
    time.sleep(60)


if __name__ == "__main__":
    for _ in range(2):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
    mp.Process(target=nap).start()
    subprocess.Popen(["sleep", "60"])
    threading.Thread(target=nap, daemon=True).start()
    print("all started", flush=True)
    time.sleep(60)
