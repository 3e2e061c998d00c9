"""Atomic writes: every file and folder the project publishes goes through here.

A reader (the next step, a resumed run, a user listing the folder) sees the old content or the
new one, never half a file or a missing folder. Content is written under a temp name beside the
target (the same file system, so the rename is atomic) and renamed into place; a failure removes
the temp. A folder that already exists is swapped with its replacement in one step.
"""
import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import shutil

from bert.errors import NO_SPACE_MESSAGE

log = logging.getLogger("bert")

TEMP_MARK = "tmp"  # <path>.tmp-<pid>: content being written
OLD_MARK = "old"  # <path>.old-<pid>: a folder moved aside where no exchange is possible
LEFTOVER = re.compile(rf"(.+)\.({TEMP_MARK}|{OLD_MARK})-(\d+)")  # target, mark, writer's pid
# A full disk: the errors that say so, and how a library's own error type (TensorFlow's,
# ONNX Runtime's) says it in its message.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# /proc/<pid>/stat: the states of a process that has ended (a zombie waits for a parent that
# may never reap it: one killed with it), and the start time's field after the command name.
ENDED_STATES = frozenset("ZXx")
_START_TIME_FIELD = 19  # starttime (field 22 of proc(5)), counted from the state (field 3)
_BOOT_TIME_KEY = "btime"
_START_TIME_SLACK_SECONDS = 2  # the boot time is whole seconds; file times are finer
JSON_INDENT = 2
# renameat2(2) swaps two existing paths in one step (Linux >= 3.15, glibc >= 2.28).
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# Its answers where the kernel or the file system (e.g. NFS) cannot exchange: nothing moved.
_NO_EXCHANGE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})


def _load_renameat2():
    """The C library's renameat2, or None where it has none (macOS, an old glibc)."""
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                             ctypes.c_uint]
        function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def sibling(path, mark):
    """This process's temp name beside ``path``: a second process never collides with it."""
    return f"{path}.{mark}-{os.getpid()}"


def remove(path):
    """Remove a file or a folder tree; a path that is not there is fine."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """A temp name beside ``path`` for any writer (TF's record writer, numpy, matplotlib):
    renamed to ``path`` when the block ends without error, removed otherwise. ``suffix`` is for
    writers that append their own extension (np.savez adds .npz to any other name)."""
    temp = sibling(path, TEMP_MARK) + suffix
    try:
        with naming_full_disk(path):
            yield temp
            os.replace(temp, path)
    finally:
        remove(temp)


@contextlib.contextmanager
def naming_full_disk(path):
    """A full disk while ``path`` is written is an OSError naming ``path``: write() and
    close() name no file, TensorFlow says "Graph execution error", and a temp name is gone by
    the time the user reads it. The outermost target (the user's path) wins."""
    try:
        yield
    except OSError as error:
        if error.errno not in _FULL_ERRNOS:
            raise
        raise OSError(error.errno, error.strerror, path) from error
    except Exception as error:  # only a full disk is turned into an OSError; the rest goes on
        if NO_SPACE_MESSAGE not in str(error):
            raise
        raise OSError(errno.ENOSPC, NO_SPACE_MESSAGE, path) from error


def write_text_atomic(path, text):
    """Write ``text`` (UTF-8) so that a kill or a full disk never leaves half a file."""
    with atomic_path(path) as temp:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)


def write_json_atomic(path, value, sort_keys=False):
    """``value`` as indented json with a final newline, atomically."""
    write_text_atomic(path, json.dumps(value, indent=JSON_INDENT, sort_keys=sort_keys) + "\n")


def copy_file_atomic(source, destination):
    """Copy so that a kill never leaves half a file at ``destination``."""
    with atomic_path(destination) as temp:
        shutil.copyfile(source, temp)


@contextlib.contextmanager
def atomic_folder(path):
    """A fresh temp folder beside ``path`` to fill; when the block ends without error it takes
    the place of ``path`` (see replace_folder), otherwise it is removed. What an interrupted
    earlier write left beside ``path`` is cleaned up first."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    remove_leftovers(path)
    temp = sibling(path, TEMP_MARK)
    os.makedirs(temp)
    try:
        with naming_full_disk(path):
            yield temp
            replace_folder(temp, path)
    finally:
        remove(temp)  # after an exchange it holds the old content


def replace_folder(source, target):
    """Put the folder ``source`` at ``target`` so that ``target`` never goes missing.

    An existing ``target`` is exchanged with ``source`` by one renameat2 call; the old content
    is then at ``source``, for the caller to remove. Where the file system cannot exchange, the
    old folder is moved aside first (``target`` is missing between the two renames; a failure
    moves it back, and after a kill the next write puts it back, see remove_leftovers).
    """
    if not os.path.isdir(target):
        os.rename(source, target)
    elif not _exchange(source, target):
        old = sibling(target, OLD_MARK)
        os.rename(target, old)
        try:
            os.rename(source, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old)


def _exchange(first, second):
    """Swap two existing paths atomically; False (nothing moved) where the system cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                  _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), second)


def remove_leftovers(path):
    """Clean up what an interrupted write of ``path`` left beside it: temp copies and, from a
    swap without exchange, the old folder (put back when ``path`` itself is missing). What a
    process that is still running left is its own work in progress and stays."""
    folder, name = os.path.split(os.path.abspath(path))
    for entry in sorted(os.listdir(folder)):
        match = LEFTOVER.fullmatch(entry)
        leftover = os.path.join(folder, entry)
        if not match or match.group(1) != name:
            continue
        try:  # a live writer may rename or remove its own temp copy meanwhile
            if _running_elsewhere(int(match.group(3)), os.lstat(leftover).st_mtime):
                continue
        except FileNotFoundError:
            continue
        if match.group(2) == OLD_MARK and not os.path.lexists(path):
            log.warning("restoring %s from %s, left by an interrupted write", path, leftover)
            os.rename(leftover, path)
        else:
            log.warning("removing %s, left by an interrupted write", leftover)
            remove(leftover)


def remove_leftovers_within(folder):
    """remove_leftovers for ``folder`` and for every path under it that has leftovers: what a
    killed run left anywhere in its folder goes on the next run, even where that run writes
    nothing again (a step it skips)."""
    if os.path.isdir(os.path.dirname(os.path.abspath(folder))):
        remove_leftovers(folder)
    for directory, subfolders, names in os.walk(folder):
        targets = {match.group(1) for match in map(LEFTOVER.fullmatch, subfolders + names)
                   if match}
        for target in sorted(targets):
            remove_leftovers(os.path.join(directory, target))
        subfolders[:] = [name for name in subfolders
                         if os.path.isdir(os.path.join(directory, name))]


def _running_elsewhere(pid, written_at):
    """Whether ``pid`` is another process that is still running and can have written a
    leftover last changed at ``written_at`` (epoch seconds). A zombie has ended (its parent,
    killed with it, never reaps it), and a process that started later only got the same pid
    (a restarted machine or container counts pids from 1 again)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        pass
    state, started_at = _process_state(pid)
    if state in ENDED_STATES:
        return False
    return started_at is None or started_at <= written_at + _START_TIME_SLACK_SECONDS


def _process_state(pid):
    """(state letter, start time in epoch seconds) from /proc; (None, None) without /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rpartition(")")[2].split()
        with open("/proc/stat", encoding="ascii") as handle:
            boot = next(int(line.split()[1]) for line in handle
                        if line.startswith(_BOOT_TIME_KEY))
        started_at = boot + int(fields[_START_TIME_FIELD]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None, None
    return fields[0], started_at
