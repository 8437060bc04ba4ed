"""Two processes read from the same end of one Pipe (taking turns with a
Lock, so that no message is torn): each message reaches exactly one."""
from multiprocessing import Lock, Pipe, Process, Queue


def reader(conn, turn, seen):
    while True:
        with turn:
            msg = conn.recv()
        if msg is None:
            break
        seen.put(msg)


if __name__ == "__main__":
    rx, tx = Pipe(duplex=False)
    turn = Lock()
    seen = Queue()
    readers = [Process(target=reader, args=(rx, turn, seen)) for _ in range(2)]
    for r in readers:
        r.start()
    for i in range(6):
        tx.send(i)
    tx.send(None)
    tx.send(None)
    got = sorted(seen.get(timeout=10) for _ in range(6))
    for r in readers:
        r.join()
    print("read", got)
