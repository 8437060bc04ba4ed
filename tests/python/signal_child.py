# Process.terminate and kill: the child dies of SIGTERM / SIGKILL.
import multiprocessing as mp
import time


def wait():
    print("waiting", flush=True)
    time.sleep(30)


if __name__ == "__main__":
    a = mp.Process(target=wait)
    b = mp.Process(target=wait)
    a.start()
    b.start()
    time.sleep(0.3)
    a.terminate()
    b.kill()
    a.join()
    b.join()
    print("codes", a.exitcode, b.exitcode)
