"""Tiny random BERT models in Google's format and small GLUE-style tasks, shared by the tests.

This module holds no tests of its own. A model folder written here is what the programs read:
bert_config.json, vocab.txt and bert_model.ckpt (plus provenance.json), written with
bert.checkpoint.write_model_folder.
"""
import contextlib
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

import pytest

from bert import checkpoint, modeling
from bert.classifier import classifier_head
from distill import importance as unit_importance
from flop import factorize

tf1 = tf.compat.v1

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCTUATION = [".", ",", "?"]
# Every word of the fixture tasks below (and of the tests' own sentences), so none is [UNK].
WORDS = ["the", "a", "is", "good", "bad", "movie", "not", "very", "it", "was", "fun", "film",
         "great", "awful", "plot", "dull", "and", "who", "what", "same", "cat", "dog", "sat"]
TINY_VOCAB = SPECIAL_TOKENS + PUNCTUATION + WORDS
NUM_LABELS = 2
BATCH = 3
SEQ = 8


def tiny_config(**overrides):
    """2 layers, hidden 8, intermediate 12, 32 positions; ``overrides`` change any field."""
    values = dict(vocab_size=len(TINY_VOCAB), hidden_size=8, num_hidden_layers=2,
                  num_attention_heads=2, intermediate_size=12, max_position_embeddings=32,
                  type_vocab_size=2)
    values.update(overrides)
    return modeling.BertConfig(**values)


def _create_variables(config, num_labels):
    """Every variable of BertModel for ``config`` (and a classifier head when num_labels)."""
    model = modeling.BertModel(config, False, tf1.placeholder(tf.int32, [None, SEQ]))
    if num_labels:
        classifier_head(model.pooled_output, num_labels, False)
    return tf1.global_variables()


def random_weights(config, num_labels=NUM_LABELS, seed=0):
    """Weights of every variable BertModel + head creates for ``config``, drawn at random."""
    with tf.Graph().as_default():
        shapes = {v.op.name: v.shape.as_list() for v in _create_variables(config, num_labels)}
    rng = np.random.RandomState(seed)
    return {name: rng.normal(0.0, 0.3, shape).astype(np.float32)
            for name, shape in shapes.items()}


def initializer_weights(config, num_labels=0):
    """Weights as the model's own initialisers draw them (no head unless ``num_labels``)."""
    with tf.Graph().as_default():
        variables = _create_variables(config, num_labels)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            return dict(zip((v.op.name for v in variables), session.run(variables)))


def write_small_model(folder, num_layers=2, num_labels=0):
    """A 16-wide BERT (64 positions) with the initialisers' weights: trainable in a few steps.
    Returns its config."""
    config = tiny_config(hidden_size=16, num_hidden_layers=num_layers, intermediate_size=32,
                         max_position_embeddings=64)
    write_tiny_model(folder, config, initializer_weights(config, num_labels))
    return config


def write_vocab(folder, vocab=TINY_VOCAB):
    path = folder / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    return str(path)


def write_tiny_model(folder, config=None, values=None, num_labels=NUM_LABELS, vocab=TINY_VOCAB):
    """A complete model folder (config, vocab, checkpoint); random weights unless ``values``.

    Returns (config, values).
    """
    config = config or tiny_config()
    values = values if values is not None else random_weights(config, num_labels)
    with tempfile.TemporaryDirectory() as scratch:
        vocab_file = write_vocab(pathlib.Path(scratch), vocab)
        checkpoint.write_model_folder(str(folder), config, vocab_file, values, step="test",
                                      source="random")
    return config, values


def write_factorized_model(root, finetuned=True):
    """root/dense: a tiny model; root/fact: its flop.factorize output. Returns (config, ranks)."""
    config, _ = write_tiny_model(root / "dense")
    _, ranks = factorize.factorize(str(root / "dense" / "bert_config.json"), str(root / "dense"),
                                   str(root / "fact"), finetuned=finetuned)
    return config, ranks


