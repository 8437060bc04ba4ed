# A daemon Process is terminated when main ends; a normal one is joined.
import multiprocessing as mp
import time


def forever():
    print("daemon up", flush=True)
    while True:
        time.sleep(0.05)


def short():
    print("short job")


if __name__ == "__main__":
    d = mp.Process(target=forever, daemon=True)
    d.start()
    s = mp.Process(target=short)
    s.start()
    s.join()
    time.sleep(0.3)
    print("main ends; daemon alive:", d.is_alive())
