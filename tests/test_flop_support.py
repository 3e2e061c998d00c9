"""Tiny models and logits shared by the FLOP tests (this module holds no tests of its own)."""
import numpy as np
import tensorflow as tf

from bert import checkpoint, modeling
from bert.run_classifier import classifier_head

tf1 = tf.compat.v1

TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "is", "good", "bad",
              "movie", "not", "very", "it", "was", "fun"]
NUM_LABELS = 2
# Above the vocabulary file's size: bert.benchmark feeds random ids from 1000 up.
TINY_VOCAB_SIZE = 1100
BATCH = 3
SEQ = 8


def tiny_config(**overrides):
    values = dict(vocab_size=TINY_VOCAB_SIZE, hidden_size=8, num_hidden_layers=2,
                  num_attention_heads=2, intermediate_size=12, max_position_embeddings=32,
                  type_vocab_size=2)
    values.update(overrides)
    return modeling.BertConfig(**values)


def random_weights(config, num_labels=NUM_LABELS, seed=0):
    """Weights of every variable BertModel + head creates for ``config``, drawn at random."""
    with tf.Graph().as_default():
        ids = tf1.placeholder(tf.int32, [None, SEQ])
        model = modeling.BertModel(config, False, ids)
        classifier_head(model.pooled_output, num_labels, False)
        shapes = {v.op.name: v.shape.as_list() for v in tf1.global_variables()}
    rng = np.random.RandomState(seed)
    return {name: rng.normal(0.0, 0.3, shape).astype(np.float32)
            for name, shape in shapes.items()}


def write_vocab(folder):
    path = folder / "vocab.txt"
    path.write_text("\n".join(TINY_VOCAB) + "\n")
    return str(path)


def write_tiny_model(folder, config=None, values=None, num_labels=NUM_LABELS):
    """A complete model folder (config, vocab, checkpoint) with random weights."""
    config = config or tiny_config()
    values = values if values is not None else random_weights(config, num_labels)
    scratch = folder.parent / (folder.name + "_vocab")
    scratch.mkdir(parents=True, exist_ok=True)
    checkpoint.write_model_folder(str(folder), config, write_vocab(scratch), values,
                                  step="test", source="random")
    return config, values


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
