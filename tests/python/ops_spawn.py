"""A JoinableQueue, a SimpleQueue, a Pipe, a Lock and a Value handed to a
child started with the spawn method: a fresh interpreter that gets them
pickled (and forkscope's names with them)."""
import multiprocessing as mp

def worker(jq, sq, a, lock, v):
    while True:
        item = jq.get()
        if item is None:
            jq.task_done()
            break
        with lock:
            v.value += item
        sq.put(item * 10)
        jq.task_done()
    a.send(("bye", 1))

if __name__ == "__main__":
    mp.set_start_method("spawn")
    jq = mp.JoinableQueue()
    sq = mp.SimpleQueue()
    a, b = mp.Pipe()
    lock = mp.Lock()
    v = mp.Value("i", 0)
    p = mp.Process(target=worker, args=(jq, sq, b, lock, v))
    p.start()
    for i in range(5):
        jq.put(i)
    jq.put(None)
    jq.join()
    print(sorted(sq.get() for _ in range(5)), a.recv(), v.value)
    p.join()
