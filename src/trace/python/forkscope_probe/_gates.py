"""Gated runs (`trace --schedule seeded`, `--schedule-file`, `stats`, step
mode): the steps of process life that must be gates too, so that a seed
or a schedule repeats a run exactly (PROTOCOL.md §13).

- A fork (`os.fork`, so also `Process.start` and pool workers) is a gate:
  the parent stops before it, and after it the parent is "moving" until its
  next gate, while the new child counts as unborn until its first one. So
  nobody goes while a process is busy making children.
- A wait for a child (`os.waitpid`, `os.wait`: `Process.join` ends there)
  is tried without blocking, announced again (`retry`) until the child has
  ended, as the engine's join: nothing ever waits in the kernel where the
  scheduler cannot see it. `Thread.start` is a gate and `Thread.join` is
  tried the same way.
- A signal to a child (`os.kill`, so `terminate()` and `kill()`) is a gate
  and waits (at most 2 s) until it took effect: if the child died of it,
  the sender says its `exit` itself (PROTOCOL.md §13), so the scheduler
  never sees the sender's next step before the death.
- Starting a program (`subprocess`, and the `spawn`/`forkserver` start
  methods) is a gate; `time.sleep` of the program is a step that does not
  sleep; `Process.join` is tried with `popen.wait(0)` (a forkserver's
  child is not ours to `waitpid`).
- Who runs free: multiprocessing's resource tracker and forkserver, a
  Python program started by `subprocess` (its parent waits for it in the
  kernel, as for any program), and the library's own threads.

Installed on top of `_procs` (which says `spawn` and `reaped`): these
wrappers call its versions. Free runs are not touched.
"""

import os
import signal
import threading
import time

from . import _wire
from . import _ops
from ._ops import NOT_YET, gate, gate_until, gated


def _dead(pid):
    """Has process `pid` ended (a zombie, or gone)?"""
    if not pid:
        return False
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return True
    try:
        return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] in (b"Z", b"X")
    except ValueError:
        return False


def _helper():
    """Is this multiprocessing's forkserver? It forks the program's
    children on request and is no step of the program: it is never gated
    (its children are, from their first step)."""
    return os.environ.get(_wire.ROLE_ENV) == "forkserver"


def _child_id(pid):
    try:
        from . import _procs

        c = _procs._children.get(pid)
        return c[0] if c else None
    except Exception:
        return None


# pid (as os.fork returned it) -> role of the children this process started
_roles = {}


def _install_roles():
    from . import _procs

    announce = _procs._announce

    def _announce(t, cid, pid, role, daemon):
        _roles[pid] = role
        return announce(t, cid, pid, role, daemon)

    _procs._announce = _announce


def install():
    if not gated() or getattr(os.fork, "_forkscope_gate", False):
        return
    role = os.environ.get(_wire.ROLE_ENV)
    if role in ("exec", "resource_tracker"):
        # A Python program started by `subprocess` (its parent waits for it
        # as for any program, in the kernel), or multiprocessing's resource
        # tracker: they run free.
        _wire._gated = False
        return
    _install_roles()
    traced_fork = os.fork

    def fork():
        if not _helper():
            gate("fork", touches=["*"])
        return traced_fork()

    fork._forkscope_gate = True
    fork.__wrapped__ = getattr(traced_fork, "__wrapped__", traced_fork)
    os.fork = fork

    traced_waitpid = os.waitpid

    def waitpid(pid, options):
        if options & os.WNOHANG or not gated():
            return traced_waitpid(pid, options)
        if pid > 0:
            cid = _child_id(pid)
            what = cid or str(pid)
            waits_for = "join:" + cid if cid else None
            action = "join " + what
        else:
            waits_for = "wait"
            action = "wait for any child"

        if pid > 0 and _roles.get(pid) in _wire.FREE_ROLES:
            # A program, a Manager's server, an executor's worker (they run
            # free, they end on their own): one step, then the real wait.
            gate(action, touches=["*"])
            return traced_waitpid(pid, options)

        def once():
            r = traced_waitpid(pid, options | os.WNOHANG)
            return NOT_YET if r[0] == 0 else r

        return gate_until(action, waits_for, ["*"], once)

    waitpid._forkscope_gate = True
    waitpid.__wrapped__ = getattr(traced_waitpid, "__wrapped__", traced_waitpid)
    os.waitpid = waitpid

    def wait():
        return waitpid(-1, 0)

    wait._forkscope_gate = True
    wait.__wrapped__ = getattr(os.wait, "__wrapped__", os.wait)
    os.wait = wait

    _install_threads()
    _install_manager()
    _install_kill()
    _install_exec()
    _install_sleep()
    _install_join()


