"""Processes and threads: os.fork (and every multiprocessing start method
built on it), programs started by subprocess / multiprocessing spawn and
forkserver (through forkscope's `__trace-exec` shim, which says hello for
the child before it execs the real program), waits (`reaped`), os.kill
(`signal`), threading.Thread start/end/join, Process names and daemon flags.
"""

import os
import signal
import sys
import threading

from . import _wire

# ns pid -> (logical id, host pid) of the children this process started
_children = {}
_n_children = 0
# per starting thread (name or ""): how many threads it started
_n_threads = {}
# what Process.start is starting in this thread: (role, name, daemon)
_starting = threading.local()
# the fork being made: (child id, parent id, role, name, daemon)
_pending = None
_warns_on_fork = sys.version_info >= (3, 12)


# Another module may name some children itself (`_pool`: `POOL.wK` for
# pool workers): a function (role, name) -> id or None.
child_id_hook = None


def _next_child_id(role=None, name=None):
    global _n_children
    if child_id_hook is not None:
        try:
            cid = child_id_hook(role, name)
        except Exception:
            cid = None
        if cid:
            return cid
    _n_children += 1
    return "%s.%d" % (_wire.proc(), _n_children)


def _what_starts():
    info = getattr(_starting, "info", None)
    if info is not None:
        return info
    return ("fork", None, False)


def install():
    _install_fork()
    _install_exec()
    _install_wait()
    _install_kill()
    _install_threads()
    _install_mp()


# ---- fork --------------------------------------------------------------


def _install_fork():
    real_fork = _wire.keep("os.fork", os.fork)

    def fork():
        global _pending
        role, name, daemon = _what_starts()
        cid = _next_child_id(role, name)
        t = _wire.now_ns()
        _pending = (cid, _wire.proc(), role, name, daemon)
        caught = None
        try:
            if _warns_on_fork and threading.active_count() > 1:
                # Python 3.12+ warns (DeprecationWarning) about a fork of a
                # threaded process, at the frame that called os.fork: that
                # would be ours, and the default filters show it only for
                # __main__. Caught here and said again at the caller's.
                import warnings

                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    pid = real_fork()
            else:
                pid = real_fork()
        finally:
            if _pending is not None and _pending[0] == cid:
                _pending = None
        if pid == 0:
            return 0
        _announce(t, cid, pid, role, daemon)
        if caught:
            import warnings

            for w in caught:
                warnings.warn(w.message, w.category, stacklevel=2)
        return pid

    fork.__wrapped__ = real_fork
    os.fork = fork
    os.register_at_fork(after_in_child=_after_in_child)


def _after_in_child():
    global _pending, _children, _n_children, _n_threads
    p = _pending
    _pending = None
    _children = {}
    _n_children = 0
    _n_threads = {}
    if p is None:
        _wire.after_fork_child(None, None, None, None, False)
    else:
        _wire.after_fork_child(p[0], p[1], p[2], p[3], p[4])


def _announce(t, cid, pid, role, daemon):
    host = _wire.host_pid_of(pid)
    _children[pid] = (cid, host)
    fields = {"child": cid, "child_pid": host, "role": role}
    if daemon:
        fields["daemon"] = True
    _wire.emit_at(t, "spawn", **fields)


# ---- exec: subprocess, multiprocessing spawn/forkserver, os.posix_spawn --


def _runnable(path):
    try:
        p = os.fsdecode(path)
        return os.path.isfile(p) and os.access(p, os.X_OK)
    except (TypeError, ValueError):
        return False


def _shim_argv(cid, role, name, daemon, candidates):
    shim = os.environ.get(_wire.EXE_ENV)
    if not shim:
        return None
    out = _wire.own_out()
    return [
        shim,
        "__trace-exec",
        cid,
        _wire.proc() or "",
        role,
        name or "",
        "1" if daemon else "0",
        _wire._fmt_out(out),
        str(len(candidates)),
    ] + [os.fsdecode(c) for c in candidates]


def _env_list(env_list):
    """An explicit child environment (list of b"K=V") with forkscope's
    variables added where missing."""
    if env_list is None:
        return None
    d = {}
    for kv in env_list:
        k, _, v = os.fsencode(kv).partition(b"=")
        d[os.fsdecode(k)] = os.fsdecode(v)
    d = _wire.exec_env(d)
    return [os.fsencode("%s=%s" % (k, v)) for k, v in d.items()]


