"""A cluster job that goes wrong: a malformed TF_CONFIG, a task that never starts, a stop signal
while waiting for it, and a multi_worker job whose tasks were killed (kill -9) and restarted.

Every task is a `bert.run_classifier` process of the tiny model on 127.0.0.1 (free ports).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from bert import cluster_sync
from conftest import REPO_ROOT
from tiny_bert import write_small_model, write_sst2_task

LOCALHOST = "127.0.0.1"
PROGRAM = "run_classifier"
GLOBAL_BATCH = 8
TRAIN_EXAMPLES = 40  # write_sst2_task's rows
SHORT_WAIT_SECONDS = 2  # BERT_CLUSTER_WAIT_SECONDS where the wait is meant to time out
PROCESS_SECONDS = 45  # one process that fails or stops before training
CLUSTER_RUN_SECONDS = 90  # a chief and a worker training together, start-up included
SIGTERM_SECONDS = 10  # how soon a SIGTERM during the wait must end the process
POLL_SECONDS = 0.1
# The killed job: long enough that it is killed between its first checkpoint and its end.
TRAIN_STEPS = 200
CHECKPOINT_STEPS = 50
# Where TensorFlow's MonitoredTrainingSession saves a multi_worker worker's own checkpoints.
WORKER_CHECKPOINTS = "tmp_worker_0"
EXIT_INPUT_ERROR, EXIT_SIGTERM = 1, 128 + signal.SIGTERM


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster_recovery")
    write_small_model(root / "model", num_layers=1)
    write_sst2_task(root / "data")
    return root


def free_port():
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


def new_cluster(*kinds):
    """{kind: [address]}: one task of each kind, each on a fresh port."""
    return {kind: [f"{LOCALHOST}:{free_port()}"] for kind in kinds}


def tf_config(cluster, kind):
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": 0}})


def command_line(root, output, mode, **overrides):
    values = dict(task_name="SST-2", data_dir=root / "data", vocab_file=root / "model/vocab.txt",
                  bert_config_file=root / "model/bert_config.json", init_checkpoint=root / "model",
                  output_dir=root / output, max_seq_length=16, train_batch_size=GLOBAL_BATCH,
                  learning_rate=1e-3, num_train_epochs=2, log_every_n_steps=TRAIN_STEPS,
                  do_train=True, distribution=mode)
    values.update(overrides)
    return ([sys.executable, "-m", f"bert.{PROGRAM}"]
            + [f"--{key}={value}" for key, value in values.items()])


@pytest.fixture
def launch(tmp_path):
    """``launch(name, command, tf_config_text, wait_seconds=None)`` starts a process (stderr in
    tmp_path/<name>.log); every process still running at the end of the test is killed."""
    started = []

    def start(name, command, config_text, wait_seconds=None):
        env = dict(os.environ, TF_CONFIG=config_text)
        env.pop(cluster_sync.WAIT_SECONDS_ENV, None)
        if wait_seconds is not None:
            env[cluster_sync.WAIT_SECONDS_ENV] = str(wait_seconds)
        with open(tmp_path / f"{name}.log", "w") as log:
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stderr=log,
                                       stdout=subprocess.DEVNULL)
        process.log = tmp_path / f"{name}.log"
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait()


def last_line(process):
    return process.log.read_text().strip().splitlines()[-1]


def error_lines(process):
    return [line for line in process.log.read_text().splitlines()
            if line.startswith(f"{PROGRAM}: error:") or "Traceback" in line]


def wait_for_log(process, text, seconds):
    """Wait until ``text`` appears in the process's stderr (False: it exited or time ran out)."""
    deadline = time.time() + seconds
    while time.time() < deadline and process.poll() is None:
        if text in process.log.read_text():
            return True
        time.sleep(POLL_SECONDS)
    return False


# TF_CONFIG's shape ------------------------------------------------------------------------------
BAD_SHAPES = [
    ("task_string", {"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": "chief"},
     "TF_CONFIG: 'task' must be an object like {\"type\": \"chief\", \"index\": 0}, got "
     "\"chief\""),
    ("cluster_number", {"cluster": {"chief": 5}, "task": {"type": "chief", "index": 0}},
     "TF_CONFIG: cluster 'chief' must be a list of \"host:port\" addresses, got 5"),
    ("index_string", {"cluster": {"chief": ["h:1"]}, "task": {"type": "chief", "index": "0"}},
     "TF_CONFIG: task 'index' must be a whole number >= 0, got \"0\""),
]


def test_malformed_tf_config_is_one_line_naming_the_entry(tiny_run, launch):
    """Three processes at once: each fails before writing anything, in one line."""
    processes = {name: launch(name, command_line(tiny_run, name, "multi_worker"),
                              json.dumps(config))
                 for name, config, _ in BAD_SHAPES}
    for name, _, message in BAD_SHAPES:
        process = processes[name]
        assert process.wait(timeout=PROCESS_SECONDS) == EXIT_INPUT_ERROR, process.log.read_text()
        assert last_line(process) == f"{PROGRAM}: error: {message}"
        assert error_lines(process) == [last_line(process)]  # one line, no traceback
        assert not (tiny_run / name).exists()


