# A Manager's queue: the manager is a server process of its own.
import multiprocessing as mp


def producer(q):
    for i in range(3):
        q.put(i)
    q.put(None)


if __name__ == "__main__":
    with mp.Manager() as m:
        q = m.Queue()
        p = mp.Process(target=producer, args=(q,))
        p.start()
        got = []
        while True:
            x = q.get()
            if x is None:
                break
            got.append(x)
        p.join()
        print("got", got)
