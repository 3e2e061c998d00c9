"""Checkpoint I/O: strict loading into a graph, writing numpy weights and provenance.

Google's run_classifier silently skips graph variables that the checkpoint lacks; that hides
bugs (a mis-named kernel trains from random init). Here every variable of the encoder must be
found with the right shape, and the caller names the few that may legitimately start fresh.
"""
import datetime
import errno
import glob
import json
import logging
import os
import re
import shutil
import sys

import numpy as np
import tensorflow as tf
from google.protobuf import text_format

from bert.errors import InputError
from bert.files import write_text_atomic

tf1 = tf.compat.v1

log = logging.getLogger("bert")

CHECKPOINT_NAME = "bert_model.ckpt"
PROVENANCE_FILE = "provenance.json"
STATE_FILE = "checkpoint"  # the Estimator's (and tf.train.Saver's) list of its checkpoints
INDEX_SUFFIX = ".index"
# Checkpoint entries that are training state, not model weights: never "unexpected".
_TRAINING_STATE = re.compile(r"(/adam_[mv]$|^global_step$|/Momentum$|^_CHECKPOINTABLE)")
# What an interrupted save leaves: a sharded Saver (the Estimator's) writes into "<prefix>_temp/",
# and TF's bundle writer into "<file>.tempstate<random>" files, renamed only when complete.
_SAVE_TEMPORARY = re.compile(r"\.ckpt(-\d+)?(_temp$|\..*\.tempstate\d+$)")
# What TF raises for unreadable checkpoint files: OpError subclasses from the index reader, and
# IndexError (an OUT_OF_RANGE status through pybind) when the data file is shorter than the index.
_READ_ERRORS = (tf.errors.OpError, IndexError)
# Causes of a TF write failure, found in its message, as the errno a Python caller expects.
_WRITE_ERRNOS = {"No space left on device": errno.ENOSPC, "Permission denied": errno.EACCES,
                 "Read-only file system": errno.EROFS, "Disk quota exceeded": errno.EDQUOT}


class CheckpointMismatchError(InputError):
    """The graph and the checkpoint disagree (missing variables or different shapes)."""


class CheckpointDamagedError(InputError):
    """A checkpoint's files are truncated or corrupt (a kill mid-save, a full disk, a bad copy)."""


def _damaged(prefix, error):
    """One line instead of TF's multi-line status: its first line says what is wrong."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CheckpointDamagedError(f"checkpoint {prefix} is damaged or truncated ({detail}); "
                                  "use an earlier checkpoint or write it again")


def _checkpoint_state(model_dir):
    """The folder's state file as a CheckpointState (absolute paths), or None without one."""
    try:
        return tf1.train.get_checkpoint_state(model_dir)
    except ValueError as error:  # TF's "Invalid checkpoint state" for an empty or partial file
        raise CheckpointDamagedError(
            f"{os.path.join(model_dir, STATE_FILE)} is damaged ({error}); remove it to use the "
            "folder's checkpoints by name") from None


def resolve_checkpoint(path, flag="init_checkpoint"):
    """Accept a checkpoint prefix, a model folder or an Estimator output folder.

    A folder without a state file or bert_model.ckpt may hold exactly one checkpoint of another
    name (FLOP's seed writes bert_model_f.ckpt).
    """
    if path and os.path.isdir(path):
        state = _checkpoint_state(path)
        if state and os.path.exists(state.model_checkpoint_path + INDEX_SUFFIX):
            return state.model_checkpoint_path
        prefix = os.path.join(path, CHECKPOINT_NAME)
        if os.path.exists(prefix + INDEX_SUFFIX):
            return prefix
        indexes = [name for name in os.listdir(path) if name.endswith(INDEX_SUFFIX)]
        if len(indexes) == 1:
            return os.path.join(path, indexes[0][:-len(INDEX_SUFFIX)])
    elif path and os.path.exists(path + INDEX_SUFFIX):
        return path
    raise FileNotFoundError(f"--{flag}={path}: no checkpoint found (expected a prefix such as "
                            f"{CHECKPOINT_NAME} with a .index file, or a folder holding one)")


def _list_variables(prefix):
    try:
        return dict(tf.train.list_variables(prefix))
    except _READ_ERRORS as error:
        raise _damaged(prefix, error) from None


