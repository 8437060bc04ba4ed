"""The connection to forkscope's collector (docs/PROTOCOL.md), one per
process, shared by its threads.

API for the other probe modules:

- `emit(kind, **fields)`: one event for the calling process/thread (adds
  t_ns, seq, proc, pid, line, thread, tid). Thread-safe; never raises.
- `emit_at(t_ns, kind, **fields)`: the same with a time taken earlier.
- `emit_about(proc, pid, kind, **fields)`: an event about another process
  (`reaped` of a child: its `proc`/`pid` name the child).
- `now_ns()`: CLOCK_MONOTONIC in nanoseconds.
- `gate(action, waits_for=None, touches=None, local=False)`: in a gated
  run, `pending` then wait for this process's (or thread's) `go`; in a free
  run returns at once. `gated()` says which.
- `user_line()`: the line of the traced script the program is at.
- `real(name)`: originals saved by `keep(name, obj)` before patching.
- `proc()`, `thread_name()`, `host_pid()`.
"""

import json
import os
import sys
import threading
import time
from _thread import RLock, allocate_lock, get_ident

SOCK_ENV = "FORKSCOPE_SOCK"
PROC_ENV = "FORKSCOPE_TRACE_PROC"
SCRIPT_ENV = "FORKSCOPE_TRACE_SCRIPT"
EXE_ENV = "FORKSCOPE_TRACE_EXE"
STDOUT_ENV = "FORKSCOPE_TRACE_STDOUT"
GATED_ENV = "FORKSCOPE_TRACE_GATED"
OUT_ENV = "FORKSCOPE_TRACE_OUT"
DIR_ENV = "FORKSCOPE_TRACE_DIR"
ROLE_ENV = "FORKSCOPE_TRACE_ROLE"
MAX_LINE = 4096

_sock = None
_addr = None
_proc = None
_pid = 0
_seq = 0
_lock = RLock()
_gated = False
# The run is gated (`_gated` is whether this process takes steps of it).
_gated_run = False
# Processes that run free in a gated run: programs started by `subprocess`,
# multiprocessing's resource tracker, a Manager's server, a
# ProcessPoolExecutor's workers (they take no step of the program's own).
FREE_ROLES = ("exec", "resource_tracker", "manager", "executor_worker")
# idents of this process's threads that run free (the library's own)
_free_threads = set()
_script = None
_script_real = None
_file_is_script = {}
# thread ident -> (name, host tid) for threads other than the main one
_threads = {}
_originals = {}
# (dev, ino) of the stdout and stderr pipes forkscope reads for this
# process: a fork's child gets fresh pipes only in place of these
_own_out = (None, None)
failures = 0

now_ns = time.monotonic_ns


def keep(name, obj):
    _originals.setdefault(name, obj)
    return _originals[name]


def real(name):
    return _originals[name]


def proc():
    return _proc


def host_pid():
    return _pid


def gated():
    """Does the calling thread take steps of a gated run?"""
    return _gated and (not _free_threads or get_ident() not in _free_threads)


def gated_run():
    return _gated_run


def run_free():
    """This process runs free from now on (a forkserver's child that
    turned out to be a Manager's server or an executor's worker)."""
    global _gated
    if _gated:
        _gated = False
        emit("free")


# The program's name for this process, once known (hello or `named`).
_named = None


def named():
    return _named


def set_named(name):
    global _named
    _named = name


def mark_free_thread():
    """The calling thread (the library's own) runs free in a gated run: it
    never waits for `go`, and says so (`free`) so the scheduler does not
    wait for its first step."""
    if _gated_run:
        _free_threads.add(get_ident())
        emit("free")


def connected():
    return _sock is not None


def thread_name():
    t = _threads.get(get_ident())
    return t[0] if t else None


def _read_host_pid():
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return os.getpid()


def host_tid():
    try:
        return int(os.readlink("/proc/thread-self").rsplit("/", 1)[-1])
    except (OSError, ValueError):
        return threading.get_native_id()


def host_ppid():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return os.getppid()


