"""Model folders and atomic writes: a reader never finds a folder missing or half written, an
interrupted write is cleaned up by the next one, and a folder's errors name the flag."""
import errno
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from bert import checkpoint, files, model_folder, modeling
from bert.errors import UsageError
from conftest import REPO_ROOT

KERNEL = "bert/kernel"
KERNEL_SHAPE = (4, 8)
CONFIG = modeling.BertConfig(vocab_size=3, hidden_size=8, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=4)
REPEATED_WRITES = 30  # enough for a polling process to land between two renames
SUBPROCESS_TIMEOUT = 300
KILL_POINTS = ("before_exchange", "after_exchange", "between_renames")
OLD, NEW, NEXT = 1.0, 2.0, 3.0  # kernel values that tell the versions of a folder apart

# Writes version NEW over the folder and is SIGKILLed at KILL_POINT: no finally block runs, as
# for a real kill. between_renames: on a file system without exchange, before the second rename.
KILLED_WRITE = """
import os, signal, sys
import numpy as np
from bert import checkpoint, files, model_folder, modeling

output_dir, vocab_file, kill_point, version = sys.argv[1:]
exchange, rename = files._exchange, os.rename


def kill():
    os.kill(os.getpid(), signal.SIGKILL)


def exchange_then_kill(first, second):
    if kill_point == "after_exchange":
        exchange(first, second)
    if kill_point != "between_renames":
        kill()
    return False


def rename_killed_before_the_new_folder_moves(source, target):
    if source.startswith(output_dir + "." + files.TEMP_MARK):
        kill()
    rename(source, target)


files._exchange = exchange_then_kill
os.rename = rename_killed_before_the_new_folder_moves
config = modeling.BertConfig.from_json_file(
    os.path.join(output_dir, model_folder.CONFIG_FILE))
values = {name: np.full_like(value, float(version))
          for name, value in checkpoint.read_checkpoint(output_dir).items()}
model_folder.write_model_folder(output_dir, config, vocab_file, values, step="test",
                                source="killed")
"""

# Counts the polls of PATH, and those that found no folder there, until STOP exists.
POLL_FOR_MISSING = """
import os, sys

path, stop = sys.argv[1:]
polls = missing = 0
print("polling", flush=True)
while not os.path.exists(stop):
    polls += 1
    missing += not os.path.isdir(path)
print(polls, missing)
"""


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\nthe\n")
    return path


@pytest.fixture
def models(tmp_path):
    """The folder that holds the model folder and nothing else, so leftovers show."""
    path = tmp_path / "models"
    path.mkdir()
    return path


def write(folder, vocab_file, version):
    values = {KERNEL: np.full(KERNEL_SHAPE, version, np.float32)}
    return model_folder.write_model_folder(str(folder), CONFIG, str(vocab_file), values,
                                           step="test", source=f"version {version}")


def assert_whole(folder, version):
    """Config, vocab, provenance and a checkpoint that reads back whole, of ``version``."""
    assert modeling.BertConfig.from_json_file(
        os.path.join(folder, model_folder.CONFIG_FILE)).to_dict() == CONFIG.to_dict()
    assert os.path.isfile(os.path.join(folder, "vocab.txt"))
    assert os.path.isfile(os.path.join(folder, checkpoint.PROVENANCE_FILE))
    prefix = checkpoint.resolve_checkpoint(str(folder))
    assert checkpoint.verify_checkpoint(prefix) == 2  # the kernel + global_step
    np.testing.assert_array_equal(checkpoint.read_checkpoint(prefix)[KERNEL],
                                  np.full(KERNEL_SHAPE, version, np.float32))


