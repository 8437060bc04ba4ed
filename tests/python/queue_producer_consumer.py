"""A producer puts five items on a Queue, a consumer takes them; then the
consumer, which would wait for ever, is terminated."""
import time
from multiprocessing import Process, Queue


def producer(q):
    for i in range(5):
        q.put(("item", i))
    print("producer done")


def consumer(q, done):
    while True:
        item = q.get()
        print("consumed", item)
        done.put(item[1])


if __name__ == "__main__":
    q = Queue()
    done = Queue()
    prod = Process(target=producer, args=(q,))
    cons = Process(target=consumer, args=(q, done))
    prod.start()
    cons.start()
    got = sorted(done.get(timeout=10) for _ in range(5))
    print("all consumed", got)
    prod.join()
    cons.terminate()
    cons.join()
    print("consumer exit code", cons.exitcode)