def host_pid_of(ns_pid):
    """A child's host pid (os.fork() returns the pid in forkscope's PID
    namespace when it has one)."""
    try:
        fd = os.pidfd_open(ns_pid)
    except (OSError, AttributeError):
        return ns_pid
    try:
        with open("/proc/self/fdinfo/%d" % fd) as f:
            for line in f:
                if line.startswith("Pid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    finally:
        os.close(fd)
    return ns_pid


def _parse_out(text):
    out = []
    for part in (text or "").split(",")[:2]:
        try:
            dev, ino = part.split(":")
            out.append((int(dev), int(ino)))
        except ValueError:
            out.append(None)
    while len(out) < 2:
        out.append(None)
    return tuple(out)


def _fmt_out(pair):
    return ",".join("%d:%d" % p if p else "-" for p in pair)


def _ident(fd):
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino)
    except OSError:
        return None


def start():
    """Connects this process (the program's main, a spawned child, or a
    program exec'd by one): the hello without descriptors, since its
    stdout/stderr pipes are already with the collector. False if this
    process is not under forkscope."""
    global _addr, _proc, _pid, _gated, _gated_run, _script, _script_real, _own_out
    env = os.environ
    _addr = env.get(SOCK_ENV)
    _proc = env.get(PROC_ENV)
    if not _addr or not _proc:
        return False
    _pid = _read_host_pid()
    _gated_run = env.get(GATED_ENV) == "1"
    _gated = _gated_run and env.get(ROLE_ENV) not in FREE_ROLES
    _script = env.get(SCRIPT_ENV) or None
    _script_real = os.path.realpath(_script) if _script else None
    _own_out = _parse_out(env.get(OUT_ENV))
    if env.get(STDOUT_ENV, "line") == "line" and not getattr(sys.stdout, "write_through", False):
        # As on a terminal: Python writes stdout at every newline.
        try:
            if sys.stdout is not None and _ident(1) is not None and _ident(1) == _own_out[0]:
                sys.stdout.reconfigure(line_buffering=True)
        except (AttributeError, ValueError, OSError):
            pass
    # Said (with its name, if it has one) by the hello before its exec.
    set_named("")
    ok = _connect(None, [])
    if ok and _gated_run and not _gated:
        emit("free")
    return ok


def _connect(hello_extra, fds, redirect=None):
    """Connects and says hello, handing over `fds` (the read ends of the
    process's new stdout/stderr pipes). `redirect()` puts the write ends in
    place of fds 1 and 2 once the connection is there, and returns
    `undo(restore)`: with True when the hello cannot be sent (a process that
    cannot be watched writes where it wrote before, as the Rust probe
    does), with False to let go of the saved fds."""
    global _sock, _seq
    import socket

    _seq = 0
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect("\0" + _addr[1:] if _addr.startswith("@") else _addr)
    except OSError:
        _sock = None
        return False
    undo = redirect() if redirect is not None else None
    # A process that said hello before its exec (or the shim for it) gave
    # its role, parent and name then: an empty role keeps them.
    hello = {"ppid": host_ppid(), "role": os.environ.get(ROLE_ENV, ""), "ns_pid": os.getpid()}
    if hello_extra:
        hello.update(hello_extra)
    line = _line("hello", now_ns(), hello, _proc, _pid)
    try:
        if fds:
            socket.send_fds(s, [line], fds)
        else:
            s.sendall(line)
    except OSError:
        if undo is not None:
            undo(True)
        s.close()
        _sock = None
        return False
    if undo is not None:
        undo(False)
    _sock = s
    return True


# One encoder for every line (json.dumps with options makes a new one per
# call, a third of an event's cost).
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr).encode


def _line(kind, t_ns, fields, proc_id, pid, thread=None):
    global _seq
    _seq += 1
    e = {"t_ns": t_ns, "seq": _seq, "proc": proc_id, "pid": pid}
    if thread is not None:
        e["thread"], e["tid"] = thread
    line = user_line(2)
    if line is not None and kind != "hello":
        e["line"] = line
    e["kind"] = kind
    e.update(fields)
    b = (_encode(e) + "\n").encode(
        "utf-8", "surrogateescape"
    )
    if len(b) > MAX_LINE:
        e = {k: e[k] for k in ("t_ns", "seq", "proc", "pid") if k in e}
        e["kind"] = "error"
        e["message"] = "a %s event was too long to send" % kind
        b = (json.dumps(e, separators=(",", ":")) + "\n").encode()
    return b


def _send(b):
    global _sock, failures
    try:
        _sock.sendall(b)
    except (OSError, AttributeError):
        failures += 1
        _sock = None


def emit(kind, **fields):
    emit_at(None, kind, **fields)


