"""`multiprocessing.Pool`: tasks, results and callbacks (PROTOCOL.md §7.4,
§7.7), as the engine's pools say them (`src/runner/interp/pools.rs`).

- `resource {res: "pool", name, size}` when the program makes a pool.
- Each task CPython hands to the workers (one `apply_async`, or one chunk
  of a `map`/`imap`/`starmap`) is numbered from 0 per pool: the owner
  `put`s it on channel `POOL.tasks` (`msg` = `POOL:taskN`, `value` = the
  call as text, `square(3)`), the worker that takes it `get`s it, says
  `task_start {pool, task, func}`, runs it, says `task_done {pool, task,
  value}` and `send`s the result on `POOL.results` (`msg` =
  `POOL:resultN`), which the owner `recv`s in the pool's result thread
  (`thread` = that thread), where CPython then runs the callback, which
  says `callback {pool, task, func, error?}` first: what the callback does
  follows, from the same thread, with the callback's own `line`.

The task is carried to the worker by a small wrapper around the function
(`_Task`), which the worker calls as CPython calls the function; a failing
task raises the same exception, with the same traceback (the probe's frame
is taken out).
"""

import itertools
import os
import threading

from . import _ops
from ._ops import NOT_YET, emit, gate, gate_until, hide, value_of

_jobs = {}  # (job, i) -> (pool name, task number): in the owner
_jobs_lock = threading.Lock()


def _after_fork():
    # A worker (or any child) starts with no job of its parent's to pair.
    global _jobs_lock
    _jobs_lock = threading.Lock()
    _jobs.clear()


os.register_at_fork(after_in_child=_after_fork)


def _fname(func):
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def _call_text(func, args, kwds):
    parts = [_ops.brief(a, 20) for a in args]
    parts += ["%s=%s" % (k, _ops.brief(v, 20)) for k, v in (kwds or {}).items()]
    return "%s(%s)" % (_fname(func), ", ".join(parts))


def _describe(func, args, kwds):
    """The call a task makes, as text, and the user's function's name."""
    from multiprocessing import pool as mpool

    if func is mpool.mapstar or func is mpool.starmapstar:
        f, chunk = args[0]
        star = func is mpool.starmapstar
        calls = [_call_text(f, tuple(x) if star else (x,), None) for x in chunk]
        text = calls[0] if len(calls) == 1 else "%s \u2026 %s (%d calls)" % (calls[0], calls[-1], len(calls))
        return text, _fname(f)
    return _call_text(func, args, kwds), _fname(func)


class _Task(object):
    """What the worker calls instead of the task's function: says `get`,
    `task_start`, then `task_done` and `send` around the real call."""

    __slots__ = ("pool", "n", "func", "text", "fname")

    def __init__(self, pool, n, func, text, fname):
        self.pool, self.n, self.func, self.text, self.fname = pool, n, func, text, fname

    def __reduce__(self):
        return (_Task, (self.pool, self.n, self.func, self.text, self.fname))

    def __call__(self, *args, **kwds):
        pool, n = self.pool, self.n
        emit("get", channel=pool + ".tasks", msg="%s:task%d" % (pool, n), value=self.text)
        emit("task_start", pool=pool, task=n, func=self.fname)
        try:
            r = self.func(*args, **kwds)
        except BaseException as e:
            shown = "%s: %s" % (type(e).__name__, e)
            emit("task_done", pool=pool, task=n, value=shown)
            emit("send", channel=pool + ".results", end="", msg="%s:result%d" % (pool, n), value=shown)
            hide(e)
            raise
        v = value_of(r)
        emit("task_done", pool=pool, task=n, value=v)
        emit("send", channel=pool + ".results", end="", msg="%s:result%d" % (pool, n), value=v)
        return r


# Pool workers are named `POOL.wK` (`OWNER.POOL.wK` outside main), K
# counted from 1 per pool, as the engine names them.
_making = threading.local()  # the pool whose workers this thread starts
_lists = {}  # id(pool._pool) -> [logical prefix, workers so far]


