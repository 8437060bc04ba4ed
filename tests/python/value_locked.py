"""The same four processes, each increment under a Lock: nothing is lost."""
from multiprocessing import Lock, Process, Value


def work(counter, lock, n):
    for _ in range(n):
        with lock:
            counter.value += 1


if __name__ == "__main__":
    counter = Value("i", 0)
    lock = Lock()
    workers = [Process(target=work, args=(counter, lock, 50)) for _ in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    print("final", counter.value)
