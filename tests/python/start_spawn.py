# The spawn start method, said explicitly: fresh Python children.
import multiprocessing as mp
import os


def job(n):
    print("spawned", n, mp.current_process().name)


if __name__ == "__main__":
    mp.set_start_method("spawn")
    ps = [mp.Process(target=job, args=(i,)) for i in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    print("done", [p.exitcode for p in ps])
