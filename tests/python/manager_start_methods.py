# A Manager (bounded queue, event) and a ProcessPoolExecutor under the
# start method named on the command line (fork, spawn, forkserver).
import sys
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor


def producer(q, ev):
    ev.wait()
    for i in range(3):
        q.put(i)
    q.put(None)


def sq(x):
    return x * x


if __name__ == "__main__":
    mp.set_start_method(sys.argv[1])
    with mp.Manager() as m:
        q = m.Queue(maxsize=1)
        ev = m.Event()
        p = mp.Process(target=producer, args=(q, ev))
        p.start()
        ev.set()
        got = []
        while True:
            x = q.get()
            if x is None:
                break
            got.append(x)
        p.join()
        print("got", got)
    with ProcessPoolExecutor(2, mp_context=mp.get_context(sys.argv[1])) as ex:
        print(list(ex.map(sq, range(4))))
