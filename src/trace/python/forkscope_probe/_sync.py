"""Locks the program makes, `multiprocessing`'s and `threading`'s: Lock,
RLock, Semaphore, BoundedSemaphore, Condition and Event (PROTOCOL.md §7.5).

- `lock_wait` when the lock is taken (a try without blocking failed) and
  the caller is about to wait; `lock_acquire` once it holds it (stamped
  after); `lock_release` before it lets go. An RLock says `lock_acquire`
  for its first acquire and `lock_release` for its last release only (the
  views know one holder per lock). A Semaphore uses the same kinds.
- Condition: `block {on: "wait on COND"}` / `unblock` around `wait()`;
  its lock's release and re-acquire inside `wait()` are shown too.
- Event: `write {name, value: true|false}` for `set()`/`clear()` (an Event
  is a shared flag) and `block`/`unblock` around a `wait()` that waits.

Gated runs: every acquire, release, set, clear and wait is a gate; an
acquire is tried without blocking and announced again (`retry`) until it
goes through, as the engine's locks (`src/runner/interp/locks.rs`).

Only objects the program makes are watched (`_ops.creator`); the library's
own locks stay untouched.
"""

import threading
import _thread

from . import _ops
from ._ops import NOT_YET, blocking, emit, gated, gate, gate_until, gate_until_ready, hide

_real = {}


# ---------------------------------------------------------------- common


def _acquire(name, try_lock, wait_lock, block, timeout, waits_for):
    """The acquire logic shared by every lock: `try_lock()` takes it
    without blocking, `wait_lock(timeout)` blocks (None: no timeout)."""
    if gated():
        if not block or timeout is not None:
            # A timed acquire is one try (it says False if the lock is
            # taken), as a poll in a gated run.
            gate("try to acquire lock %s" % name, touches=["lock:" + name])
            ok = try_lock()
            if ok:
                emit("lock_acquire", lock=name)
            return ok
        said = [False]

        def once():
            if try_lock():
                return True
            if not said[0]:
                said[0] = True
                emit("lock_wait", lock=name)
            return NOT_YET

        gate_until("acquire lock %s" % name, waits_for, ["lock:" + name], once)
        emit("lock_acquire", lock=name)
        return True
    if try_lock():
        emit("lock_acquire", lock=name)
        return True
    if not block:
        return False
    emit("lock_wait", lock=name)
    ok = wait_lock(timeout)
    if ok:
        emit("lock_acquire", lock=name)
    return ok


def _release_gate(name):
    if gated():
        gate("release lock %s" % name, touches=["lock:" + name])


# ------------------------------------------------- multiprocessing locks

_MARK = "__forkscope__"


def _named_getstate(orig):
    """A pickled state that carries the object's name (`_fs_name`), for a
    `spawn`/`forkserver` child: `(_MARK, name, state)`."""

    def __getstate__(self):
        state = orig(self)
        name = getattr(self, "_fs_name", None)
        return state if name is None else (_MARK, name, state)

    return __getstate__


def _unmarked(state):
    """`(name, state)` of a state `_named_getstate` made (name None for a
    plain one)."""
    if isinstance(state, tuple) and len(state) == 3 and state[0] == _MARK:
        return state[1], state[2]
    return None, state


def trace_semlock(lock, name):
    """Watch a `multiprocessing.synchronize.SemLock` (Lock, RLock,
    Semaphore, BoundedSemaphore) under `name`."""
    lock._fs_name = name
    _make_methods_traced(lock)


