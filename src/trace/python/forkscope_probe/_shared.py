"""Shared memory the program makes: `multiprocessing.Value`, `Array`,
`RawValue`, `RawArray` (PROTOCOL.md §7.6).

- `read {name, value}` after each load of `.value` (or of `a[i]`, `a[:]`),
  `write {name, value}` before each store; `resource` when one is made.
- `v.value += 1` is what CPython does: a read, then a write (two gates in
  a gated run).
- Lost updates, exactly, as the engine finds them
  (`src/runner/interp/values.rs`): a write of a whole value is an
  exchange (under the value's own lock, which CPython takes around every
  single load or store of a `Value` anyway; a hidden process-shared lock
  for a `RawValue`): it learns the value it replaced. If that is not what
  this thread last saw there (its last read, or its own last write),
  others wrote in between and this write erased their work: the writer
  sends `race {name, read, replaced, written, lost}` with
  `lost = replaced - read`. The exchanges of one value form one order in
  memory, so for a value only ever changed by `+= 1` the sum of `lost` is
  exactly what the final value is short of.

  Unlike the engine, which knows from the scenario which writes are
  computed from a read, every write of a thread that has seen the value
  is checked (Python does not say where a value came from). A write of a
  constant (`v.value = 0`) after a read can therefore report a `race`.
"""

import ctypes
import itertools
import os
import threading
import _thread

from . import _ops
from ._ops import NOT_YET, emit, gated, gate, gate_until, hide, value_of

_seen = threading.local()  # per thread: name -> the value it last saw
_real = {}


def _seen_map():
    m = getattr(_seen, "m", None)
    if m is None:
        m = _seen.m = {}
    return m


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def differs(read, replaced):
    """Does the value found in memory differ from the one this thread saw?"""
    if _number(read) and _number(replaced):
        return float(read) != float(replaced) if isinstance(read, float) or isinstance(replaced, float) else read != replaced
    return read != replaced


def lost_between(read, replaced):
    """What a write erased: `replaced - read` for numbers, else `replaced`."""
    if isinstance(read, int) and isinstance(replaced, int) and not isinstance(read, bool) and not isinstance(replaced, bool):
        return replaced - read
    if _number(read) and _number(replaced):
        return float(replaced) - float(read)
    return value_of(replaced)


# ------------------------------------------------------------- locking


class _Guard(object):
    """How to take a shared value's lock without the probe's own lock
    events: the real semaphore of a `multiprocessing` lock, or the lock."""

    __slots__ = ("try_", "take", "give", "mine", "name")

    def __init__(self, lock):
        sl = getattr(lock, "_semlock", None)
        if sl is not None:
            self.try_ = lambda: sl.acquire(False)
            self.take = sl.acquire
            self.give = sl.release
            kind = type(lock).__name__
            self.mine = sl._is_mine if kind == "RLock" else (lambda: False)
        else:
            inner = getattr(lock, "_lock", None)  # our threading wrappers
            real = inner if inner is not None and hasattr(lock, "_fs_name") else lock
            self.try_ = lambda: real.acquire(False)
            self.take = real.acquire
            self.give = real.release
            owned = getattr(real, "_is_owned", None)
            self.mine = owned if owned is not None else (lambda: False)
        self.name = getattr(lock, "_fs_name", None)


_hidden_names = itertools.count(1)


def _hidden_lock():
    """A process-shared lock nobody sees: what makes a RawValue's write an
    exchange. Made from the C semaphore directly, so it is never watched."""
    import _multiprocessing

    for _ in range(100):
        name = "/fs-%d-%d-%s" % (os.getpid(), next(_hidden_names), os.urandom(4).hex())
        try:
            return _multiprocessing.SemLock(1, 1, 1, name, True)  # SEMAPHORE, unlinked now
        except FileExistsError:
            continue
    raise FileExistsError("cannot find a name for a semaphore")


class _HiddenGuard(object):
    __slots__ = ("try_", "take", "give", "mine", "name")

    def __init__(self, sem):
        self.try_ = lambda: sem.acquire(False)
        self.take = sem.acquire
        self.give = sem.release
        self.mine = lambda: False
        self.name = None


def _enter(guard, action, touches):
    """Takes the value's lock for one load or store. Gated: the gate comes
    first, and the lock is tried without blocking (another process may
    hold it across its own steps, as `with v.get_lock():` does)."""
    if not gated():
        guard.take()
        return
    if guard.mine():
        gate(action, touches=touches)
        guard.take()
        return
    waits_for = "lock:" + guard.name if guard.name else None
    gate_until(action, waits_for, touches, lambda: True if guard.try_() else NOT_YET)


