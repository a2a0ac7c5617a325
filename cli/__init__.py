"""dlsys.cli: the ``dlsys`` command, a thin layer over the Python API.

Each area adds a module to this package that defines ``register(subparsers)``; the command
discovers them (in name order), so adding a subcommand never edits a shared list.
See :mod:`dlsys.cli.main` for the conventions every subcommand follows.
"""
