# Exceptions in a thread and in a Process, each printed with its
# traceback; one from os.waitpid printed by traceback.print_exc; then one
# in main (exit code 1). None shows a frame of forkscope's probe.
import multiprocessing as mp
import os
import sys
import threading
import traceback


def boom(what):
    raise ValueError("boom in " + what)


if __name__ == "__main__":
    t = threading.Thread(target=boom, args=("a thread",))
    t.start()
    t.join()
    p = mp.Process(target=boom, args=("a Process",))
    p.start()
    p.join()
    print("Process exit code", p.exitcode, flush=True)
    pid = os.fork()
    if pid == 0:
        try:
            boom("a forked child")
        finally:
            sys.stderr.flush()
            os._exit(2)
    os.waitpid(pid, 0)
    try:
        os.waitpid(pid, 0)  # reaped already: ChildProcessError
    except ChildProcessError:
        traceback.print_exc()
    boom("main")