# ------------------------------------------------------ the operations


def _read(name, guard, load):
    _enter(guard, "read " + name, ["r:" + name])
    try:
        v = load()
        emit("read", name=name, value=value_of(v))
    finally:
        guard.give()
    return v


def _write(name, guard, load, store, new, checked=True):
    _enter(guard, "write %s = %s" % (name, _ops.brief(new)), ["w:" + name])
    try:
        emit("write", name=name, value=value_of(new))
        replaced = load()
        store(new)
        written = load()
    finally:
        guard.give()
    if checked:
        _check_race(name, replaced, written)


def _check_race(name, replaced, written):
    """After an exchange that put `written` in place of `replaced`: if
    that is not what this thread last saw there, others wrote in between
    and this write erased their work (`race`)."""
    seen = _seen_map()
    read = seen.get(name, _NOTHING)
    seen[name] = written
    if read is not _NOTHING and differs(read, replaced):
        emit(
            "race",
            name=name,
            read=value_of(read),
            replaced=value_of(replaced),
            written=value_of(written),
            lost=value_of(lost_between(read, replaced)),
        )


_NOTHING = object()


def _after_read(name, v):
    _seen_map()[name] = v
    return v


def _value_get(self):
    try:
        name = self._fs_name
        obj = self._obj
        return _after_read(name, _read(name, self._fs_guard, lambda: obj.value))
    except BaseException as e:
        hide(e)
        raise


def _value_set(self, new):
    try:
        obj = self._obj

        def store(x):
            obj.value = x

        _write(self._fs_name, self._fs_guard, lambda: obj.value, store, new)
    except BaseException as e:
        hide(e)
        raise


def _elem_name(name, i):
    if isinstance(i, slice):
        return name if i == slice(None) else "%s[%s:%s]" % (name, "" if i.start is None else i.start, "" if i.stop is None else i.stop)
    return "%s[%d]" % (name, i) if isinstance(i, int) else "%s[%r]" % (name, i)


def _shown_index(obj, i):
    """`a[-1]` is shown as the element it is."""
    if isinstance(i, int) and not isinstance(i, bool) and i < 0:
        n = len(obj)
        if -n <= i:
            return i + n
    return i


def _array_get(self, i):
    try:
        obj = self._obj
        name = self._fs_name
        shown = _elem_name(name, _shown_index(obj, i))
        return _read_as(shown, name, self._fs_guard, lambda: obj[i])
    except BaseException as e:
        hide(e)
        raise


def _read_as(shown, name, guard, load):
    _enter(guard, "read " + shown, ["r:" + name])
    try:
        v = load()
        emit("read", name=shown, value=value_of(v))
    finally:
        guard.give()
    return v


def _array_set(self, i, new):
    try:
        obj = self._obj
        name = self._fs_name
        shown = _elem_name(name, _shown_index(obj, i))
        _enter(self._fs_guard, "write %s = %s" % (shown, _ops.brief(new)), ["w:" + name])
        try:
            emit("write", name=shown, value=value_of(new))
            obj[i] = new
        finally:
            self._fs_guard.give()
    except BaseException as e:
        hide(e)
        raise


# ------------------------------------------------------- the wrappers

_classes = {}


def _traced_sync_class(cls):
    """A subclass of CPython's Synchronized* class whose accesses report."""
    t = _classes.get(cls)
    if t is not None:
        return t
    d = {"__reduce__": _sync_reduce}
    if "value" in dir(cls) and not issubclass(cls, _real["SynchronizedArray"]):
        d["value"] = property(_value_get, _value_set)
    if issubclass(cls, _real["SynchronizedArray"]):
        d["__getitem__"] = _array_get
        d["__setitem__"] = _array_set
        if "value" in dir(cls):  # Array('c'): .value is the whole string
            d["value"] = property(_str_get, _str_set)
    t = type(cls.__name__, (cls,), d)
    t.__module__ = cls.__module__
    t.__qualname__ = cls.__qualname__
    _classes[cls] = t
    return t


def _str_get(self):
    try:
        obj = self._obj
        return _read_as(self._fs_name, self._fs_name, self._fs_guard, lambda: obj.value)
    except BaseException as e:
        hide(e)
        raise


def _str_set(self, new):
    try:
        obj = self._obj

        def store(x):
            obj.value = x

        _write(self._fs_name, self._fs_guard, lambda: obj.value, store, new, checked=False)
    except BaseException as e:
        hide(e)
        raise


def _sync_reduce(self):
    # A `spawn`/`forkserver` child rebuilds it watched, under the same name.
    from multiprocessing.context import assert_spawning

    assert_spawning(self)
    return _rebuild_synchronized, (self._obj, self._lock, self._fs_name)


