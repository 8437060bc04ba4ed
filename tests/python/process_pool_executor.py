# concurrent.futures.ProcessPoolExecutor: submit, a done callback, map.
from concurrent.futures import ProcessPoolExecutor

called = []


def square(x):
    return x * x


def done(fut):
    called.append(fut.result())


if __name__ == "__main__":
    with ProcessPoolExecutor(max_workers=2) as ex:
        f = ex.submit(square, 7)
        f.add_done_callback(done)
        print("submit", f.result())
        print("map", list(ex.map(square, range(5))))
    print("callbacks", called)
