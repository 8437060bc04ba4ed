# A Pool of two workers: map, and apply_async with a callback.
import multiprocessing as mp


def square(x):
    return x * x


if __name__ == "__main__":
    with mp.Pool(2) as pool:
        print("map", pool.map(square, range(6)))
        r = pool.apply_async(square, (7,), callback=lambda v: print("callback", v))
        r.wait()
