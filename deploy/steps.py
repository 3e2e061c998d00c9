"""Resumable steps that remember the settings they ran with (deploy.compress, deploy.budget).

A step runs one of the project's entry points (``python -m module flags``) in its own folder,
then an optional in-process ``finish``. Its **record** is a JSON-able mapping of everything
that decides its result (its settings, the recipe's, where its model comes from); with the
digest of the step it starts from (``upstream``) it makes the step's **digest** (sha256 of the
canonical JSON), so a change anywhere upstream reaches every step after it. Build the record
from typed settings, never from the command line: flags that change no result (``--resume``,
timing iterations) stay out of it. ``recipe_step_record`` builds it for a ``RecipeStep`` from its
``StepContext``: only the settings that step reads (``RecipeStep.result_fields``), so a new
``--target_sparsity`` re-runs pruning but not the factorization before it.

``run_step`` compares the digest with what the folder recorded:

* ``step.json`` (written atomically, last) with the same digest: done, skipped;
* ``step.json``, or the ``step.started.json`` a stopped run left, with another digest: one line
  names the settings that changed, the folder is removed and the step runs fresh;
* no record of other settings: the step runs in its folder, whose tool resumes from what a
  stopped run left there (checkpoints, run folders): a folder is never removed unless it
  recorded other settings.

A run holds its whole folder (``locked``): a second run on it refuses in one line, and each
step's tool inherits the lock, so after a kill -9 of the run the folder stays held until the
tool (which the kernel sends SIGTERM) has saved its progress and ended. Holding it, the run
first removes whatever a killed write left in it (``<name>.tmp-<pid>`` of a process that has
ended, see ``bert.files``), also beside steps it will skip or never reach.

    upstream = None
    for step in chain:  # each built with steps.Step(folder, module, flags, record)
        upstream = steps.run_step(dataclasses.replace(step, upstream=upstream))
"""
import contextlib
import ctypes
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Mapping, Optional, Sequence

from bert import files
from bert.deployment import RecipeStep, StepContext
from bert.errors import InputError, Interrupted

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): the signal a child gets when its parent dies
LINUX = "linux"
STEP_DONE_FILE = "step.json"
STEP_STARTED_FILE = "step.started.json"
LOCK_FILE = "run.lock"  # in a run's folder: held (flock) while a run works in it
RECORD_KEY, UPSTREAM_KEY, DIGEST_KEY = "settings", "upstream", "digest"
STEP_KEY, COMMANDS_KEY, SECONDS_KEY = "step", "commands", "seconds"
SOURCE_KEY = "source"
# Recipe settings that only set how long timings are measured, never what a step makes: a
# re-run with another value reuses the steps (re-time their models with deploy.benchmark).
TIMING_ONLY_FIELDS = ("latency_iterations",)
PATH_FIELDS = ("data_dir",)  # recorded absolute: the same folder however it was typed
UNSET = "unset"  # how a setting one record lacks is shown
UPSTREAM_CHANGED = "the step it starts from changed"
NOT_RECORDED = "not recorded: an earlier version wrote it"
RECORD_DIFFERS = "its record differs"  # the digest differs, no leaf does (another encoding)
_MISSING = object()
_held_locks = []  # descriptors of the locks this process holds: each step's tool inherits them


@dataclasses.dataclass(frozen=True)
class Step:
    """One resumable step. ``flags`` and ``finish`` are called only when it runs: they may read
    what the steps before it left."""
    folder: str  # its own folder; its name names it in the output lines
    module: str  # the entry point, run as ``python -m module``
    flags: Callable[[], Sequence[str]]
    record: Mapping[str, object]  # JSON-able: every setting that decides its result
    upstream: Optional[str] = None  # digest of the step it starts from; None: the first
    finish: Optional[Callable[[], None]] = None  # in-process work after the command
    label: Optional[str] = None  # its name in the output lines (default: the folder's name)

    @property
    def name(self):
        return self.label or os.path.basename(os.path.normpath(self.folder))

    @property
    def settings(self):
        """What decides the result, as it reads back from step.json (tuples become lists)."""
        return json.loads(canonical_json({RECORD_KEY: self.record, UPSTREAM_KEY: self.upstream}))

    @property
    def digest(self):
        return hashlib.sha256(canonical_json(self.settings).encode("utf-8")).hexdigest()


def canonical_json(value):
    """One text per value whatever the key order: what the digest hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def recipe_step_record(step: RecipeStep, context: StepContext, source: str):
    """A recipe step's record: the fields of its owner's settings that decide its result
    (``step.result_fields``), the recipe's but timing-only ones, and its source model."""
    owned = {} if context.settings is None else dataclasses.asdict(context.settings)
    if step.result_fields is not None:
        owned = {name: owned[name] for name in step.result_fields}
    recipe = dataclasses.asdict(context.recipe)
    for name in TIMING_ONLY_FIELDS:
        recipe.pop(name)
    for name in PATH_FIELDS:
        recipe[name] = os.path.abspath(recipe[name])
    return {**owned, **recipe, SOURCE_KEY: source}


def module(name, *flags):
    """A step's command: one of the project's entry points, as a user would type it."""
    return [sys.executable, "-m", name, *[str(flag) for flag in flags]]


def run_step(step: Step):
    """Run ``step`` unless its folder says it ran with the same settings; returns its digest
    (the ``upstream`` of the step after it)."""
    digest = step.digest
    done = read_record(os.path.join(step.folder, STEP_DONE_FILE))
    if done is not None and done.get(DIGEST_KEY) == digest:
        print(f"{step.name}: already done, skipped", flush=True)
        return digest
    stale = done
    if stale is None:
        started = read_record(os.path.join(step.folder, STEP_STARTED_FILE))
        stale = None if started is None or started.get(DIGEST_KEY) == digest else started
    if stale is not None:
        print(f"{step.name}: settings changed ({describe_changes(stale, step.settings)}): "
              "re-running it and the steps after it", flush=True)
        files.remove(step.folder)
    _run(step, digest, resuming=os.path.isdir(step.folder))
    return digest


