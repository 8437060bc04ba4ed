"""forkscope's probe inside a traced Python program.

`install()` connects this process to forkscope's collector (`_wire`), then
patches what makes processes and threads (`_procs`), then what the ops
modules watch (`_sync`, `_chan`, `_shared`, `_pool`), each if present.
"""

_installed = False


def install():
    global _installed
    if _installed:
        return
    _installed = True
    from . import _wire

    if not _wire.start():
        return  # not under forkscope (or it is gone): the program runs as is
    from . import _procs

    _wire.hide_from_tracebacks()
    _procs.install()
    import importlib

    for name in ("_sync", "_chan", "_shared", "_pool"):
        try:
            mod = importlib.import_module(__name__ + "." + name)
        except ImportError:
            continue
        inst = getattr(mod, "install", None)
        if inst is not None:
            try:
                inst()
            except Exception as e:
                _wire.emit("error", message="forkscope probe: %s not installed: %r" % (name, e))
