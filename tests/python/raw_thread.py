# A thread started with the low-level _thread module, and one with
# threading: both are threads of main.
import _thread
import threading

done = threading.Event()


def low(x):
    print("low-level thread got", x)
    done.set()


_thread.start_new_thread(low, (42,))
done.wait()
t = threading.Thread(target=print, args=("threading thread",))
t.start()
t.join()