def write_sst2_task(folder, rows=40):
    """SST-2 layout: train and dev with ``rows`` labelled sentences each, a 2-line test.tsv."""
    positive = ["a good film .", "great fun and a very good plot .", "the movie is great ."]
    negative = ["a bad film .", "dull and awful .", "the plot is not good ."]
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["sentence\tlabel"] + [f"{(positive if i % 2 else negative)[i % 3]}\t{i % 2}"
                                   for i in range(rows)]
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    (folder / "test.tsv").write_text("index\tsentence\n0\ta good film .\n1\tawful .\n")
    return folder


# deploy.compress's fixed chain on a tiny model in seconds: one epoch of each step.
TINY_COMPRESS_FLAGS = {"max_seq_length": 16, "train_batch_size": 8, "learning_rate": 1e-3,
                       "epochs": 1, "prune_epochs": 1, "prune_learning_rate": 1e-3,
                       "target_sparsity": 0.3, "target_sparsity_warmup": 2,
                       "save_checkpoints_steps": 2, "power_epochs": 1, "lr_soft_extract": 0.02,
                       "power_lambda": 0.5, "latency_iterations": 1}


def compress_command(inputs, output_dir, *extra, **overrides):
    """deploy.compress on the SST-2-like task in inputs/data and the model in inputs/pretrained;
    ``overrides`` replace TINY_COMPRESS_FLAGS' values, ``extra`` flags follow."""
    flags = {**TINY_COMPRESS_FLAGS, **overrides}
    return [sys.executable, "-m", "deploy.compress", "--task_name=SST-2",
            f"--data_dir={inputs / 'data'}", f"--model_dir={inputs / 'pretrained'}",
            f"--output_dir={output_dir}", *(f"--{name}={value}" for name, value in flags.items()),
            *extra]


def random_sentences(count, seed=0):
    """``count`` pairs and single sentences of the tiny vocabulary, up to 20 + 12 words (longer
    than the tests' sequence lengths: truncation is exercised too)."""
    rng = np.random.RandomState(seed)
    words = WORDS + PUNCTUATION

    def text(low, high):
        return " ".join(rng.choice(words, rng.randint(low, high))).capitalize()

    return [(text(1, 20), text(1, 12) if index % 2 else None) for index in range(count)]


def example_inputs(vocab_size, seed=1):
    rng = np.random.RandomState(seed)
    ids = rng.randint(0, vocab_size, [BATCH, SEQ]).astype(np.int32)
    mask = np.ones([BATCH, SEQ], np.int32)
    mask[0, SEQ // 2:] = 0  # one padded example
    types = np.zeros([BATCH, SEQ], np.int32)
    types[:, SEQ // 2:] = 1
    return ids, mask, types


def classifier_logits(config, checkpoint_path, dense_factory_builder=None,
                      num_labels=NUM_LABELS):
    """Eval-mode logits of the model stored at ``checkpoint_path`` on fixed inputs.

    ``dense_factory_builder(config)`` supplies a method's factory (default: the config's own);
    every variable must load from the checkpoint.
    """
    ids, mask, types = example_inputs(config.vocab_size)
    with tf.Graph().as_default():
        factory = dense_factory_builder(config) if dense_factory_builder else None
        model = modeling.BertModel(config, False, tf.constant(ids), tf.constant(mask),
                                   tf.constant(types), dense_factory=factory)
        logits = classifier_head(model.pooled_output, num_labels, False)
        checkpoint.init_from_checkpoint(checkpoint_path)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            return session.run(logits)


@contextlib.contextmanager
def small_tmpfs(folder, size):
    """A tmpfs of ``size`` (e.g. "8k") mounted on ``folder``: writes past it fail with ENOSPC,
    as on a full disk. Skips the test where mounting is not permitted."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({mounted.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def random_importance(config, seed=0):
    """Random scores of every unit of ``config``, as distill.importance saves them."""
    rng = np.random.RandomState(seed)
    layers = range(config.num_hidden_layers)
    return unit_importance.Importance(
        heads=[rng.rand(config.heads(i)) for i in layers],
        neurons=[rng.rand(config.intermediate(i)) for i in layers],
        hidden=rng.rand(config.hidden_size), attention_blocks=rng.rand(len(layers)),
        ffn_blocks=rng.rand(len(layers)), layers=rng.rand(len(layers)), base_loss=1.0,
        source={})
