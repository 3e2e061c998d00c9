"""Task distillation: layer maps, losses that vanish for a student equal to its teacher, a tiny
distillation whose loss terms fall, and a student model folder that stands on its own."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoint, methods, modeling
from bert.classifier import classifier_head
from bert.errors import UsageError
from conftest import REPO_ROOT
from bert.teacher import uniform_layer_map
from distill.method import DistillHooks, DistillSettings
from tiny_bert import (classifier_logits, example_inputs, initializer_weights, random_weights,
                       tiny_config, write_sst2_task, write_tiny_model)

tf1 = tf.compat.v1

SEQ = 16
ROWS = 24
BATCH = 8
EPOCHS = 14
TRAIN_STEPS = ROWS // BATCH * EPOCHS
TERMS = ("logit", "hidden", "attention")
STUDENT_SEED = 1  # seeded weights: the initialisers draw new ones in every run
TIMEOUT = 300


def student_config():
    """1 layer, hidden 8 (2 heads): half as deep and wide as the tests' 16-wide teacher."""
    return tiny_config(hidden_size=8, num_hidden_layers=1, intermediate_size=16,
                       max_position_embeddings=64)


@pytest.mark.parametrize("student, teacher, expected", [
    (4, 6, [2, 3, 5, 6]), (2, 6, [3, 6]), (1, 2, [2]), (3, 3, [1, 2, 3]), (4, 1, [1, 1, 1, 1])])
def test_uniform_layer_map(student, teacher, expected):
    assert uniform_layer_map(student, teacher) == expected


def test_layer_map_is_checked():
    settings = DistillSettings(tiny_config(), "unused", layer_map=[1, 3])
    with pytest.raises(UsageError, match="--layer_map=1,3"):
        settings.validate(tiny_config())
    with pytest.raises(UsageError, match="--temperature"):
        DistillSettings(tiny_config(), "unused", temperature=0.0).validate(tiny_config())


def distill_terms(teacher_dir, teacher_config, student_config_, student_values,
                  task_weight=1.0):
    """The hooks' terms and extra loss for a student with ``student_values`` on fixed inputs."""
    ids, mask, types = example_inputs(teacher_config.vocab_size)
    with tf.Graph().as_default():
        features = {"input_ids": tf.constant(ids), "input_mask": tf.constant(mask),
                    "segment_ids": tf.constant(types), "label_ids": tf.constant([0, 1, 1])}
        model = modeling.BertModel(student_config_, True, features["input_ids"],
                                   features["input_mask"], features["segment_ids"])
        logits = classifier_head(model.pooled_output, 2, False)
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=features["label_ids"], logits=logits)
        graph = methods.ClassifierGraph(model, logits, tf.argmax(logits, -1), per_example,
                                        features, True, False)
        settings = DistillSettings(teacher_config, checkpoint.resolve_checkpoint(teacher_dir),
                                   temperature=2.0, task_weight=task_weight)
        hooks = DistillHooks(settings, student_config_)
        # The objective the classifier minimises: the weighted task loss plus the method's terms.
        objective = (hooks.task_loss_weight * tf.reduce_mean(per_example)
                     + hooks.extra_loss(graph))
        assignments = {v.op.name: v for v in tf1.global_variables()}
        with tf1.Session() as session:
            session.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
            for name, value in student_values.items():
                if name in assignments:
                    assignments[name].load(value, session)
            return session.run([hooks.terms, objective, tf.reduce_mean(per_example)])


def test_losses_vanish_when_the_student_is_the_teacher(tmp_path):
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    _, values = write_tiny_model(tmp_path / "teacher", config)
    terms, objective, task = distill_terms(tmp_path / "teacher", config, config, values,
                                           task_weight=0.5)
    for name in TERMS:
        assert abs(terms[name]) < 1e-10, (name, terms[name])
    assert objective == pytest.approx(0.5 * task, rel=1e-5)  # only task_weight·task is left
    other = {name: value * 1.5 for name, value in values.items()}
    terms, _, _ = distill_terms(tmp_path / "teacher", config, config, other)
    assert all(terms[name] > 1e-4 for name in TERMS), terms


