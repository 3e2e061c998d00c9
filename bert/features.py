"""Features of a GLUE task: tokenized examples, cached TFRecords and the Estimator input_fn."""
import hashlib
import json
import os

import tensorflow as tf

from bert import files, tasks, tokenization
from bert.errors import UsageError

FEATURE_CACHE_VERSION = 1  # bump when the feature layout changes to invalidate caches
SHUFFLE_BUFFER = 10000
# head_tail keeps this share of a long text's tokens from its start and the rest from its end:
# Sun et al. 2019 ("How to Fine-Tune BERT for Text Classification") kept head 128 + tail 382.
HEAD_TAIL_HEAD_SHARE = 128 / 510
HEAD, HEAD_TAIL = "head", "head_tail"
SINGLE_SPECIAL_TOKENS = 2  # [CLS] a [SEP]
PAIR_SPECIAL_TOKENS = 3  # [CLS] a [SEP] b [SEP]


def head_tail_split(budget):
    """(tokens kept from the start, tokens kept from the end) of a text over ``budget``."""
    head = int(round(budget * HEAD_TAIL_HEAD_SHARE))
    return head, budget - head


def truncate_single(tokens, budget, truncation):
    """A single text's tokens within ``budget``: its first ones, or head_tail's start + end."""
    if len(tokens) <= budget:
        return tokens
    if truncation != HEAD_TAIL:
        return tokens[:budget]
    head, tail = head_tail_split(budget)
    return tokens[:head] + (tokens[-tail:] if tail else [])


def convert_example(example, label_map, max_seq_length, tokenizer, truncation=HEAD):
    """Token ids, mask and segment ids for one example ([CLS] a [SEP] b [SEP], padded); a pair
    is always trimmed from its ends (``truncation`` is for single texts)."""
    tokens_a = tokenizer.tokenize(example.text_a)
    tokens_b = tokenizer.tokenize(example.text_b) if example.text_b else None
    if tokens_b:
        truncate_pair(tokens_a, tokens_b, max_seq_length - PAIR_SPECIAL_TOKENS)
    else:
        tokens_a = truncate_single(tokens_a, max_seq_length - SINGLE_SPECIAL_TOKENS, truncation)
    tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
    segment_ids = [0] * len(tokens)
    if tokens_b:
        tokens += tokens_b + ["[SEP]"]
        segment_ids += [1] * (len(tokens_b) + 1)
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    padding = max_seq_length - len(input_ids)
    label = float(example.label) if label_map is None else label_map[example.label]
    return {"input_ids": input_ids + [0] * padding,
            "input_mask": [1] * len(input_ids) + [0] * padding,
            "segment_ids": segment_ids + [0] * padding,
            "label_ids": label}


