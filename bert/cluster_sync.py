"""How the tasks of a TF_CONFIG cluster meet, and how a crashed multi_worker job resumes.

Meeting: before TensorFlow's runtime starts, every training task waits in Python until the
tasks it trains with answer on their TF_CONFIG addresses. TensorFlow's own wait for a missing
task has no end and, once its coordination service runs, swallows SIGTERM; ours ends after
``BERT_CLUSTER_WAIT_SECONDS`` (default ``DEFAULT_WAIT_SECONDS``) with one line naming the
missing task, and SIGTERM stops it at once (exit 143).

Resuming: TensorFlow's MultiWorkerMirroredStrategy gives the workers the chief's *initial*
values by a broadcast inside the variables' initialisers. A chief that restores its last
checkpoint runs no initialiser, so a worker that starts without one waits for that broadcast
forever (and the chief for the worker's first step): a killed job never resumed. Here every
task initialises only its own variables and, once its session exists, takes all of them from
the chief (``SyncFromChiefHook``): what the chief restored, or initialised.
"""
import collections
import logging
import os
import signal
import socket
import time
import types

import tensorflow as tf
from tensorflow.python.distribute import mirrored_strategy

from bert.errors import Interrupted, UsageError

tf1 = tf.compat.v1
log = logging.getLogger("bert")

WAIT_SECONDS_ENV = "BERT_CLUSTER_WAIT_SECONDS"
DEFAULT_WAIT_SECONDS = 600.0  # a cluster manager may take minutes to start every machine
POLL_SECONDS = 0.5  # between two rounds of knocking on the missing tasks
CONNECT_SECONDS = 1.0  # one knock: a TCP connection to a task's address
# Collective keys of the chief-to-workers broadcast: far above the strategy's own (which count
# up from 1), so the two never share a group or an instance.
SYNC_GROUP_KEY = 1 << 20
SYNC_INSTANCE_KEY_BASE = 1 << 20

Task = collections.namedtuple("Task", "kind index address")


def task_name(task):
    return f"{task.kind}:{task.index} ({task.address})"


def wait_seconds():
    """How long a task waits for the others: ``BERT_CLUSTER_WAIT_SECONDS`` or the default."""
    text = os.environ.get(WAIT_SECONDS_ENV, "").strip()
    if not text:
        return DEFAULT_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise UsageError(f"{WAIT_SECONDS_ENV}={text}: expected a positive number of seconds")
    return seconds


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def answers(address):
    """Whether something listens on ``address`` ("host:port"): the task is up."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), CONNECT_SECONDS):
            return True
    except OSError:
        return False


def listen_on(task):
    """Answer the other tasks' knocks on our own port until TensorFlow's server takes it."""
    try:
        if socket.has_dualstack_ipv6():  # every address, as TensorFlow's server binds [::]
            return socket.create_server(("", port_of(task.address)), family=socket.AF_INET6,
                                        dualstack_ipv6=True)
        return socket.create_server(("", port_of(task.address)))
    except OSError as error:
        raise UsageError(f"TF_CONFIG: this task's port is taken, {task_name(task)}: "
                         f"{error.strerror}; is a previous run still alive?") from None


def wait_for_tasks(own, others, seconds):
    """Return once every task of ``others`` answers; TimeoutError naming the missing ones
    after ``seconds``. SIGTERM/SIGINT (through the program's handlers) stop the wait."""
    missing = list(others)
    log.info("waiting up to %gs (%s) for %s of TF_CONFIG's cluster", seconds, WAIT_SECONDS_ENV,
             ", ".join(map(task_name, missing)))
    deadline = time.monotonic() + seconds
    with listen_on(own):
        try:
            while missing:
                missing = [task for task in missing if not answers(task.address)]
                if missing and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"waited {seconds:g}s for {', '.join(map(task_name, missing))} of "
                        f"TF_CONFIG's cluster; start {'it' if len(missing) == 1 else 'them'} "
                        f"(the same command with its own TF_CONFIG task) or set "
                        f"{WAIT_SECONDS_ENV} to wait longer")
                if missing:
                    time.sleep(POLL_SECONDS)
        except Interrupted as stop:
            raise Interrupted(f"{stop} while waiting for {', '.join(map(task_name, missing))}"
                              " (no step run); run the same command again to resume",
                              stop.signal_number) from None
    log.info("every task of the cluster answers")


def reclaim_sigterm():
    """Give SIGTERM back to Python's handler: the collective runtime installs its own
    preemption notifier, which only logs it, so a stop signal would never stop the run."""
    signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGTERM))


def initialise_locally(strategy):
    """Make ``strategy`` (a v1 MultiWorkerMirroredStrategy) initialise each task's variables
    on that task alone, as a MirroredStrategy does; ``SyncFromChiefHook`` then makes them the
    chief's. (TensorFlow's broadcast of initial values deadlocks a resumed chief.)"""
    extended = strategy.extended
    extended._get_variable_creator_initial_value = types.MethodType(
        mirrored_strategy.MirroredExtended._get_variable_creator_initial_value, extended)
    return strategy


class SyncFromChiefHook(tf1.train.SessionRunHook):
    """Once the session exists, every global variable of every worker becomes the chief's
    (restored from its last checkpoint or initialised): all tasks step from one state.

    Every task builds the same broadcasts in the same order (by variable name), so their
    collective instance keys pair up."""

    def __init__(self, is_chief, num_workers):
        self._is_chief = is_chief
        self._num_workers = num_workers
        self._sync = None

    def begin(self):
        variables = sorted(tf1.global_variables(), key=lambda variable: variable.name)
        broadcasts = [self._broadcast(variable, SYNC_INSTANCE_KEY_BASE + number)
                      for number, variable in enumerate(variables)]
        self._sync = tf.group(broadcasts)

    def _broadcast(self, variable, instance_key):
        keys = dict(group_size=self._num_workers, group_key=SYNC_GROUP_KEY,
                    instance_key=instance_key, shape=variable.shape)
        with tf.device(variable.device):
            if self._is_chief:
                return tf.raw_ops.CollectiveBcastSend(input=variable.read_value(), **keys)
            value = tf.raw_ops.CollectiveBcastRecv(T=variable.dtype.base_dtype, **keys)
            return variable.assign(value, read_value=False)

    def after_create_session(self, session, coord):
        session.run(self._sync)
        log.info("every task starts from the chief's variables (%s)",
                 "sent" if self._is_chief else "received")
