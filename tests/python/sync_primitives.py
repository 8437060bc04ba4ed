"""threading and multiprocessing synchronisation, each used the ordinary
way: a Condition between two threads, a Semaphore of 2 places for four
threads, an Event, a nested RLock, and a multiprocessing Semaphore and
Event between processes."""
import multiprocessing as mp
import threading

# A Condition: the consumer waits until the producer has put something.
items = []
cond = threading.Condition()


def consume():
    with cond:
        while not items:
            cond.wait()
        print("consumer took", items.pop())


c = threading.Thread(target=consume)
c.start()
with cond:
    items.append("bread")
    cond.notify()
c.join()

# A Semaphore: at most two threads inside at once.
room = threading.Semaphore(2)
inside = []
most = [0]
guard = threading.Lock()


def visit(k):
    with room:
        with guard:
            inside.append(k)
            most[0] = max(most[0], len(inside))
        with guard:
            inside.remove(k)


ts = [threading.Thread(target=visit, args=(k,)) for k in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print("never more than two inside:", most[0] <= 2)

# An Event, and a nested RLock.
ready = threading.Event()
t = threading.Thread(target=ready.set)
t.start()
ready.wait()
t.join()
print("event set:", ready.is_set())
nest = threading.RLock()
with nest:
    with nest:
        print("nested RLock held")


def worker(sem, started, k):
    started.wait()
    with sem:
        print("process", k, "in")


if __name__ == "__main__":
    sem = mp.Semaphore(1)
    started = mp.Event()
    ps = [mp.Process(target=worker, args=(sem, started, k)) for k in range(2)]
    for p in ps:
        p.start()
    started.set()
    for p in ps:
        p.join()
    mplock = mp.RLock()
    with mplock:
        with mplock:
            print("nested mp RLock held")
    print("done")