def truncate_pair(tokens_a, tokens_b, max_length):
    """Trim the longer sequence one token at a time: keeps both sides' information."""
    while len(tokens_a) + len(tokens_b) > max_length:
        (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()


def _tf_example(feature, is_regression):
    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    fields = {key: ints(feature[key]) for key in ("input_ids", "input_mask", "segment_ids")}
    fields["label_ids"] = (tf.train.Feature(float_list=tf.train.FloatList(
        value=[feature["label_ids"]])) if is_regression else ints([feature["label_ids"]]))
    return tf.train.Example(features=tf.train.Features(feature=fields))


def cached_features(examples, processor, tokenizer, max_seq_length, record_file, cache_key):
    """Write examples as a TFRecord once; reuse it while the inputs that made it are unchanged."""
    key_file = record_file + ".json"
    if os.path.exists(record_file) and os.path.exists(key_file):
        with open(key_file, encoding="utf-8") as handle:
            if json.load(handle) == cache_key:
                return record_file
    labels = processor.get_labels()
    label_map = None if labels is None else {label: i for i, label in enumerate(labels)}
    with files.atomic_path(record_file) as temp, tf.io.TFRecordWriter(temp) as writer:
        for example in examples:
            feature = convert_example(example, label_map, max_seq_length, tokenizer,
                                      processor.truncation)
            writer.write(_tf_example(feature, processor.is_regression).SerializeToString())
    files.write_text_atomic(key_file, json.dumps(cache_key, sort_keys=True))
    return record_file


def input_fn_builder(record_file, seq_length, is_training, batch_size, is_regression, seed=None):
    """Estimator input_fn; for training ``batch_size`` is the global batch of one step.

    Under a strategy Estimator calls it once per input pipeline (worker) with an
    ``input_context``: the pipeline reads its shard and batches ``batch_size / replicas``, and
    each of its replicas takes one such batch a step. Without a strategy in a parameter-server
    cluster each worker reads its own shard and a step is one worker's whole batch.
    """
    name_to_feature = {
        "input_ids": tf.io.FixedLenFeature([seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([seq_length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([seq_length], tf.int64),
        "label_ids": tf.io.FixedLenFeature([], tf.float32 if is_regression else tf.int64),
    }

    def parse(record):
        example = tf.io.parse_single_example(record, name_to_feature)
        return {key: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value
                for key, value in example.items()}

    def input_fn(params=None, config=None, input_context=None):
        dataset = tf.data.TFRecordDataset(record_file)
        size = batch_size
        if is_training:
            if input_context is not None:
                shards, index = input_context.num_input_pipelines, input_context.input_pipeline_id
                size = input_context.get_per_replica_batch_size(batch_size)
            elif config is not None and config.num_worker_replicas > 1:
                shards, index = config.num_worker_replicas, config.global_id_in_cluster
            else:
                shards, index = 1, 0
            if shards > 1:
                dataset = dataset.shard(shards, index)
            dataset = dataset.repeat().shuffle(buffer_size=SHUFFLE_BUFFER, seed=seed)
        dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.batch(size, drop_remainder=is_training).prefetch(tf.data.AUTOTUNE)

    return input_fn


def examples_digest(examples):
    """Of every field of every example, so an edited row (same count, same ids) is new data."""
    digest = hashlib.sha1()
    for example in examples:
        fields = (example.guid, example.text_a, example.text_b, example.label)
        digest.update(json.dumps(fields).encode())
    return digest.hexdigest()


def file_fingerprint(path):
    stat = os.stat(path)
    return f"{os.path.abspath(path)}:{stat.st_size}:{int(stat.st_mtime)}"


class Task:
    """The data side of a run: examples of each split, tokenizer and cached features."""

    def __init__(self, task_name, data_dir, vocab_file, do_lower_case, max_seq_length,
                 features_dir, init_checkpoint=None):
        self.name = tasks.canonical_task_name(task_name)
        self.processor = tasks.get_processor(task_name)
        self.data_dir = data_dir
        self.max_seq_length = max_seq_length
        self.features_dir = features_dir
        try:
            tokenization.validate_case_matches_checkpoint(do_lower_case, init_checkpoint)
        except ValueError as error:
            raise UsageError(f"--do_lower_case: {error}") from None
        self.tokenizer = tokenization.create_tokenizer(vocab_file, do_lower_case)
        self._cache_key_base = {"version": FEATURE_CACHE_VERSION, "task": self.name,
                                "vocab": file_fingerprint(vocab_file),
                                "lower_case": do_lower_case, "max_seq_length": max_seq_length}

    @property
    def is_regression(self):
        return self.processor.is_regression

    @property
    def num_labels(self):
        labels = self.processor.get_labels()
        return 1 if labels is None else len(labels)

    def examples(self, split, limit=0):
        getter = {"train": self.processor.get_train_examples,
                  "dev": self.processor.get_dev_examples,
                  "test": self.processor.get_test_examples}[split]
        examples = getter(self.data_dir)
        return examples[:limit] if limit else examples

    def cache_key(self, split, examples, limit=0):
        """What the cached TFRecord of a split is made from: known before it is written, so a
        run can check what depends on the features before writing anything."""
        return dict(self._cache_key_base, split=split, limit=limit, count=len(examples),
                    data=examples_digest(examples))

    def records(self, split, examples, limit=0):
        """TFRecord of a split (cached in features_dir)."""
        key = self.cache_key(split, examples, limit)
        os.makedirs(self.features_dir, exist_ok=True)
        return cached_features(examples, self.processor, self.tokenizer, self.max_seq_length,
                               os.path.join(self.features_dir, f"{split}.tf_record"), key)

    def input_fn(self, split, examples, batch_size, is_training, limit=0, seed=None):
        return input_fn_builder(self.records(split, examples, limit), self.max_seq_length,
                                is_training, batch_size, self.is_regression, seed)
