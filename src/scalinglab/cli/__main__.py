"""``python -m scalinglab.cli``: the command line, as the ``scalinglab`` script runs it.

Python imports the package before it runs this module, so every command is registered once, on the one app
(``cli.py`` run as a script used to be a second copy of the module, and had to skip registering the observe
commands on it). A spawned worker process (the local executor's) does not re-run a package's ``__main__``,
and the guard below keeps an import of this module from starting the command line again.
"""
from scalinglab.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
