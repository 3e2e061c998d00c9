"""Damaged checkpoints, interrupted saves and full disks: one clear error, nothing half-written."""
import errno
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoint, modeling

tf1 = tf.compat.v1

DATA_SUFFIX = ".data-00000-of-00001"
VALUES = {"bert/kernel": np.arange(4000, dtype=np.float32).reshape(40, 100),
          "bert/bias": np.ones(100, dtype=np.float32)}


def truncate(path, keep_fraction=0.5):
    with open(path, "r+b") as handle:
        handle.truncate(int(os.path.getsize(path) * keep_fraction))


def saved(tmp_path, name="model.ckpt"):
    prefix = str(tmp_path / name)
    checkpoint.save_variables(VALUES, prefix)
    return prefix


def test_truncated_data_file_is_damaged_for_every_reader(tmp_path):
    prefix = saved(tmp_path)
    assert checkpoint.verify_checkpoint(prefix) == len(VALUES) + 1  # + global_step
    truncate(prefix + DATA_SUFFIX)
    assert set(checkpoint.list_checkpoint(prefix)) >= set(VALUES)  # the index is still whole
    for read in (checkpoint.verify_checkpoint, checkpoint.read_checkpoint):
        with pytest.raises(checkpoint.CheckpointDamagedError,
                           match=f"checkpoint {prefix} is damaged or truncated"):
            read(prefix)
    with tf.Graph().as_default():
        variables = [tf1.get_variable(name, value.shape) for name, value in VALUES.items()]
        with pytest.raises(checkpoint.CheckpointDamagedError, match=prefix):
            checkpoint.init_from_checkpoint(prefix, variables=variables)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_index_names_the_prefix(tmp_path, damage):
    prefix = saved(tmp_path)
    index = prefix + checkpoint.INDEX_SUFFIX
    if damage == "truncate":
        truncate(index)
    else:
        with open(index, "wb") as handle:
            handle.write(b"garbage" if damage == "garbage" else b"")
    for read in (checkpoint.list_checkpoint, checkpoint.read_checkpoint,
                 checkpoint.verify_checkpoint, checkpoint.init_from_checkpoint):
        with pytest.raises(checkpoint.CheckpointDamagedError) as caught:
            read(prefix)
        assert str(caught.value).startswith(f"checkpoint {prefix} is damaged or truncated (")
        assert "\n" not in str(caught.value)


def test_empty_state_file_is_reported_not_traced(tmp_path):
    saved(tmp_path)
    (tmp_path / checkpoint.STATE_FILE).write_text("")
    with pytest.raises(checkpoint.CheckpointDamagedError, match="checkpoint is damaged"):
        checkpoint.resolve_checkpoint(str(tmp_path))


def estimator_folder(folder, steps=(1, 2)):
    """Checkpoints as an Estimator writes them: model.ckpt-N plus a relative-path state file."""
    with tf.Graph().as_default():
        variable = tf1.Variable(np.zeros((50, 50), np.float32), name="w")
        saver = tf1.train.Saver([variable], save_relative_paths=True, sharded=True)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            for step in steps:
                session.run(variable.assign_add(tf.ones_like(variable)))
                saver.save(session, str(folder / "model.ckpt"), global_step=step,
                           write_meta_graph=False)
    return str(folder)


def test_damaged_newest_checkpoint_is_skipped_and_state_rewritten(tmp_path, caplog):
    model_dir = estimator_folder(tmp_path)
    truncate(os.path.join(model_dir, "model.ckpt-2" + DATA_SUFFIX))
    (tmp_path / "model.ckpt-3_temp").mkdir()  # what a sharded save leaves on a full disk
    (tmp_path / f"model.ckpt-3{DATA_SUFFIX}.tempstate123").write_bytes(b"x")
    (tmp_path / "notes_temp").write_text("not ours")

    with caplog.at_level(logging.WARNING, logger="bert"):
        good = checkpoint.latest_good_checkpoint(model_dir)

    assert good == os.path.join(model_dir, "model.ckpt-1")
    assert tf.train.latest_checkpoint(model_dir) == good
    state = (tmp_path / checkpoint.STATE_FILE).read_text()
    assert 'model_checkpoint_path: "model.ckpt-1"' in state and "model.ckpt-2" not in state
    leftovers = [p.name for p in tmp_path.iterdir() if "_temp" in p.name or "tempstate" in p.name]
    assert leftovers == ["notes_temp"]
    messages = [record.getMessage() for record in caplog.records]
    assert any("model.ckpt-2 is damaged" in message for message in messages)
    assert sum("removing" in message and "model.ckpt-3" in message for message in messages) == 2


