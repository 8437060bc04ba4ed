# The forkserver start method (the default from Python 3.14 on Linux),
# said explicitly: children are forked by the forkserver process.
import multiprocessing as mp


def job(n):
    print("from the forkserver", n, mp.current_process().name)
    return None


if __name__ == "__main__":
    mp.set_start_method("forkserver")
    ps = [mp.Process(target=job, args=(i,)) for i in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    print("done", [p.exitcode for p in ps])
