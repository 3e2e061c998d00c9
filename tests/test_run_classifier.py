"""Fine-tuning flow: a real short fine-tune, resuming, full-set metrics, and bad input."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoint, classifier, convert_hf, metrics, modeling
from bert.errors import InputError
from conftest import REPO_ROOT
from tiny_bert import write_small_model, write_sst2_task

tf1 = tf.compat.v1


def run(**values):
    """The library driven by a settings object, as every entry point drives it."""
    settings = classifier.ClassifierSettings(**{key: str(value) if isinstance(value, os.PathLike)
                                                else value for key, value in values.items()})
    return classifier.Classifier(settings).run()


def read_eval_results(output_dir):
    results = {}
    with open(os.path.join(output_dir, "eval_results.txt")) as handle:
        for line in handle:
            if " = " in line:
                key, value = line.strip().split(" = ")
                results[key] = float(value)
    return results


@pytest.fixture(scope="module")
def minilm_dir(hf_model_dir, tmp_path_factory):
    return convert_hf.convert(str(hf_model_dir), str(tmp_path_factory.mktemp("minilm")))


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer BERT in Google's format (hidden 16, 64 positions), initialiser weights."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    write_small_model(folder)
    return folder


def tiny_flags(model_dir, data_dir, output_dir, **overrides):
    values = dict(task_name="SST-2", data_dir=data_dir, vocab_file=f"{model_dir}/vocab.txt",
                  bert_config_file=f"{model_dir}/bert_config.json", init_checkpoint=model_dir,
                  output_dir=output_dir, max_seq_length=16, train_batch_size=8,
                  eval_batch_size=8, learning_rate=1e-3, num_train_epochs=1,
                  save_checkpoints_steps=5, do_train=True, do_eval=True)
    values.update(overrides)
    return values


def test_short_real_fine_tune_beats_majority(minilm_dir, glue_dir, tmp_path):
    """SST-2, 640 real examples: the dev loss falls below chance and accuracy beats majority."""
    output = tmp_path / "sst2"
    result = run(task_name="SST-2", data_dir=glue_dir / "SST-2",
                 vocab_file=f"{minilm_dir}/vocab.txt",
                 bert_config_file=f"{minilm_dir}/bert_config.json", init_checkpoint=minilm_dir,
                 output_dir=output, max_seq_length=64, train_batch_size=32, eval_batch_size=64,
                 learning_rate=5e-5, num_train_epochs=1, max_train_examples=640, do_train=True,
                 do_eval=True)
    labels = [int(line.split("\t")[1]) for line in
              (glue_dir / "SST-2" / "dev.tsv").read_text().splitlines()[1:]]
    majority = max(np.mean(labels), 1 - np.mean(labels))
    assert result["global_step"] == 20
    assert result["eval_loss"] < np.log(2) - 0.1  # an untrained head sits at ln 2
    assert result["eval_accuracy"] > majority + 0.1
    written = read_eval_results(output)
    assert written["eval_accuracy"] == pytest.approx(result["eval_accuracy"])
    text = (output / "eval_results.txt").read_text()
    assert "train_time: " in text and "eval_time: " in text


def test_rerun_resumes_and_reuses_features(tiny_model_dir, tmp_path):
    data = write_sst2_task(tmp_path / "data")
    output = tmp_path / "out"
    assert run(**tiny_flags(tiny_model_dir, data, output, num_train_epochs=1))["global_step"] == 5
    record = output / "train.tf_record"
    first_mtime = record.stat().st_mtime_ns
    assert run(**tiny_flags(tiny_model_dir, data, output, num_train_epochs=2,
                            do_predict=True))["global_step"] == 10
    assert record.stat().st_mtime_ns == first_mtime
    assert tf.train.latest_checkpoint(str(output)).endswith("-10")
    submission = (output / "SST-2.tsv").read_text().splitlines()
    assert submission[0] == "index\tprediction" and len(submission) == 3
    assert all(line.split("\t")[1] in ("0", "1") for line in submission[1:])


def test_an_edited_row_rebuilds_the_cached_features(tiny_model_dir, tmp_path):
    """Same row count, same ids, one sentence changed: the cache must not be reused."""
    data = write_sst2_task(tmp_path / "data")
    output = tmp_path / "out"
    run(**tiny_flags(tiny_model_dir, data, output, do_eval=False))
    record = output / "train.tf_record"
    before = record.read_bytes()
    lines = (data / "train.tsv").read_text().splitlines()
    lines[1] = lines[1].replace("film", "movie")
    (data / "train.tsv").write_text("\n".join(lines) + "\n")
    run(**tiny_flags(tiny_model_dir, data, output, do_eval=False, num_train_epochs=2))
    assert record.read_bytes() != before


def test_eval_metrics_are_full_set_not_per_batch():
    """Spearman over streaming batches equals the numpy value on all of the data."""
    rng = np.random.RandomState(0)
    predictions = rng.rand(30).astype(np.float32)
    labels = (predictions + rng.rand(30)).astype(np.float32)
    with tf.Graph().as_default():
        batch_predictions = tf1.placeholder(tf.float32, [None])
        batch_labels = tf1.placeholder(tf.float32, [None])
        ops = classifier.task_metric_ops("sts-b", batch_predictions, batch_labels,
                                             tf.square(batch_predictions - batch_labels))
        with tf1.Session() as session:
            session.run(tf1.local_variables_initializer())
            for start in range(0, 30, 7):
                session.run([update for _, update in ops.values()],
                            {batch_predictions: predictions[start:start + 7],
                             batch_labels: labels[start:start + 7]})
            spearman = session.run(ops["eval_spearman"][0])
            loss = session.run(ops["eval_loss"][0])
    assert spearman == pytest.approx(metrics.spearman(predictions, labels), abs=1e-6)
    assert loss == pytest.approx(np.mean((predictions - labels) ** 2), abs=1e-6)


@pytest.mark.parametrize("override, message", [
    ({"task_name": "NOPE"}, "NOPE"),
    ({"vocab_file": "/nonexistent/vocab.txt"}, "vocab_file"),
    ({"max_seq_length": 100}, "max_position_embeddings=64"),
    ({"init_checkpoint": "/nonexistent/ckpt"}, "no checkpoint found"),
    ({"do_train": False, "do_eval": False}, "at least one"),
    ({"learning_rate": -1}, "learning_rate"),
])
def test_bad_flags_are_rejected(tiny_model_dir, tmp_path, override, message):
    data = write_sst2_task(tmp_path / "data")
    with pytest.raises(InputError, match=message):
        run(**tiny_flags(tiny_model_dir, data, tmp_path / "out", **override))


def test_config_not_matching_checkpoint_names_variables(tiny_model_dir, tmp_path):
    data = write_sst2_task(tmp_path / "data")
    config = modeling.BertConfig.from_json_file(f"{tiny_model_dir}/bert_config.json")
    config.intermediate_size = 48
    config.to_json_file(str(tmp_path / "wrong_config.json"))
    with pytest.raises(checkpoint.CheckpointMismatchError,
                       match=r"layer_0/intermediate/dense/kernel: graph \[16, 48\]"):
        run(**tiny_flags(tiny_model_dir, data, tmp_path / "out",
                         bert_config_file=tmp_path / "wrong_config.json"))


def test_missing_encoder_variable_is_an_error(tiny_model_dir, tmp_path):
    values = checkpoint.read_checkpoint(str(tiny_model_dir))
    del values["bert/encoder/layer_1/output/dense/bias"]
    checkpoint.save_variables(values, str(tmp_path / "partial.ckpt"))
    with tf.Graph().as_default():
        config = modeling.BertConfig.from_json_file(f"{tiny_model_dir}/bert_config.json")
        modeling.BertModel(config, False, tf1.placeholder(tf.int32, [None, 8]))
        with pytest.raises(checkpoint.CheckpointMismatchError,
                           match="missing from checkpoint: bert/encoder/layer_1/output/dense/bias"):
            checkpoint.init_from_checkpoint(str(tmp_path / "partial.ckpt"))


def test_command_line_errors_are_one_line(tiny_model_dir, tmp_path):
    data = write_sst2_task(tmp_path / "data")
    with open(data / "train.tsv", "a") as handle:
        handle.write("only-one-column\n")
    (tmp_path / "a_file").write_text("x")
    cases = [(tmp_path / "out", "train.tsv"), (tmp_path / "a_file", "is a file")]
    for output_dir, message in cases:
        values = tiny_flags(tiny_model_dir, data, output_dir)
        args = [f"--{key}={value}" for key, value in values.items()]
        process = subprocess.run([sys.executable, "-m", "bert.run_classifier"] + args,
                                 cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert process.returncode == 1
        last = process.stderr.strip().splitlines()[-1]
        assert last.startswith("run_classifier: error:") and message in last, last
    assert not (tmp_path / "out" / "eval_results.txt").exists()