def _install_join():
    """`Process.join()`: tried without blocking (`popen.wait(0)`, which
    for a forkserver's child reads its status pipe), until the child has
    ended. Then the real join, which returns at once."""
    try:
        from multiprocessing import process
    except ImportError:
        return
    B = process.BaseProcess
    traced_join = B.join

    def join(self, timeout=None):
        popen = getattr(self, "_popen", None)
        if popen is None or timeout is not None or _helper() or not gated():
            return traced_join(self, timeout)
        cid = _child_id(getattr(popen, "pid", None))
        action = "join " + (cid or self.name)
        if _roles.get(getattr(popen, "pid", None)) in _wire.FREE_ROLES:
            # It runs free and ends on its own: one step, then the real join.
            gate(action, touches=["*"])
            return traced_join(self, timeout)

        def once():
            if popen.wait(0) is not None:
                return True
            if _dead(getattr(popen, "pid", None)):
                # Dead, and its status is on its way (a forkserver's child:
                # the forkserver, which runs free, reaps it and writes it).
                popen.wait(None)
                return True
            return NOT_YET

        gate_until(action, "join:" + cid if cid else None, ["*"], once)
        return traced_join(self, timeout)

    join._forkscope_gate = True
    join.__wrapped__ = getattr(traced_join, "__wrapped__", traced_join)
    B.join = join


def _install_manager():
    """A `Manager`'s proxies: the server runs free, so every call the
    program makes on a proxy (`q.put`, `v.value`, `d[k] = x`, `lock.acquire`)
    is one step. A call that would wait for another process (`get` of an
    empty queue, `put` on a full one, `acquire` of a held lock, `wait` of an
    unset event) is tried without blocking and announced again until it
    goes through, so nobody waits where the scheduler cannot see it."""
    try:
        from multiprocessing import managers
    except ImportError:
        return
    P = managers.BaseProxy
    traced = P._callmethod

    def _callmethod(self, methodname, args=(), kwds={}):
        if not gated() or _helper() or _wire.user_line(2) is None:
            return traced(self, methodname, args, kwds)
        token = getattr(self, "_token", None)
        typeid = getattr(token, "typeid", None) or type(self).__name__
        touches = ["manager:%s" % (getattr(token, "id", None) or id(self),)]
        # The probe's own exchange (`_shared`) is the program's `set`.
        shown = _SHOWN_METHODS.get(methodname, methodname)
        action = "manager %s.%s" % (typeid, shown)
        attempt = _manager_try(typeid, methodname, args, kwds)
        if attempt is None:
            gate(action, touches=touches)
            return traced(self, methodname, args, kwds)

        def once():
            return attempt(lambda m, a=(), k={}: traced(self, m, a, k))

        return gate_until(action, None, touches, once)

    _callmethod._forkscope_gate = True
    _callmethod.__wrapped__ = getattr(traced, "__wrapped__", traced)
    P._callmethod = _callmethod


# Proxy methods the probe calls in place of the program's.
_SHOWN_METHODS = {"_forkscope_set": "set"}


def _manager_try(typeid, method, args, kwds):
    """How to try a proxy call that may wait, without waiting: a function
    of `call(method, args, kwds)` that returns the call's result or
    NOT_YET; None for a call that does not wait (or that asked not to)."""
    import queue

    def arg(i, name, default):
        if len(args) > i:
            return args[i]
        return kwds.get(name, default)

    if method == "get" and typeid in ("Queue", "JoinableQueue"):
        if not arg(0, "block", True):
            return None

        def get(call):
            try:
                return call("get", (False,))
            except queue.Empty:
                return NOT_YET

        return get
    if method == "put" and typeid in ("Queue", "JoinableQueue"):
        if not args and "item" not in kwds and "obj" not in kwds:
            return None
        item = args[0] if args else kwds.get("item", kwds.get("obj"))
        if not arg(1, "block", True):
            return None

        def put(call):
            try:
                return call("put", (item, False))
            except queue.Full:
                return NOT_YET

        return put
    if method == "acquire":
        if not arg(0, "blocking", True):
            return None

        def acquire(call):
            return True if call("acquire", (False,)) else NOT_YET

        return acquire
    if method == "wait" and typeid == "Event":

        def wait(call):
            return True if call("is_set") else NOT_YET

        return wait
    return None


