# Four threads add to one counter under a threading.Lock.
import threading

lock = threading.Lock()
count = 0


def add(n):
    global count
    for _ in range(n):
        with lock:
            count += 1
    print(threading.current_thread().name, "done")


ts = [threading.Thread(target=add, args=(1000,), name="adder-%d" % i) for i in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print("count", count)