def blocking(on, call):
    """`call()`; when `on` names a wait (not None), `block {on}` before it
    and `unblock` after, however it ends (a free run's wait in the
    kernel)."""
    if on is None:
        return call()
    emit("block", on=on)
    try:
        return call()
    finally:
        emit("unblock", on=on)


def emit_at(t_ns, kind, **fields):
    global failures
    if _sock is None:
        return
    try:
        t = t_ns or now_ns()
        th = _threads.get(get_ident())
        with _lock:
            _send(_line(kind, t, fields, _proc, _pid, th))
    except Exception:
        failures += 1


def emit_about(proc_id, pid, kind, **fields):
    global failures
    if _sock is None:
        return
    try:
        t = now_ns()
        with _lock:
            _send(_line(kind, t, fields, proc_id, pid))
    except Exception:
        failures += 1


def user_line(skip=1):
    """The 1-based line of the traced script in the innermost frame that
    belongs to it, or None."""
    if _script is None:
        return None
    try:
        f = sys._getframe(skip)
    except ValueError:
        return None
    while f is not None:
        fn = f.f_code.co_filename
        ok = _file_is_script.get(fn)
        if ok is None:
            ok = fn == _script or os.path.realpath(fn) == _script_real
            _file_is_script[fn] = ok
        if ok:
            return f.f_lineno
        f = f.f_back
    return None


# ---- threads ---------------------------------------------------------


def register_thread(name):
    _threads[get_ident()] = (name, host_tid())


def unregister_thread():
    _threads.pop(get_ident(), None)
    _free_threads.discard(get_ident())


# ---- fork ------------------------------------------------------------


def own_out():
    return _own_out


def after_fork_child(child_id, parent_id, role, name, daemon):
    """In a child right after fork: drop the parent's connection, give the
    child its own stdout/stderr pipes (in place of the parent's pipes only:
    a stream the program redirected stays where it is), connect and say
    hello. `child_id` None: a fork nobody announced; the child stays silent
    on its parent's pipes."""
    global _sock, _proc, _pid, _lock, _threads, _free_threads, _gated, _named
    _lock = RLock()
    _free_threads = set()
    _gates_after_fork()
    me = get_ident()
    _threads = {}
    old = _sock
    _sock = None
    if old is not None:
        try:
            old.close()
        except OSError:
            pass
    if child_id is None:
        return
    _proc = child_id
    _pid = _read_host_pid()
    fds = []
    writes = []  # (write end, the fd it replaces)
    try:
        for i, fd in enumerate((1, 2)):
            r, w = os.pipe()
            fds.append(r)
            if _own_out[i] is not None and _ident(fd) == _own_out[i]:
                writes.append((w, fd))
            else:
                os.close(w)
    except OSError:
        for fd in fds + [w for w, _ in writes]:
            os.close(fd)
        fds, writes = [], []

    def redirect():
        global _own_out
        saved = [(os.dup(fd), fd) for _, fd in writes]
        new_out = [None, None]
        for w, fd in writes:
            os.dup2(w, fd)
            new_out[fd - 1] = _ident(fd)
        old_out, _own_out = _own_out, tuple(new_out)

        def undo(restore):
            global _own_out
            for keep, fd in saved:
                if restore:
                    os.dup2(keep, fd)
                os.close(keep)
            if restore:
                _own_out = old_out

        return undo

    try:
        os.environ[PROC_ENV] = child_id
        os.environ[ROLE_ENV] = role
    except Exception:
        pass
    hello = {"role": role, "parent": parent_id}
    if daemon:
        hello["daemon"] = True
    _named = name or None
    if name:
        hello["name"] = name
    if role in FREE_ROLES:
        _gated = False
    if _connect(hello, fds, redirect if fds else None) and _gated_run and not _gated:
        emit("free")
    try:
        os.environ[OUT_ENV] = _fmt_out(_own_out)
    except Exception:
        pass
    for fd in fds + [w for w, _ in writes]:
        try:
            os.close(fd)
        except OSError:
            pass
    del me


def exec_env(env):
    """What a program started from here needs to be traced too, added to an
    environment a program gives its child (`env=`): the socket, the probe's
    directory on PYTHONPATH."""
    mine = os.environ
    for k in (SOCK_ENV, SCRIPT_ENV, EXE_ENV, STDOUT_ENV, GATED_ENV, DIR_ENV):
        if k not in env and k in mine:
            env[k] = mine[k]
    d = mine.get(DIR_ENV)
    if d:
        pp = env.get("PYTHONPATH", "")
        if d not in pp.split(os.pathsep):
            env["PYTHONPATH"] = d + (os.pathsep + pp if pp else "")
    return env