def _run(step: Step, digest, resuming):
    """Record the settings, run the command and ``finish``, write step.json last."""
    start = time.time()
    command = module(step.module, *step.flags())
    os.makedirs(step.folder, exist_ok=True)
    started_file = os.path.join(step.folder, STEP_STARTED_FILE)
    files.write_json_atomic(started_file, {STEP_KEY: step.name, **step.settings,
                                           DIGEST_KEY: digest})
    print(f"{step.name}: running" + (" (resuming what a stopped run left)" if resuming else ""),
          flush=True)
    print("  $ " + " ".join(command[1:]), flush=True)
    status = run_command(command, step.name)
    if status != 0:
        raise StepFailed(step.name, status)
    if step.finish is not None:
        step.finish()
    seconds = round(time.time() - start, 1)
    files.write_json_atomic(os.path.join(step.folder, STEP_DONE_FILE),
                            {STEP_KEY: step.name, **step.settings, DIGEST_KEY: digest,
                             COMMANDS_KEY: [" ".join(command[1:])], SECONDS_KEY: seconds})
    files.remove(started_file)  # a tool that swaps its folder in whole may have removed it
    print(f"{step.name}: done in {seconds:.0f} s", flush=True)


def read_record(path):
    """A step's record file; None when absent, empty when unreadable (it decides nothing)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def describe_changes(old, new):
    """The settings that differ between an earlier record and ``new`` (Step.settings), for one
    line: ``target_sparsity 0.6 -> 0.5``."""
    if RECORD_KEY not in old:
        return NOT_RECORDED
    before, after = flatten(old[RECORD_KEY]), flatten(new[RECORD_KEY])
    changed = [f"{name} {show(before, name)} -> {show(after, name)}"
               for name in {**after, **before}
               if before.get(name, _MISSING) != after.get(name, _MISSING)]
    if old.get(UPSTREAM_KEY) != new[UPSTREAM_KEY]:
        changed.append(UPSTREAM_CHANGED)
    return ", ".join(changed) or RECORD_DIFFERS


def flatten(record, prefix=""):
    """{dotted name: value} of a nested record's leaves (lists are leaves)."""
    leaves = {}
    for key, value in (record.items() if isinstance(record, dict) else ()):
        name = f"{prefix}{key}"
        leaves.update(flatten(value, name + ".") if isinstance(value, dict) else {name: value})
    return leaves


def show(leaves, name):
    return str(leaves[name]) if name in leaves else UNSET


def _stop_with_parent(parent):
    """In the child, before it runs: SIGTERM when the recipe's process ``parent`` dies (even by
    kill -9), so a step's tool saves its progress and ends instead of running on as an orphan.
    A parent that died before the request was made is caught by the pid check after it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def run_command(command, step):
    """Run a step's tool in its own session, so that a stop signal reaches it exactly once:
    forwarded from here, it lets the tool save its progress before both stop. If this process
    is killed outright, the tool gets SIGTERM from the kernel (Linux's parent-death signal).
    The tool inherits the run's lock (``locked``)."""
    stop_with_parent = (functools.partial(_stop_with_parent, os.getpid())
                        if sys.platform == LINUX else None)
    child = subprocess.Popen(command, start_new_session=True, preexec_fn=stop_with_parent,
                             pass_fds=tuple(_held_locks))
    try:
        return child.wait()
    except (KeyboardInterrupt, Interrupted) as stop:
        number = getattr(stop, "signal_number", signal.SIGINT)
        child.send_signal(number)
        child.wait()
        raise Interrupted(f"stopped by {signal.Signals(number).name} during step {step}, which "
                          "saved its progress; run the same command again to resume",
                          number) from None


@contextlib.contextmanager
def locked(folder, flag):
    """Hold the run folder ``folder`` (``--flag``) while the block runs: two runs stepping in
    one folder would train into the same checkpoints and remove each other's steps. Another
    holder, a run or the tool a killed run left saving, is refused in one line. Held, the
    folder is cleared of what killed writes left in it."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    with open(path, "a", encoding="utf-8") as handle:  # "a": never truncate another's file
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(f"--{flag}={folder}: another run is working in it (it holds "
                              f"{path}; a killed run's step may still be saving): wait until it "
                              "ends, or choose another folder") from None
        files.remove_leftovers_within(folder)
        _held_locks.append(handle.fileno())
        try:
            yield
        finally:
            _held_locks.remove(handle.fileno())


class FolderInUse(InputError):
    """Another run holds the folder."""


class StepFailed(InputError):
    """A step's tool failed; it said why on the line above."""

    def __init__(self, step, status):
        super().__init__(f"step {step} failed (exit {status}); fix what it said and run the "
                         "same command again to resume")


def folder_digest(path):
    """The digest a step built on a model folder that no step here made follows: its path and
    each file's size and modification time, so a changed folder re-runs what follows it."""
    entries = sorted((name, os.stat(os.path.join(path, name)).st_size,
                      int(os.stat(os.path.join(path, name)).st_mtime))
                     for name in os.listdir(path)
                     if os.path.isfile(os.path.join(path, name)))
    return hashlib.sha256(canonical_json({"model_folder": os.path.abspath(path),
                                          "files": entries}).encode()).hexdigest()
