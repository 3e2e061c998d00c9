"""Stopped by SIGTERM mid-training and run again with the same command, run_distill and
TR-BERT's RL stage end where the uninterrupted command ends: the same dev metrics and the same
final weights (the resumed input stream continues, dropout and sampling are keyed on the step).
Slow (a minute each): test_resume_equality.py keeps the same check in CI's bounded set."""
import glob
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoint
from conftest import REPO_ROOT
from tiny_bert import tiny_config, write_small_model, write_sst2_task, write_tiny_model

TIMEOUT = 300
ROWS = 400  # batch 8: 50 steps an epoch, long enough to stop in the middle
SEQ = 16
CHECKPOINT_EVERY = 10
POLL_SECONDS = 0.05
EXIT_SIGTERM = 128 + signal.SIGTERM
METRIC_LINE = re.compile(r"^(eval_\w+) = (\S+)$", re.MULTILINE)


def run(args):
    process = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=TIMEOUT)
    assert process.returncode == 0, process.stderr[-3000:]
    return process


def stopped_then_resumed(args, training_dir):
    """Run ``args``; SIGTERM once its first checkpoint after step 0 is written; the same
    command again. The stop must land mid-training, or the test proves nothing."""
    process = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + TIMEOUT
    while process.poll() is None and time.time() < deadline and not [
            path for path in glob.glob(os.path.join(training_dir, "model.ckpt-*.index"))
            if not path.endswith("-0.index")]:
        time.sleep(POLL_SECONDS)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == EXIT_SIGTERM, stderr[-3000:]
    assert "run the same command again to resume" in stderr.strip().splitlines()[-1]
    run(args)


def metrics(results_file):
    with open(results_file) as handle:
        return {name: float(value) for name, value in METRIC_LINE.findall(handle.read())}


def weights(model_dir):
    reader = tf.train.load_checkpoint(checkpoint.resolve_checkpoint(str(model_dir)))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def assert_same_run(whole_dir, resumed_dir, results_name="eval_results.txt"):
    whole, resumed = (metrics(os.path.join(folder, results_name))
                      for folder in (whole_dir, resumed_dir))
    assert whole and whole == pytest.approx(resumed, abs=1e-6)
    whole_weights, resumed_weights = weights(whole_dir / "model"), weights(resumed_dir / "model")
    assert whole_weights.keys() == resumed_weights.keys()
    for name, value in whole_weights.items():
        np.testing.assert_allclose(value, resumed_weights[name], atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_run_distill_resumed_after_sigterm_equals_the_uninterrupted_run(tmp_path):
    teacher = tiny_config(hidden_size=16, num_hidden_layers=2, intermediate_size=32,
                          max_position_embeddings=64)
    write_tiny_model(tmp_path / "teacher", teacher)
    write_small_model(tmp_path / "student", num_layers=1, num_labels=2)
    write_sst2_task(tmp_path / "data", rows=ROWS)

    def command(output):
        return [sys.executable, "-m", "distill.run_distill", "--task_name=SST-2",
                f"--data_dir={tmp_path / 'data'}", f"--init_checkpoint={tmp_path / 'student'}",
                f"--teacher_model_dir={tmp_path / 'teacher'}", f"--output_dir={output}",
                f"--max_seq_length={SEQ}", "--do_train", "--do_eval", "--train_batch_size=8",
                "--learning_rate=1e-3", "--num_train_epochs=3",
                f"--save_checkpoints_steps={CHECKPOINT_EVERY}"]

    run(command(tmp_path / "whole"))
    stopped_then_resumed(command(tmp_path / "resumed"), tmp_path / "resumed")
    assert_same_run(tmp_path / "whole", tmp_path / "resumed")


@pytest.mark.slow
def test_tr_bert_rl_resumed_after_sigterm_equals_the_uninterrupted_run(tmp_path):
    write_small_model(tmp_path / "model", num_layers=3, num_labels=2)
    write_sst2_task(tmp_path / "data", rows=ROWS)

    def command(root, *mode):
        return [sys.executable, "-m", "tr_bert.run_tr_bert", "--task_name=SST-2",
                f"--data_dir={tmp_path / 'data'}", f"--output_dir={root}",
                f"--max_seq_length={SEQ}", "--reduction_layers=0,1", "--train_batch_size=8",
                "--eval_batch_size=8", "--num_train_epochs=2", "--policy_learning_rate=0.01",
                f"--save_checkpoints_steps={CHECKPOINT_EVERY}", *mode]

    for name in ("whole", "resumed"):
        root = tmp_path / name
        run(command(root, f"--init_checkpoint={tmp_path / 'model'}", "--do_eval_grad",
                    "--do_eval_logits"))
        run(command(root, f"--init_checkpoint={tmp_path / 'model'}", "--do_train",
                    "--train_init"))
    rl_mode = ("--do_train", "--train_rl")
    run(command(tmp_path / "whole", f"--init_checkpoint={tmp_path / 'whole/train_init/model'}",
                *rl_mode))
    resumed = tmp_path / "resumed"
    stopped_then_resumed(command(resumed, f"--init_checkpoint={resumed / 'train_init/model'}",
                                 *rl_mode), resumed / "train_rl" / "training")
    assert_same_run(tmp_path / "whole" / "train_rl", resumed / "train_rl")
