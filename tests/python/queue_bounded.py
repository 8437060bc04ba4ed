"""A Queue of 2 places: the producer waits while it is full."""
import time
from multiprocessing import Process, Queue


def producer(q):
    for i in range(6):
        q.put(i)
    q.put(None)


if __name__ == "__main__":
    q = Queue(maxsize=2)
    p = Process(target=producer, args=(q,))
    p.start()
    time.sleep(0.2)
    total = 0
    while True:
        item = q.get()
        if item is None:
            break
        total += item
        print("got", item)
    p.join()
    print("total", total)
