"""Messages the program sends: `multiprocessing.Queue`, `SimpleQueue`,
`JoinableQueue` and `Pipe()` connections (PROTOCOL.md §7.4, §8).

Each message travels with its id: the object is put in a small carrier
(`_Msg`) that is pickled with it, and the receiving side, whatever process
it is, takes the object out again and reports the id, so `put`/`get` and
`send`/`recv` pair up. The program only ever sees its own object.

- Queue: `put {channel, msg, value}` before the item goes to the queue's
  buffer, `get` after it came out; `block`/`unblock` around a `get` on an
  empty queue or a `put` on a full one.
- Pipe: `send {channel, end, msg, value}` before the write, `recv` after
  the read, `poll {channel, end, ready}`; `block`/`unblock` around a
  `recv` that waits. `resource` declares the pipe with its two ends.

Gated runs: put, get, send, recv, poll, task_done and join are gates. A
`get` or `recv` is tried without blocking and announced again until there
is something. A gated `Queue.put` writes the item itself instead of
leaving it to the queue's feeder thread, so an item put is in the pipe
before the next step of anyone (else a `get` scheduled next could find
nothing, the feeder being late).
"""

import itertools

from . import _ops, _wire
from ._ops import NOT_YET, blocking, emit, gated, gate, gate_until_ready, hide, value_of

_ids = itertools.count(1)
_MARK = "__forkscope__"


class _Msg(object):
    """An object in transit with its message id."""

    __slots__ = ("m", "v")

    def __init__(self, m, v):
        self.m = m
        self.v = v

    def __reduce__(self):
        return (_msg, (self.m, self.v))


def _msg(m, v):
    return _Msg(m, v)


def _new_id():
    f = getattr(_wire, "msg_id", None)
    if callable(f):
        try:
            return f()
        except Exception:
            pass
    me = getattr(_wire, "proc", None)
    try:
        me = me() if callable(me) else me
    except Exception:
        me = None
    return "%s#m%d" % (me or "?", next(_ids))


def _unwrap(r, kind, channel, end=None):
    if type(r) is not _Msg:
        return r
    if end is None:
        emit(kind, channel=channel or "?", msg=r.m, value=value_of(r.v))
    else:
        emit(kind, channel=channel or "?", end=end or "", msg=r.m, value=value_of(r.v))
    return r.v


def _carry_name(cls, attrs):
    """A `spawn`/`forkserver` child gets the names with the object."""

    def getstate(orig):
        def __getstate__(self):
            state = orig(self)
            names = tuple(getattr(self, a, None) for a in attrs)
            if all(n is None for n in names) or type(self) is not cls:
                return state
            return (_MARK, names, state)

        return __getstate__

    def setstate(orig):
        def __setstate__(self, state):
            if isinstance(state, tuple) and len(state) == 3 and state[0] == _MARK and type(self) is cls:
                for a, v in zip(attrs, state[1]):
                    if v is not None:
                        setattr(self, a, v)
                state = state[2]
            orig(self, state)

        return __setstate__

    _ops.install_method(cls, "__getstate__", getstate)
    _ops.install_method(cls, "__setstate__", setstate)


# --------------------------------------------------------------- queues