def test_narrow_student_gets_projections_and_averaged_heads(tmp_path):
    teacher_config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    write_tiny_model(tmp_path / "teacher", teacher_config)
    narrow = tiny_config(hidden_size=4, num_hidden_layers=1, num_attention_heads=1,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    terms, _, _ = distill_terms(tmp_path / "teacher", teacher_config, narrow,
                                initializer_weights(narrow, 2))
    assert all(np.isfinite(terms[name]) and terms[name] > 0 for name in TERMS), terms


def run_distill(*args):
    return subprocess.run([sys.executable, "-m", "distill.run_distill"] + [str(a) for a in args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT)


def scalars(folder, tag):
    """[(step, value)] of a TensorBoard scalar in ``folder``'s training events."""
    found = []
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in tf1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    found.append((event.step, value.simple_value))
    return sorted(found)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """A 2-layer, 16-wide random teacher (random, so its outputs are far from the student's)
    distilled into a 1-layer, 8-wide student for TRAIN_STEPS."""
    root = tmp_path_factory.mktemp("distill")
    teacher_config = tiny_config(hidden_size=16, num_hidden_layers=2, intermediate_size=32,
                                 max_position_embeddings=64)
    write_tiny_model(root / "teacher", teacher_config, random_weights(teacher_config))
    config = student_config()
    write_tiny_model(root / "student", config, random_weights(config, seed=STUDENT_SEED))
    write_sst2_task(root / "data", rows=ROWS)
    flags = ["--task_name=SST-2", f"--data_dir={root / 'data'}",
             f"--init_checkpoint={root / 'student'}", f"--teacher_model_dir={root / 'teacher'}",
             f"--output_dir={root / 'out'}", f"--max_seq_length={SEQ}", "--do_train",
             "--do_eval", f"--train_batch_size={BATCH}", "--learning_rate=3e-3",
             "--warmup_proportion=0", "--log_every_n_steps=1", "--save_checkpoints_steps=1000"]
    process = run_distill(*flags, f"--num_train_epochs={EPOCHS}")
    assert process.returncode == 0, process.stderr[-3000:]
    return root, flags


def test_distillation_loss_terms_fall(distilled):
    root, _ = distilled
    for name in TERMS:
        values = [value for _, value in scalars(root / "out", f"distill_{name}_loss")]
        assert len(values) >= TRAIN_STEPS // 2, name
        first, last = np.mean(values[:3]), np.mean(values[-3:])
        assert last < 0.8 * first, (name, first, last)


def test_model_folder_is_the_plain_student(distilled):
    root, _ = distilled
    model_dir = root / "out" / "model"
    names = set(checkpoint.list_checkpoint(str(model_dir)))
    assert names - {"global_step"} and all(
        name.startswith("bert/") or name in ("output_weights", "output_bias", "global_step")
        for name in names), sorted(names)
    assert not any(name.startswith(("distill/", "teacher/")) for name in names)
    projections = [name for name in checkpoint.list_checkpoint(str(root / "out"))
                   if name.startswith("distill/")]
    assert projections  # the training checkpoint had them
    config = modeling.BertConfig.from_json_file(str(model_dir / "bert_config.json"))
    assert config.hidden_size == student_config().hidden_size
    logits = classifier_logits(config, str(model_dir))  # every variable from the folder alone
    assert np.all(np.isfinite(logits))
    assert "eval_accuracy = " in (root / "out" / "eval_results.txt").read_text()


def test_rerun_with_more_epochs_is_refused_and_changes_nothing(distilled):
    """A longer run would mix two learning-rate schedules: the finished folder continues only
    with the settings it was started with (another --output_dir trains the longer run)."""
    root, flags = distilled
    before = {path: path.read_bytes() for path in (root / "out").rglob("*") if path.is_file()}
    process = run_distill(*flags, f"--num_train_epochs={EPOCHS + 1}")
    assert process.returncode == 1, process.stderr[-3000:]
    line = process.stderr.strip().splitlines()[-1]
    assert f"num_train_epochs: {float(EPOCHS)} -> {float(EPOCHS + 1)}" in line, line
    after = {path: path.read_bytes() for path in (root / "out").rglob("*") if path.is_file()}
    assert after == before
    steps = [step for step, _ in scalars(root / "out", "distill_hidden_loss")]
    assert steps == sorted(set(steps))  # no step trained twice


def test_bad_flag_is_one_line(distilled, tmp_path):
    root, flags = distilled
    flags = [f for f in flags if not f.startswith("--output_dir")]
    process = run_distill(*flags, f"--output_dir={tmp_path / 'bad'}", "--layer_map=1,2")
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert lines[-1].startswith("distill.run_distill: error: --layer_map=1,2"), lines[-3:]
    assert "Traceback" not in process.stderr and not (tmp_path / "bad").exists()
