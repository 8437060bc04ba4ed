# A Process nobody joins: multiprocessing joins it at exit anyway.
import multiprocessing as mp
import time


def job():
    time.sleep(0.2)
    print("job done")


if __name__ == "__main__":
    mp.Process(target=job).start()
    print("main is done first")