def _read_tensors(prefix, keep=lambda name: True):
    """Yields (name, array) of the stored tensors ``keep`` accepts; each read checks a checksum."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            if keep(name):
                yield name, reader.get_tensor(name)
    except _READ_ERRORS as error:
        raise _damaged(prefix, error) from None


def list_checkpoint(path):
    """{name: shape} of the variables stored in a checkpoint."""
    return _list_variables(resolve_checkpoint(path))


def read_checkpoint(path):
    """{name: numpy array} of all model weights in a checkpoint (training state left out)."""
    return dict(_read_tensors(resolve_checkpoint(path),
                              keep=lambda name: not _TRAINING_STATE.search(name)))


def verify_checkpoint(prefix):
    """Reads every tensor, since a truncated data file passes the index-only listing.

    Returns how many tensors were read, or raises CheckpointDamagedError; models here are small
    enough (≤ 100 MB) to read whole, one tensor at a time.
    """
    return sum(1 for _ in _read_tensors(prefix))


def remove_save_temporaries(model_dir):
    """Deletes what an interrupted or failed save left in ``model_dir``, one log line each."""
    for name in sorted(os.listdir(model_dir)):
        if _SAVE_TEMPORARY.search(name):
            path = os.path.join(model_dir, name)
            log.warning("removing %s, left by an interrupted checkpoint save", path)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)


def latest_good_checkpoint(model_dir, repair=True):
    """The newest checkpoint of an Estimator folder that reads back whole, or None.

    With ``repair`` (the one task that owns the folder: the chief of a cluster), damaged newer
    checkpoints (a full disk, a kill mid-save) are dropped from the state file, so the
    Estimator resumes from the returned one; with none good the state file is removed and
    training starts over from its initial checkpoint. Other tasks only read.
    """
    if repair:
        remove_save_temporaries(model_dir)
    state = _checkpoint_state(model_dir)
    if state is None:
        return None
    paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    for newest in range(len(paths) - 1, -1, -1):
        try:
            if not os.path.exists(paths[newest] + INDEX_SUFFIX):
                raise CheckpointDamagedError(f"checkpoint {paths[newest]} has no index file")
            verify_checkpoint(paths[newest])
        except CheckpointDamagedError as error:
            log.warning("%s", error)
            continue
        if repair and paths[newest] != state.model_checkpoint_path:
            _rewrite_state(model_dir, state, newest)
        return paths[newest]
    if repair:
        state_file = os.path.join(model_dir, STATE_FILE)
        log.warning("removing %s: it lists no readable checkpoint", state_file)
        os.remove(state_file)
    return None


def _rewrite_state(model_dir, state, newest):
    """Points the state file at ``all_model_checkpoint_paths[newest]`` (atomic; paths relative
    to the folder, as the Estimator writes them, so the folder can move)."""
    kept = [os.path.relpath(path, model_dir)
            for path in state.all_model_checkpoint_paths[:newest + 1]]
    timestamps = list(state.all_model_checkpoint_timestamps[:newest + 1])
    state.model_checkpoint_path = kept[-1]
    del state.all_model_checkpoint_paths[:]
    state.all_model_checkpoint_paths.extend(kept)
    del state.all_model_checkpoint_timestamps[:]
    state.all_model_checkpoint_timestamps.extend(timestamps)
    state_file = os.path.join(model_dir, STATE_FILE)
    write_text_atomic(state_file, text_format.MessageToString(state))
    log.warning("resuming from %s: %s now names it as the latest checkpoint",
                os.path.join(model_dir, kept[-1]), state_file)


def init_from_checkpoint(init_checkpoint, allow_missing=(), variables=None):
    """Initialise graph variables from a checkpoint, strictly.

    ``allow_missing`` holds regexes of graph variables that may be absent from the checkpoint
    (a fresh classifier head, FLOP's gates); any other absent variable, and any shape mismatch,
    raises CheckpointMismatchError naming the variables. Returns (loaded names, unexpected
    checkpoint names) so the caller can log them.
    """
    path = resolve_checkpoint(init_checkpoint)
    stored = _list_variables(path)
    variables = variables if variables is not None else tf1.trainable_variables()
    assignment, missing, wrong_shape = {}, [], []
    for variable in variables:
        name = variable.op.name
        if name in stored:
            if list(stored[name]) != variable.shape.as_list():
                wrong_shape.append(f"{name}: graph {variable.shape.as_list()} vs "
                                   f"checkpoint {list(stored[name])}")
            else:
                assignment[name] = variable
        elif not any(re.search(pattern, name) for pattern in allow_missing):
            missing.append(name)
    problems = []
    if wrong_shape:
        problems.append("shape mismatch: " + "; ".join(wrong_shape))
    if missing:
        problems.append("missing from checkpoint: " + ", ".join(missing))
    if problems:
        raise CheckpointMismatchError(f"{path} does not match the model's config — "
                                      + " | ".join(problems))
    unexpected = sorted(name for name in stored
                        if name not in assignment and not _TRAINING_STATE.search(name))
    # TF reads the values only at session start, where a damaged file would be a long traceback.
    verify_checkpoint(path)
    tf1.train.init_from_checkpoint(path, {name: name for name in assignment})
    return sorted(assignment), unexpected


def save_variables(values, prefix):
    """Write {name: numpy array} as a TF checkpoint at ``prefix`` (in a graph of its own).

    A ``global_step`` of 0 is added when absent: Estimator restores it, so without it a model
    folder could not be evaluated or predicted with directly.
    """
    values = dict(values)
    values.setdefault("global_step", np.int64(0))
    with tf.Graph().as_default():
        variables = [tf1.Variable(value, name=name, trainable=True)
                     for name, value in sorted(values.items())]
        saver = tf1.train.Saver(variables, write_version=tf1.train.SaverDef.V2)
        with tf1.Session() as session:
            session.run(tf1.variables_initializer(variables))
            try:
                saver.save(session, prefix, write_meta_graph=False, write_state=False)
            except tf.errors.OpError as error:
                _remove_checkpoint_files(prefix)
                raise _write_error(prefix, error) from None


def _remove_checkpoint_files(prefix):
    """After a failed save the prefix may mix old and new files: leave no checkpoint there."""
    pattern = glob.escape(prefix)
    for suffix in (INDEX_SUFFIX, ".data-*", ".*.tempstate*"):
        for path in glob.glob(pattern + suffix):
            os.remove(path)


def _write_error(path, error):
    """TF's write failure as the OSError a full disk or a read-only folder is everywhere else."""
    message = str(error)
    cause = next((text for text in _WRITE_ERRNOS if text in message), None)
    if cause is not None:
        return OSError(_WRITE_ERRNOS[cause], cause, path)
    # A session error starts with "Graph execution error:"; the status line names the file.
    name = os.path.basename(path)
    status = next((line.strip() for line in message.splitlines() if name in line),
                  type(error).__name__)
    return OSError(errno.EIO, status, path)


def write_model_folder(output_dir, config, vocab_file, values, step, source, flags=None,
                       extra_files=None, checkpoint_name=CHECKPOINT_NAME):
    """bert.model_folder.write_model_folder, under the name older callers know. That module
    reads and writes checkpoints through this one, hence the import here, not at the top."""
    from bert import model_folder
    return model_folder.write_model_folder(output_dir, config, vocab_file, values, step, source,
                                           flags, extra_files, checkpoint_name)


def write_provenance(folder, step, source, flags=None):
    """provenance.json: which step wrote the folder's checkpoint, from what, with which flags."""
    provenance = {"step": step, "source": source, "flags": flags or {},
                  "command": " ".join(sys.argv),
                  "time": datetime.datetime.now().isoformat(timespec="seconds")}
    write_text_atomic(os.path.join(folder, PROVENANCE_FILE),
                      json.dumps(provenance, indent=2, sort_keys=True) + "\n")


def find_vocab(model_dir):
    """The vocabulary of a model folder: vocab.txt, else a SentencePiece .model file."""
    candidate = os.path.join(model_dir, "vocab.txt")
    if os.path.isfile(candidate):
        return candidate
    for name in sorted(os.listdir(model_dir)):
        if name.endswith(".model"):
            return os.path.join(model_dir, name)
    raise FileNotFoundError(f"{model_dir}: no vocab.txt or SentencePiece .model file")
