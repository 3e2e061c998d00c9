"""distill.importance and distill.extract: the scores are the loss's sensitivity to each unit,
and extraction keeps exactly the units it says (nothing removed: the teacher itself)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from bert import checkpoint, modeling
from conftest import REPO_ROOT
from distill import extract
from distill import importance as unit_importance
from tiny_bert import (classifier_logits, random_importance, tiny_config, write_sst2_task,
                       write_tiny_model)

TOLERANCE = 1e-5
SEQ = 16
EXAMPLES = 12
HEAD_SIZE = 4
ZEROED_HEAD = 1
TIMEOUT = 300


def full_sizes(config):
    return extract.Sizes(config.num_hidden_layers, config.num_attention_heads,
                         config.hidden_size, config.intermediate_size)


def write_student(folder, config, values, vocab_dir):
    """A model folder of extracted weights, with the teacher's vocabulary."""
    checkpoint.write_model_folder(str(folder), config, str(vocab_dir / "vocab.txt"), values,
                                  step="test", source="extract")
    return folder


class Flags:
    """The importance flags of the command lines, for calling the library directly."""

    def __init__(self, data_dir, examples=EXAMPLES):
        self.task_name = "SST-2"
        self.data_dir = str(data_dir)
        self.importance = None
        self.importance_examples = examples
        self.max_seq_length = SEQ
        self.cased = False


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 3-layer teacher whose head ZEROED_HEAD writes nothing (zero attention-output rows in
    every layer), its scores on a tiny SST-2 task, and the task."""
    root = tmp_path_factory.mktemp("extract")
    config = tiny_config(num_hidden_layers=3)
    data = write_sst2_task(root / "data", rows=EXAMPLES)
    _, values = write_tiny_model(root / "plain", config)
    zeroed = dict(values)
    rows = slice(ZEROED_HEAD * HEAD_SIZE, (ZEROED_HEAD + 1) * HEAD_SIZE)
    for layer in range(config.num_hidden_layers):
        name = f"bert/encoder/layer_{layer}/attention/output/dense/kernel"
        zeroed[name] = values[name].copy()
        zeroed[name][rows] = 0.0
    write_tiny_model(root / "teacher", config, zeroed)
    teacher_config, teacher_values, vocab = unit_importance.read_teacher(str(root / "teacher"))
    scores, _ = unit_importance.importance_for(Flags(data), str(root / "teacher"),
                                               teacher_config, teacher_values, vocab,
                                               str(root / unit_importance.IMPORTANCE_FILE))
    scores.save(str(root / unit_importance.IMPORTANCE_FILE))
    return root, config, values, zeroed, scores


def test_nothing_removed_is_the_teacher(world):
    root, config, values, _, _ = world
    student_config, student, selection = extract.extract(config, values, random_importance(config),
                                                         full_sizes(config))
    assert student_config.to_dict() == config.to_dict()
    assert sorted(student) == sorted(values)
    for name, value in values.items():
        assert student[name].dtype == value.dtype and np.array_equal(student[name], value), name
    folder = write_student(root / "identity", student_config, student, root / "plain")
    np.testing.assert_allclose(classifier_logits(student_config, str(folder)),
                               classifier_logits(config, str(root / "plain")), atol=TOLERANCE)


def test_importance_ranks_a_head_with_zeroed_output_last(world):
    _, config, _, _, scores = world
    for layer in range(config.num_hidden_layers):
        assert scores.heads[layer][ZEROED_HEAD] == 0.0
        assert scores.heads[layer].argmin() == ZEROED_HEAD
        assert scores.heads[layer].max() > 0.0
    assert np.all(scores.hidden > 0) and np.all(scores.neurons[0] > 0)
    assert scores.base_loss > 0 and scores.layers.shape == (config.num_hidden_layers,)


def test_removing_a_head_whose_output_is_zero_changes_nothing(world):
    root, config, _, zeroed, scores = world
    sizes = extract.Sizes(config.num_hidden_layers, config.num_attention_heads - 1,
                          config.hidden_size, config.intermediate_size)
    student_config, student, selection = extract.extract(config, zeroed, scores, sizes)
    assert all(list(heads) == [1 - ZEROED_HEAD] for heads in selection.heads)
    assert student_config.extra["attention_head_size"] == HEAD_SIZE
    folder = write_student(root / "one_head", student_config, student, root / "plain")
    np.testing.assert_allclose(classifier_logits(student_config, str(folder)),
                               classifier_logits(config, str(root / "teacher")), atol=TOLERANCE)


def test_hidden_extraction_keeps_every_shape_consistent(world):
    root, config, values, _, _ = world
    scores = random_importance(config, seed=3)
    scores.layers = np.array([0.1, 5.0, 1.0])  # keep layers 1 and 2, in that order
    sizes = extract.Sizes(2, 1, 5, 7)
    student_config, student, selection = extract.extract(config, values, scores, sizes)
    hidden = selection.hidden
    assert selection.layers == [1, 2] and len(hidden) == 5
    for name, value in student.items():
        if "LayerNorm" in name or name.endswith(("output/dense/bias", "pooler/dense/bias")):
            assert value.shape == (5,), name
    assert student["bert/embeddings/word_embeddings"].shape == (config.vocab_size, 5)
    assert student["output_weights"].shape == (2, 5)
    columns = np.concatenate([np.arange(h * HEAD_SIZE, (h + 1) * HEAD_SIZE)
                              for h in selection.heads[0]])
    np.testing.assert_array_equal(
        student["bert/encoder/layer_0/attention/self/query/kernel"],
        values["bert/encoder/layer_1/attention/self/query/kernel"][np.ix_(hidden, columns)])
    np.testing.assert_array_equal(
        student["bert/encoder/layer_1/output/dense/kernel"],
        values["bert/encoder/layer_2/output/dense/kernel"][np.ix_(selection.neurons[1],
                                                                    hidden)])
    np.testing.assert_array_equal(student["bert/pooler/dense/kernel"],
                                  values["bert/pooler/dense/kernel"][np.ix_(hidden, hidden)])
    # The folder alone builds the model: every variable loads strictly with its shape.
    folder = write_student(root / "narrow", student_config, student, root / "plain")
    reread = modeling.BertConfig.from_json_file(str(folder / "bert_config.json"))
    assert reread.head_size(0) == HEAD_SIZE and reread.hidden_size == 5
    assert np.all(np.isfinite(classifier_logits(reread, str(folder))))


def test_scores_are_the_loss_sensitivity_of_each_unit(world):
    """On one example E|∂L/∂ξ| = |∂L/∂ξ|: scaling a unit's weights by 1 ± ε is its mask, so a
    central difference of the loss must give the score."""
    root, config, _, zeroed, _ = world
    teacher_config, values, vocab = unit_importance.read_teacher(str(root / "teacher"))
    flags = Flags(root / "data", examples=1)
    scores = unit_importance.compute_importance(teacher_config, values,
                                                unit_importance.task_of(flags, vocab), 1, {})
    sample = unit_importance._Sample(unit_importance.task_of(flags, vocab), 1)
    layer = 1
    head_rows = slice(0, HEAD_SIZE)  # head 0 of layer 1: its attention-output rows
    neuron = 5
    dimension = 3
    reads = [f"bert/encoder/layer_{i}/{kernel}/kernel" for i in range(3)
             for kernel in ("attention/self/query", "attention/self/key",
                            "attention/self/value", "intermediate/dense")]
    units = [
        (scores.heads[layer][0],
         [(f"bert/encoder/layer_{layer}/attention/output/dense/kernel", head_rows)]),
        (scores.neurons[layer][neuron],
         [(f"bert/encoder/layer_{layer}/output/dense/kernel", slice(neuron, neuron + 1))]),
        (scores.hidden[dimension],
         [(name, slice(dimension, dimension + 1))
          for name in reads + ["bert/pooler/dense/kernel"]]),
    ]
    epsilon = 1e-2
    for score, rows in units:
        losses = []
        for sign in (1, -1):
            scaled = dict(values)
            for name, where in rows:
                scaled[name] = values[name].copy()
                scaled[name][where] *= 1 + sign * epsilon
            losses.append(unit_importance._mean_loss(teacher_config, scaled, sample, 2, False))
        derivative = (losses[0] - losses[1]) / (2 * epsilon)
        assert score > 1e-4
        assert abs(derivative) == pytest.approx(score, rel=0.05)


# Command line -----------------------------------------------------------------------------------
def run_extract(*args):
    return subprocess.run([sys.executable, "-m", "distill.extract"] + [str(a) for a in args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT)


def test_extract_command_writes_a_model_folder_and_its_dev_metric(world, tmp_path):
    root = world[0]
    out = tmp_path / "student"
    flags = [f"--model_dir={root / 'teacher'}", f"--output_dir={out}", "--num_hidden_layers=2",
             "--num_attention_heads=1", "--hidden_size=6", "--intermediate_size=8",
             "--task_name=SST-2", f"--data_dir={root / 'data'}", f"--max_seq_length={SEQ}",
             f"--importance_examples={EXAMPLES}"]
    process = run_extract(*flags)
    assert process.returncode == 0, process.stderr[-2000:]
    assert "dev eval_accuracy right after extraction" in process.stdout
    for name in ("bert_config.json", "vocab.txt", "provenance.json", "extraction.json",
                 "importance.npz", "importance.json", "eval_results.txt"):
        assert (out / name).is_file(), name
    assert "eval_accuracy = " in (out / "eval_results.txt").read_text()
    kept = json.loads((out / "extraction.json").read_text())
    assert len(kept["layers"]) == 2 and len(kept["hidden"]) == 6
    assert all(heads == [1 - ZEROED_HEAD] for heads in kept["heads"])
    config = modeling.BertConfig.from_json_file(str(out / "bert_config.json"))
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (2, 6, 8)
    # The same command again rewrites the folder from the scores it left there.
    again = run_extract(*flags)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "importance: reusing" in again.stderr and (out / "importance.npz").is_file()
    assert json.loads((out / "extraction.json").read_text()) == kept


def test_extract_command_refuses_a_size_above_the_teacher(world, tmp_path):
    root = world[0]
    process = run_extract(f"--model_dir={root / 'teacher'}", f"--output_dir={tmp_path / 'out'}",
                          "--num_hidden_layers=2", "--num_attention_heads=3", "--hidden_size=6",
                          "--intermediate_size=8",
                          f"--importance={root / unit_importance.IMPORTANCE_FILE}")
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert lines[-1].startswith("distill.extract: error: --num_attention_heads=3"), lines[-1]
    assert "Traceback" not in process.stderr
    assert not (tmp_path / "out").exists()
