"""A resumed run ends where the uninterrupted run ends: same batches in the same order, the
same dropout masks, the same final weights (a stop only costs the time to restart)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from bert import classifier, training
from tiny_bert import write_small_model, write_sst2_task

STOP_STEP = 7  # inside the second epoch: the stream must continue mid-epoch
TOTAL_EPOCHS = 3  # 40 rows, batch 8: 15 steps


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    write_small_model(root / "model")
    return root / "model", write_sst2_task(root / "data")


def settings(model_dir, data_dir, output_dir, seed=7):
    return classifier.ClassifierSettings(
        task_name="SST-2", data_dir=str(data_dir), vocab_file=f"{model_dir}/vocab.txt",
        bert_config_file=f"{model_dir}/bert_config.json", init_checkpoint=str(model_dir),
        output_dir=str(output_dir), max_seq_length=16, train_batch_size=8, eval_batch_size=8,
        learning_rate=1e-3, num_train_epochs=TOTAL_EPOCHS, save_checkpoints_steps=5,
        do_train=True, do_eval=True, seed=seed)


def final_weights(output_dir):
    path = tf.train.latest_checkpoint(str(output_dir))
    reader = tf.train.load_checkpoint(path)
    return path, {name: reader.get_tensor(name)
                  for name in reader.get_variable_to_shape_map() if "global_step" not in name}


def assert_same_weights(first, second, atol=1e-6):
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_allclose(first[name], second[name], atol=atol, err_msg=name)


def test_stopped_and_resumed_fine_tune_equals_the_uninterrupted_one(tiny_task, tmp_path):
    model_dir, data_dir = tiny_task
    whole = classifier.Classifier(settings(model_dir, data_dir, tmp_path / "whole")).run()
    stopped = classifier.Classifier(settings(model_dir, data_dir, tmp_path / "resumed"))
    stopped.train(max_steps=STOP_STEP)
    assert training.checkpoint_step(tf.train.latest_checkpoint(
        str(tmp_path / "resumed"))) == STOP_STEP
    resumed = classifier.Classifier(settings(model_dir, data_dir, tmp_path / "resumed")).run()
    whole_path, whole_weights = final_weights(tmp_path / "whole")
    resumed_path, resumed_weights = final_weights(tmp_path / "resumed")
    assert os.path.basename(whole_path) == os.path.basename(resumed_path)
    assert_same_weights(whole_weights, resumed_weights)
    assert resumed["eval_loss"] == pytest.approx(whole["eval_loss"], abs=1e-6)
    # The comparison can fail: another seed (data order, dropout, head) ends elsewhere.
    classifier.Classifier(settings(model_dir, data_dir, tmp_path / "other", seed=8)).run()
    _, other_weights = final_weights(tmp_path / "other")
    with pytest.raises(AssertionError):
        assert_same_weights(whole_weights, other_weights)


def test_resumed_input_skips_what_the_checkpoint_consumed():
    def numbers(params=None, config=None, input_context=None):
        return tf.data.Dataset.range(10).batch(2)

    resumed = training.resumed_input(numbers, 3)
    batches = [batch.tolist() for batch in resumed().as_numpy_iterator()]
    assert batches == [[6, 7], [8, 9]]
