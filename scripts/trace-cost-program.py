import os, time, threading, sys
N = 200
t = time.perf_counter()
for _ in range(N):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
fork_us = (time.perf_counter() - t) / N * 1e6
M = 200
t = time.perf_counter()
for _ in range(M):
    th = threading.Thread(target=lambda: None); th.start(); th.join()
thread_us = (time.perf_counter() - t) / M * 1e6
K = 20000
t = time.perf_counter()
for _ in range(K):
    os.kill(os.getpid(), 0)
kill0_us = (time.perf_counter() - t) / K * 1e6
e_us = float("nan")
try:
    from forkscope_probe import _wire
    if _wire.connected():
        t = time.perf_counter()
        for _ in range(K):
            _wire.emit("narrate", text="x")
        e_us = (time.perf_counter() - t) / K * 1e6
except ImportError:
    pass
print("fork+waitpid %.0f us, thread start+join %.0f us, emit %.2f us" % (fork_us, thread_us, e_us), file=sys.stderr)