def _worker_id(role, name):
    entry = getattr(_making, "entry", None)
    if entry is None:
        return None
    entry[1] += 1
    return "%s.w%d" % (entry[0], entry[1])


def _prefix(name):
    from . import _wire

    me = _wire.proc() or "main"
    bare = name.split(":", 1)[-1]
    return bare if me == "main" else "%s.%s" % (me, bare)


def _install_worker_ids(Pool):
    try:
        from . import _procs
    except ImportError:
        return
    if getattr(_procs, "child_id_hook", False) is None:
        _procs.child_id_hook = _worker_id

    def repopulate(orig):
        def _repopulate_pool(self):
            name = getattr(self, "_fs_name", None)
            if name is not None and id(self._pool) not in _lists:
                _lists[id(self._pool)] = [_prefix(name), 0]
            return orig(self)

        return _repopulate_pool

    _ops.install_method(Pool, "_repopulate_pool", repopulate)
    static = Pool.__dict__.get("_repopulate_pool_static")
    if isinstance(static, staticmethod) and not getattr(static.__func__, "_forkscope", False):
        real = static.__func__

        def _repopulate_pool_static(ctx, Process, processes, pool, *args, **kwargs):
            prev = getattr(_making, "entry", None)
            _making.entry = _lists.get(id(pool))
            try:
                return real(ctx, Process, processes, pool, *args, **kwargs)
            finally:
                _making.entry = prev

        _repopulate_pool_static._forkscope = True
        Pool._repopulate_pool_static = staticmethod(_repopulate_pool_static)


def install():
    try:
        from multiprocessing import pool as mpool
    except ImportError:
        return
    Pool = mpool.Pool
    _install_worker_ids(Pool)

    def init(orig):
        def __init__(self, processes=None, *args, **kwargs):
            f = _ops.creator()
            if f is not None and type(self) is Pool:
                name = _ops.name_for("Pool", f)
                self._fs_name = name
                self._fs_count = itertools.count()
                n = processes if processes is not None else (os.cpu_count() or 1)
                if isinstance(n, int) and n >= 1:
                    emit("resource", res="pool", name=name, size=n)
            gated_pool = _ops.gated() and getattr(self, "_fs_name", None) is not None
            prev = getattr(_making, "no_handlers", False)
            _making.no_handlers = gated_pool
            try:
                orig(self, processes, *args, **kwargs)
            except BaseException as e:
                hide(e)
                raise
            finally:
                _making.no_handlers = prev
            if gated_pool:
                _make_synchronous(self)

        return __init__

    _ops.install_method(Pool, "__init__", init)
    if _ops.gated():
        _install_gated(mpool)

    def setup_queues(orig):
        def _setup_queues(self):
            orig(self)
            name = getattr(self, "_fs_name", None)
            if name is None:
                return
            if _ops.gated():
                # The workers, forked next, wait for tasks step by step.
                self._inqueue._fs_pool = name
            put = self._quick_put
            count = self._fs_count

            def quick_put(task):
                if task is None:
                    return put(task)
                job, i, func, args, kwds = task
                n = next(count)
                text, fname = _describe(func, args, kwds)
                with _jobs_lock:
                    _jobs[(job, i)] = (name, n)
                emit("put", channel=name + ".tasks", msg="%s:task%d" % (name, n), value=text)
                return put((job, i, _Task(name, n, func, text, fname), args, kwds))

            self._quick_put = quick_put

        return _setup_queues

    _ops.install_method(Pool, "_setup_queues", setup_queues)

    def result_set(orig):
        def _set(self, i, obj):
            with _jobs_lock:
                where = _jobs.pop((getattr(self, "_job", None), i), None)
            if where is not None:
                name, n = where
                try:
                    ok, value = obj
                except Exception:
                    ok, value = True, obj
                shown = value_of(value) if ok else "%s: %s" % (type(value).__name__, value)
                emit("recv", channel=name + ".results", end="", msg="%s:result%d" % (name, n), value=shown)
                # CPython runs the callbacks inside `_set`: each says
                # `callback` first (from the thread that runs it).
                saved = []
                for attr, error in (("_callback", False), ("_error_callback", True)):
                    cb = getattr(self, attr, None)
                    if cb is not None:
                        saved.append((attr, cb))
                        setattr(self, attr, _announced(cb, name, n, error))
                try:
                    return orig(self, i, obj)
                finally:
                    for attr, cb in saved:
                        # Unless CPython let go of it meanwhile.
                        if getattr(self, attr, None) is not None:
                            setattr(self, attr, cb)
            return orig(self, i, obj)

        return _set

    for cls_name in ("ApplyResult", "MapResult", "IMapIterator", "IMapUnorderedIterator"):
        cls = getattr(mpool, cls_name, None)
        if cls is not None:
            _ops.install_method(cls, "_set", result_set)


