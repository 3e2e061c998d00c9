"""FLOP's objective: parameter counting, ŝ, target warm-up, the multipliers' ascent, best-keeping,
and refusal of bad flags."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoint, classifier, teacher
from bert.errors import UsageError
from conftest import REPO_ROOT
from flop import factorize
from flop import method as flop_run
from flop import run_classifier as flop_cli
from flop.method import FlopMethod, FlopSettings
from tiny_bert import tiny_config, write_factorized_model, write_tiny_model

tf1 = tf.compat.v1

# Gate value E[z ≠ 0] = sigmoid(log_alpha − log(0.1/1.1)): log_alpha = log(0.1/1.1) gives 0.5.
HALF_OPEN = math.log(0.1 / 1.1)
WIDE_OPEN = 30.0


def _hand_config():
    """1 layer, hidden 4, intermediate 8, every kernel factorized at full rank 4."""
    # A wide init: with BERT's 0.02 a 4-wide model's gradients vanish below Adam's epsilon.
    config = tiny_config(hidden_size=4, num_hidden_layers=1, intermediate_size=8,
                         initializer_range=0.5)
    keys = factorize.encoder_kernel_keys(1)
    return factorize.factorized_config(config, {key: 4 for key in keys})


def _build(config, method, is_training, batch=2, seq=4):
    """(this graph's FLOP hooks, the classifier graph, the task loss)."""
    ids = np.arange(batch * seq, dtype=np.int32).reshape([batch, seq]) % 11 + 5
    features = {"input_ids": tf.constant(ids),
                "input_mask": tf.ones([batch, seq], tf.int32),
                "segment_ids": tf.zeros([batch, seq], tf.int32),
                "label_ids": tf.zeros([batch], tf.int32)}
    hooks = method.build(config, is_training)
    graph = classifier.create_model(config, is_training, features, 2, False, hooks)
    return hooks, graph, tf.reduce_mean(graph.per_example_loss)


def test_expected_and_deterministic_sparsity_by_hand():
    # Gated parameters, (in + out)·rank per kernel:
    #   query, key, value, attention output: (4 + 4)·4 = 32 each  -> 128
    #   intermediate 4→8 and output 8→4:     (4 + 8)·4 = 48 each  ->  96      total 224
    # query's gates wide open (E[L0] = 4), every other gate half open (E[L0] = 2 of 4):
    #   kept = 32 + (32·3 + 48·2)/2 = 32 + 96 = 128  ->  ŝ = 1 − 128/224 = 3/7
    # Deterministic gates zero round(4 − 2) = 2 ranks of each half-open kernel: also 3/7.
    config = _hand_config()
    with tf.Graph().as_default():
        tf1.train.get_or_create_global_step()
        method = FlopMethod(FlopSettings(target_sparsity=0.5))
        hooks, graph, _ = _build(config, method, is_training=False)
        hooks.create_variables(graph)
        kernels = {kernel.key: kernel for kernel in hooks.gated_kernels}
        assert len(kernels) == 6
        assert sum(kernel.gated_params for kernel in kernels.values()) == 224
        assert (kernels["layer_0/intermediate/dense"].in_width,
                kernels["layer_0/intermediate/dense"].out_width) == (4, 8)
        assigns = [kernel.gate.log_alpha.assign(tf.fill([4], WIDE_OPEN if key.endswith("query")
                                                        else HALF_OPEN))
                   for key, kernel in kernels.items()]
        metrics = hooks.eval_metric_ops(graph)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            session.run(tf1.local_variables_initializer())
            session.run(assigns)
            s_hat = session.run(hooks.expected_sparsity)
            session.run(metrics["deterministic_sparsity"][1])
            deterministic = session.run(metrics["deterministic_sparsity"][0])
    assert s_hat == pytest.approx(3 / 7, abs=1e-5)
    assert deterministic == pytest.approx(3 / 7, abs=1e-6)


def test_target_sparsity_warms_up_linearly():
    with tf.Graph().as_default():
        step = tf1.placeholder(tf.int64, [])
        target = flop_run.target_sparsity_schedule(step, 0.6, 100)
        immediate = flop_run.target_sparsity_schedule(step, 0.6, 0)
        with tf1.Session() as session:
            values = [session.run(target, {step: s}) for s in (0, 50, 100, 400)]
            assert session.run(immediate, {step: 0}) == pytest.approx(0.6)
    np.testing.assert_allclose(values, [0.0, 0.3, 0.6, 0.6], atol=1e-6)


def _one_train_step(settings, model_learning_rate=0.0):
    """λ1, λ2, log_alphas and one model kernel before and after a single training step."""
    config = _hand_config()
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        tf1.train.get_or_create_global_step()
        hooks, graph, task_loss = _build(config, FlopMethod(settings), is_training=True)
        hooks.create_variables(graph)
        total_loss = task_loss + hooks.extra_loss(graph)
        train_op = classifier._train_op(hooks, graph, task_loss, total_loss,
                                        model_learning_rate, num_train_steps=10,
                                        num_warmup_steps=0)
        kernel = next(v for v in tf1.global_variables()
                      if v.op.name == "bert/encoder/layer_0/attention/self/query_p/kernel")
        watched = [hooks.lambdas[0], hooks.lambdas[1], hooks.gated_kernels[0].gate.log_alpha,
                   kernel, hooks.expected_sparsity]
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            before = session.run(watched)
            session.run(train_op)
            after = session.run(watched[:4])
    return before, after


def test_multipliers_ascend_when_sparsity_is_above_target():
    # log_alpha ≈ 0 keeps each rank with probability 0.917, so ŝ ≈ 0.083 > t = 0 at step 0.
    before, after = _one_train_step(FlopSettings(target_sparsity=0.5,
                                                 target_sparsity_warmup=100))
    assert before[4] > 0.05
    assert before[0] == 0.0 and after[0] > 0.0  # λ1 moves along +(ŝ − t)
    assert after[1] > 0.0  # (ŝ − t)² ≥ 0: λ2 only grows
    assert not np.allclose(before[2], after[2])  # the gates train
    np.testing.assert_array_equal(before[3], after[3])  # learning_rate 0: the model is frozen


def test_multipliers_descend_when_sparsity_is_below_target():
    before, after = _one_train_step(FlopSettings(target_sparsity=0.5), model_learning_rate=1e-3)
    assert after[0] < 0.0  # ŝ ≈ 0.083 < t = 0.5
    assert not np.allclose(before[3], after[3])  # a positive learning rate trains the model


def test_distillation_vanishes_when_student_matches_teacher():
    with tf.Graph().as_default():
        student = tf.constant([[1.0, -2.0, 0.5]])
        loss = teacher.soft_logit_loss(student, tf.constant([[1.0, -2.0, 0.5]]), 2.0, False)
        other = teacher.soft_logit_loss(student, tf.constant([[3.0, 0.0, 0.0]]), 2.0, False)
        with tf1.Session() as session:
            value, gradient, other_gradient = session.run(
                [loss, tf.gradients(loss, student)[0], tf.gradients(other, student)[0]])
    assert value == pytest.approx(0.0, abs=1e-6)  # KL: nothing left to learn
    np.testing.assert_allclose(gradient, 0.0, atol=1e-6)
    assert np.abs(other_gradient).max() > 0.1


def test_best_keeps_only_checkpoints_near_the_target(tmp_path):
    config, _ = write_tiny_model(tmp_path / "model")
    prefix = checkpoint.resolve_checkpoint(str(tmp_path / "model"))
    exporter = flop_run.BestSparseExporter(str(tmp_path / "run"), config,
                                           str(tmp_path / "model" / "vocab.txt"), "eval_f1", 0.5)

    def export(sparsity, f1):
        return exporter.export(None, None, prefix, {"deterministic_sparsity": sparsity,
                                                    "eval_f1": f1, "global_step": 7}, False)

    assert export(0.45, 0.9) is None  # 0.05 from the target
    assert not (tmp_path / "run" / "best").exists()
    assert export(0.51, 0.7) == str(tmp_path / "run" / "best")
    assert export(0.49, 0.6) is None  # worse metric
    assert export(0.50, 0.8) is not None
    best = json.loads((tmp_path / "run" / "best" / flop_run.BEST_EVAL_FILE).read_text())
    assert best["eval_f1"] == pytest.approx(0.8)
    assert os.path.isfile(tmp_path / "run" / "best" / "bert_model.ckpt.index")


def test_resume_picks_the_newest_run(tmp_path):
    for name in ("2020-06-02-12:15:59", "2021-01-01-00:00:00", "notes"):
        (tmp_path / name).mkdir()
    assert flop_cli.newest_run_dir(str(tmp_path)).endswith("2021-01-01-00:00:00")
    with pytest.raises(UsageError, match="--resume"):
        flop_cli.newest_run_dir(str(tmp_path / "notes"))


def _run_cli(tmp_path, model_dir, *extra):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "flop.run_classifier", "--task_name=MRPC", "--do_train",
         "--do_eval", f"--data_dir={data}", f"--vocab_file={model_dir / 'vocab.txt'}",
         f"--bert_config_file={model_dir / 'bert_config.json'}",
         f"--init_checkpoint={model_dir}", f"--output_dir={tmp_path / 'out'}",
         "--max_seq_length=16", *extra],
        cwd=REPO_ROOT, capture_output=True, text=True)


def _last_line(result):
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def factorized_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_factorized_model(root)
    return root


def test_cli_rejects_target_sparsity_one(tmp_path, factorized_dir):
    result = _run_cli(tmp_path, factorized_dir / "fact", "--target_sparsity=1.0")
    assert result.returncode != 0
    assert "--target_sparsity=1.0: must be in [0, 1)" in _last_line(result)
    assert not (tmp_path / "out").exists()  # no run folder for a run that never starts


def test_cli_rejects_non_factorized_checkpoint(tmp_path, factorized_dir):
    result = _run_cli(tmp_path, factorized_dir / "dense", "--target_sparsity=0.5")
    assert result.returncode != 0
    assert "--init_checkpoint=" in _last_line(result)
    assert "not factorized" in _last_line(result)
