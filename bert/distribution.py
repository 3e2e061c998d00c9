"""Where training runs: the devices, and TensorFlow's own distribution (no runtime of our own).

``distribution`` names how Estimator spreads training:

* ``none``: one device (the first GPU if TensorFlow sees one, else the CPU).
* ``mirrored``: every local GPU (or the given devices), one replica each, synchronous;
  ``tf.distribute.MirroredStrategy`` through ``RunConfig(train_distribute=...)``.
* ``multi_worker``: one process per machine, synchronous all-reduce between them
  (``MultiWorkerMirroredStrategy``); the cluster comes from ``TF_CONFIG`` (chief + workers).
  Its tasks wait for each other for a bounded time, and every worker starts from the chief's
  variables, so a killed job resumes from the chief's checkpoint (``bert.cluster_sync``).
* ``parameter_server``: Estimator's classic between-graph mode; variables live on the ``ps``
  tasks of ``TF_CONFIG`` and every chief/worker updates them asynchronously.

The batch size of a run is the GLOBAL batch: with N synchronous replicas each gets batch / N
examples a step, so step counts and the learning-rate schedule do not depend on N. In
``parameter_server`` mode every step is one worker's whole batch (updates are asynchronous).
"""
import functools
import json
import logging
import os
import shutil

import tensorflow as tf

from bert import cluster_sync
from bert.errors import UsageError

log = logging.getLogger("bert")

NONE = "none"
MIRRORED = "mirrored"
MULTI_WORKER = "multi_worker"
PARAMETER_SERVER = "parameter_server"
DISTRIBUTIONS = (NONE, MIRRORED, MULTI_WORKER, PARAMETER_SERVER)
CLUSTER_DISTRIBUTIONS = (MULTI_WORKER, PARAMETER_SERVER)
TF_CONFIG = "TF_CONFIG"
CHIEF, WORKER, PS, EVALUATOR = "chief", "worker", "ps", "evaluator"
TASK_TYPES = (CHIEF, WORKER, PS, EVALUATOR)
TASK_EXAMPLE = '{"type": "chief", "index": 0}'
CLUSTER_EXAMPLE = '{"chief": ["host0:2222"], "worker": ["host1:2222"]}'
MAX_PORT = 65535
TRAINING_TASKS = (CHIEF, WORKER)
NVIDIA_DEVICE_FILE = "/dev/nvidia0"
NVIDIA_TOOL = "nvidia-smi"
GPU_FIX = "pip install -e .[gpu]"


# Devices ----------------------------------------------------------------------------------------
def nvidia_gpu_present():
    return os.path.exists(NVIDIA_DEVICE_FILE) or shutil.which(NVIDIA_TOOL) is not None


@functools.lru_cache(maxsize=None)  # once per process, however many runs it makes
def log_devices():
    """Say which devices TensorFlow will use, and say plainly when a GPU sits unused because
    this TensorFlow build has no CUDA (the default install is the CPU wheel)."""
    devices = tf.config.list_physical_devices()
    log.info("devices: %s", ", ".join(f"{d.name} ({d.device_type})" for d in devices))
    if nvidia_gpu_present() and not tf.test.is_built_with_cuda():
        log.warning("an NVIDIA GPU is present but this TensorFlow build has no CUDA, so training "
                    "runs on the CPU; install the GPU build with: %s", GPU_FIX)
    return tuple(devices)


# TF_CONFIG --------------------------------------------------------------------------------------
def cluster_config():
    """TF_CONFIG as TensorFlow defines it ({"cluster": {...}, "task": {"type", "index"}}), or
    {} when unset; a malformed value is a UsageError naming it and its bad entry."""
    text = os.environ.get(TF_CONFIG, "")
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{TF_CONFIG} is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise UsageError(f"{TF_CONFIG} must be a JSON object with 'cluster' and 'task', e.g. "
                         f'{{"cluster": {CLUSTER_EXAMPLE}, "task": {TASK_EXAMPLE}}}')
    check_cluster_shape(config.get("cluster", {}))
    check_task_shape(config.get("task", {}))
    return config


