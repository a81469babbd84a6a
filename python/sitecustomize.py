"""astrace's entry into a traced Python process.

`astrace record` puts this directory first on PYTHONPATH, so every CPython
started under it imports this module at startup. It starts the astrace
runtime when ASTRACE_SESSION is set, then runs the sitecustomize this one
shadows (Debian's, a virtualenv's, the user's), so nothing changes for the
program. Kept to syntax every Python 3 parses, so an old interpreter gets a
clear "not supported" note instead of a syntax error.
"""


def _astrace_start():
    import os
    if not os.environ.get("ASTRACE_SESSION"):
        return
    import sys
    if sys.version_info[:2] < (3, 11):
        _note("pid %d: Python %s is not supported (astrace needs CPython 3.11 or newer); "
              "this process is not traced" % (os.getpid(), sys.version.split()[0]))
        return
    try:
        import astrace_bootstrap
        astrace_bootstrap.start()
    except Exception as exc:  # never break the program
        _note("pid %d is not traced: %s" % (os.getpid(), exc))


def _note(text):
    """Notes go to the recorder (a file it reads, prints and keeps in the
    trace), never to the program's stderr."""
    import os
    try:
        with open(os.path.join(os.environ["ASTRACE_SESSION"], "%d.note" % os.getpid()), "a") as f:
            f.write(text + "\n")
    except (IOError, OSError):
        pass


def _chain_next_sitecustomize():
    import importlib.machinery
    import importlib.util
    import os
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_astrace_start()
_chain_next_sitecustomize()