# Interrupted writes -----------------------------------------------------------------------------
@pytest.mark.parametrize("kill_point", KILL_POINTS)
def test_killed_write_leaves_a_whole_folder_and_the_next_write_cleans_up(models, vocab_file,
                                                                         kill_point):
    output = models / "out"
    write(output, vocab_file, OLD)
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITE, str(output), str(vocab_file),
                              kill_point, str(NEW)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    _, stderr = child.communicate(timeout=SUBPROCESS_TIMEOUT)
    assert child.returncode == -signal.SIGKILL, stderr[-2000:]
    temp, old = (f"out.{mark}-{child.pid}" for mark in (files.TEMP_MARK, files.OLD_MARK))
    if kill_point == "between_renames":  # no exchange: the old folder is whole, moved aside
        assert sorted(os.listdir(models)) == [old, temp]
        assert_whole(models / old, OLD)
        files.remove_leftovers(str(output))
        assert os.listdir(models) == ["out"]  # put back before any new write
    else:
        assert sorted(os.listdir(models)) == ["out", temp]
    assert_whole(output, NEW if kill_point == "after_exchange" else OLD)

    write(output, vocab_file, NEXT)
    assert os.listdir(models) == ["out"]
    assert_whole(output, NEXT)


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two_renames"])
def test_failed_swap_keeps_the_old_folder_and_leaves_nothing(models, vocab_file, monkeypatch,
                                                             exchange):
    output = models / "out"
    write(output, vocab_file, OLD)
    rename = os.rename
    renames = []

    def second_rename_fails(source, target):
        renames.append(source)
        if len(renames) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO), target)
        rename(source, target)

    def exchange_fails(first, second):
        raise OSError(errno.EIO, os.strerror(errno.EIO), second)

    if exchange:
        monkeypatch.setattr(files, "_exchange", exchange_fails)
    else:
        monkeypatch.setattr(files, "_exchange", lambda first, second: False)
        monkeypatch.setattr(os, "rename", second_rename_fails)
    with pytest.raises(OSError) as caught:
        write(output, vocab_file, NEW)
    assert caught.value.errno == errno.EIO and str(output) in str(caught.value)
    assert os.listdir(models) == ["out"]
    assert_whole(output, OLD)

    monkeypatch.undo()
    write(output, vocab_file, NEXT)
    assert os.listdir(models) == ["out"]
    assert_whole(output, NEXT)


def test_readers_never_find_the_folder_missing_during_repeated_writes(models, vocab_file,
                                                                     tmp_path):
    """A thread polls, as a caller in the writing process would, and so does a process: a
    thread shares the GIL and so seldom runs between two renames, a process runs in parallel."""
    output = models / "out"
    write(output, vocab_file, OLD)
    index = output / (checkpoint.CHECKPOINT_NAME + checkpoint.INDEX_SUFFIX)
    stop_file = tmp_path / "stop"
    process = subprocess.Popen([sys.executable, "-c", POLL_FOR_MISSING, str(output),
                                str(stop_file)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "polling"
    stop = threading.Event()
    polls, missing = [], []

    def poll():
        while not stop.is_set():
            polls.append(1)
            if not (os.path.isdir(output) and index.is_file()):
                missing.append(len(polls))

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for version in range(REPEATED_WRITES):
            write(output, vocab_file, float(version))
    finally:
        stop.set()
        reader.join()
        stop_file.write_text("")
        counts = process.communicate(timeout=SUBPROCESS_TIMEOUT)[0]
    process_polls, process_missing = map(int, counts.split())
    assert len(polls) > REPEATED_WRITES and process_polls > REPEATED_WRITES  # they ran
    assert missing == [] and process_missing == 0
    assert os.listdir(models) == ["out"]
    assert_whole(output, float(REPEATED_WRITES - 1))


def test_leftovers_of_ended_processes_go_those_of_running_ones_stay(models):
    ended = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                               capture_output=True, text=True, check=True).stdout)
    running = subprocess.Popen([sys.executable, "-c",
                                f"import time; time.sleep({SUBPROCESS_TIMEOUT})"])
    try:
        output = models / "out"
        output.mkdir()
        for name in (f"out.tmp-{ended}", f"out.old-{ended}", f"out.tmp-{running.pid}"):
            (models / name).mkdir()
            (models / name / "vocab.txt").write_text("x\n")
        for name in (f"out.json.tmp-{ended}", "out.tmp-notes"):  # another file's, not ours
            (models / name).write_text("x\n")
        files.remove_leftovers(str(output))
        assert sorted(os.listdir(models)) == sorted(
            ["out", f"out.tmp-{running.pid}", f"out.json.tmp-{ended}", "out.tmp-notes"])
    finally:
        running.kill()
        running.wait()


# Atomic files -----------------------------------------------------------------------------------
def test_failed_text_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "results.txt"
    files.write_text_atomic(str(path), "old\n")
    with pytest.raises(UnicodeEncodeError):
        files.write_text_atomic(str(path), "half written \ud800\n")  # a lone surrogate
    assert os.listdir(tmp_path) == ["results.txt"] and path.read_text() == "old\n"

    def no_space(source, target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), target)

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError, match="No space left on device"):
        files.write_json_atomic(str(path), {"new": 1})
    assert os.listdir(tmp_path) == ["results.txt"] and path.read_text() == "old\n"


def test_failed_copy_and_failed_writer_leave_no_temp(tmp_path):
    target = tmp_path / "vocab.txt"
    with pytest.raises(FileNotFoundError):
        files.copy_file_atomic(str(tmp_path / "absent.txt"), str(target))
    with pytest.raises(ValueError, match="writer failed"):
        with files.atomic_path(str(target), suffix=".npz") as temp:
            np.savez(temp, kernel=np.ones(3))
            raise ValueError("writer failed")
    assert os.listdir(tmp_path) == []


