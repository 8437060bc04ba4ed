# A Manager's Value and dict, changed by two processes under the manager's Lock.
import multiprocessing as mp


def work(n, v, d, lock):
    for _ in range(3):
        with lock:
            v.value += 1
    d[n] = n * n


if __name__ == "__main__":
    with mp.Manager() as m:
        v = m.Value("i", 0)
        d = m.dict()
        lock = m.Lock()
        ps = [mp.Process(target=work, args=(i, v, d, lock)) for i in range(2)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        print("value", v.value)
        print("dict", sorted(d.items()))