def is_address(value):
    """A "host:port" string, as a cluster lists its tasks."""
    if not isinstance(value, str) or ":" not in value:
        return False
    host, port = value.rsplit(":", 1)
    return bool(host) and port.isdigit() and 0 < int(port) <= MAX_PORT


def check_cluster_shape(cluster):
    """TensorFlow fails on a wrong cluster with a TypeError or AttributeError: name it."""
    if not isinstance(cluster, dict):
        raise UsageError(f"{TF_CONFIG}: 'cluster' must be an object like {CLUSTER_EXAMPLE}, "
                         f"got {json.dumps(cluster)}")
    for kind, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(map(is_address, addresses)):
            raise UsageError(f"{TF_CONFIG}: cluster '{kind}' must be a list of \"host:port\" "
                             f"addresses, got {json.dumps(addresses)}")


def check_task_shape(task):
    """TensorFlow fails on a wrong task, or misreads it (index "0" is not task 0): name it."""
    if not isinstance(task, dict):
        raise UsageError(f"{TF_CONFIG}: 'task' must be an object like {TASK_EXAMPLE}, got "
                         f"{json.dumps(task)}")
    if task and not isinstance(task.get("type"), str):
        raise UsageError(f"{TF_CONFIG}: task 'type' must be a string ({', '.join(TASK_TYPES)}),"
                         f" got {json.dumps(task.get('type'))}")
    index = task.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise UsageError(f"{TF_CONFIG}: task 'index' must be a whole number >= 0, got "
                         f"{json.dumps(index)}")


def check_cluster(distribution):
    """Refuse a distribution that TF_CONFIG cannot run, before anything is written."""
    if distribution not in DISTRIBUTIONS:
        raise UsageError(f"--distribution={distribution}: expected one of "
                         f"{', '.join(DISTRIBUTIONS)}")
    config = cluster_config()
    cluster = config.get("cluster") or {}
    if distribution not in CLUSTER_DISTRIBUTIONS:
        if cluster:
            raise UsageError(f"{TF_CONFIG} describes a cluster but --distribution="
                             f"{distribution}; use --distribution=multi_worker or "
                             f"parameter_server, or unset {TF_CONFIG}")
        return
    task = config.get("task") or {}
    if not cluster or not task:
        raise UsageError(f"--distribution={distribution} needs {TF_CONFIG} with 'cluster' and "
                         f'\'task\', e.g. {{"cluster": {CLUSTER_EXAMPLE}, "task": {TASK_EXAMPLE}}}')
    if CHIEF not in cluster or len(cluster[CHIEF]) != 1:
        raise UsageError(f"{TF_CONFIG}: the cluster needs exactly one 'chief' (it writes the "
                         "checkpoints)")
    if distribution == PARAMETER_SERVER and not cluster.get(PS):
        raise UsageError(f"--distribution={PARAMETER_SERVER}: {TF_CONFIG} has no 'ps' task")
    if distribution == MULTI_WORKER and cluster.get(PS):
        raise UsageError(f"--distribution={MULTI_WORKER}: {TF_CONFIG} has 'ps' tasks; use "
                         f"--distribution={PARAMETER_SERVER}")
    kind, index = task["type"], task.get("index", 0)
    if kind != EVALUATOR and (kind not in cluster or not index < len(cluster[kind])):
        raise UsageError(f"{TF_CONFIG}: task {kind}:{index} is not in the cluster "
                         f"({', '.join(sorted(cluster))})")
    cluster_sync.wait_seconds()  # a bad value fails now, not after the first writes


def task_type():
    """This process's role in TF_CONFIG (None when not in a cluster)."""
    return (cluster_config().get("task") or {}).get("type")


def is_chief():
    """Only the chief writes checkpoints, events, eval_results.txt; outside a cluster, us."""
    return task_type() in (None, CHIEF)


def num_workers():
    """Training processes in TF_CONFIG (chief + workers); 1 outside a cluster."""
    cluster = cluster_config().get("cluster") or {}
    return sum(len(cluster.get(kind, [])) for kind in TRAINING_TASKS) or 1


# Strategies -------------------------------------------------------------------------------------
def cluster_tasks(kinds):
    """The tasks of these kinds in TF_CONFIG's cluster, in order."""
    cluster = cluster_config().get("cluster") or {}
    return [cluster_sync.Task(kind, index, address) for kind in kinds
            for index, address in enumerate(cluster.get(kind, []))]


