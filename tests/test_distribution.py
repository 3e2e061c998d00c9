"""Training spread by TensorFlow's own distribution: mirrored replicas, multi-worker, ps.

Mirrored runs over two CPU devices of one session (no GPU needed); the cluster modes run each
task of a TF_CONFIG cluster as its own `bert.run_classifier` process on 127.0.0.1.
"""
import dataclasses
import glob
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from bert import classifier, distribution, optimization
from bert.errors import UsageError
from conftest import REPO_ROOT
from tiny_bert import write_small_model, write_sst2_task

tf1 = tf.compat.v1

TWO_CPUS = ["/cpu:0", "/cpu:1"]
GLOBAL_BATCH = 8
CLUSTER_TIMEOUT = 150  # seconds one cluster run may take, all processes together
LOSS_TOLERANCE = 1e-4
# The parameter-server run must last until the worker (TF delays it 5 s) has joined.
PS_TRAIN_STEPS = 1000
LOCALHOST = "127.0.0.1"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("distribution")
    write_small_model(root / "model")
    write_sst2_task(root / "data")
    return root


def settings(root, output, **overrides):
    """A 10-step run at global batch 8 with every dropout off: replicas can match one device."""
    values = dict(task_name="SST-2", data_dir=str(root / "data"),
                  vocab_file=str(root / "model" / "vocab.txt"),
                  bert_config_file=str(root / "model" / "bert_config.json"),
                  init_checkpoint=str(root / "model"), output_dir=str(root / output),
                  max_seq_length=16, train_batch_size=GLOBAL_BATCH, learning_rate=1e-2,
                  num_train_epochs=2, save_checkpoints_steps=5, do_train=True,
                  log_every_n_steps=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  classifier_dropout=0.0)
    values.update(overrides)
    return classifier.ClassifierSettings(**values)


def loss_curve(output_dir):
    """{step: training loss of the global batch} from the run's TensorBoard events."""
    curve = {}
    for path in glob.glob(os.path.join(output_dir, "events.out.tfevents.*")):
        for event in tf1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == classifier.TRAINING_LOSS_ALIAS:
                    curve[event.step] = value.simple_value
    return curve


# Two logical CPUs exist only if configured before TensorFlow starts: a process of its own.
TRAIN_ON_TWO_CPUS = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from bert import classifier, cli
cli.configure_logging()
sys.exit(cli.run_main(lambda: [classifier.Classifier(classifier.ClassifierSettings(**values))
                               .train() for values in json.loads(sys.argv[1])], "two_cpus"))