def _make_methods_traced(lock):
    name = lock._fs_name
    sl = lock._semlock
    raw_acquire = sl.acquire
    raw_release = sl.release
    recursive = type(lock).__name__ == "RLock"
    is_lock = recursive or type(lock).__name__ == "Lock"
    waits_for = "lock:" + name if is_lock else None

    def try_lock():
        return raw_acquire(False)

    def wait_lock(timeout):
        return raw_acquire(True, timeout)

    def acquire(block=True, timeout=None):
        try:
            if recursive and sl._is_mine():
                return raw_acquire(block, timeout)  # a nested acquire: never waits
            return _acquire(name, try_lock, wait_lock, block, timeout, waits_for)
        except BaseException as e:
            hide(e)
            raise

    def release():
        try:
            if recursive:
                if not sl._is_mine() or sl._count() > 1:
                    return raw_release()
            _release_gate(name)
            emit("lock_release", lock=name)
            return raw_release()
        except BaseException as e:
            hide(e)
            raise

    lock.acquire = acquire
    lock.release = release


def _install_mp():
    try:
        from multiprocessing import synchronize as sync
    except ImportError:  # no sem_open on this system: nothing to watch
        return
    _real["mp.sync"] = sync

    def traced_init(orig, kind):
        def __init__(self, *args, **kwargs):
            orig(self, *args, **kwargs)
            if type(self).__name__ != kind:
                return  # a subclass's own __init__ decides
            f = _ops.creator()
            if f is not None:
                trace_semlock(self, _ops.name_for(kind, f))

        return __init__

    for kind in ("Lock", "RLock", "Semaphore", "BoundedSemaphore"):
        cls = getattr(sync, kind)
        _ops.install_method(cls, "__init__", lambda o, k=kind: traced_init(o, k))

    def enter(orig):
        def __enter__(self):
            if getattr(self, "_fs_name", None) is None:
                return orig(self)
            try:
                return self.acquire()
            except BaseException as e:
                hide(e)
                raise

        return __enter__

    def exit_(orig):
        def __exit__(self, *args):
            if getattr(self, "_fs_name", None) is None:
                return orig(self, *args)
            try:
                return self.release()
            except BaseException as e:
                hide(e)
                raise

        return __exit__

    _ops.install_method(sync.SemLock, "__enter__", enter)
    _ops.install_method(sync.SemLock, "__exit__", exit_)

    # A `spawn`/`forkserver` child gets the name with the lock.
    def setstate(orig):
        def __setstate__(self, state):
            name, state = _unmarked(state)
            orig(self, state)
            if name is not None:
                trace_semlock(self, name)

        return __setstate__

    _ops.install_method(sync.SemLock, "__getstate__", _named_getstate)
    _ops.install_method(sync.SemLock, "__setstate__", setstate)

    # Condition: a lock of its own is named after it.
    def cond_init(orig):
        def __init__(self, lock=None, *, ctx):
            f = _ops.creator()
            name = None
            if f is not None:
                name = _ops.name_for("Condition", f)
                if lock is None:
                    lock = ctx.RLock()
                    if getattr(lock, "_fs_name", None) is None:
                        trace_semlock(lock, name)
            orig(self, lock, ctx=ctx)
            if name is not None:
                self._fs_name = name

        return __init__

    _ops.install_method(sync.Condition, "__init__", cond_init)

    def cond_setstate(orig):
        def __setstate__(self, state):
            name, state = _unmarked(state)
            if name is not None:
                self._fs_name = name
            orig(self, state)

        return __setstate__

    for cls in (sync.Condition, sync.Event):
        _ops.install_method(cls, "__getstate__", _named_getstate)
        _ops.install_method(cls, "__setstate__", cond_setstate)

    def cond_wait(orig):
        def wait(self, timeout=None):
            name = getattr(self, "_fs_name", None)
            if name is None:
                return orig(self, timeout)
            try:
                if gated():
                    return _mp_cond_wait_gated(self, name)
                return _mp_cond_wait(self, name, timeout)
            except BaseException as e:
                hide(e)
                raise

        return wait

    def cond_notify(orig):
        def notify(self, n=1):
            if getattr(self, "_fs_name", None) is None or not gated():
                return orig(self, n)
            try:
                return _mp_cond_notify_gated(self, n)
            except BaseException as e:
                hide(e)
                raise

        return notify

    _ops.install_method(sync.Condition, "wait", cond_wait)
    _ops.install_method(sync.Condition, "notify", cond_notify)

    # Event: a shared flag.
    def event_init(orig):
        def __init__(self, *, ctx):
            orig(self, ctx=ctx)
            f = _ops.creator()
            if f is not None:
                self._fs_name = _ops.name_for("Event", f)

        return __init__

    _ops.install_method(sync.Event, "__init__", event_init)
    _install_event_methods(sync.Event, lambda e: e.is_set())