def test_a_task_that_does_not_own_the_folder_only_reads_it(tmp_path):
    """A cluster's worker finds the same checkpoint as the chief but leaves the repair to it."""
    model_dir = estimator_folder(tmp_path)
    truncate(os.path.join(model_dir, "model.ckpt-2" + DATA_SUFFIX))
    (tmp_path / "model.ckpt-3_temp").mkdir()
    before = sorted((path.name, path.stat().st_mtime_ns) for path in tmp_path.iterdir())
    assert checkpoint.latest_good_checkpoint(model_dir, repair=False) == os.path.join(
        model_dir, "model.ckpt-1")
    assert sorted((path.name, path.stat().st_mtime_ns) for path in tmp_path.iterdir()) == before

    truncate(os.path.join(model_dir, "model.ckpt-1" + DATA_SUFFIX))
    assert checkpoint.latest_good_checkpoint(model_dir, repair=False) is None
    assert (tmp_path / checkpoint.STATE_FILE).exists()


def test_good_newest_checkpoint_leaves_state_untouched(tmp_path):
    model_dir = estimator_folder(tmp_path)
    before = (tmp_path / checkpoint.STATE_FILE).read_bytes()
    assert checkpoint.latest_good_checkpoint(model_dir) == os.path.join(model_dir, "model.ckpt-2")
    assert (tmp_path / checkpoint.STATE_FILE).read_bytes() == before


def test_no_good_checkpoint_means_start_over(tmp_path):
    model_dir = estimator_folder(tmp_path, steps=(1,))
    truncate(os.path.join(model_dir, "model.ckpt-1" + DATA_SUFFIX))
    assert checkpoint.latest_good_checkpoint(model_dir) is None
    assert tf.train.latest_checkpoint(model_dir) is None
    assert not (tmp_path / checkpoint.STATE_FILE).exists()


def test_folder_without_state_file_has_no_checkpoint_to_resume(tmp_path):
    assert checkpoint.latest_good_checkpoint(str(tmp_path)) is None


def test_folder_with_one_differently_named_checkpoint_resolves(tmp_path):
    prefix = saved(tmp_path, "bert_model_f.ckpt")
    assert checkpoint.resolve_checkpoint(str(tmp_path)) == prefix
    saved(tmp_path, "other.ckpt")
    with pytest.raises(FileNotFoundError, match=f"--seed={tmp_path}: no checkpoint found"):
        checkpoint.resolve_checkpoint(str(tmp_path), flag="seed")


def write_folder(output_dir, vocab_file, **kwargs):
    config = modeling.BertConfig(vocab_size=3, hidden_size=8, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=4)
    return checkpoint.write_model_folder(str(output_dir), config, str(vocab_file), VALUES,
                                         step="test", source="test", **kwargs)


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\nthe\n")
    return path


def test_checkpoint_name_can_be_chosen(tmp_path, vocab_file):
    folder = write_folder(tmp_path / "out", vocab_file, checkpoint_name="bert_model_f.ckpt")
    assert os.path.exists(os.path.join(folder, "bert_model_f.ckpt.index"))
    assert checkpoint.resolve_checkpoint(folder) == os.path.join(folder, "bert_model_f.ckpt")


def folder_state(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.parametrize("failing_write", ["checkpoint", "provenance"])
def test_full_disk_leaves_earlier_folder_and_no_temp(tmp_path, vocab_file, monkeypatch,
                                                     failing_write):
    output = tmp_path / "out"
    write_folder(output, vocab_file)
    before = folder_state(output)

    def no_space(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, "Graph execution error:\n\nNode: 'save/SaveV2'\n/x.tempstate1; "
                        "No space left on device")

    def no_space_text(path, text):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text[:3])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    if failing_write == "checkpoint":
        monkeypatch.setattr(tf1.train.Saver, "save", no_space)
    else:
        monkeypatch.setattr(checkpoint, "write_text_atomic", no_space_text)
    with pytest.raises(OSError) as caught:
        write_folder(output, vocab_file)

    assert caught.value.errno == errno.ENOSPC
    assert str(output) in str(caught.value) and "No space left on device" in str(caught.value)
    assert folder_state(output) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "vocab.txt"]


def test_failed_save_leaves_no_checkpoint_files(tmp_path, monkeypatch):
    prefix = saved(tmp_path)

    def read_only(self, session, save_path, **kwargs):
        open(save_path + checkpoint.INDEX_SUFFIX, "wb").close()  # half of a new checkpoint
        raise tf.errors.PermissionDeniedError(
            None, None, f"Graph execution error:\n{save_path}{DATA_SUFFIX}; Read-only file system")

    monkeypatch.setattr(tf1.train.Saver, "save", read_only)
    with pytest.raises(OSError) as caught:
        checkpoint.save_variables(VALUES, prefix)
    assert (caught.value.errno, caught.value.filename) == (errno.EROFS, prefix)
    assert list(tmp_path.iterdir()) == []