def _rebuild_synchronized(obj, lock, name):
    from multiprocessing import sharedctypes

    s = sharedctypes.synchronized(obj, lock)
    _watch_synchronized(s, name)
    return s


def _watch_synchronized(s, name):
    s.__class__ = _traced_sync_class(type(s))
    s._fs_name = name
    lock = s._lock
    if getattr(lock, "_semlock", None) is not None and getattr(lock, "_fs_name", None) is None:
        from . import _sync

        _sync.trace_semlock(lock, name + ".lock")
    s._fs_guard = _Guard(lock)


# Raw values: a subclass of the ctypes type whose `.value` reports.
_raw_classes = {}


def _traced_raw_class(base):
    t = _raw_classes.get(base)
    if t is not None:
        return t
    real_value = base.value

    def get(self):
        try:
            name = self._fs_name
            return _after_read(name, _read(name, self._fs_guard, lambda: real_value.__get__(self)))
        except BaseException as e:
            hide(e)
            raise

    def set_(self, new):
        try:
            _write(
                self._fs_name,
                self._fs_guard,
                lambda: real_value.__get__(self),
                lambda x: real_value.__set__(self, x),
                new,
            )
        except BaseException as e:
            hide(e)
            raise

    t = type(base.__name__, (base,), {"value": property(get, set_)})
    _raw_classes[base] = t
    _register_raw(t, base)
    return t


def _traced_raw_array_class(base):
    t = _raw_classes.get(base)
    if t is not None:
        return t

    def getitem(self, i):
        try:
            name = self._fs_name
            shown = _elem_name(name, _shown_index(self, i))
            return _read_as(shown, name, self._fs_guard, lambda: base.__getitem__(self, i))
        except BaseException as e:
            hide(e)
            raise

    def setitem(self, i, new):
        try:
            name = self._fs_name
            shown = _elem_name(name, _shown_index(self, i))
            g = self._fs_guard
            _enter(g, "write %s = %s" % (shown, _ops.brief(new)), ["w:" + name])
            try:
                emit("write", name=shown, value=value_of(new))
                base.__setitem__(self, i, new)
            finally:
                g.give()
        except BaseException as e:
            hide(e)
            raise

    t = type(base.__name__, (base,), {"__getitem__": getitem, "__setitem__": setitem})
    _raw_classes[base] = t
    _register_raw(t, base)
    return t


def _register_raw(t, base):
    """A `spawn` child gets the plain ctypes object (unwatched), as CPython
    would send it."""
    try:
        from multiprocessing.reduction import ForkingPickler
        from multiprocessing import sharedctypes

        def reduce(obj):
            length = getattr(base, "_length_", None)
            if length is not None:
                return sharedctypes.rebuild_ctype, (base._type_, obj._wrapper, length)
            return sharedctypes.rebuild_ctype, (base, obj._wrapper, None)

        ForkingPickler.register(t, reduce)
    except Exception:
        pass


def _watch_raw(obj, name, array):
    base = type(obj)
    t = _traced_raw_array_class(base) if array else _traced_raw_class(base)
    w = t.from_buffer(obj)
    w._wrapper = obj._wrapper
    w._fs_name = name
    w._fs_guard = _HiddenGuard(_hidden_lock()) if not array else _NoGuard
    return w


class _NoGuardType(object):
    """Raw array elements are plain stores (never checked), as the engine's."""

    __slots__ = ()
    name = None

    def try_(self):
        return True

    def take(self, *a):
        return True

    def give(self):
        pass

    def mine(self):
        return False


_NoGuard = _NoGuardType()


def _initial(obj, array):
    try:
        if array:
            return value_of(list(obj[:256])) if len(obj) <= 256 else repr(obj)
        return value_of(obj.value)
    except Exception:
        return None


def _declare(name, obj, array):
    if array and getattr(type(obj), "_type_", None) is ctypes.c_char:
        emit("resource", res="value", name=name, value=value_of(obj.value))
        return
    emit("resource", res="array" if array else "value", name=name, value=_initial(obj, array))


# ------------------------------------------------- a Manager's Value
#
# `Manager().Value(...)` lives in the manager's server process; the program
# holds a proxy. It is shown as a shared value all the same: `resource`
# when the program makes it, `read` after each `get` (`v.value`), `write`
# after each `set`. A set is an exchange in the server (under a lock of the
# server's, `_forkscope_set`), so it learns what it replaced and a lost
# update is a `race`, exactly as for a `Value` in shared memory. A server
# without the probe answers with an error: then it is a plain `set`.