def _mp_cond_wait(cond, name, timeout):
    """`multiprocessing.Condition.wait` as CPython does it, saying `block`
    once the lock is let go and `unblock` before it is taken again."""
    lock = cond._lock
    assert lock._semlock._is_mine(), "must acquire() condition before using wait()"
    cond._sleeping_count.release()
    count = lock._semlock._count()
    for _ in range(count):
        lock.release()
    on = "wait on " + name
    emit("block", on=on)
    try:
        return cond._wait_semaphore.acquire(True, timeout)
    finally:
        cond._woken_count.release()
        emit("unblock", on=on)
        for _ in range(count):
            lock.acquire()


def _mp_cond_wait_gated(cond, name):
    """`multiprocessing.Condition.wait` in a gated run: the same semaphores,
    but the sleep is a gate tried without blocking, and nobody waits for
    the woken one to say so (only one process moves at a time)."""
    lock = cond._lock
    assert lock._semlock._is_mine(), "must acquire() condition before using wait()"
    cond._sleeping_count.release()
    count = lock._semlock._count()
    for _ in range(count):
        lock.release()
    on = "wait on " + name
    emit("block", on=on)
    sem = cond._wait_semaphore._semlock
    gate_until(on, None, ["lock:" + name], lambda: True if sem.acquire(False) else NOT_YET)
    emit("unblock", on=on)
    for _ in range(count):
        lock.acquire()
    return True


def _mp_cond_notify_gated(cond, n):
    assert cond._lock._semlock._is_mine(), "lock is not owned"
    gate("notify %s" % cond._fs_name, touches=["lock:" + cond._fs_name])
    while cond._woken_count.acquire(False):
        cond._sleeping_count.acquire(False)
    sleepers = 0
    while sleepers < n and cond._sleeping_count.acquire(False):
        cond._wait_semaphore.release()
        sleepers += 1


def _install_event_methods(cls, is_set):
    def ev_set(orig, value):
        def method(self):
            name = getattr(self, "_fs_name", None)
            if name is None:
                return orig(self)
            try:
                if gated():
                    gate("%s event %s" % ("set" if value else "clear", name), touches=["w:" + name])
                emit("write", name=name, value=value)
                return orig(self)
            except BaseException as e:
                hide(e)
                raise

        return method

    _ops.install_method(cls, "set", lambda o: ev_set(o, True))
    _ops.install_method(cls, "clear", lambda o: ev_set(o, False))

    def ev_wait(orig):
        def wait(self, timeout=None):
            name = getattr(self, "_fs_name", None)
            if name is None:
                return orig(self, timeout)
            try:
                on = "wait for event " + name
                if gated() and timeout is not None:
                    gate(on, touches=["r:" + name])
                    return is_set(self)
                if gated():
                    return gate_until_ready(
                        on, None, ["r:" + name], on, lambda: True if is_set(self) else NOT_YET
                    )
                return blocking(None if is_set(self) else on, lambda: orig(self, timeout))
            except BaseException as e:
                hide(e)
                raise

        return wait

    _ops.install_method(cls, "wait", ev_wait)


# ------------------------------------------------------ threading locks


