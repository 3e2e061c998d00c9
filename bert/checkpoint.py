"""Checkpoint I/O: strict loading into a graph, writing numpy weights, and model folders.

Google's run_classifier silently skips graph variables that the checkpoint lacks; that hides
bugs (a mis-named kernel trains from random init). Here every variable of the encoder must be
found with the right shape, and the caller names the few that may legitimately start fresh.
"""
import datetime
import json
import os
import re
import shutil
import sys

import numpy as np
import tensorflow as tf

from bert.modeling import write_text_atomic

tf1 = tf.compat.v1

CHECKPOINT_NAME = "bert_model.ckpt"
PROVENANCE_FILE = "provenance.json"
# Checkpoint entries that are training state, not model weights: never "unexpected".
_TRAINING_STATE = re.compile(r"(/adam_[mv]$|^global_step$|/Momentum$|^_CHECKPOINTABLE)")


class CheckpointMismatchError(ValueError):
    """The graph and the checkpoint disagree (missing variables or different shapes)."""


def resolve_checkpoint(path, flag="init_checkpoint"):
    """Accept a checkpoint prefix, a model folder or an Estimator output folder."""
    if path and os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        prefix = os.path.join(path, CHECKPOINT_NAME)
        if os.path.exists(prefix + ".index"):
            return prefix
    elif path and os.path.exists(path + ".index"):
        return path
    raise FileNotFoundError(f"--{flag}={path}: no checkpoint found (expected a prefix such as "
                            f"{CHECKPOINT_NAME} with a .index file, or a folder holding one)")


def list_checkpoint(path):
    """{name: shape} of the variables stored in a checkpoint."""
    return dict(tf.train.list_variables(resolve_checkpoint(path)))


def read_checkpoint(path):
    """{name: numpy array} of all model weights in a checkpoint (training state left out)."""
    reader = tf.train.load_checkpoint(resolve_checkpoint(path))
    return {name: reader.get_tensor(name)
            for name in reader.get_variable_to_shape_map() if not _TRAINING_STATE.search(name)}


def init_from_checkpoint(init_checkpoint, allow_missing=(), variables=None):
    """Initialise graph variables from a checkpoint, strictly.

    ``allow_missing`` holds regexes of graph variables that may be absent from the checkpoint
    (a fresh classifier head, FLOP's gates); any other absent variable, and any shape mismatch,
    raises CheckpointMismatchError naming the variables. Returns (loaded names, unexpected
    checkpoint names) so the caller can log them.
    """
    path = resolve_checkpoint(init_checkpoint)
    stored = dict(tf.train.list_variables(path))
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
            saver.save(session, prefix, write_meta_graph=False, write_state=False)


def write_model_folder(output_dir, config, vocab_file, values, step, source, flags=None,
                       extra_files=None):
    """Write a complete model folder atomically: config, vocab, checkpoint, provenance.

    Everything goes to a temp folder beside ``output_dir`` that is renamed into place, so a
    killed step leaves either the old folder or the new one, never half of one.
    """
    output_dir = os.path.abspath(output_dir)
    if os.path.isfile(output_dir):
        raise NotADirectoryError(f"output_dir {output_dir} is a file; expected a folder")
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    temp = f"{output_dir}.tmp-{os.getpid()}"
    shutil.rmtree(temp, ignore_errors=True)
    os.makedirs(temp)
    config.to_json_file(os.path.join(temp, "bert_config.json"))
    shutil.copyfile(vocab_file, os.path.join(temp, os.path.basename(vocab_file)))
    save_variables(values, os.path.join(temp, CHECKPOINT_NAME))
    provenance = {"step": step, "source": source, "flags": flags or {},
                  "command": " ".join(sys.argv),
                  "time": datetime.datetime.now().isoformat(timespec="seconds")}
    write_text_atomic(os.path.join(temp, PROVENANCE_FILE),
                      json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    for name, text in (extra_files or {}).items():
        write_text_atomic(os.path.join(temp, name), text)
    if os.path.isdir(output_dir):
        old = f"{output_dir}.old-{os.getpid()}"
        os.replace(output_dir, old)
        os.replace(temp, output_dir)
        shutil.rmtree(old)
    else:
        os.replace(temp, output_dir)
    return output_dir


def find_vocab(model_dir):
    """The vocabulary of a model folder: vocab.txt, else a SentencePiece .model file."""
    candidate = os.path.join(model_dir, "vocab.txt")
    if os.path.isfile(candidate):
        return candidate
    for name in sorted(os.listdir(model_dir)):
        if name.endswith(".model"):
            return os.path.join(model_dir, name)
    raise FileNotFoundError(f"{model_dir}: no vocab.txt or SentencePiece .model file")