def _manager_exchange(self, value):
    """In the server: stores `value`, returns what it replaced."""
    with _exchange_lock:
        old = self._value
        self._value = value
    return old


def _manager_value_get(real_get):
    def get(self):
        try:
            v = real_get(self)
        except BaseException as e:
            hide(e)
            raise
        name = self.__dict__.get("_fs_name")
        if name is not None:
            emit("read", name=name, value=value_of(v))
            _after_read(name, v)
        return v

    return get


def _manager_value_set(real_set):
    def set(self, value):
        name = self.__dict__.get("_fs_name")
        if name is None:
            return real_set(self, value)
        try:
            try:
                replaced = self._callmethod("_forkscope_set", (value,))
            except AttributeError:  # a server without the probe
                real_set(self, value)
                emit("write", name=name, value=value_of(value))
                return None
        except BaseException as e:
            hide(e)
            raise
        emit("write", name=name, value=value_of(value))
        _check_race(name, replaced, value)
        return None

    return set


def _manager_value_reduce(real_reduce):
    def __reduce__(self):
        r = real_reduce(self)
        name = self.__dict__.get("_fs_name")
        if name is None:
            return r
        # A `spawn`/`forkserver` child gets the proxy under the same name.
        return _rebuild_manager_value, (name, r[0], r[1])

    return __reduce__


def _rebuild_manager_value(name, func, args):
    p = func(*args)
    try:
        p._fs_name = name
    except Exception:
        pass  # rebuilt in the server: the value itself, not a proxy
    return p


def _watch_manager_values(managers):
    V, P, M = managers.Value, managers.ValueProxy, managers.SyncManager
    if getattr(P, "_forkscope", False):
        return
    P._forkscope = True
    V._forkscope_set = _manager_exchange
    P._exposed_ = tuple(P._exposed_) + ("_forkscope_set",)
    entry = M._registry.get("Value")
    if entry is not None and entry[0] is V and entry[1] is not None:
        M._registry["Value"] = (entry[0], tuple(entry[1]) + ("_forkscope_set",)) + tuple(entry[2:])
    get = _manager_value_get(P.get)
    set_ = _manager_value_set(P.set)
    P.get, P.set, P.value = get, set_, property(get, set_)
    P.__reduce__ = _manager_value_reduce(P.__reduce__)
    real_make = M.__dict__.get("Value")
    if real_make is None:
        return

    def Value(self, *args, **kwds):
        proxy = real_make(self, *args, **kwds)
        f = _ops.creator()
        if f is None or not isinstance(proxy, P):
            return proxy
        try:
            name = _ops.name_for("Value", f)
            initial = args[1] if len(args) > 1 else kwds.get("value")
            emit("resource", res="value", name=name, value=value_of(initial))
            proxy._fs_name = name
        except Exception as e:  # never break the program for a view
            emit("error", message="forkscope probe: cannot watch Value: %r" % (e,))
        return proxy

    Value.__name__ = real_make.__name__
    Value.__doc__ = real_make.__doc__
    Value.__wrapped__ = real_make
    M.Value = Value


_exchange_lock = _thread.allocate_lock()  # never watched


def install():
    _ops.after_import("multiprocessing.managers", _watch_manager_values)
    try:
        from multiprocessing import sharedctypes
    except ImportError:
        return
    _real["SynchronizedArray"] = sharedctypes.SynchronizedArray
    real_value = sharedctypes.Value
    real_array = sharedctypes.Array
    real_raw_value = sharedctypes.RawValue
    real_raw_array = sharedctypes.RawArray
    _real.update(Value=real_value, Array=real_array, RawValue=real_raw_value, RawArray=real_raw_array)

    def wrap(real, kind, array):
        def make(*args, **kwargs):
            obj = real(*args, **kwargs)
            f = _ops.creator()
            if f is None:
                return obj
            try:
                name = _ops.name_for(kind, f)
                if isinstance(obj, sharedctypes.SynchronizedBase):
                    _declare(name, obj._obj, array)
                    _watch_synchronized(obj, name)
                    return obj
                _declare(name, obj, array)
                return _watch_raw(obj, name, array)
            except Exception as e:  # never break the program for a view
                emit("error", message="forkscope probe: cannot watch %s: %r" % (kind, e))
                return obj

        make.__name__ = real.__name__
        make.__doc__ = real.__doc__
        make._forkscope = True
        return make

    if not getattr(real_value, "_forkscope", False):
        sharedctypes.Value = wrap(real_value, "Value", False)
        sharedctypes.Array = wrap(real_array, "Array", True)
        sharedctypes.RawValue = wrap(real_raw_value, "RawValue", False)
        sharedctypes.RawArray = wrap(real_raw_array, "RawArray", True)
