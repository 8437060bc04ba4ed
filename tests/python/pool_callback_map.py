"""A Pool: apply_async with a callback, then map."""
from multiprocessing import Pool


def square(x):
    return x * x


def got(result):
    print("callback got", result)


if __name__ == "__main__":
    with Pool(2) as pool:
        r = pool.apply_async(square, (7,), callback=got)
        print("apply_async:", r.get(timeout=10))
        print("map:", pool.map(square, range(6)))
        print("starmap:", pool.starmap(pow, [(2, 3), (3, 2)]))
        print("imap:", list(pool.imap(square, [1, 2, 3])))