def _announced(cb, pool, task, error):
    def run(value):
        fields = {"pool": pool, "task": task, "func": getattr(cb, "__name__", None) or repr(cb)}
        if error:
            fields["error"] = True
        emit("callback", **fields)
        return cb(value)

    return run


# ---------------------------------------------------------- gated runs
#
# In a gated run a Pool the program made works without its three threads
# (they would move on their own, where the schedule cannot see them): as
# the engine's pools do, the owner hands out a call's tasks during the
# call itself (one step), takes in results when it waits for one (a step
# tried until a result is there, `waits_for: pool-results:POOL`), and runs
# callbacks then, in its own thread; a worker's wait for a task is a step
# tried until one is there (`pool-tasks:POOL`). `close`/`join`/`terminate`
# send the workers their stop and join them (steps too).


class _SyncTasks(object):
    """Stands for the pool's task queue: what is put in is handed to the
    workers at once (what the task thread would do, without the thread)."""

    def __init__(self, pool):
        self.pool = pool

    def put(self, item):
        if item is None:
            return
        gate("hand out tasks on " + self.pool._fs_name, touches=["*"])
        taskseq, set_length = item
        task = None
        for task in taskseq:
            try:
                self.pool._quick_put(task)
            except Exception as e:
                job, idx = task[:2]
                try:
                    self.pool._cache[job]._set(idx, (False, e))
                except KeyError:
                    pass
        if set_length:
            set_length(task[1] + 1 if task else 0)

    def get(self, *a, **k):
        return None


def _make_synchronous(pool):
    from multiprocessing import util

    pool._taskqueue = _SyncTasks(pool)
    try:
        pool._terminate.cancel()
    except Exception:
        pass
    pool._terminate = util.Finalize(pool, _gated_terminate, args=(pool,), exitpriority=15)


def _drain(pool):
    """Takes in every result that is there (and runs its callbacks)."""
    out = pool._outqueue
    got = False
    while out._reader.poll(0):
        item = out.get()
        if item is None:
            continue
        job, i, obj = item
        try:
            pool._cache[job]._set(i, obj)
        except KeyError:
            pass
        got = True
    return got


def _wait_results(pool, ready, action):
    """A step, tried until `ready()` after taking in what came."""

    def once():
        _drain(pool)
        return True if ready() else NOT_YET

    if ready():
        gate(action, touches=["*"])  # nothing to wait for: one step
        _drain(pool)
        return
    gate_until(action, "pool-results:" + pool._fs_name, ["*"], once)


class _Stop(object):
    """A worker's stop (CPython sends None), with its message id."""

    __slots__ = ("m",)

    def __init__(self, m):
        self.m = m

    def __reduce__(self):
        return (_Stop, (self.m,))


