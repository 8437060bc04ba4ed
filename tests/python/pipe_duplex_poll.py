"""A duplex Pipe: ping and pong, the parent polls before it reads."""
from multiprocessing import Pipe, Process


def child(conn):
    for _ in range(3):
        msg = conn.recv()
        conn.send(msg.replace("ping", "pong"))
    conn.close()


if __name__ == "__main__":
    parent_conn, child_conn = Pipe()
    p = Process(target=child, args=(child_conn,))
    p.start()
    for i in range(3):
        parent_conn.send("ping %d" % i)
        while not parent_conn.poll(0.05):
            pass
        print("parent got", parent_conn.recv())
    p.join()
    print("child exit code", p.exitcode)
