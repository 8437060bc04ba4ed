"""A program that a scenario `exec`s and that speaks the probe protocol
(PROTOCOL.md §11), for the identity and garbage tests.

    python3 probe_shim.py MODE MY_ID

MY_ID is the logical id the process already has (the exec'd child keeps
its pid and id). MODE:

  garbage   say hello as MY_ID, then send garbage; also open a connection
            that never says hello
  impostor  say hello as the parent (`main`) on one connection (refused),
            then as MY_ID, and send kinds only forkscope makes and events
            about a process that is not our child (all dropped); then a
            narrate that must get through
"""

import json
import os
import socket
import sys
import time


def connect():
    addr = os.environ["FORKSCOPE_SOCK"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("\0" + addr[1:] if addr.startswith("@") else addr)
    return s


SEQ = [0]


def line(proc, kind, **fields):
    SEQ[0] += 1
    e = dict(t_ns=time.monotonic_ns(), seq=SEQ[0], proc=proc, pid=os.getpid(), kind=kind)
    e.update(fields)
    return (json.dumps(e) + "\n").encode()


def hello(s, proc, role, parent):
    s.sendall(line(proc, "hello", ppid=os.getppid(), role=role, parent=parent))


def closed(s):
    """Did the collector close this connection (within 5 s)?"""
    s.settimeout(5)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def main():
    mode, me = sys.argv[1], sys.argv[2]
    if mode == "garbage":
        s = connect()
        hello(s, me, "exec", "main")
        s.sendall(b"this is not json\n")
        s.sendall(b"x" * (1 << 20) + b"\n")
        s.sendall(line(me, "dance"))
        silent = connect()  # never says hello
        time.sleep(3)
        print("shim done", flush=True)
        silent.close()
    elif mode == "impostor":
        a = connect()
        hello(a, "main", "main", "runner")
        b = connect()
        hello(b, me, "exec", "main")
        forged = [
            ("race", "main", dict(name="v", read=0, replaced=2, written=1, lost=2)),
            ("deadlock", me, dict(cycle="main -> main.1 -> main")),
            ("adopted", "main", dict(by="runner", new_ppid=1)),
            ("sample", me, dict(cpu_percent=1.0, rss_bytes=1)),
            ("exit", "main", dict(code=99)),
            ("reaped", "main", dict(by=me, by_pid=os.getpid(), code=99)),
            ("signal", me, dict(target="main", target_pid=os.getppid(), signal="SIGSTOP")),
        ]
        for kind, proc, fields in forged:
            b.sendall(line(proc, kind, **fields))
        b.sendall(line(me, "narrate", text="the shim speaks"))
        shut = closed(a)
        print("impostor connection " + ("closed" if shut else "open"), flush=True)
        b.close()
    else:
        sys.exit("unknown mode " + mode)


main()