def _stop_workers(pool):
    name = pool._fs_name
    for k in range(len(pool._pool)):
        gate("stop a worker of " + name, touches=["*"])
        m = "%s:stop%d" % (name, k + 1)
        emit("put", channel=name + ".tasks", msg=m, value="stop")
        pool._inqueue._writer.send(_Stop(m))


def _gated_terminate(pool):
    if getattr(pool, "_fs_done", False):
        return
    pool._fs_done = True
    from multiprocessing import pool as mpool

    pool._state = mpool.TERMINATE
    for p in pool._pool:
        if p.exitcode is None:
            p.terminate()
    for p in pool._pool:
        p.join()


def _install_gated(mpool):
    from multiprocessing import queues

    Pool = mpool.Pool
    T = threading.Thread
    handlers = (Pool._handle_workers, Pool._handle_tasks, Pool._handle_results)
    start = T.start

    def no_handler_start(self):
        if getattr(_making, "no_handlers", False):
            target = getattr(self, "_target", None)
            if getattr(target, "__func__", target) in [getattr(h, "__func__", h) for h in handlers]:
                return None  # the owner does their work, step by step
        return start(self)

    no_handler_start.__wrapped__ = getattr(start, "__wrapped__", start)
    _ops.PASS_ON_CODE.add(no_handler_start.__code__)
    T.start = no_handler_start

    def join(orig):
        def join(self):
            if not isinstance(getattr(self, "_taskqueue", None), _SyncTasks):
                return orig(self)
            try:
                if self._state == mpool.RUN:
                    raise ValueError("Pool is still running")
                if self._state not in (mpool.CLOSE, mpool.TERMINATE):
                    raise ValueError("In unknown state")
                if self._state == mpool.CLOSE and not getattr(self, "_fs_done", False):
                    _wait_results(self, lambda: not self._cache, "wait for the results of " + self._fs_name)
                    _stop_workers(self)
                    self._fs_done = True
                for p in self._pool:
                    p.join()
            except BaseException as e:
                hide(e)
                raise

        return join

    def terminate(orig):
        def terminate(self):
            if not isinstance(getattr(self, "_taskqueue", None), _SyncTasks):
                return orig(self)
            self._state = mpool.TERMINATE
            self._terminate()

        return terminate

    _ops.install_method(Pool, "join", join)
    _ops.install_method(Pool, "terminate", terminate)

    def wait(orig):
        def wait(self, timeout=None):
            pool = getattr(self, "_pool", None)
            if pool is None or getattr(pool, "_fs_name", None) is None or self.ready():
                return orig(self, timeout)
            try:
                _wait_results(pool, self.ready, "wait for a result from " + pool._fs_name)
            except BaseException as e:
                hide(e)
                raise

        return wait

    _ops.install_method(mpool.ApplyResult, "wait", wait)

    def next_(orig):
        def next(self, timeout=None):
            pool = getattr(self, "_pool", None)
            if pool is None or getattr(pool, "_fs_name", None) is None:
                return orig(self, timeout)
            try:
                _wait_results(
                    pool,
                    lambda: bool(self._items) or self._index == self._length,
                    "wait for a result from " + pool._fs_name,
                )
                return orig(self, 0)
            except BaseException as e:
                hide(e)
                raise

        return next

    for cls in (mpool.IMapIterator,):
        _ops.install_method(cls, "next", next_)
        cls.__next__ = cls.next

    # A worker's wait for a task: a step tried until one is there.
    sq_get = queues.SimpleQueue.get

    def get(self):
        name = getattr(self, "_fs_pool", None)
        if name is None:
            return sq_get(self)
        r = gate_until(
            "take a task from " + name,
            "pool-tasks:" + name,
            ["*"],
            lambda: sq_get(self) if self._poll() else NOT_YET,
        )
        if type(r) is _Stop:
            emit("get", channel=name + ".tasks", msg=r.m, value="stop")
            return None
        return r

    get._forkscope = True
    queues.SimpleQueue.get = get
