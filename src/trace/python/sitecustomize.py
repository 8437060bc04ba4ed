# forkscope's probe, loaded by Python at start-up because forkscope put this
# directory first on PYTHONPATH for this run only (nothing is installed).
# It connects this process to forkscope, then hands over to the user's own
# sitecustomize, if there is one, exactly as Python would have run it.


def _forkscope_boot():
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        import forkscope_probe

        forkscope_probe.install()
    except Exception as e:  # the program must run even if the probe cannot
        try:
            os.write(2, ("forkscope probe: not started: %r\n" % (e,)).encode())
        except OSError:
            pass
    # Our directory leaves sys.path (the modules stay loaded): the program
    # sees the path it would see without forkscope.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    mine = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401  (the user's own, if any)
    except ImportError as exc:
        if exc.name != "sitecustomize":
            _report(exc)
        elif mine is not None:
            sys.modules["sitecustomize"] = mine
    except Exception as exc:
        _report(exc)


def _report(exc):
    # What site.execsitecustomize prints for a broken sitecustomize.
    import sys

    if sys.flags.verbose:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    else:
        sys.stderr.write(
            "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
            "%s: %s\n" % (exc.__class__.__name__, exc)
        )


_forkscope_boot()
del _forkscope_boot, _report
