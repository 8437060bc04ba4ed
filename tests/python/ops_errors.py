"""Errors raised from inside locks, queues, pipes and pools: the tracebacks
must read exactly as under plain python3 (no frame of forkscope's probe)."""
import multiprocessing as mp
import queue
import threading
import traceback


def bad(x):
    return 1 // x


if __name__ == "__main__":
    q = mp.Queue()
    try:
        q.get(timeout=0.05)
    except queue.Empty:
        traceback.print_exc()
    lock = threading.Lock()
    try:
        lock.release()
    except RuntimeError:
        traceback.print_exc()
    a, b = mp.Pipe()
    b.close()
    try:
        a.recv()
    except EOFError:
        traceback.print_exc()
    with mp.Pool(1) as pool:
        pool.apply(bad, (0,))