"""


def train_on_two_cpus(runs):
    return subprocess.run([sys.executable, "-c", TRAIN_ON_TWO_CPUS,
                           json.dumps([dataclasses.asdict(run) for run in runs])],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=CLUSTER_TIMEOUT)


def test_mirrored_two_devices_follow_the_one_device_loss_curve(tiny_run):
    runs = [settings(tiny_run, "one_device"),
            settings(tiny_run, "mirrored", distribution="mirrored", devices=TWO_CPUS)]
    process = train_on_two_cpus(runs)
    assert process.returncode == 0, process.stderr[-3000:]
    assert ("distribution mirrored: 2 replica(s) in sync, global batch 8 = 4 per replica"
            in process.stderr)
    single, mirrored = (loss_curve(run.output_dir) for run in runs)
    assert sorted(single) == sorted(mirrored) == list(range(1, 11))  # same steps, same schedule
    assert max(single.values()) - min(single.values()) > 0.01  # the model does learn
    for step in single:
        assert mirrored[step] == pytest.approx(single[step], abs=LOSS_TOLERANCE), step
    assert tf.train.latest_checkpoint(runs[1].output_dir).endswith("-10")


def _two_steps(values, devices=()):
    """Two AdamW steps of three groups (clipped; transformed; ascending its own loss) on the
    8-row global batch, split over a MirroredStrategy of ``devices`` (none: no strategy). Returns {(variable, replica):
    value} of every variable, Adam moments and global step included."""
    inputs = np.arange(GLOBAL_BATCH, dtype=np.float32).reshape(GLOBAL_BATCH, 1) / GLOBAL_BATCH
    targets = np.arange(GLOBAL_BATCH, dtype=np.float32)[::-1] / 4.0
    replicas = max(1, len(devices))

    def build():
        index = tf.distribute.get_replica_context().replica_id_in_sync_group
        x = tf.gather(tf.constant(inputs.reshape(replicas, -1, 1)), index)
        y = tf.gather(tf.constant(targets.reshape(replicas, -1)), index)
        w = tf1.get_variable("w", initializer=values["w"])
        r = tf1.get_variable("r", initializer=values["r"])
        lam = tf1.get_variable("lam", initializer=values["lam"])
        constraint = lam * tf.reduce_sum(r)
        loss = tf.reduce_mean(tf.square(tf.reduce_sum(x * w * r, axis=1) - y)) + constraint
        groups = [optimization.ParamGroup("model", [w], 0.1, 10, clip_norm=1.0),
                  optimization.ParamGroup("r", [r], 0.1, 10, weight_decay=0.0, clip_norm=None,
                                          transform=lambda v: tf.clip_by_value(v, 0.0, 0.95)),
                  optimization.ParamGroup("lam", [lam], 0.1, 10, weight_decay=0.0,
                                          clip_norm=None, ascent=True)]
        return optimization.create_train_op(loss, groups, losses_by_group={"lam": constraint})[0]

    with tf.Graph().as_default():
        strategy = tf.distribute.MirroredStrategy(devices) if devices else None
        if strategy is None:
            train_op = build()
        else:
            with strategy.scope():
                tf1.train.get_or_create_global_step()
                train_op = strategy.group(strategy.extended.call_for_each_replica(build))
        config = tf1.ConfigProto(device_count={"CPU": len(TWO_CPUS)})
        with tf1.Session(config=config) as session:
            session.run(tf1.global_variables_initializer())
            for _ in range(2):
                session.run(train_op)
            local = strategy.experimental_local_results if strategy else lambda v: [v]
            return {(variable.name.split(":")[0], index): session.run(copy)
                    for variable in tf1.global_variables()
                    for index, copy in enumerate(local(variable))}


def test_optimizer_under_mirrored_equals_one_device_on_the_global_batch():
    """Gradients are averaged (a sum would double Adam's moments), updates applied once."""
    values = {"w": np.array([[0.5, -1.0]], np.float32), "r": np.array([0.9, 0.2], np.float32),
              "lam": np.float32(0.1)}
    single, mirrored = _two_steps(values), _two_steps(values, TWO_CPUS)
    assert {name for name, _ in mirrored} == {name for name, _ in single} >= {
        "w/adam_m", "w/adam_v", "r/adam_m", "lam/adam_v", "global_step"}
    for (name, replica), value in mirrored.items():
        np.testing.assert_allclose(value, single[(name, 0)], rtol=1e-5, atol=1e-7,
                                   err_msg=f"{name} on replica {replica}")
    assert mirrored[("global_step", 1)] == 2
    assert mirrored[("r", 0)][1] == 0.0  # the transform ran after the update
    assert mirrored[("lam", 0)] > values["lam"]  # the multiplier ascended


# Clusters of processes ------------------------------------------------------------------------
def free_port():
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


def command_line(root, output, mode, **overrides):
    values = dict(task_name="SST-2", data_dir=root / "data", vocab_file=root / "model/vocab.txt",
                  bert_config_file=root / "model/bert_config.json", init_checkpoint=root / "model",
                  output_dir=root / output, max_seq_length=16, train_batch_size=GLOBAL_BATCH,
                  learning_rate=1e-3, num_train_epochs=2, save_checkpoints_steps=5,
                  log_every_n_steps=5, do_train=True, do_eval=True, distribution=mode)
    values.update(overrides)
    return ([sys.executable, "-m", "bert.run_classifier"]
            + [f"--{key}={value}" for key, value in values.items()])


def start_task(cluster, kind, command, log_path):
    env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster,
                                                 "task": {"type": kind, "index": 0}}))
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(log_path, "w"))


def wait_all(processes, deadline):
    """Exit statuses of the processes; those still running at the deadline are killed."""
    statuses = {}
    for kind, process in processes.items():
        try:
            statuses[kind] = process.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            process.kill()
            statuses[kind] = process.wait()
    return statuses


def steps_run(log_path):
    """Training steps the process says it ran (ProgressHook's last line)."""
    lines = [line for line in open(log_path) if "training steps (global step" in line]
    assert lines, open(log_path).read()[-3000:]
    return int(lines[-1].split(" ran ")[1].split()[0])


def test_multi_worker_chief_and_worker(tiny_run):
    cluster = {"chief": [f"{LOCALHOST}:{free_port()}"],
               "worker": [f"{LOCALHOST}:{free_port()}"]}
    logs = {kind: tiny_run / f"multi_worker_{kind}.log" for kind in cluster}
    start = time.time()
    processes = {kind: start_task(cluster, kind, command_line(tiny_run, f"mw_{kind}",
                                                              "multi_worker"), logs[kind])
                 for kind in cluster}
    statuses = wait_all(processes, start + CLUSTER_TIMEOUT)
    assert statuses == {"chief": 0, "worker": 0}, {k: logs[k].read_text()[-3000:] for k in logs}
    for kind in cluster:
        text = logs[kind].read_text()
        assert "2 replica(s) in sync, global batch 8 = 4 per replica" in text
        assert steps_run(logs[kind]) == 10  # synchronous: every task runs every step
    chief, worker = tiny_run / "mw_chief", tiny_run / "mw_worker"
    assert tf.train.latest_checkpoint(str(chief)).endswith("-10")
    assert (chief / classifier.EVAL_RESULTS_FILE).is_file()
    assert tf.train.latest_checkpoint(str(worker)) is None
    assert not (worker / classifier.EVAL_RESULTS_FILE).exists()