def _exec_role(args):
    """(role, name, daemon) of a program being started: a spawned
    multiprocessing child is the Process being started; multiprocessing's
    own helpers are named for what they are; anything else is `exec`."""
    try:
        text = " ".join(os.fsdecode(a) for a in args)
    except (TypeError, ValueError):
        text = ""
    if "--multiprocessing-fork" in text:
        info = getattr(_starting, "info", None)
        if info is not None:
            return info
        return ("spawn", None, False)
    if "multiprocessing.forkserver" in text:
        return ("forkserver", "ForkServer", False)
    if "multiprocessing.resource_tracker" in text:
        return ("resource_tracker", "ResourceTracker", False)
    return ("exec", None, False)


def _install_exec():
    try:
        import _posixsubprocess
    except ImportError:
        _posixsubprocess = None
    if _posixsubprocess is not None:
        real_fe = _wire.keep("_posixsubprocess.fork_exec", _posixsubprocess.fork_exec)

        def fork_exec(args, executable_list, *rest):
            role, name, daemon = _exec_role(args)
            cands = [c for c in executable_list if _runnable(c)]
            cid = _next_child_id(role, name)
            shim = _shim_argv(cid, role, name, daemon, cands) if cands else None
            if shim is None or not _wire.connected():
                return real_fe(args, executable_list, *rest)
            rest = list(rest)
            if len(rest) >= 4 and rest[3] is not None:
                rest[3] = _env_list(rest[3])
            t = _wire.now_ns()
            pid = real_fe(shim + [os.fsdecode(a) for a in args], (os.fsencode(shim[0]),), *rest)
            _announce(t, cid, pid, role, daemon)
            return pid

        fork_exec.__wrapped__ = real_fe
        _posixsubprocess.fork_exec = fork_exec

    for fname in ("posix_spawn", "posix_spawnp"):
        real_ps = getattr(os, fname, None)
        if real_ps is None:
            continue
        _wire.keep("os." + fname, real_ps)

        def make(real_ps, search):
            def spawn(path, argv, env, **kw):
                role, name, daemon = _exec_role(argv)
                p = os.fsdecode(path)
                if search and os.sep not in p:
                    import shutil

                    found = shutil.which(p, path=env.get("PATH", os.defpath) if env else None)
                    cands = [found] if found else []
                else:
                    cands = [p] if _runnable(p) else []
                cid = _next_child_id(role, name)
                shim = _shim_argv(cid, role, name, daemon, cands) if cands else None
                if shim is None or not _wire.connected():
                    return real_ps(path, argv, env, **kw)
                env2 = _wire.exec_env(dict(env))
                t = _wire.now_ns()
                pid = real_ps(shim[0], shim + [os.fsdecode(a) for a in argv], env2, **kw)
                _announce(t, cid, pid, role, daemon)
                return pid

            spawn.__wrapped__ = real_ps
            return spawn

        setattr(os, fname, make(real_ps, fname == "posix_spawnp"))

    # os.exec*: all end in execv / execve. The same process, the same id:
    # say what it runs; a Python program reconnects with this id.
    for fname in ("execv", "execve"):
        real_ex = getattr(os, fname)
        _wire.keep("os." + fname, real_ex)

        def make_exec(real_ex):
            def ex(path, args, *rest):
                # os.execvp tries every PATH entry: only the one that can
                # run is said.
                if _runnable(path):
                    try:
                        a = [os.fsdecode(x) for x in args]
                        _wire.emit("exec", program=os.fsdecode(path), args=a[1:])
                    except Exception:
                        pass
                if rest and rest[0] is not None:
                    rest = (_wire.exec_env(dict(rest[0])),) + tuple(rest[1:])
                return real_ex(path, args, *rest)

            ex.__wrapped__ = real_ex
            return ex

        setattr(os, fname, make_exec(real_ex))


# ---- waits ---------------------------------------------------------------


def _status_fields(status):
    if os.WIFEXITED(status):
        return {"code": os.WEXITSTATUS(status)}
    if os.WIFSIGNALED(status):
        try:
            return {"signal": signal.Signals(os.WTERMSIG(status)).name}
        except ValueError:
            return {"signal": "SIG%d" % os.WTERMSIG(status)}
    return None