def _install_queues():
    from multiprocessing import queues
    from multiprocessing.reduction import ForkingPickler
    from queue import Empty, Full

    def init(orig, kind):
        def __init__(self, *args, **kwargs):
            orig(self, *args, **kwargs)
            if type(self).__name__ != kind:
                return
            f = _ops.creator()
            if f is not None:
                name = _ops.name_for(kind, f)
                self._fs_name = name
                size = getattr(self, "_maxsize", 0)
                from multiprocessing.synchronize import SEM_VALUE_MAX

                emit("resource", res="queue", name=name, size=0 if size >= SEM_VALUE_MAX else size)

        return __init__

    for kind in ("Queue", "JoinableQueue", "SimpleQueue"):
        cls = getattr(queues, kind)
        _ops.install_method(cls, "__init__", lambda o, k=kind: init(o, k))
        # (`_fs_pool`: a gated Pool's task queue, see _pool.)
        _carry_name(cls, ("_fs_name", "_fs_pool"))

    def bounded(q):
        from multiprocessing.synchronize import SEM_VALUE_MAX

        return q._maxsize < SEM_VALUE_MAX

    def put(orig, joinable):
        def put(self, obj, block=True, timeout=None):
            name = getattr(self, "_fs_name", None)
            if name is None or self._closed:
                return orig(self, obj, block, timeout)
            try:
                if gated():
                    waits = block and (timeout is None or timeout > 0)
                    return _gated_put(self, name, obj, waits, joinable)
                sem = self._sem
                waits = block and bounded(self) and sem._semlock._is_zero()
                on = "put on full queue " + name if waits else None
                if not blocking(on, lambda: sem.acquire(block, timeout)):
                    raise Full
                m = _new_id()
                emit("put", channel=name, msg=m, value=value_of(obj))
                item = _Msg(m, obj)
                if joinable:
                    with self._notempty, self._cond:
                        if self._thread is None:
                            self._start_thread()
                        self._buffer.append(item)
                        self._unfinished_tasks.release()
                        self._notempty.notify()
                else:
                    with self._notempty:
                        if self._thread is None:
                            self._start_thread()
                        self._buffer.append(item)
                        self._notempty.notify()
            except BaseException as e:
                hide(e)
                raise

        return put

    def _gated_put(self, name, obj, block, joinable):
        sem = self._sem
        action = "put %s on %s" % (_ops.brief(obj), name)
        if block:
            gate_until_ready(
                action,
                "queue-put:" + name,
                ["queue:" + name],
                "put on full queue " + name,
                lambda: True if sem.acquire(False) else NOT_YET,
            )
        else:
            gate(action, touches=["queue:" + name])
            if not sem.acquire(False):
                raise Full
        m = _new_id()
        data = ForkingPickler.dumps(_Msg(m, obj))
        emit("put", channel=name, msg=m, value=value_of(obj))
        if joinable:
            self._unfinished_tasks.release()
        if self._wlock is None:
            self._writer.send_bytes(data)
        else:
            with self._wlock:
                self._writer.send_bytes(data)

    _ops.install_method(queues.Queue, "put", lambda o: put(o, False))
    _ops.install_method(queues.JoinableQueue, "put", lambda o: put(o, True))

    def get(orig):
        def get(self, block=True, timeout=None):
            name = getattr(self, "_fs_name", None)
            try:
                if name is None or self._closed:
                    return _unwrap(orig(self, block, timeout), "get", name)
                if gated():
                    # A timeout never runs out in a gated run: the get waits
                    # until there is an item (a wait nobody can end is a
                    # deadlock, which forkscope reports); `timeout=0` is one
                    # try.
                    waits = block and (timeout is None or timeout > 0)
                    return _unwrap(_gated_get(self, name, waits), "get", name)
                waits = block and not self._poll()
                on = "get on empty queue " + name if waits else None
                return _unwrap(blocking(on, lambda: orig(self, block, timeout)), "get", name)
            except BaseException as e:
                hide(e)
                raise

        return get

    def _gated_get(self, name, block):
        def take():
            if not self._poll():
                return NOT_YET
            with self._rlock:
                if not self._poll():
                    return NOT_YET
                res = self._recv_bytes()
            self._sem.release()
            return ForkingPickler.loads(res)

        action = "get from " + name
        if not block:
            gate(action, touches=["queue:" + name])
            r = take()
            if r is NOT_YET:
                raise Empty
            return r
        on = "get on empty queue " + name
        return gate_until_ready(action, "queue-get:" + name, ["queue:" + name], on, take)

    _ops.install_method(queues.Queue, "get", get)

    def task_done(orig):
        def task_done(self):
            name = getattr(self, "_fs_name", None)
            try:
                if name is not None and gated():
                    gate("task_done on " + name, touches=["queue:" + name])
                return orig(self)
            except BaseException as e:
                hide(e)
                raise

        return task_done

    def join(orig):
        def join(self):
            name = getattr(self, "_fs_name", None)
            try:
                if name is None:
                    return orig(self)
                on = "join queue %s (until every item is done)" % name
                zero = self._unfinished_tasks._semlock._is_zero
                if gated():
                    gate_until_ready(
                        "join " + name,
                        None,
                        ["queue:" + name],
                        on,
                        lambda: True if zero() else NOT_YET,
                    )
                    return None
                return blocking(None if zero() else on, lambda: orig(self))
            except BaseException as e:
                hide(e)
                raise

        return join

    _ops.install_method(queues.JoinableQueue, "task_done", task_done)
    _ops.install_method(queues.JoinableQueue, "join", join)

    # SimpleQueue: a locked pipe, no feeder thread.
    def sq_put(orig):
        def put(self, obj):
            name = getattr(self, "_fs_name", None)
            if name is None:
                return orig(self, obj)
            try:
                if gated():
                    gate("put %s on %s" % (_ops.brief(obj), name), touches=["queue:" + name])
                # CPython's put, with the event once the item is pickled.
                m = _new_id()
                data = ForkingPickler.dumps(_Msg(m, obj))
                emit("put", channel=name, msg=m, value=value_of(obj))
                if self._wlock is None:
                    self._writer.send_bytes(data)
                else:
                    with self._wlock:
                        self._writer.send_bytes(data)
                return None
            except BaseException as e:
                hide(e)
                raise

        return put

    def sq_get(orig):
        def get(self):
            name = getattr(self, "_fs_name", None)
            try:
                if name is None:
                    return _unwrap(orig(self), "get", name)
                on = "get on empty queue " + name
                if gated():
                    r = gate_until_ready(
                        "get from " + name,
                        "queue-get:" + name,
                        ["queue:" + name],
                        on,
                        lambda: orig(self) if self._poll() else NOT_YET,
                    )
                    return _unwrap(r, "get", name)
                r = blocking(None if self._poll() else on, lambda: orig(self))
                return _unwrap(r, "get", name)
            except BaseException as e:
                hide(e)
                raise

        return get

    _ops.install_method(queues.SimpleQueue, "put", sq_put)
    _ops.install_method(queues.SimpleQueue, "get", sq_get)


