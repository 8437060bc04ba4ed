"""Pools used every other way: imap_unordered, a failing task with an
error_callback, close + join, terminate + join, a pool inside a child
process, and a pool left for the interpreter's exit to end."""
import multiprocessing as mp

def sq(x):
    return x * x

def bad(x):
    raise ValueError("bad %d" % x)

def add(v, n):
    for _ in range(n):
        v.value += 1
    return n

def nested():
    with mp.Pool(1) as p:
        return p.apply(sq, (5,))

if __name__ == "__main__":
    p = mp.Pool(2)
    print(sorted(p.imap_unordered(sq, range(4))))
    r = p.apply_async(bad, (1,), error_callback=lambda e: print("error_callback", e))
    try:
        r.get()
    except ValueError as e:
        print("raised", e)
    p.close()
    p.join()
    v = mp.Value("i", 0)
    q = mp.Pool(2)
    print(q.starmap(sq, [(1,), (2,)]))
    q.terminate()
    q.join()
    child = mp.Process(target=nested)
    child.start(); child.join()
    print("child exit", child.exitcode)
    left = mp.Pool(1)
    print(left.apply(sq, (3,)))
