# multiprocessing.Process with join: exit codes come back.
import multiprocessing as mp
import sys


def job(n):
    print("job", n, mp.current_process().name)
    sys.exit(n)


if __name__ == "__main__":
    ps = [mp.Process(target=job, args=(i,)) for i in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    print("exit codes", [p.exitcode for p in ps])
