# Two processes add to a Manager's Value without a lock: `v.value += 1` is
# a get then a set, each a round trip to the manager's server; updates
# can be lost.
import multiprocessing as mp


def add(v):
    for _ in range(5):
        v.value += 1


if __name__ == "__main__":
    with mp.Manager() as m:
        v = m.Value("i", 0)
        ps = [mp.Process(target=add, args=(v,)) for _ in range(2)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        print("final", v.value)