def _install_exec():
    """Starting a program (`subprocess`, multiprocessing's `spawn` and
    `forkserver`) is a gate, as a fork is."""
    try:
        import _posixsubprocess
    except ImportError:
        return
    traced = _posixsubprocess.fork_exec

    def fork_exec(*args):
        if not _helper():
            gate("start a program", touches=["*"])
        return traced(*args)

    fork_exec._forkscope_gate = True
    fork_exec.__wrapped__ = getattr(traced, "__wrapped__", traced)
    _posixsubprocess.fork_exec = fork_exec
    for fname in ("posix_spawn", "posix_spawnp"):
        traced_ps = getattr(os, fname, None)
        if traced_ps is None:
            continue

        def make(traced_ps):
            def spawn(*args, **kwargs):
                gate("start a program", touches=["*"])
                return traced_ps(*args, **kwargs)

            spawn._forkscope_gate = True
            spawn.__wrapped__ = getattr(traced_ps, "__wrapped__", traced_ps)
            return spawn

        setattr(os, fname, make(traced_ps))


def _install_sleep():
    """`time.sleep` of the program is a step that does not sleep, as in the
    engine's gated runs: the schedule, not the clock, says who goes next
    (and a sleeping process would hold everyone up). The library's own
    sleeps (in its threads) are left alone."""
    real_sleep = time.sleep

    def sleep(secs):
        try:
            caller = _ops_user_frame()
        except Exception:
            caller = False
        if not caller or not gated():
            return real_sleep(secs)
        gate("sleep %gs" % secs, touches=None)
        if secs < 0:
            return real_sleep(secs)  # CPython's ValueError
        emit_sleep(secs)
        return None

    sleep._forkscope_gate = True
    sleep.__wrapped__ = real_sleep
    time.sleep = sleep


def _ops_user_frame():
    import sys

    from . import _ops

    f = sys._getframe(2)
    return _ops.is_user_file(f.f_code.co_filename)


def emit_sleep(secs):
    _wire.emit("sleep", duration_ms=float(secs) * 1000.0)
    _wire.emit("wake")


def _install_threads():
    T = threading.Thread
    traced_start = T.start
    traced_join = T.join

    def start(self):
        # The program's threads are steps of the schedule; the library's
        # own threads (a Queue's feeder...) run free.
        if gated() and _ops.creator() is not None:
            self._fs_gated = True
            gate("start thread %s" % self.name, touches=["*"])
        return traced_start(self)

    def join(self, timeout=None):
        info = getattr(self, "_forkscope", None)
        if (
            info is None
            or not gated()
            or not getattr(self, "_fs_gated", False)
            or not self._started.is_set()
            or self is threading.current_thread()
        ):
            return traced_join(self, timeout)
        ident = self.ident

        def once():
            # Ended as far as forkscope knows (its thread_end is sent): the
            # real join waits only for CPython's last microseconds.
            if not self.is_alive() or ident not in _wire._threads:
                return True
            return NOT_YET

        gate_until("join thread " + info[0], "join:" + info[0], ["*"], once)
        return traced_join(self, None)

    start._forkscope_gate = join._forkscope_gate = True
    start.__wrapped__ = getattr(traced_start, "__wrapped__", traced_start)
    join.__wrapped__ = getattr(traced_join, "__wrapped__", traced_join)
    T.start = start
    T.join = join


_HARMLESS = {0, signal.SIGCHLD, signal.SIGCONT, signal.SIGSTOP, signal.SIGTSTP, signal.SIGWINCH, signal.SIGURG}


def _install_kill():
    traced_kill = os.kill

    def kill(pid, sig):
        cid = _child_id(pid)
        if cid is None or not gated():
            return traced_kill(pid, sig)
        gate("signal %s to %s" % (_signame(sig), cid), touches=["*"])
        r = traced_kill(pid, sig)
        if sig not in _HARMLESS:
            _await_death(pid, cid)
        return r

    kill._forkscope_gate = True
    kill.__wrapped__ = getattr(traced_kill, "__wrapped__", traced_kill)
    os.kill = kill


def _signame(sig):
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "SIG%d" % sig


def _await_death(pid, cid):
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            r = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except (OSError, AttributeError):
            return
        if r is not None:
            if r.si_code == os.CLD_EXITED:
                how = {"code": r.si_status}
            else:
                how = {"signal": _signame(r.si_status)}
            try:
                from . import _procs

                host = _procs._children[pid][1]
            except Exception:
                host = pid
            _wire.emit_about(cid, host, "exit", **how)
            return
        time.sleep(0.001)