class _TLock(object):
    """A `threading.Lock` the program made, watched. The real lock inside
    does all the work."""

    __slots__ = ("_lock", "_fs_name", "__weakref__")
    _recursive = False

    def __init__(self, lock, name):
        self._lock = lock
        self._fs_name = name

    def acquire(self, blocking=True, timeout=-1):
        lock = self._lock
        try:
            return _acquire(
                self._fs_name,
                lambda: lock.acquire(False),
                lambda t: lock.acquire(True, -1 if t is None else t),
                blocking,
                None if timeout is None or timeout < 0 else timeout,
                "lock:" + self._fs_name,
            )
        except BaseException as e:
            hide(e)
            raise

    def release(self):
        try:
            if self._lock.locked():
                _release_gate(self._fs_name)
                emit("lock_release", lock=self._fs_name)
            return self._lock.release()
        except BaseException as e:
            hide(e)
            raise

    def __enter__(self):
        try:
            return self.acquire()
        except BaseException as e:
            hide(e)
            raise

    def __exit__(self, *args):
        try:
            self.release()
        except BaseException as e:
            hide(e)
            raise

    def locked(self):
        return self._lock.locked()

    def _is_owned(self):
        # What threading.Condition finds out with acquire(False) for a
        # plain lock, without the noise of an acquire and a release.
        return self._lock.locked()

    def _at_fork_reinit(self):
        self._lock._at_fork_reinit()

    def __repr__(self):
        return repr(self._lock)


class _TRLock(_TLock):
    """A `threading.RLock` the program made, watched."""

    __slots__ = ("_depth",)
    _recursive = True

    def __init__(self, lock, name):
        _TLock.__init__(self, lock, name)
        self._depth = 0

    def acquire(self, blocking=True, timeout=-1):
        lock = self._lock
        try:
            if lock._is_owned():
                ok = lock.acquire(blocking, timeout)
            else:
                ok = _acquire(
                    self._fs_name,
                    lambda: lock.acquire(False),
                    lambda t: lock.acquire(True, -1 if t is None else t),
                    blocking,
                    None if timeout is None or timeout < 0 else timeout,
                    "lock:" + self._fs_name,
                )
            if ok:
                self._depth += 1
            return ok
        except BaseException as e:
            hide(e)
            raise

    def release(self):
        try:
            lock = self._lock
            if lock._is_owned():
                if self._depth <= 1:
                    _release_gate(self._fs_name)
                    emit("lock_release", lock=self._fs_name)
                r = lock.release()
                self._depth -= 1
                return r
            return lock.release()  # CPython's RuntimeError
        except BaseException as e:
            hide(e)
            raise

    def locked(self):
        lk = getattr(self._lock, "locked", None)
        return lk() if lk is not None else self._depth > 0

    def _is_owned(self):
        return self._lock._is_owned()

    # threading.Condition.wait lets go of every level and takes them back.
    def _release_save(self):
        _release_gate(self._fs_name)
        emit("lock_release", lock=self._fs_name)
        depth = self._depth
        self._depth = 0
        return (self._lock._release_save(), depth)

    def _acquire_restore(self, state):
        saved, depth = state
        lock = self._lock
        name = self._fs_name
        if gated():
            _acquire(
                name,
                lambda: lock.acquire(False),
                None,
                True,
                None,
                "lock:" + name,
            )
            # Taken once without blocking; the rest of the levels are ours.
            lock.release()
            lock._acquire_restore(saved)
        else:
            if lock.acquire(False):
                lock.release()
            else:
                emit("lock_wait", lock=name)
            lock._acquire_restore(saved)
            emit("lock_acquire", lock=name)
        self._depth = depth