def test_parameter_server_chief_worker_and_ps(tiny_run):
    cluster = {"chief": [f"{LOCALHOST}:{free_port()}"],
               "worker": [f"{LOCALHOST}:{free_port()}"], "ps": [f"{LOCALHOST}:{free_port()}"]}
    logs = {kind: tiny_run / f"ps_{kind}.log" for kind in cluster}
    start = time.time()
    # Steps are asynchronous: the run is long enough for the worker to join the chief.
    processes = {kind: start_task(cluster, kind, command_line(
        tiny_run, f"ps_{kind}", "parameter_server", num_train_epochs=PS_TRAIN_STEPS * 8 // 40,
        save_checkpoints_steps=PS_TRAIN_STEPS, log_every_n_steps=500), logs[kind])
        for kind in cluster}
    try:
        statuses = wait_all({kind: processes[kind] for kind in ("chief", "worker")},
                            start + CLUSTER_TIMEOUT)
    finally:
        processes["ps"].kill()  # a ps task serves until it is stopped (TensorFlow's design)
        processes["ps"].wait()
    assert statuses == {"chief": 0, "worker": 0}, {k: logs[k].read_text()[-3000:] for k in logs}
    chief_steps, worker_steps = steps_run(logs["chief"]), steps_run(logs["worker"])
    assert chief_steps > 0 and worker_steps > 0
    assert chief_steps + worker_steps >= PS_TRAIN_STEPS  # one shared global step
    chief = tiny_run / "ps_chief"
    # Asynchronous: tasks still running a step when the last one ends may overshoot a little.
    final_step = int(tf.train.latest_checkpoint(str(chief)).rsplit("-", 1)[1])
    assert PS_TRAIN_STEPS <= final_step <= PS_TRAIN_STEPS + len(cluster)
    assert (chief / classifier.EVAL_RESULTS_FILE).is_file()
    for kind in ("worker", "ps"):
        assert tf.train.latest_checkpoint(str(tiny_run / f"ps_{kind}")) is None


# Bad settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, tf_config, message", [
    ("spread", None, "--distribution=spread: expected one of"),
    ("multi_worker", None, "needs TF_CONFIG"),
    ("none", {"cluster": {"chief": ["h:1"]}, "task": {"type": "chief"}}, "describes a cluster"),
    ("parameter_server", {"cluster": {"chief": ["h:1"], "worker": ["h:2"]},
                          "task": {"type": "chief", "index": 0}}, "no 'ps' task"),
    ("multi_worker", {"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 0}},
     "exactly one 'chief'"),
    ("multi_worker", {"cluster": {"chief": ["h:1"]}, "task": {"type": "worker", "index": 3}},
     "task worker:3 is not in the cluster"),
    ("multi_worker", "{not json", "not valid JSON"),
])
def test_bad_distribution_is_one_usage_error(monkeypatch, mode, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv(distribution.TF_CONFIG, raising=False)
    else:
        monkeypatch.setenv(distribution.TF_CONFIG, tf_config if isinstance(tf_config, str)
                           else json.dumps(tf_config))
    with pytest.raises(UsageError, match=message):
        distribution.check_cluster(mode)


def test_global_batch_must_split_over_replicas(tiny_run):
    process = train_on_two_cpus([settings(tiny_run, "odd", train_batch_size=7,
                                          distribution="mirrored", devices=TWO_CPUS)])
    assert process.returncode == 1
    last = process.stderr.strip().splitlines()[-1]
    assert last == ("two_cpus: error: --train_batch_size=7 (the global batch) must be a "
                    "multiple of the 2 replicas of --distribution=mirrored"), last
    assert not (tiny_run / "odd").exists()


def test_flag_is_validated_in_one_line(tiny_run):
    process = subprocess.run(command_line(tiny_run, "bad_flag", "spread"), cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=CLUSTER_TIMEOUT)
    assert process.returncode == 1
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith("run_classifier: error:") and "distribution" in last, last


def test_gpu_without_cuda_build_is_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(distribution, "nvidia_gpu_present", lambda: True)
    monkeypatch.setattr(tf.test, "is_built_with_cuda", lambda: False)
    distribution.log_devices.cache_clear()
    with caplog.at_level("INFO", logger="bert"):
        distribution.log_devices()
    distribution.log_devices.cache_clear()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and distribution.GPU_FIX in warnings[0]
    assert any(r.getMessage().startswith("devices: ") and "CPU" in r.getMessage()
               for r in caplog.records)
