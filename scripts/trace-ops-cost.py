"""The probe's cost per traced operation: run it plainly and under
`forkscope trace`, compare the ns/op it prints (docs/PERFORMANCE.md).

    python3 scripts/trace-ops-cost.py
    forkscope trace --format jsonl scripts/trace-ops-cost.py | grep -o '"text":"[^"]*ns/op[^"]*"'

(The Queue and Pipe rows include the other end's get/recv in the same
process; a Queue's put hands the item to its feeder thread.)
"""
import multiprocessing as mp
import threading
import time

N = 100_000


def per_op(label, n, f):
    """Wall time, and this process's CPU time (what the probe itself costs:
    not the time spent waiting for a busy collector to read its socket)."""
    t, c = time.perf_counter_ns(), time.process_time_ns()
    f(n)
    dt, dc = time.perf_counter_ns() - t, time.process_time_ns() - c
    print("%-32s %8.0f ns/op wall %8.0f ns/op cpu" % (label, dt / n, dc / n), flush=True)


def tlock(n):
    lock = threading.Lock()
    for _ in range(n):
        lock.acquire()
        lock.release()


def mplock(n):
    lock = mp.Lock()
    for _ in range(n):
        with lock:
            pass


def value(n):
    v = mp.Value("i", 0)
    for _ in range(n):
        v.value += 1


def queue(n):
    q = mp.Queue()
    for i in range(n):
        q.put(i)
        q.get()


def pipe(n):
    a, b = mp.Pipe()
    for i in range(n):
        a.send(i)
        b.recv()


if __name__ == "__main__":
    per_op("threading.Lock acquire+release", N, tlock)
    per_op("multiprocessing.Lock with", N, mplock)
    per_op("Value v.value += 1", N, value)
    per_op("Queue put+get", N // 10, queue)
    per_op("Pipe send+recv", N // 10, pipe)
