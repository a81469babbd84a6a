"""astrace's entry into a traced Python process.

`astrace record` puts this directory first on PYTHONPATH, so every CPython
started under it imports this module at startup. It starts the astrace
runtime when ASTRACE_SESSION is set, then runs the sitecustomize this one
shadows (Debian's, a virtualenv's, the user's), so nothing changes for the
program.
"""


def _astrace_start():
    import os
    if not os.environ.get("ASTRACE_SESSION"):
        return
    try:
        import astrace_bootstrap
        astrace_bootstrap.start()
    except Exception as exc:  # never break the program
        import sys
        sys.stderr.write(f"astrace: pid {os.getpid()} is not traced: {exc}\n")


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
