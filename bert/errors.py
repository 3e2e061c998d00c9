"""Errors that mean "the input is wrong": entry points report them as one line, not a trace.

Every module that validates a file, flag or setting raises a subclass of ``InputError`` (or
``OSError`` for the file system), so the command-line wrapper in ``bert.cli`` can tell bad input
(one line, exit 1) from a bug (full traceback) without knowing each module's error classes.
"""
import errno
import os

NO_SPACE_MESSAGE = os.strerror(errno.ENOSPC)  # "No space left on device", as TF's errors say


class InputError(ValueError):
    """A file, flag or setting is not what the run needs; the message names it."""


class UsageError(InputError):
    """A flag or setting has a value the program cannot use."""


class TrainingDivergedError(InputError):
    """The loss became NaN or infinite; the message names the step and what to change."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; what was reached is saved and the run can be resumed."""

    def __init__(self, message, signal_number):
        super().__init__(message)
        self.signal_number = signal_number