def test_json_and_copy_are_published_whole(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("[PAD]\n")
    files.copy_file_atomic(str(source), str(tmp_path / "copy.txt"))
    files.write_json_atomic(str(tmp_path / "state.json"), {"b": 1, "a": [2]}, sort_keys=True)
    assert (tmp_path / "copy.txt").read_text() == "[PAD]\n"
    assert (tmp_path / "state.json").read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    assert sorted(os.listdir(tmp_path)) == ["copy.txt", "source.txt", "state.json"]


# Reading a model folder -------------------------------------------------------------------------
def test_load_returns_config_checkpoint_and_vocab(models, vocab_file):
    output = write(models / "out", vocab_file, OLD)
    model = model_folder.load(output, "teacher")
    assert model.bert_config.to_dict() == CONFIG.to_dict()
    assert model.checkpoint_prefix == os.path.join(output, checkpoint.CHECKPOINT_NAME)
    assert model.vocab_file == os.path.join(output, "vocab.txt")
    assert model_folder.load(output, need_vocab=False).vocab_file is None


@pytest.mark.parametrize("damage, message", [
    ("absent", "--teacher={path}: folder not found"),
    ("bert_config.json", "--teacher={path}/bert_config.json: file not found"),
    (checkpoint.CHECKPOINT_NAME + checkpoint.INDEX_SUFFIX, "--teacher={path}: no checkpoint"),
    ("vocab.txt", "--teacher={path}: {path}: no vocab.txt"),
])
def test_load_errors_name_the_flag(models, vocab_file, damage, message):
    output = write(models / "out", vocab_file, OLD)
    if damage == "absent":
        output = str(models / "absent")
    else:
        os.remove(os.path.join(output, damage))
    with pytest.raises(UsageError) as caught:
        model_folder.load(output, "teacher")
    assert message.format(path=output) in str(caught.value)


def test_config_and_vocab_default_to_the_folder_and_flags_win(models, vocab_file, tmp_path):
    output = write(models / "out", vocab_file, OLD)
    assert model_folder.config_and_vocab(output, "init_checkpoint") == (
        os.path.join(output, model_folder.CONFIG_FILE), os.path.join(output, "vocab.txt"))
    config_file = os.path.join(output, model_folder.CONFIG_FILE)
    assert model_folder.config_and_vocab(None, "init_checkpoint", config_file,
                                         str(vocab_file)) == (config_file, str(vocab_file))


@pytest.mark.parametrize("case, message", [
    ("prefix", "--bert_config_file is required when --init_checkpoint is not a model folder"),
    ("no vocab", "--vocab_file not given and {path}: no vocab.txt"),
    ("missing flag file", "--vocab_file={path}/absent.txt: file not found"),
])
def test_config_and_vocab_errors_name_the_flag(models, vocab_file, case, message):
    output = write(models / "out", vocab_file, OLD)
    folder, vocab = output, None
    if case == "prefix":
        folder = os.path.join(output, checkpoint.CHECKPOINT_NAME)
    elif case == "no vocab":
        os.remove(os.path.join(output, "vocab.txt"))
    else:
        vocab = os.path.join(output, "absent.txt")
    with pytest.raises(UsageError) as caught:
        model_folder.config_and_vocab(folder, "init_checkpoint", vocab_file=vocab)
    assert message.format(path=output) in str(caught.value)


# Making and trimming model folders --------------------------------------------------------------
def test_copy_config_and_vocab_makes_a_folder_describe_its_checkpoint(tmp_path, vocab_file):
    folder = tmp_path / "training"
    folder.mkdir()
    copied = model_folder.copy_config_and_vocab(str(folder), CONFIG, str(vocab_file))
    assert copied == str(folder / "vocab.txt")
    assert (folder / "vocab.txt").read_text() == vocab_file.read_text()
    assert modeling.BertConfig.from_json_file(
        str(folder / model_folder.CONFIG_FILE)).to_dict() == CONFIG.to_dict()
    # A vocabulary already in the folder is left as it is.
    assert model_folder.copy_config_and_vocab(str(folder), CONFIG, copied) == copied
    assert sorted(os.listdir(folder)) == [model_folder.CONFIG_FILE, "vocab.txt"]


def test_drop_training_checkpoints_keeps_events_and_other_files(tmp_path):
    training = tmp_path / "training"
    training.mkdir()
    kept = ["events.out.tfevents.1", "graph.pbtxt", "hparams.json"]
    dropped = ["model.ckpt-5.index", "model.ckpt-5.data-00000-of-00001", "model.ckpt-5.meta",
               "model.ckpt-10.index", checkpoint.STATE_FILE]
    for name in kept + dropped:
        (training / name).write_text("x")
    model_folder.drop_training_checkpoints(str(training))
    assert sorted(os.listdir(training)) == sorted(kept)
