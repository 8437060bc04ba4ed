"""What the ops modules (`_sync`, `_chan`, `_shared`, `_pool`) share: who
made an object (the program, or the standard library for itself), the name
the program gave it, gates of gated runs, and tracebacks without the probe.

Only objects the program itself makes are watched: a lock that
`multiprocessing.Queue` makes for itself stays a plain lock (no events, no
cost), so what is shown is what the program's text says.
"""

import linecache
import os
import re
import sys
import sysconfig
import threading

from . import _wire

PROBE_DIR = os.path.dirname(os.path.abspath(__file__))

_lib_dirs = set()
for _k in ("stdlib", "platstdlib", "purelib", "platlib"):
    try:
        _p = sysconfig.get_paths().get(_k)
    except Exception:  # a broken sysconfig must not stop the program
        _p = None
    if _p:
        _lib_dirs.add(os.path.realpath(_p) + os.sep)
        _lib_dirs.add(os.path.abspath(_p) + os.sep)
_lib_dirs.add(PROBE_DIR + os.sep)
_LIB_DIRS = tuple(sorted(_lib_dirs))
del _k, _p, _lib_dirs

_user_file_cache = {}


def is_user_file(filename):
    """Is this code file the program's own (not the library's, not ours)?"""
    r = _user_file_cache.get(filename)
    if r is None:
        if not filename or filename.startswith("<"):
            r = False  # <frozen ...>, <string>: not a file of the program
        else:
            a = os.path.abspath(filename)
            r = not (a.startswith(_LIB_DIRS) or os.path.realpath(a).startswith(_LIB_DIRS))
        _user_file_cache[filename] = r
    return r


# Library frames that only pass a call on (`multiprocessing.Lock()` is
# `context.Lock`, which makes a `synchronize.Lock`).
_PASS_ON = ("multiprocessing" + os.sep + "context.py",)


# The code of the probe's wrappers that only pass a call on to another
# wrapper (so the caller above them is the one that counts).
PASS_ON_CODE = set()


def creator(depth=2):
    """The frame of the program that made the object being built, or None
    when the library made it for itself. `depth` frames up from the caller
    of this function is the code that called the constructor."""
    try:
        f = sys._getframe(depth)
    except ValueError:
        return None
    while f is not None:
        fn = f.f_code.co_filename
        if fn.endswith(_PASS_ON) or f.f_code in PASS_ON_CODE:
            f = f.f_back
            continue
        # The probe's own objects (made by the probe) are not the program's.
        return f if is_user_file(fn) else None
    return None


_ASSIGN = re.compile(r"^\s*([A-Za-z_][\w\.]*(?:\s*,\s*[A-Za-z_][\w\.]*)*)\s*(?::[^=]*)?=(?!=)")
_WITH_AS = re.compile(r"\bas\s+([A-Za-z_]\w*)")
_used = set()
_counters = {}
_names_lock = threading.Lock()


def _names_after_fork():
    # Another thread may have held it at the fork: the child's copy is free.
    global _names_lock
    _names_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_names_after_fork)


def targets(frame):
    """The names a source line assigns to (`a, b = Pipe()` gives a and b;
    `self.q = Queue()` gives q; `with Pool(2) as p:` gives p)."""
    if frame is None:
        return []
    try:
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    except Exception:
        return []
    m = _ASSIGN.match(line)
    if m:
        return [t.strip().rsplit(".", 1)[-1] for t in m.group(1).split(",")]
    m = _WITH_AS.search(line)
    if m and line.lstrip().startswith(("with ", "async with ")):
        return [m.group(1)]
    return []


def _proc_prefix():
    me = getattr(_wire, "proc", None)
    try:
        me = me() if callable(me) else me
    except Exception:
        me = None
    if not me or me == "main":
        return ""
    return str(me) + ":"


def unique(name):
    """A name nobody in the run has: the program's own name in `main`,
    `PROC:name` elsewhere, with `-2`, `-3`... for the second one made on
    the same line or under the same name."""
    with _names_lock:
        base = _proc_prefix() + name
        n = base
        k = 1
        while n in _used:
            k += 1
            n = "%s-%d" % (base, k)
        _used.add(n)
        return n


def name_for(kind, frame, index=0):
    """The name an object is shown under: what the program calls it, else
    `Kind-N` (as CPython names processes and threads)."""
    t = targets(frame)
    if index < len(t) and t[index] and t[index] != "_":
        return unique(t[index])
    with _names_lock:
        c = _counters.get(kind, 0) + 1
        _counters[kind] = c
    return unique("%s-%d" % (kind, c))


