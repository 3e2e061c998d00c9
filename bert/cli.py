"""What every command line of the project shares: logging, validators, and one way to exit.

``run_main`` runs a program's body and turns the outcome into an exit status: 0 on success
(whatever the body returns), 1 with one line ``program: error: ...`` on bad input (a
``bert.errors.InputError`` or an ``OSError``), 128 + the signal number with one line when
SIGINT or SIGTERM stopped it. Anything else is a bug and keeps its traceback. A bad command
line is bad input too (exit 1, one line; argparse's own status would be 2), a flag is only
ever its whole name (no abbreviations: ``--speed`` is not ``--speedup``), and ``--help``
prints the usage and exits 0 (absl's exits 1).
"""
import argparse
import dataclasses
import logging
import math
import os
import signal
import sys

import tensorflow as tf
from absl import app, flags

from bert import tasks, user_task
from bert.errors import NO_SPACE_MESSAGE, InputError, Interrupted, UsageError

tf1 = tf.compat.v1

EXIT_OK = 0
EXIT_INPUT_ERROR = 1
EXIT_SIGNAL_BASE = 128  # the shell's convention: 128 + signal number
# What asks an absl command line for its usage (absl's own flags would print it and exit 1).
HELP_ARGUMENTS = ("--help", "-h", "-?", "--helpshort", "--helpfull")


def configure_logging():
    """Progress to stderr: our own log lines and TF errors (not its deprecation chatter)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    tf1.logging.set_verbosity(tf1.logging.ERROR)


def _raise_on_sigterm(number, frame):
    raise Interrupted("stopped by SIGTERM", number)


def fail(program, message, status=EXIT_INPUT_ERROR):
    print(f"{program}: error: {message}", file=sys.stderr, flush=True)
    return status


def run_main(body, program):
    """Run ``body()``; return the exit status (see the module docstring)."""
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        body()
        return EXIT_OK
    except Interrupted as stop:
        return fail(program, str(stop), EXIT_SIGNAL_BASE + stop.signal_number)
    except KeyboardInterrupt:
        return fail(program, "interrupted (SIGINT)", EXIT_SIGNAL_BASE + signal.SIGINT)
    except (InputError, OSError) as error:
        return fail(program, _one_line(error))
    except tf.errors.OpError as error:
        if NO_SPACE_MESSAGE not in error.message:
            raise
        return fail(program, f"{_no_space_line(error.message)} (free some space and run again)")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _no_space_line(message):
    """The line of TF's message that says the disk is full, which names the file: a graph
    execution error's first line is only "Graph execution error:"."""
    line = next(line for line in message.splitlines() if NO_SPACE_MESSAGE in line)
    return " ".join(line.split())


def _one_line(error):
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename and error.filename not in text:
        text = f"{error.filename}: {text}"
    return " ".join(text.split())


def argparse_main(program, parser, run, argv=None):
    """The whole ``main(argv)`` of an argparse command line: parse ``argv`` (default: the
    process's arguments), set up logging, ``run(args)`` through run_main; the exit status."""
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging()
    return run_main(lambda: run(args), program)


def absl_main(program, body):
    """The ``main(argv)`` that absl's ``app.run`` calls: logging, then ``body`` through
    run_main; stray positional arguments are refused."""
    def main(argv):
        configure_logging()
        if len(argv) > 1:
            raise SystemExit(fail(program, f"unexpected arguments: {' '.join(argv[1:])}"))
        raise SystemExit(run_main(body, program))
    return main


def run_absl(program, define_flags, body):
    """A whole absl command line: define its flags, parse them, run ``body``, exit."""
    known_modules = set(flags.FLAGS.flags_by_module_dict())
    define_flags()
    own_modules = [name for name in flags.FLAGS.flags_by_module_dict()
                   if name not in known_modules]
    description = sys.modules[define_flags.__module__].__doc__ or ""
    usage = "\n\n".join([f"usage: {program} [--flag=value ...]", description.strip(),
                          *(flags.FLAGS.module_help(name) for name in own_modules)])
    app.run(absl_main(program, body), flags_parser=absl_flags_parser(program, usage))


def absl_flags_parser(program, usage):
    """An ``app.run(flags_parser=...)`` that reports a bad flag in one line (absl prints two)
    and answers ``--help`` with ``usage`` (the program's own flags) and exit 0."""
    def parse(argv):
        if any(argument in HELP_ARGUMENTS for argument in argv[1:]):
            print(usage, flush=True)
            sys.exit(EXIT_OK)
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            sys.exit(fail(program, _one_line(error)))
    return parse


def field_default(settings_class, name):
    """The default of a settings dataclass's field, for the flag of the same setting: one
    default per setting, kept by the library."""
    field = {field.name: field for field in dataclasses.fields(settings_class)}[name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    if field.default is dataclasses.MISSING:
        raise TypeError(f"{settings_class.__name__}.{name} has no default")
    return field.default


def resolve_task_arguments(args):
    """``args.task_name`` as libraries take it, in place: an argparse namespace with
    ``data_dir`` and the flags of ``user_task.add_arguments`` (see ``bert.tasks.resolve``)."""
    args.task_name = tasks.resolve(args.task_name, args.data_dir, user_task.flag_values(args))


def settings_from_namespace(settings_class, namespace, **overrides):
    """A library's settings from parsed arguments, at the command line's edge: each field from
    the argument of its name (fields without one keep their default); ``overrides`` win."""
    values = {field.name: getattr(namespace, field.name)
              for field in dataclasses.fields(settings_class) if hasattr(namespace, field.name)}
    values.update(overrides)
    return settings_class(**values)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage block) with exit 1, as
    any bad input, and takes a flag only by its whole name: an abbreviation would silently
    become another flag (``--speed 2`` was ``--speedup 2``)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)

    def error(self, message):
        self.exit(EXIT_INPUT_ERROR, f"{self.prog}: error: {message} (see --help)\n")


# Validators: each raises UsageError naming the flag --------------------------------------------
def require(condition, message):
    if not condition:
        raise UsageError(message)


def require_file(path, flag, expected):
    require(path and os.path.isfile(path), f"--{flag}={path}: file not found (expected "
                                           f"{expected})")
    return path


def require_dir(path, flag, expected="a folder"):
    require(path and os.path.isdir(path), f"--{flag}={path}: folder not found (expected "
                                          f"{expected})")
    return path


def require_output_dir(path, flag):
    """An output folder: absent (it will be made) or a folder, never a file."""
    require(path, f"--{flag} is required")
    require(not os.path.isfile(path), f"--{flag}={path} is a file; expected a folder")
    return path


def require_positive(value, flag):
    require(math.isfinite(value) and value > 0, f"--{flag}={value}: must be positive")


def require_in_range(value, flag, low=None, high=None, high_inclusive=True):
    """low <= value (<=|<) high; None leaves that side open, never to inf or nan."""
    ok = value is not None and math.isfinite(value) and (low is None or value >= low)
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if not ok:
        lower = "(-inf" if low is None else f"[{low:g}"
        upper = "inf)" if high is None else f"{high:g}{']' if high_inclusive else ')'}"
        raise UsageError(f"--{flag}={value}: must be in {lower}, {upper}")
    return value


def parse_batch_sizes(text, flag):
    """[1, 32] from "1,32"; anything else is a UsageError naming ``--flag``."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    require(sizes and min(sizes) >= 1, f"--{flag}={text}: expected positive integers separated "
                                       "by commas, e.g. 1,32")
    return sizes
