"""Four processes add 1 to a shared Value, 50 times each, without a lock:
updates get lost (the final value is often short of 200)."""
import sys
from multiprocessing import Process, Value


def work(counter, n):
    for _ in range(n):
        counter.value += 1


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    counter = Value("i", 0)
    workers = [Process(target=work, args=(counter, n)) for _ in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    print("final", counter.value)