# ---------------------------------------------------------------- pipes


def _install_pipes():
    from multiprocessing import connection, reduction
    from multiprocessing.reduction import ForkingPickler

    real_pipe = connection.Pipe

    def Pipe(duplex=True):
        a, b = real_pipe(duplex)
        f = _ops.creator()
        if f is not None:
            try:
                ea = _ops.name_for("conn", f, 0)
                eb = _ops.name_for("conn", f, 1)
                chan = "%s/%s" % (ea, eb)
                emit("resource", res="pipe", name=chan, ends=[ea, eb], duplex=bool(duplex))
                a._fs_chan = b._fs_chan = chan
                a._fs_end, b._fs_end = ea, eb
            except Exception:
                pass
        return a, b

    if not getattr(real_pipe, "_forkscope", False):
        Pipe._forkscope = True
        Pipe.__doc__ = real_pipe.__doc__
        connection.Pipe = Pipe

    cls = connection.Connection

    def send(orig):
        def send(self, obj):
            end = getattr(self, "_fs_end", None)
            if end is None:
                return orig(self, obj)
            try:
                if gated():
                    gate("send %s on %s" % (_ops.brief(obj), end), touches=["pipe:" + self._fs_chan])
                # What CPython's send does, with the event once the message
                # is pickled (a message that cannot be was never sent).
                self._check_closed()
                self._check_writable()
                m = _new_id()
                data = ForkingPickler.dumps(_Msg(m, obj))
                emit("send", channel=self._fs_chan, end=end, msg=m, value=value_of(obj))
                self._send_bytes(data)
                return None
            except BaseException as e:
                hide(e)
                raise

        return send

    def recv(orig):
        def recv(self):
            end = getattr(self, "_fs_end", None)
            try:
                if end is None:
                    return _unwrap(orig(self), "recv", getattr(self, "_fs_chan", None), "")
                chan = self._fs_chan
                on = "recv on " + end
                if gated():
                    self._check_closed()
                    self._check_readable()
                    r = gate_until_ready(
                        on,
                        "recv:" + end,
                        ["pipe:" + chan],
                        on,
                        lambda: orig(self) if self._poll(0) else NOT_YET,
                    )
                    return _unwrap(r, "recv", chan, end)
                waits = False
                try:
                    waits = not self._poll(0)
                except Exception:
                    pass
                r = blocking(on if waits else None, lambda: orig(self))
                return _unwrap(r, "recv", chan, end)
            except BaseException as e:
                hide(e)
                raise

        return recv

    def poll(orig):
        def poll(self, timeout=0.0):
            end = getattr(self, "_fs_end", None)
            if end is None:
                return orig(self, timeout)
            try:
                if gated():
                    gate("poll " + end, touches=["pipe:" + self._fs_chan])
                    timeout = 0.0
                r = orig(self, timeout)
                emit("poll", channel=self._fs_chan, end=end, ready=bool(r))
                return r
            except BaseException as e:
                hide(e)
                raise

        return poll

    _ops.install_method(connection._ConnectionBase, "send", send)
    _ops.install_method(connection._ConnectionBase, "recv", recv)
    _ops.install_method(connection._ConnectionBase, "poll", poll)

    # A connection sent to a `spawn` child keeps its names.
    reducers = getattr(reduction.ForkingPickler, "_extra_reducers", {})
    real_reduce = reducers.get(cls)
    if real_reduce is not None and not getattr(real_reduce, "_forkscope", False):

        def reduce_connection(conn):
            rv = real_reduce(conn)
            end = getattr(conn, "_fs_end", None)
            if end is None:
                return rv
            return _rebuild_connection, (rv[0], rv[1], conn._fs_chan, end)

        reduce_connection._forkscope = True
        reduction.register(cls, reduce_connection)


def _rebuild_connection(rebuild, args, chan, end):
    c = rebuild(*args)
    c._fs_chan = chan
    c._fs_end = end
    return c


def install():
    try:
        _install_queues()
    except ImportError:
        pass
    _install_pipes()