# ---- gated runs --------------------------------------------------------

_gate_lock = allocate_lock()
_gate_news = threading.Condition(_gate_lock)
_gate_reading = False
_mailbox = set()
_closed = False


def gate(action, waits_for=None, touches=None, local=False, retry=False):
    """In a gated run: says what this process/thread is about to do
    (`pending`) and waits until forkscope says `go` to it. Free runs: at
    once."""
    if _sock is None or not gated():
        return
    fields = {"action": action}
    if local:
        fields["local"] = True
    if waits_for:
        fields["waits_for"] = waits_for
    if retry:
        fields["retry"] = True
    if touches:
        fields["touches"] = list(touches)
    emit("pending", **fields)
    _wait_go(thread_name() or "")
    emit("go")


def _wait_go(me):
    """One waiting thread reads the connection at a time (without holding
    the lock); every `go` line it reads is posted, and the others are woken
    at once to look for theirs."""
    global _closed, _gate_reading
    with _gate_news:
        while True:
            if _closed or me in _mailbox:
                _mailbox.discard(me)
                return
            if _gate_reading:
                _gate_news.wait(0.5)
                continue
            _gate_reading = True
            _gate_lock.release()
            try:
                line = _read_line()
            finally:
                _gate_lock.acquire()
                _gate_reading = False
            if line is None:
                _closed = True
            elif line == "go":
                _mailbox.add("")
            elif line.startswith("go "):
                _mailbox.add(line[3:])
            _gate_news.notify_all()


def _gates_after_fork():
    """A child of a fork: only the forking thread lives on, and no go
    meant for the parent is ours."""
    global _gate_lock, _gate_news, _gate_reading, _mailbox
    _gate_lock = allocate_lock()
    _gate_news = threading.Condition(_gate_lock)
    _gate_reading = False
    _mailbox = set()


def _read_line():
    s = _sock
    if s is None:
        return None
    buf = b""
    while True:
        try:
            c = s.recv(1)
        except InterruptedError:
            continue
        except OSError:
            return None
        if not c:
            return None
        if c == b"\n":
            return buf.decode("utf-8", "replace")
        buf += c


# ---- tracebacks ----------------------------------------------------------

_here = os.path.dirname(os.path.abspath(__file__))


def _ours(tb):
    try:
        return os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == _here
    except Exception:
        return False


def clean_tb(tb):
    """The traceback without the probe's own frames (a patched function an
    exception passed through), so that it reads as without forkscope."""
    while tb is not None and _ours(tb):
        tb = tb.tb_next
    cur = tb
    while cur is not None:
        nxt = cur.tb_next
        while nxt is not None and _ours(nxt):
            nxt = nxt.tb_next
        try:
            cur.tb_next = nxt
        except (AttributeError, TypeError, ValueError):
            pass
        cur = nxt
    return tb


def clean_exc(exc, seen=None):
    seen = seen or set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        try:
            exc.__traceback__ = clean_tb(exc.__traceback__)
        except Exception:
            pass
        if exc.__cause__ is not None:
            clean_exc(exc.__cause__, seen)
        exc = exc.__context__


def hide_from_tracebacks():
    """sys.excepthook, threading.excepthook and the traceback module see
    tracebacks without the probe's frames."""
    real_hook = keep("sys.excepthook", sys.excepthook)

    def excepthook(typ, value, tb):
        clean_exc(value)
        tb = clean_tb(tb)
        return real_hook(typ, value, tb)

    # Only if nobody replaced the default: the program's own hook is its own.
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = excepthook
    try:
        import traceback

        TE = traceback.TracebackException
        real_init = keep("traceback.TracebackException.__init__", TE.__init__)

        def __init__(self, exc_type, exc_value, exc_traceback, *a, **kw):
            if exc_value is not None:
                clean_exc(exc_value)
                exc_traceback = exc_value.__traceback__ if exc_traceback is not None else None
            else:
                exc_traceback = clean_tb(exc_traceback)
            real_init(self, exc_type, exc_value, exc_traceback, *a, **kw)

        TE.__init__ = __init__
    except Exception:
        pass
