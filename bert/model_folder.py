"""The model folder: the unit that flows from step to step (see README, "Layout").

Reading one (config, checkpoint, vocabulary) with errors that name the flag, defaulting a run's
config and vocabulary to a folder's, making a folder of a config and vocabulary, writing one
whole (a reader never finds it missing or half written), writing one of the model's part of a
training checkpoint, and dropping the Estimator's checkpoints once a model folder holds the
result.
"""
import dataclasses
import os
import re
from typing import Optional

import tensorflow as tf

from bert import checkpoint, cli, files, modeling
from bert.errors import UsageError

CONFIG_FILE = "bert_config.json"
# The Estimator's numbered checkpoints in a training folder (weights + optimizer state).
ESTIMATOR_CHECKPOINTS = "model.ckpt-*"
FOLDER_EXPECTED = "a model folder with bert_config.json and a checkpoint"
CONFIG_EXPECTED = "a model folder with bert_config.json"
CONFIG_FILE_EXPECTED = "a bert_config.json"
VOCAB_EXPECTED = "vocab.txt or a SentencePiece .model"


@dataclasses.dataclass
class ModelFiles:
    """What a model folder holds: its config, checkpoint prefix and vocabulary (if asked for)."""
    path: str
    bert_config: modeling.BertConfig
    checkpoint_prefix: str
    vocab_file: Optional[str] = None


def load(path, flag="model_dir", expected=FOLDER_EXPECTED, need_vocab=True,
         verify_weights=False):
    """The files of the model folder ``--flag`` names; UsageError naming the flag otherwise.
    ``verify_weights`` reads the checkpoint whole (its index alone lists a truncated one): for
    a reader that restores it later, where TF's error would be a traceback."""
    cli.require_dir(path, flag, expected)
    config = modeling.BertConfig.from_json_file(cli.require_file(
        os.path.join(path, CONFIG_FILE), flag, CONFIG_EXPECTED))
    try:
        prefix = checkpoint.resolve_checkpoint(path, flag=flag)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    if verify_weights:
        try:
            checkpoint.verify_checkpoint(prefix)
        except checkpoint.CheckpointDamagedError as error:
            raise checkpoint.CheckpointDamagedError(f"--{flag}={path}: {error}") from None
    vocab_file = None
    if need_vocab:
        try:
            vocab_file = checkpoint.find_vocab(path)
        except FileNotFoundError as error:
            raise UsageError(f"--{flag}={path}: {error}") from None
    return ModelFiles(path, config, prefix, vocab_file)


def find_config(folder):
    """The config of a model folder; FileNotFoundError without one (as find_vocab)."""
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder} has no {CONFIG_FILE}")
    return path


def file_from_folder(given, flag, folder, folder_flag, find, expected):
    """``--flag``'s file when given, else the one ``find`` picks in the model folder that
    ``--folder_flag`` names: how every entry point defaults its config and vocabulary."""
    if given:
        return cli.require_file(given, flag, expected)
    cli.require(folder and os.path.isdir(folder),
                f"--{flag} is required when --{folder_flag} is not a model folder")
    try:
        return find(folder)
    except FileNotFoundError as error:
        raise UsageError(f"--{flag} not given and {error}") from None


def config_and_vocab(folder, folder_flag, config_file=None, vocab_file=None,
                     config_flag="bert_config_file", vocab_flag="vocab_file"):
    """(config file, vocab file): the flags' own, else those of the ``--folder_flag`` folder."""
    return (file_from_folder(config_file, config_flag, folder, folder_flag, find_config,
                             CONFIG_FILE_EXPECTED),
            file_from_folder(vocab_file, vocab_flag, folder, folder_flag, checkpoint.find_vocab,
                             VOCAB_EXPECTED))


def copy_config_and_vocab(folder, config, vocab_file):
    """The config and vocabulary that make ``folder`` a model folder beside its checkpoint, so
    export, benchmark or a teacher flag take it as it is. Returns the vocabulary's path there."""
    config.to_json_file(os.path.join(folder, CONFIG_FILE))
    target = os.path.join(folder, os.path.basename(vocab_file))
    if os.path.abspath(target) != os.path.abspath(vocab_file):
        files.copy_file_atomic(vocab_file, target)
    return target


def write_model_folder(output_dir, config, vocab_file, values, step, source, flags=None,
                       extra_files=None, checkpoint_name=checkpoint.CHECKPOINT_NAME):
    """Write a complete model folder: config, vocab, checkpoint, provenance, ``extra_files``.

    It is built beside ``output_dir`` and swapped in whole (files.atomic_folder), so a reader
    always finds the old folder or the new one, even when the step is killed or the disk fills.
    A write failure is raised as OSError naming ``output_dir``. Returns the absolute path.
    """
    output_dir = os.path.abspath(output_dir)
    if os.path.isfile(output_dir):
        raise NotADirectoryError(f"output_dir {output_dir} is a file; expected a folder")
    try:
        with files.atomic_folder(output_dir) as folder:
            copy_config_and_vocab(folder, config, vocab_file)
            checkpoint.save_variables(values, os.path.join(folder, checkpoint_name))
            checkpoint.write_provenance(folder, step, source, flags)
            for name, text in (extra_files or {}).items():
                files.write_text_atomic(os.path.join(folder, name), text)
    except OSError as error:
        if error.errno is None:
            raise
        raise OSError(error.errno, f"cannot write model folder {output_dir} "
                                   f"({error.strerror})") from error
    return output_dir


def write_from_training_checkpoint(training_checkpoint, model_dir, config, vocab_file, keep,
                                   step, source, flags=None):
    """The model's weights of a training checkpoint as a plain model folder: only variables
    matching a ``keep`` regex (no MLM head, no distillation projections, no optimizer state),
    with the checkpoint's global step so evaluations of the folder log at the trained step."""
    values = checkpoint.read_checkpoint(training_checkpoint)
    kept = {name: value for name, value in values.items()
            if any(re.search(pattern, name) for pattern in keep)}
    kept["global_step"] = tf.train.load_checkpoint(training_checkpoint).get_tensor("global_step")
    return write_model_folder(model_dir, config, vocab_file, kept, step=step, source=source,
                              flags=flags)


def drop_training_checkpoints(training_dir):
    """Once a model folder holds the result, the Estimator's checkpoints (weights + Adam
    moments, three times the model) only take disk. TensorBoard events stay."""
    for path in tf.io.gfile.glob(os.path.join(training_dir, ESTIMATOR_CHECKPOINTS)):
        tf.io.gfile.remove(path)
    state_file = os.path.join(training_dir, checkpoint.STATE_FILE)
    if tf.io.gfile.exists(state_file):
        tf.io.gfile.remove(state_file)
