"""User errors: the one exception family the ``industrial`` command turns into one line.

Every mistake a user can make (a wrong config key, a malformed input row, a damaged checkpoint, a
partial dataset) raises a subclass of :class:`UserError` whose message names the file, row or key
and says what to do. The command line (:mod:`industrial.cli`) prints such an error as one line on
``stderr`` and exits with :data:`USER_ERROR_EXIT`; only ``--debug`` (or ``INDUSTRIAL_DEBUG=1``)
shows the traceback. Any other exception is a bug in this project: one line too, saying so.

Each layer keeps its own subclass (``ConfigError``, ``DatasetError``, ``CheckpointError``...), so a
caller can catch the family it expects; this module imports nothing from the project.
"""

from __future__ import annotations

#: Exit code of a command stopped by a user error (argparse uses the same for a bad flag).
USER_ERROR_EXIT = 2
#: Exit code of a command stopped by an unexpected exception (a bug).
BUG_EXIT = 3
#: Environment variable that shows tracebacks (same as the ``--debug`` flag).
DEBUG_ENV = "INDUSTRIAL_DEBUG"


class UserError(Exception):
    """Bad input or a bad request: the message alone tells the user what is wrong and where."""
