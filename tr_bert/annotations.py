"""Per-example values of the fine-tuned model that the RL and joint stages train with.

* ``--do_eval_grad`` (residual strategy): token importance, for every encoder layer and token
  at the layer's selector input, |∂loss/∂h · h|: the first-order estimate of how much the gold
  label's loss changes when the token's vector is removed. The policy imitates "keep the fewest
  tokens holding ``guide_mass`` of it" on guide steps.
* ``--do_eval_logits``: the model's logits, distilled in joint training.

Each is a TFRecord holding only its feature, one record per training example in the order of
the task's cached train features, with a json beside it naming those features (their cache key,
so a stage refuses annotations of other examples or another sequence length). Training zips
them with the train features before shuffling, so every example meets its own values.
"""
import hashlib
import json
import logging
import os

import numpy as np
import tensorflow as tf

from bert import checkpoint, classifier, files, methods
from bert.errors import UsageError
from tr_bert.method import IMPORTANCE_FEATURE, TEACHER_LOGITS_FEATURE

tf1 = tf.compat.v1
log = logging.getLogger("tr_bert")

IMPORTANCE_FILE = "token_importance.tf_record"
LOGITS_FILE = "teacher_logits.tf_record"
KEY_SUFFIX = ".json"
VOCAB_KEY = "vocab"
LOG_EVERY_N_BATCHES = 50


class RecordingSelector:
    """Changes nothing; keeps the hidden states entering every layer's feed-forward block."""

    def __init__(self):
        self.hidden = []

    def __call__(self, layer_index, hidden, attention_probs, input_mask):
        self.hidden.append(hidden)
        return hidden, input_mask


def features_key(cache_key, vocab_file):
    """What the task's train features are made from: their cache key (``Task.cache_key``, known
    before they are written), with the vocabulary's content instead of its path (every stage's
    model folder has a copy)."""
    key = dict(cache_key)
    with open(vocab_file, "rb") as handle:
        key[VOCAB_KEY] = hashlib.sha1(handle.read()).hexdigest()
    return key


def is_current(annotation_file, key):
    """True when ``annotation_file`` exists and was made for the features of ``key``
    (``features_key``)."""
    key_file = annotation_file + KEY_SUFFIX
    if not (os.path.isfile(annotation_file) and os.path.isfile(key_file)):
        return False
    with open(key_file, encoding="utf-8") as handle:
        return json.load(handle) == key


def require_current(annotation_file, key, flag, stage_flag):
    if not os.path.isfile(annotation_file):
        raise UsageError(f"--{flag}: {annotation_file} not found; run {stage_flag} first")
    if not is_current(annotation_file, key):
        raise UsageError(f"--{flag}: {annotation_file} was made for other training features "
                         f"(--max_train_examples, --max_seq_length or the data changed); run "
                         f"{stage_flag} again with this run's flags")


def _float_record(name, values):
    feature = tf.train.Feature(float_list=tf.train.FloatList(value=values.ravel().tolist()))
    return tf.train.Example(features=tf.train.Features(feature={name: feature}))


def _write_records(path, name, arrays, key):
    """One record per row of ``arrays``, atomically; then the key beside it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with files.atomic_path(path) as temp, tf.io.TFRecordWriter(temp) as writer:
        for row in arrays:
            writer.write(_float_record(name, row).SerializeToString())
    files.write_text_atomic(path + KEY_SUFFIX, json.dumps(key, sort_keys=True))


def annotate(bert_config, checkpoint_prefix, task, record_file, key, batch_size,
             importance_file=None, logits_file=None):
    """Run the model over the train features once; write the requested annotation files,
    each with ``key`` (``features_key`` of ``record_file``) beside it."""
    num_outputs = task.num_labels
    importance, logits = [], []
    with tf.Graph().as_default():
        dataset = classifier.input_fn_builder(record_file, task.max_seq_length, False,
                                              batch_size, task.is_regression)()
        features = tf1.data.make_one_shot_iterator(dataset).get_next()
        hooks = methods.GraphHooks()
        hooks.token_selector = RecordingSelector()
        graph = classifier.create_model(bert_config, False, features, num_outputs,
                                        task.is_regression, hooks)
        hidden = hooks.token_selector.hidden
        # Examples are independent, so the gradient of the summed loss is each one's own.
        gradients = tf.gradients(tf.reduce_sum(graph.per_example_loss), hidden)
        mask = tf.cast(features["input_mask"], tf.float32)
        scores = tf.stack([tf.abs(tf.reduce_sum(g * h, axis=-1)) * mask
                           for g, h in zip(gradients, hidden)], axis=1)  # [B, layers, S]
        checkpoint.init_from_checkpoint(checkpoint_prefix)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            batches = 0
            while True:
                try:
                    batch_scores, batch_logits = session.run([scores, graph.logits])
                except tf.errors.OutOfRangeError:
                    break
                importance.append(batch_scores)
                logits.append(batch_logits)
                batches += 1
                if batches % LOG_EVERY_N_BATCHES == 0:
                    log.info("annotated %d batches", batches)
    if importance_file:
        _write_records(importance_file, IMPORTANCE_FEATURE, np.concatenate(importance), key)
        log.info("wrote %s", importance_file)
    if logits_file:
        _write_records(logits_file, TEACHER_LOGITS_FEATURE, np.concatenate(logits), key)
        log.info("wrote %s", logits_file)


def annotated_input_fn(record_file, annotations, seq_length, batch_size, is_regression, seed):
    """Training input_fn: the train features zipped with ``annotations`` ({feature name:
    (file, values per example)}), then repeated, shuffled and batched as the task's own."""
    def parse(name, size):
        spec = {name: tf.io.FixedLenFeature([size], tf.float32)}
        return lambda record: tf.io.parse_single_example(record, spec)

    def merge(*parts):
        merged = {}
        for part in parts:
            merged.update(part)
        return merged

    def input_fn(params=None, config=None, input_context=None):
        base = classifier.input_fn_builder(record_file, seq_length, False, 1,
                                           is_regression)().unbatch()
        parts = [base] + [tf.data.TFRecordDataset(path).map(parse(name, size))
                          for name, (path, size) in sorted(annotations.items())]
        dataset = tf.data.Dataset.zip(tuple(parts)).map(merge)
        size = batch_size
        if input_context is not None:
            size = input_context.get_per_replica_batch_size(batch_size)
            dataset = dataset.shard(input_context.num_input_pipelines,
                                    input_context.input_pipeline_id)
        dataset = dataset.repeat().shuffle(buffer_size=classifier.SHUFFLE_BUFFER, seed=seed)
        return dataset.batch(size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return input_fn
