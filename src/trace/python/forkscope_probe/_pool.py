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
  (`thread` = that thread), where CPython then runs the callback: what the
  callback does follows the `recv`, from the same thread, with the
  callback's own `line`.

The task is carried to the worker by a small wrapper around the function
(`_Task`), which the worker calls as CPython calls the function; a failing
task raises the same exception, with the same traceback (the probe's frame
is taken out).
"""

import itertools
import os
import threading

from . import _ops
from ._ops import emit, hide, value_of

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
                if _ops.gated():
                    # Its own threads hand out tasks and take in results;
                    # nothing gates them yet, so the schedule cannot wait
                    # for them: say so rather than wait without a word.
                    emit(
                        "error",
                        message="a Pool cannot be stepped or seeded yet (its own threads are not "
                        "gated): this gated run will wait until --timeout; trace it without "
                        "--schedule",
                    )
            try:
                orig(self, processes, *args, **kwargs)
            except BaseException as e:
                hide(e)
                raise

        return __init__

    _ops.install_method(Pool, "__init__", init)

    def setup_queues(orig):
        def _setup_queues(self):
            orig(self)
            name = getattr(self, "_fs_name", None)
            if name is None:
                return
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
            return orig(self, i, obj)

        return _set

    for cls_name in ("ApplyResult", "MapResult", "IMapIterator", "IMapUnorderedIterator"):
        cls = getattr(mpool, cls_name, None)
        if cls is not None:
            _ops.install_method(cls, "_set", result_set)