def _ready(pid):
    """True if waiting for `pid` (-1: any child) would not block."""
    try:
        which = os.P_ALL if pid <= 0 else os.P_PID
        r = os.waitid(which, max(pid, 0), os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return r is not None
    except (OSError, AttributeError):
        return True


def _reaped(pid, status):
    c = _children.pop(pid, None)
    if c is None or status is None:
        return
    how = _status_fields(status)
    if how is None:
        _children[pid] = c  # stopped or continued: still ours
        return
    _wire.emit_about(c[0], c[1], "reaped", by=_wire.proc(), by_pid=_wire.host_pid(), **how)


def _block_text(pid):
    if pid > 0:
        c = _children.get(pid)
        return "join %s" % c[0] if c else None
    return "wait for any child" if _children else None


def _wait_text(pid):
    """What a wait for `pid` (-1: any child) blocks on, or None when it
    will not block (not a child of ours, or one that has ended)."""
    on = _block_text(pid)
    return None if on is None or _ready(pid) else on


def _install_wait():
    real_waitpid = _wire.keep("os.waitpid", os.waitpid)

    def waitpid(pid, options):
        on = None if options & os.WNOHANG else _wait_text(pid)
        r = _wire.blocking(on, lambda: real_waitpid(pid, options))
        if r[0] > 0:
            _reaped(r[0], r[1])
        return r

    waitpid.__wrapped__ = real_waitpid
    os.waitpid = waitpid

    real_wait = _wire.keep("os.wait", os.wait)

    def wait():
        r = _wire.blocking(_wait_text(-1), real_wait)
        _reaped(r[0], r[1])
        return r

    wait.__wrapped__ = real_wait
    os.wait = wait

    for fname, npid in (("wait3", False), ("wait4", True)):
        real_w = getattr(os, fname, None)
        if real_w is None:
            continue
        _wire.keep("os." + fname, real_w)

        def make(real_w, npid):
            def w(*a):
                r = real_w(*a)
                if r[0] > 0:
                    _reaped(r[0], r[1])
                return r

            w.__wrapped__ = real_w
            return w

        setattr(os, fname, make(real_w, npid))


# ---- signals -------------------------------------------------------------


def _install_kill():
    real_kill = _wire.keep("os.kill", os.kill)

    def kill(pid, sig):
        c = _children.get(pid)
        if c is not None and sig != 0:
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = "SIG%d" % sig
            _wire.emit("signal", target=c[0], target_pid=c[1], signal=name)
        return real_kill(pid, sig)

    kill.__wrapped__ = real_kill
    os.kill = kill


# ---- threads -------------------------------------------------------------


def _install_threads():
    T = threading.Thread
    real_start = _wire.keep("threading.Thread.start", T.start)
    real_bi = _wire.keep("threading.Thread._bootstrap_inner", T._bootstrap_inner)
    real_join = _wire.keep("threading.Thread.join", T.join)

    def start(self):
        starter = _wire.thread_name() or _wire.proc() or "main"
        n = _n_threads.get(starter, 0) + 1
        _n_threads[starter] = n
        target = getattr(self, "_target", None)
        role = getattr(target, "__name__", None) or type(self).__name__
        # The line of the start() call: the new thread has no frame of the
        # script yet.
        self._forkscope = ("%s.t%d" % (starter, n), role, bool(self.daemon), _wire.user_line(2))
        return real_start(self)

    def _bootstrap_inner(self):
        info = getattr(self, "_forkscope", None)
        if info is not None:
            _wire.register_thread(info[0])
            fields = {"role": info[1]}
            if info[2]:
                fields["daemon"] = True
            if info[3] is not None:
                fields["line"] = info[3]
            _wire.emit("thread_start", **fields)
            if _wire.gated_run() and not getattr(self, "_fs_gated", False):
                # The library's own thread (a Manager server's, an
                # executor's, a queue's feeder): it runs free.
                _wire.mark_free_thread()
        try:
            real_bi(self)
        finally:
            if info is not None:
                err = getattr(self, "_forkscope_error", None)
                if err:
                    _wire.emit("thread_end", error=err)
                else:
                    _wire.emit("thread_end")
                _wire.unregister_thread()

    def join(self, timeout=None):
        info = getattr(self, "_forkscope", None)
        if info is None or _wire.thread_name() == info[0]:
            return real_join(self, timeout)
        on = "waits for thread %s to end" % info[0] if self.is_alive() else None
        try:
            return _wire.blocking(on, lambda: real_join(self, timeout))
        finally:
            if not self.is_alive() and self._started.is_set():
                _wire.emit("thread_join", joined=info[0])

    start.__wrapped__ = real_start
    join.__wrapped__ = real_join
    T.start = start
    T._bootstrap_inner = _bootstrap_inner
    T.join = join

    # Threads started with _thread directly (threading.Thread took its own
    # reference at import, so this sees only the program's own calls).
    import _thread

    real_snt = _wire.keep("_thread.start_new_thread", _thread.start_new_thread)

    def start_new_thread(function, args, kwargs=None):
        starter = _wire.thread_name() or _wire.proc() or "main"
        n = _n_threads.get(starter, 0) + 1
        _n_threads[starter] = n
        name = "%s.t%d" % (starter, n)
        role = getattr(function, "__name__", None) or "thread"
        line = _wire.user_line(2)

        def run(*a, **kw):
            _wire.register_thread(name)
            fields = {"role": role}
            if line is not None:
                fields["line"] = line
            _wire.emit("thread_start", **fields)
            if _wire.gated_run() and not _wire.gated():
                # A thread of a process that runs free runs free too.
                _wire.mark_free_thread()
            try:
                return function(*a, **kw)
            finally:
                _wire.emit("thread_end")
                _wire.unregister_thread()

        if kwargs is None:
            return real_snt(run, args)
        return real_snt(run, args, kwargs)

    start_new_thread.__wrapped__ = real_snt
    _thread.start_new_thread = start_new_thread
    if getattr(_thread, "start_new", None) is real_snt:
        _thread.start_new = start_new_thread

    real_hook = threading.excepthook

    def excepthook(args):
        t = args.thread
        if t is not None and getattr(t, "_forkscope", None) is not None:
            try:
                t._forkscope_error = "".join(
                    __import__("traceback").format_exception_only(args.exc_type, args.exc_value)
                ).strip()
            except Exception:
                pass
        return real_hook(args)

    threading.excepthook = excepthook


# ---- multiprocessing -----------------------------------------------------


# Processes the standard library starts for itself, by the module of their
# target: they run free in gated runs (`_wire.FREE_ROLES`).
_HELPER_ROLES = {
    "multiprocessing.managers": "manager",
    "concurrent.futures.process": "executor_worker",
}


def _install_mp():
    try:
        from multiprocessing import process
    except ImportError:
        return
    B = process.BaseProcess
    real_start = _wire.keep("multiprocessing.BaseProcess.start", B.start)
    real_join = _wire.keep("multiprocessing.BaseProcess.join", B.join)

    def start(self):
        target = getattr(self, "_target", None)
        role = _HELPER_ROLES.get(getattr(target, "__module__", None))
        if role is None:
            role = getattr(target, "__name__", None) or type(self).__name__
        prev = getattr(_starting, "info", None)
        _starting.info = (role, self.name, bool(self.daemon))
        try:
            return real_start(self)
        finally:
            _starting.info = prev

    def join(self, timeout=None):
        popen = getattr(self, "_popen", None)
        pid = getattr(popen, "pid", None)
        c = _children.get(pid) if pid else None
        # A forkserver's child is the forkserver's: say what we wait for.
        on = None
        if c is None and popen is not None and pid and popen.returncode is None:
            on = "join %s" % self.name
        return _wire.blocking(on, lambda: real_join(self, timeout))

    real_bootstrap = _wire.keep("multiprocessing.BaseProcess._bootstrap", B._bootstrap)

    def _bootstrap(self, *args, **kwargs):
        # In the child, before the target runs. A forkserver's child said
        # hello before it knew which Process it is (the forkserver forks it
        # first; the Process comes after): it says its name now, and a
        # Manager's server or an executor's worker runs free from here.
        try:
            if _wire.named() is None and self.name:
                _wire.set_named(self.name)
                _wire.emit("named", name=self.name)
            target = getattr(self, "_target", None)
            if _HELPER_ROLES.get(getattr(target, "__module__", None)) and _wire.gated():
                _wire.run_free()
        except Exception:
            pass
        return real_bootstrap(self, *args, **kwargs)

    start.__wrapped__ = real_start
    join.__wrapped__ = real_join
    _bootstrap.__wrapped__ = real_bootstrap
    B.start = start
    B.join = join
    B._bootstrap = _bootstrap