def brief(v, limit=40):
    """A short text of a value for an action (`put 3 on q`)."""
    try:
        s = repr(v)
    except Exception:
        s = "<%s>" % type(v).__name__
    return s if len(s) <= limit else s[: limit - 1] + "\u2026"


def value_of(v, depth=0):
    """A protocol value (PROTOCOL.md §5): None, bool, int in i64, float,
    str, lists of them; anything else as its repr()."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v if -(1 << 63) <= v < (1 << 63) else repr(v)
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else repr(v)
    if isinstance(v, bytes):
        return repr(v)
    if isinstance(v, (list, tuple)) and depth < 4 and len(v) <= 64:
        return [value_of(x, depth + 1) for x in v]
    try:
        return repr(v)
    except Exception:
        return "<%s>" % type(v).__name__


def hide(e):
    """Takes the probe's frames off the front of an exception's traceback,
    so that a bare `raise` shows the program exactly what it would see
    without forkscope."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(PROBE_DIR):
        tb = tb.tb_next
    try:
        e.__traceback__ = tb
    except Exception:
        pass


# Called on every traced operation: no wrapper of our own around them.
emit = _wire.emit
gated = _wire.gated


_gate_takes_retry = [None]


def gate(action, waits_for=None, touches=None, local=False, retry=False):
    """One step of a gated run: `pending`, then wait for `go`."""
    if _gate_takes_retry[0] is not False:
        try:
            _wire.gate(action, waits_for=waits_for, touches=touches, local=local, retry=retry)
            _gate_takes_retry[0] = True
            return
        except TypeError:
            if _gate_takes_retry[0]:
                raise
            _gate_takes_retry[0] = False
    _wire.gate(action, waits_for=waits_for, touches=touches, local=local)


NOT_YET = object()


def _sleep(secs):
    import time

    # The original, not the gated runs' patched one (it may be installed).
    getattr(time.sleep, "__wrapped__", time.sleep)(secs)


def gate_until(action, waits_for, touches, try_once):
    """Gated: announce, wait for go, try without blocking; until the try
    succeeds (returns something other than NOT_YET), announce again with
    `retry`, as the engine's `gated_retry` does."""
    retry = False
    while True:
        free = not gated()
        gate(action, waits_for=waits_for, touches=touches, retry=retry)
        r = try_once()
        if r is not NOT_YET:
            return r
        retry = True
        if free:
            # A thread or process that runs free (nobody says go to it):
            # try again a little later rather than spin.
            _sleep(0.001)


def gate_until_ready(action, waits_for, touches, on, try_once):
    """`gate_until` for a wait the program would see: `block {on}` the
    first time a try finds it not ready, `unblock` once it went through."""
    said = []

    def once():
        r = try_once()
        if r is NOT_YET and not said:
            said.append(True)
            emit("block", on=on)
        return r

    r = gate_until(action, waits_for, touches, once)
    if said:
        emit("unblock", on=on)
    return r


blocking = _wire.blocking


def install_method(cls, name, make):
    """Replaces `cls.name` with `make(original)`, once."""
    orig = cls.__dict__.get(name)
    if orig is None or getattr(orig, "_forkscope", False):
        return
    new = make(orig)
    try:
        new._forkscope = True
    except Exception:
        pass
    setattr(cls, name, new)


class _AfterImport(object):
    """Runs `fn(module)` right after a module is first imported (so a module
    the program may never import costs nothing at start)."""

    def __init__(self, name, fn):
        self.name = name
        self.fn = fn
        self.busy = False

    def find_spec(self, name, path=None, target=None):
        if name != self.name or self.busy:
            return None
        import importlib.util

        self.busy = True
        try:
            spec = importlib.util.find_spec(name)
        except Exception:
            spec = None
        finally:
            self.busy = False
        loader = getattr(spec, "loader", None)
        real_exec = getattr(loader, "exec_module", None)
        if real_exec is None or not hasattr(loader, "__dict__"):
            return spec
        fn = self.fn

        def exec_module(module):
            real_exec(module)
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
            try:
                fn(module)
            except Exception as e:  # never break the program for a view
                emit("error", message="forkscope probe: %s not watched: %r" % (name, e))

        loader.exec_module = exec_module
        return spec


def after_import(name, fn):
    """`fn(module)` now if `name` is imported, else right after its import."""
    m = sys.modules.get(name)
    if m is not None:
        fn(m)
        return
    sys.meta_path.insert(0, _AfterImport(name, fn))
