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
  scheduler cannot see it.

Installed on top of `_procs` (which says `spawn` and `reaped`): these
wrappers call its versions. Free runs are not touched.
"""

import os

from ._ops import NOT_YET, gate, gate_until, gated


def _child_id(pid):
    try:
        from . import _procs

        c = _procs._children.get(pid)
        return c[0] if c else None
    except Exception:
        return None


def install():
    if not gated() or getattr(os.fork, "_forkscope_gate", False):
        return
    traced_fork = os.fork

    def fork():
        gate("fork", touches=["*"])
        return traced_fork()

    fork._forkscope_gate = True
    fork.__wrapped__ = getattr(traced_fork, "__wrapped__", traced_fork)
    os.fork = fork

    traced_waitpid = os.waitpid

    def waitpid(pid, options):
        if options & os.WNOHANG:
            return traced_waitpid(pid, options)
        if pid > 0:
            cid = _child_id(pid)
            what = cid or str(pid)
            waits_for = "join:" + cid if cid else None
            action = "join " + what
        else:
            waits_for = "wait"
            action = "wait for any child"

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