def meet_the_cluster(distribution):
    """Wait, for a bounded time, until the tasks this one trains with are up: every other
    chief and worker (multi_worker: every step is synchronous), or the ps tasks that hold the
    variables (parameter_server: the others step on their own)."""
    task = cluster_config().get("task") or {}
    own = [t for t in cluster_tasks(TRAINING_TASKS)
           if (t.kind, t.index) == (task.get("type"), task.get("index", 0))]
    if not own:  # a ps or evaluator task serves, it waits for nobody
        return
    needed = cluster_tasks((PS,) if distribution == PARAMETER_SERVER else TRAINING_TASKS)
    others = [t for t in needed if t != own[0]]
    if others:
        cluster_sync.wait_for_tasks(own[0], others, cluster_sync.wait_seconds())


def train_strategy(distribution, devices=()):
    """The tf.distribute strategy Estimator trains with; None where it takes none."""
    if distribution == MIRRORED:
        return tf.distribute.MirroredStrategy(list(devices) or None)
    if distribution in CLUSTER_DISTRIBUTIONS:
        meet_the_cluster(distribution)
    if distribution == MULTI_WORKER:
        # Estimator drives the v1 strategy (its distribute coordinator configures it per task).
        strategy = tf.compat.v1.distribute.experimental.MultiWorkerMirroredStrategy()
        cluster_sync.reclaim_sigterm()
        return cluster_sync.initialise_locally(strategy)
    return None


def session_hooks(distribution):
    """Session hooks a training run needs under ``distribution``: in a synchronous cluster,
    every task starts from the chief's variables (see bert.cluster_sync)."""
    if distribution == MULTI_WORKER and num_workers() > 1 and task_type() in TRAINING_TASKS:
        return [cluster_sync.SyncFromChiefHook(is_chief(), num_workers())]
    return []


def replicas_in_sync(distribution, strategy):
    """How many replicas share one step's global batch."""
    if distribution == MULTI_WORKER:
        return num_workers() * local_replicas()
    return strategy.num_replicas_in_sync if strategy is not None else 1


def local_replicas():
    """Replicas of one multi-worker task: its GPUs, else its CPU."""
    return len(tf.config.list_physical_devices("GPU")) or 1


def cpu_device_count(devices):
    """CPU devices a session must offer for ``devices`` (e.g. "/cpu:1" needs 2)."""
    indices = [int(name.rsplit(":", 1)[1]) for name in devices
               if "cpu:" in name.lower() and name.rsplit(":", 1)[1].isdigit()]
    return max(indices) + 1 if indices else 1


# Inside a replica (model_fn under a strategy) ---------------------------------------------------
def replica_context():
    """The replica context while a strategy builds one replica's graph, else None.

    Even one replica goes through the strategy: its variables are mirrored, and their updates
    must run in cross-replica context to keep their order (control dependencies do not cross
    a merge_call)."""
    if not tf.distribute.has_strategy():
        return None
    return tf.distribute.get_replica_context()  # None in cross-replica context


def replicas_here():
    """Replicas in sync with the one being built (1 outside a strategy)."""
    context = replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def mean_over_replicas(values):
    """Each tensor of ``values`` averaged over the replicas in sync (as-is without a strategy).

    Through merge_call + batch_reduce_to, as TensorFlow's optimizers reduce gradients:
    ``ReplicaContext.all_reduce`` wraps itself in a custom gradient that cannot find mirrored
    variables in a v1 graph."""
    context = replica_context()
    if context is None:
        return list(values)

    def reduce(strategy, *per_replica):
        return strategy.extended.batch_reduce_to(tf.distribute.ReduceOp.MEAN,
                                                 [(value, value) for value in per_replica])

    return list(context.merge_call(reduce, args=tuple(values)))


def in_cross_replica_context(fn):
    """Run ``fn()`` once for all replicas (e.g. checkpoint initialisers), not once per replica."""
    context = replica_context()
    if context is None:
        return fn()
    return context.merge_call(lambda strategy: fn())