def _install_threading():
    real_lock = _thread.allocate_lock
    real_rlock = threading.RLock
    _real["threading.Lock"] = threading.Lock
    _real["threading.RLock"] = real_rlock

    def Lock():
        f = _ops.creator()
        if f is None:
            return real_lock()
        return _TLock(real_lock(), _ops.name_for("Lock", f))

    def RLock(*args, **kwargs):
        f = _ops.creator()
        if f is None:
            return real_rlock(*args, **kwargs)
        return _TRLock(real_rlock(*args, **kwargs), _ops.name_for("RLock", f))

    Lock._forkscope = RLock._forkscope = True
    # Pickled by reference as `threading.Lock` (a Manager's registry holds
    # the factory and goes to a `spawn`/`forkserver` server pickled).
    for f, n in ((Lock, "Lock"), (RLock, "RLock")):
        f.__module__, f.__qualname__, f.__name__ = "threading", n, n
    threading.Lock = Lock
    threading.RLock = RLock

    def cond_init(orig):
        def __init__(self, lock=None):
            f = _ops.creator()
            name = None
            if f is not None:
                name = _ops.name_for("Condition", f)
                self._fs_name = name
                if lock is None:
                    lock = _TRLock(real_rlock(), name)
            orig(self, lock)
            if name is not None:
                _t_cond_wait_events(self, name)

        return __init__

    _ops.install_method(threading.Condition, "__init__", cond_init)

    def cond_wait(orig):
        def wait(self, timeout=None):
            name = getattr(self, "_fs_name", None)
            if name is None:
                return orig(self, timeout)
            try:
                if gated():
                    return _t_cond_wait_gated(self, name)
                return orig(self, timeout)
            except BaseException as e:
                hide(e)
                raise

        return wait

    _ops.install_method(threading.Condition, "wait", cond_wait)

    def sem_init(orig, kind):
        def __init__(self, value=1):
            orig(self, value)
            if type(self).__name__ != kind:
                return
            f = _ops.creator()
            if f is not None:
                self._fs_name = _ops.name_for(kind, f)

        return __init__

    for kind in ("Semaphore", "BoundedSemaphore"):
        cls = getattr(threading, kind)
        _ops.install_method(cls, "__init__", lambda o, k=kind: sem_init(o, k))

    def sem_acquire(orig):
        def acquire(self, blocking=True, timeout=None):
            name = getattr(self, "_fs_name", None)
            if name is None:
                return orig(self, blocking, timeout)
            try:
                return _acquire(
                    name,
                    lambda: orig(self, False),
                    lambda t: orig(self, True, t),
                    blocking,
                    timeout,
                    None,
                )
            except BaseException as e:
                hide(e)
                raise

        return acquire

    def sem_release(orig):
        def release(self, n=1):
            name = getattr(self, "_fs_name", None)
            if name is None:
                return orig(self, n)
            try:
                _release_gate(name)
                emit("lock_release", lock=name)
                return orig(self, n)
            except BaseException as e:
                hide(e)
                raise

        return release

    _ops.install_method(threading.Semaphore, "acquire", sem_acquire)
    _ops.install_method(threading.Semaphore, "release", sem_release)
    threading.Semaphore.__enter__ = threading.Semaphore.acquire

    def event_init(orig):
        def __init__(self):
            orig(self)
            f = _ops.creator()
            if f is not None:
                self._fs_name = _ops.name_for("Event", f)

        return __init__

    _ops.install_method(threading.Event, "__init__", event_init)
    _install_event_methods(threading.Event, lambda e: e.is_set())


def _t_cond_wait_events(cond, name):
    """`block`/`unblock` of a waiting `threading.Condition`, between the
    release of its lock and its re-acquire (CPython's `wait` calls these
    two around its sleep)."""
    on = "wait on " + name
    release_save = cond._release_save
    acquire_restore = cond._acquire_restore

    def _release_save():
        r = release_save()
        emit("block", on=on)
        return r

    def _acquire_restore(state):
        emit("unblock", on=on)
        return acquire_restore(state)

    cond._release_save = _release_save
    cond._acquire_restore = _acquire_restore


def _t_cond_wait_gated(cond, name):
    """`threading.Condition.wait` in a gated run: CPython's own steps, with
    the sleep turned into a gate tried without blocking."""
    if not cond._is_owned():
        raise RuntimeError("cannot wait on un-acquired lock")
    waiter = _thread.allocate_lock()
    waiter.acquire()
    cond._waiters.append(waiter)
    saved = cond._release_save()
    try:
        gate_until("wait on " + name, None, ["lock:" + name], lambda: True if waiter.acquire(False) else NOT_YET)
    finally:
        cond._acquire_restore(saved)
    return True


def install():
    _install_threading()
    _install_mp()
    # Gated runs: forks and waits are gates too (see _gates).
    from . import _gates

    _gates.install()