# A task that never starts -----------------------------------------------------------------------
@pytest.mark.parametrize("mode, kinds, missing", [
    ("multi_worker", ("chief", "worker"), "worker"),
    ("parameter_server", ("chief", "ps"), "ps"),
])
def test_wait_for_a_missing_task_times_out_naming_it(tiny_run, launch, mode, kinds, missing):
    cluster = new_cluster(*kinds)
    start = time.time()
    chief = launch("chief", command_line(tiny_run, f"alone_{mode}", mode),
                   tf_config(cluster, "chief"), wait_seconds=SHORT_WAIT_SECONDS)
    assert chief.wait(timeout=PROCESS_SECONDS) == EXIT_INPUT_ERROR, chief.log.read_text()
    assert last_line(chief) == (
        f"{PROGRAM}: error: waited {SHORT_WAIT_SECONDS}s for {missing}:0 "
        f"({cluster[missing][0]}) of TF_CONFIG's cluster; start it (the same command with its "
        f"own TF_CONFIG task) or set {cluster_sync.WAIT_SECONDS_ENV} to wait longer")
    assert error_lines(chief) == [last_line(chief)]
    assert time.time() - start < PROCESS_SECONDS


def test_sigterm_while_waiting_for_a_task_exits_143(tiny_run, launch):
    cluster = new_cluster("chief", "worker")
    chief = launch("chief", command_line(tiny_run, "stopped", "multi_worker"),
                   tf_config(cluster, "chief"))  # the default wait: minutes
    assert wait_for_log(chief, "waiting up to", PROCESS_SECONDS), chief.log.read_text()
    chief.send_signal(signal.SIGTERM)
    assert chief.wait(timeout=SIGTERM_SECONDS) == EXIT_SIGTERM, chief.log.read_text()
    assert last_line(chief) == (
        f"{PROGRAM}: error: stopped by SIGTERM while waiting for worker:0 "
        f"({cluster['worker'][0]}) (no step run); run the same command again to resume")


# A killed job resumes ---------------------------------------------------------------------------
def steps_run(process):
    """(steps this process ran, global step it reached): ProgressHook's last line."""
    lines = [line for line in process.log.read_text().splitlines()
             if "training steps (global step" in line]
    assert lines, process.log.read_text()[-3000:]
    ran, reached = lines[-1].split(" ran ")[1].split(" training steps (global step ")
    return int(ran), int(reached.rstrip(")"))


def start_job(tiny_run, launch, attempt):
    """A chief and a worker on fresh ports, the same command each time."""
    cluster = new_cluster("chief", "worker")
    flags = dict(num_train_epochs=TRAIN_STEPS * GLOBAL_BATCH // TRAIN_EXAMPLES,
                 save_checkpoints_steps=CHECKPOINT_STEPS)
    return {kind: launch(f"{kind}_{attempt}", command_line(tiny_run, f"job_{kind}",
                                                           "multi_worker", **flags),
                         tf_config(cluster, kind))
            for kind in cluster}


def wait_for_a_checkpoint(folder, processes, seconds):
    """Wait until ``folder`` holds a checkpoint after step 0 (fail if the job ends first)."""
    deadline = time.time() + seconds
    while time.time() < deadline and all(p.poll() is None for p in processes.values()):
        path = tf.train.latest_checkpoint(str(folder))
        if path and not path.endswith("-0"):
            return
        time.sleep(POLL_SECONDS)
    pytest.fail("no checkpoint after step 0: " + processes["chief"].log.read_text()[-3000:])


def test_killed_chief_and_worker_resume_from_the_chief_checkpoint(tiny_run, launch):
    chief_dir = tiny_run / "job_chief"
    first = start_job(tiny_run, launch, "first")
    wait_for_a_checkpoint(chief_dir, first, CLUSTER_RUN_SECONDS)
    for process in first.values():
        process.kill()  # SIGKILL: nothing is saved on the way out
    for process in first.values():
        process.wait()
    killed_at = int(tf.train.latest_checkpoint(str(chief_dir)).rsplit("-", 1)[1])
    assert 0 < killed_at < TRAIN_STEPS

    again = start_job(tiny_run, launch, "again")
    deadline = time.time() + CLUSTER_RUN_SECONDS
    for process in again.values():
        status = process.wait(timeout=max(1.0, deadline - time.time()))
        assert status == 0, process.log.read_text()[-3000:]
    assert tf.train.latest_checkpoint(str(chief_dir)).endswith(f"-{TRAIN_STEPS}")
    chief_steps, worker_steps = steps_run(again["chief"]), steps_run(again["worker"])
    assert chief_steps == worker_steps  # synchronous: both resumed at the same step
    assert chief_steps[1] == TRAIN_STEPS and chief_steps[0] <= TRAIN_STEPS - CHECKPOINT_STEPS
    # The worker stepped from the chief's restored variables: both end with the same values.
    chief_end = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(chief_dir)))
    worker_end = tf.train.load_checkpoint(tf.train.latest_checkpoint(
        str(tiny_run / "job_worker" / WORKER_CHECKPOINTS)))
    names = chief_end.get_variable_to_shape_map()
    assert names == worker_end.get_variable_to_shape_map()
    for name in names:
        np.testing.assert_array_equal(chief_end.get_tensor(name), worker_end.get_tensor(name),
                                      err_msg=name)
