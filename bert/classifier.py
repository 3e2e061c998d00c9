"""The classifier library: a GLUE task, features, model_fn, Estimator, train / evaluate / predict.

Driven by a plain ``ClassifierSettings`` (no flags are read here): ``bert.run_classifier`` fills
it from Google's flags, and every method's entry point fills it from its own. Compression
methods change the run only through ``Method.build`` (see ``bert.methods``); several methods
compose in one run, and a model folder's config brings the methods its inference needs.

    classifier = Classifier(settings, methods=[...])
    classifier.run()            # do_train / do_eval / do_predict, as the settings say

Re-running into the same ``output_dir`` resumes from its last good checkpoint. Ctrl-C or
SIGTERM during training saves the current step before the run stops.
"""
import dataclasses
import errno
import hashlib
import json
import logging
import math
import os
import re
import signal
import time
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from bert import (checkpoint, distribution, glue, methods, metrics, modeling, optimization,
                  tokenization)
from bert.errors import Interrupted, TrainingDivergedError, UsageError

tf1 = tf.compat.v1
log = logging.getLogger("bert")

CLASSIFIER_DROPOUT = 0.1  # Google's head keeps this fixed, whatever the config says.
HEAD_VARIABLES = (r"^output_weights$", r"^output_bias$")  # fresh at fine-tuning start
FEATURE_CACHE_VERSION = 1  # bump when the feature layout changes to invalidate caches
EVAL_RESULTS_FILE = "eval_results.txt"
TEST_RESULTS_FILE = "test_results.tsv"
HPARAMS_FILE = "hparams.json"
CONFIG_FILE = "bert_config.json"
SECONDS_PER_MINUTE = 60.0
MIN_SEQ_LENGTH = 3  # [CLS] x [SEP]
SHUFFLE_BUFFER = 10000
TRAINING_LOSS_ALIAS = "loss_1"  # the FLOP seed's TensorBoard name of the training-step loss
# The FLOP seed's TensorBoard names of the binary metrics, beside our eval_* names.
BINARY_METRIC_ALIASES = {"precision": "eval_precision", "recall": "eval_recall",
                         "f1_score": "eval_f1"}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device", as TF's errors say
TEMPORARY_NAME = re.compile(r"\.tmp[0-9a-f]+$")


@dataclasses.dataclass
class ClassifierSettings:
    """Everything a classifier run needs; field names are Google's flag names."""
    task_name: str
    data_dir: str
    vocab_file: str
    bert_config_file: str
    output_dir: str
    init_checkpoint: Optional[str] = None
    do_lower_case: bool = True
    max_seq_length: int = 128
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    train_batch_size: int = 32  # GLOBAL: split over the replicas of a distributed run
    eval_batch_size: int = 8
    predict_batch_size: int = 8
    learning_rate: float = 5e-5
    weight_decay: float = optimization.DEFAULT_WEIGHT_DECAY  # AdamW's decoupled decay rate
    num_train_epochs: float = 3.0
    num_train_steps: Optional[int] = None  # overrides epochs × examples / batch size when set
    warmup_proportion: float = 0.1
    num_warmup_steps: Optional[int] = None  # overrides warmup_proportion when set
    save_checkpoints_steps: int = 1000
    keep_checkpoint_max: int = 3
    max_train_examples: int = 0
    log_every_n_steps: int = 20
    seed: int = 12345
    evaluate_every_checkpoint: bool = False  # train_and_evaluate: eval after each checkpoint
    features_dir: Optional[str] = None  # where TFRecord features are cached (default output_dir)
    write_submission: bool = True  # GLUE submission file beside test_results.tsv
    # Overrides of the config's dropout (a method's run may train with other dropout).
    hidden_dropout_prob: Optional[float] = None
    attention_probs_dropout_prob: Optional[float] = None
    classifier_dropout: float = CLASSIFIER_DROPOUT  # the head's dropout (Google's fixed 0.1)
    # How training is spread (bert.distribution): none, mirrored, multi_worker, parameter_server.
    distribution: str = distribution.NONE
    devices: Sequence[str] = ()  # devices of "mirrored" (default: every GPU, else the CPU)

    def validate(self, bert_config):
        """Refuse values no run can use, naming the flag; writes nothing."""
        if not (self.do_train or self.do_eval or self.do_predict):
            raise UsageError("at least one of --do_train, --do_eval, --do_predict must be set")
        for name in ("task_name", "data_dir", "vocab_file", "bert_config_file", "output_dir"):
            if not getattr(self, name):
                raise UsageError(f"--{name} is required")
        glue.canonical_task_name(self.task_name)
        if not os.path.isdir(self.data_dir):
            raise UsageError(f"--data_dir={self.data_dir}: folder not found")
        if not os.path.isfile(self.vocab_file):
            raise UsageError(f"--vocab_file={self.vocab_file}: file not found (expected "
                             "vocab.txt or a SentencePiece .model)")
        if os.path.isfile(self.output_dir):
            raise UsageError(f"--output_dir={self.output_dir} is a file; expected a folder")
        if not MIN_SEQ_LENGTH <= self.max_seq_length <= bert_config.max_position_embeddings:
            raise UsageError(f"--max_seq_length={self.max_seq_length}: must be in "
                             f"[{MIN_SEQ_LENGTH}, max_position_embeddings="
                             f"{bert_config.max_position_embeddings}]")
        for name in ("train_batch_size", "eval_batch_size", "predict_batch_size",
                     "save_checkpoints_steps", "keep_checkpoint_max", "log_every_n_steps"):
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name}={getattr(self, name)}: must be positive")
        if not (math.isfinite(self.learning_rate) and self.learning_rate >= 0):
            raise UsageError(f"--learning_rate={self.learning_rate}: must be a number >= 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(f"--weight_decay={self.weight_decay}: must be a number >= 0")
        if self.do_train and not self.num_train_epochs > 0:
            raise UsageError(f"--num_train_epochs={self.num_train_epochs}: must be positive")
        if not 0 <= self.warmup_proportion <= 1:
            raise UsageError(f"--warmup_proportion={self.warmup_proportion}: must be in [0, 1]")
        if self.num_warmup_steps is not None and self.num_warmup_steps < 0:
            raise UsageError(f"--num_warmup_steps={self.num_warmup_steps}: must be >= 0")
        if self.max_train_examples < 0:
            raise UsageError(f"--max_train_examples={self.max_train_examples}: must be >= 0")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob",
                     "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise UsageError(f"--{name}={value}: must be in [0, 1)")
        distribution.check_cluster(self.distribution)
        if self.devices and self.distribution != distribution.MIRRORED:
            raise UsageError(f"devices {list(self.devices)} are for --distribution=mirrored")
        if self.init_checkpoint:
            try:
                checkpoint.verify_checkpoint(checkpoint.resolve_checkpoint(self.init_checkpoint))
            except FileNotFoundError as error:
                raise UsageError(str(error)) from None
        elif self.do_train:
            raise UsageError("--init_checkpoint is required with --do_train (fine-tuning "
                             "starts from a pretrained model)")

    def model_config(self):
        """The config file with this run's dropout overrides: what the run trains and ships."""
        config = modeling.BertConfig.from_json_file(self.bert_config_file)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if getattr(self, name) is not None:
                setattr(config, name, getattr(self, name))
        return config


# Features ---------------------------------------------------------------------------------------
def convert_example(example, label_map, max_seq_length, tokenizer):
    """Token ids, mask and segment ids for one example ([CLS] a [SEP] b [SEP], padded)."""
    tokens_a = tokenizer.tokenize(example.text_a)
    tokens_b = tokenizer.tokenize(example.text_b) if example.text_b else None
    if tokens_b:
        truncate_pair(tokens_a, tokens_b, max_seq_length - 3)
    else:
        tokens_a = tokens_a[:max_seq_length - 2]
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
    temp = f"{record_file}.tmp-{os.getpid()}"
    try:
        with tf.io.TFRecordWriter(temp) as writer:
            for example in examples:
                feature = convert_example(example, label_map, max_seq_length, tokenizer)
                writer.write(_tf_example(feature, processor.is_regression).SerializeToString())
        os.replace(temp, record_file)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    modeling.write_text_atomic(key_file, json.dumps(cache_key, sort_keys=True))
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


def file_fingerprint(path):
    stat = os.stat(path)
    return f"{os.path.abspath(path)}:{stat.st_size}:{int(stat.st_mtime)}"


class Task:
    """The data side of a run: examples of each split, tokenizer and cached features."""

    def __init__(self, task_name, data_dir, vocab_file, do_lower_case, max_seq_length,
                 features_dir, init_checkpoint=None):
        self.name = glue.canonical_task_name(task_name)
        self.processor = glue.get_processor(task_name)
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

    def records(self, split, examples, limit=0):
        """TFRecord of a split (cached in features_dir)."""
        key = dict(self._cache_key_base, split=split, limit=limit, count=len(examples),
                   data=hashlib.sha1("".join(e.guid for e in examples).encode()).hexdigest())
        os.makedirs(self.features_dir, exist_ok=True)
        return cached_features(examples, self.processor, self.tokenizer, self.max_seq_length,
                               os.path.join(self.features_dir, f"{split}.tf_record"), key)

    def input_fn(self, split, examples, batch_size, is_training, limit=0, seed=None):
        return input_fn_builder(self.records(split, examples, limit), self.max_seq_length,
                                is_training, batch_size, self.is_regression, seed)


# Model ------------------------------------------------------------------------------------------
def classifier_head(pooled_output, num_labels, is_training, dropout=CLASSIFIER_DROPOUT):
    """Google's head: ``output_weights`` [num_labels, hidden] and ``output_bias``."""
    hidden = pooled_output.shape[-1]
    weights = tf1.get_variable("output_weights", [num_labels, hidden],
                               initializer=tf1.truncated_normal_initializer(stddev=0.02))
    bias = tf1.get_variable("output_bias", [num_labels], initializer=tf1.zeros_initializer())
    if is_training and dropout:
        pooled_output = tf.nn.dropout(pooled_output, rate=dropout)
    return tf.nn.bias_add(tf.matmul(pooled_output, weights, transpose_b=True), bias)


def create_model(bert_config, is_training, features, num_labels, is_regression, hooks,
                 classifier_dropout=CLASSIFIER_DROPOUT):
    """BERT + head. Returns a ``methods.ClassifierGraph``."""
    model = modeling.BertModel(
        bert_config, is_training, features["input_ids"], features.get("input_mask"),
        features.get("segment_ids"), dense_factory=hooks.dense_factory,
        token_selector=hooks.token_selector)
    logits = classifier_head(model.pooled_output, 1 if is_regression else num_labels,
                             is_training, classifier_dropout)
    labels = features.get("label_ids")
    if is_regression:
        predictions = logits[:, 0]
        per_example_loss = None if labels is None else tf.square(predictions - labels)
    else:
        predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
        per_example_loss = None if labels is None else (
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    return methods.ClassifierGraph(model=model, logits=logits, predictions=predictions,
                                   per_example_loss=per_example_loss, features=features,
                                   is_training=is_training, is_regression=is_regression)


def _streaming_concat(values, name):
    """Metric accumulating every value of the eval set (full-set ranks need all of them)."""
    store = tf1.Variable(tf.zeros([0], values.dtype), name=name, trainable=False,
                         shape=tf.TensorShape([None]),
                         collections=[tf1.GraphKeys.LOCAL_VARIABLES,
                                      tf1.GraphKeys.METRIC_VARIABLES])
    update = store.assign(tf.concat([store, values], axis=0), read_value=True)
    return store, update


def task_metric_ops(task_name, predictions, labels, per_example_loss):
    """Full-dev-set metrics as Estimator metric ops (computed once, in numpy, at the end)."""
    names = sorted(metrics.compute_task_metrics(task_name, np.array([0.0, 1.0, 0.0]),
                                                np.array([0.0, 1.0, 1.0])))
    all_predictions, update_predictions = _streaming_concat(tf.cast(predictions, tf.float32),
                                                            "all_predictions")
    all_labels, update_labels = _streaming_concat(tf.cast(labels, tf.float32), "all_labels")

    def compute(predicted, gold):
        values = metrics.compute_task_metrics(task_name, predicted, gold)
        return np.array([values[name] for name in names], np.float32)

    values = tf.numpy_function(compute, [all_predictions, all_labels], tf.float32)
    update = tf.group(update_predictions, update_labels)
    ops = {name: (values[i], update) for i, name in enumerate(names)}
    ops.update({alias: ops[name] for alias, name in BINARY_METRIC_ALIASES.items()
                if name in ops})
    ops["eval_loss"] = tf1.metrics.mean(per_example_loss)
    return ops


class ProgressHook(tf1.train.SessionRunHook):
    """Logs step, loss, examples/s and ETA: long runs must show where they are."""

    def __init__(self, loss, total_steps, batch_size, every_n_steps):
        self._loss = loss
        self._total = total_steps
        self._batch = batch_size
        self._every = max(1, every_n_steps)
        self._start = None
        self._steps_run = 0
        self._last_step = 0

    def begin(self):
        self._step_tensor = tf1.train.get_global_step()

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs([self._step_tensor, self._loss])

    def after_run(self, run_context, run_values):
        step, loss = run_values.results
        step += 1  # the global step was read before this step's update
        self._steps_run += 1
        self._last_step = step
        now = time.time()
        if self._start is None:
            self._start, self._first_step = now, step
            return
        if step % self._every == 0 and step > self._first_step:
            rate = (step - self._first_step) / (now - self._start)
            eta = (self._total - step) / rate if rate > 0 else float("inf")
            log.info("step %d/%d  loss %.4f  %.1f examples/s  ETA %dm%02ds", step,
                     self._total, loss, rate * self._batch, eta // 60, eta % 60)

    def end(self, session):
        # In a cluster several processes advance one global step: say what this one did.
        log.info("this process ran %d training steps (global step %d)", self._steps_run,
                 self._last_step)


class StopOnSignalHook(tf1.train.SessionRunHook):
    """SIGINT/SIGTERM end training after the current step; the Estimator's checkpoint saver
    then writes that step, so nothing trained is lost and a re-run resumes from it.

    It also counts finished steps: when the Estimator's NaN check fails a step, ``last_step``
    still names the step before it."""

    def __init__(self):
        self.signal_number = None
        self.last_step = 0
        self._previous = {}

    def begin(self):
        self._step_tensor = tf1.train.get_global_step()
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._on_signal)

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self._step_tensor)

    def _on_signal(self, number, frame):
        if self.signal_number is not None:  # a second signal: stop now, without saving
            raise KeyboardInterrupt
        self.signal_number = number
        log.info("%s received: saving the current step, then stopping",
                 signal.Signals(number).name)

    def after_run(self, run_context, run_values):
        self.last_step = int(run_values.results) + 1
        if self.signal_number is not None:
            run_context.request_stop()

    def end(self, session):
        self.restore()

    def restore(self):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}


def model_fn_builder(bert_config, task_name, num_labels, is_regression, init_checkpoint,
                     num_train_steps, num_warmup_steps, learning_rate, method_list,
                     train_batch_size=32, log_every_n_steps=20, extra_training_hooks=(),
                     classifier_dropout=CLASSIFIER_DROPOUT,
                     weight_decay=optimization.DEFAULT_WEIGHT_DECAY):
    """Estimator model_fn: BERT + head + every method's hooks, losses, groups and metrics.

    Under a strategy Estimator calls it once per replica; the optimizer then averages the
    replicas' gradients and updates once (see ``optimization.create_train_op``)."""
    allow_missing = HEAD_VARIABLES + methods.allow_missing(method_list)

    def model_fn(features, labels, mode, params=None):
        is_training = mode == tf.estimator.ModeKeys.TRAIN
        hooks = methods.build_all(method_list, bert_config, is_training)
        graph = create_model(bert_config, is_training, features, num_labels, is_regression,
                             hooks, classifier_dropout)
        if mode == tf.estimator.ModeKeys.PREDICT:
            outputs = {"predictions": graph.predictions}
            if not is_regression:
                outputs["probabilities"] = tf.nn.softmax(graph.logits)
            return tf.estimator.EstimatorSpec(mode, predictions=outputs)
        task_loss = tf.reduce_mean(graph.per_example_loss)
        total_loss = task_loss + hooks.extra_loss(graph)
        if is_training:
            if init_checkpoint:
                # Once for the (mirrored) variables, not once per replica.
                distribution.in_cross_replica_context(
                    lambda: _init_from_checkpoint(init_checkpoint, allow_missing))
            # The loss of the whole global batch: what the log and TensorBoard show.
            mean_loss = distribution.mean_over_replicas([total_loss])[0]
            train_op = _train_op(hooks, graph, task_loss, total_loss, learning_rate,
                                 num_train_steps, num_warmup_steps, mean_loss, weight_decay)
            progress = ProgressHook(mean_loss, num_train_steps, train_batch_size,
                                    log_every_n_steps)
            # Estimator sums the replicas' losses to report one, so each reports its share.
            return tf.estimator.EstimatorSpec(
                mode, loss=mean_loss / distribution.replicas_here(), train_op=train_op,
                training_hooks=[progress] + list(extra_training_hooks))
        ops = task_metric_ops(task_name, graph.predictions, features["label_ids"],
                              graph.per_example_loss)
        ops.update(hooks.eval_metric_ops(graph))
        return tf.estimator.EstimatorSpec(mode, loss=total_loss, eval_metric_ops=ops)

    return model_fn


def _init_from_checkpoint(init_checkpoint, allow_missing):
    loaded, unexpected = checkpoint.init_from_checkpoint(init_checkpoint, allow_missing)
    log.info("initialised %d variables from %s", len(loaded), init_checkpoint)
    if unexpected:
        log.warning("checkpoint variables not used by this model: %s", ", ".join(unexpected))


def _train_op(hooks, graph, task_loss, total_loss, learning_rate, num_train_steps,
              num_warmup_steps, mean_loss=None, weight_decay=optimization.DEFAULT_WEIGHT_DECAY):
    """The methods' own parameter groups plus one "model" group for every other variable.
    ``mean_loss``: the loss over all replicas, for TensorBoard (default ``total_loss``)."""
    schedule = methods.Schedule(num_train_steps, num_warmup_steps)
    groups, losses_by_group = hooks.param_groups(graph, schedule)
    claimed = {variable.op.name for group in groups for variable in group.variables}
    model_variables = ([v for v in tf1.trainable_variables() if v.op.name not in claimed]
                       if learning_rate > 0 else [])  # rate 0 freezes the model (FLOP's seed)
    groups.insert(0, optimization.ParamGroup("model", model_variables, learning_rate,
                                             num_train_steps, num_warmup_steps,
                                             weight_decay=weight_decay))
    train_op, rates = optimization.create_train_op(total_loss, groups,
                                                   losses_by_group=losses_by_group)
    for group in groups:
        tf1.summary.scalar(f"{group.name}_lr", rates.get(group.name, tf.constant(0.0)))
    tf1.summary.scalar("task_loss", task_loss)
    tf1.summary.scalar(TRAINING_LOSS_ALIAS, total_loss if mean_loss is None else mean_loss)
    return train_op


# Run --------------------------------------------------------------------------------------------
def format_eval_results(result, train_seconds=None, eval_seconds=None):
    """Google's ``key = value`` lines plus the seed's train_time/eval_time in minutes."""
    lines = [f"{key} = {result[key]}" for key in sorted(result)]
    if train_seconds is not None:
        lines.append(f"train_time: {train_seconds / SECONDS_PER_MINUTE:.6f}min")
    if eval_seconds is not None:
        lines.append(f"eval_time: {eval_seconds / SECONDS_PER_MINUTE:.6f}min")
    return "\n".join(lines) + "\n"


def write_hparams_summary(output_dir, hparams):
    """All hyper-parameters once, as a TensorBoard text summary (and a json beside it)."""
    os.makedirs(output_dir, exist_ok=True)
    modeling.write_text_atomic(os.path.join(output_dir, HPARAMS_FILE),
                               json.dumps(hparams, indent=2, sort_keys=True, default=str) + "\n")
    table = "\n".join(f"| {key} | {value} |" for key, value in sorted(hparams.items()))
    with tf.Graph().as_default():
        summary = tf1.summary.text("hyperparameters",
                                   tf.constant("| flag | value |\n|---|---|\n" + table))
        with tf1.Session() as session:
            writer = tf1.summary.FileWriter(output_dir)
            writer.add_summary(session.run(summary), 0)
            writer.close()


def remove_new_temporaries(folder, existing):
    """Remove the half-written files a failed write of this run left in ``folder`` (TF writes
    ``<name>.tmp<hex>`` files and ``<checkpoint>_temp`` folders, then renames them)."""
    checkpoint.remove_save_temporaries(folder)
    for name in set(os.listdir(folder)) - existing:
        if TEMPORARY_NAME.search(name):
            log.warning("removing %s, left by the failed write", os.path.join(folder, name))
            os.remove(os.path.join(folder, name))


class Classifier:
    """One model, one task, one output folder: train, evaluate and predict with the methods.

    ``methods`` are the run's own methods; the model config's methods (e.g. a PoWER-BERT
    retention configuration) are added unless ``config_methods=False``.
    """

    def __init__(self, settings: ClassifierSettings, method_list: Sequence = (),
                 config_methods=True, bert_config=None):
        self.settings = settings
        if not settings.bert_config_file or not os.path.isfile(settings.bert_config_file):
            raise UsageError(f"--bert_config_file={settings.bert_config_file}: file not found "
                             "(expected the model's bert_config.json)")
        self.bert_config = bert_config or settings.model_config()
        settings.validate(self.bert_config)
        distribution.log_devices()
        tokenization.check_vocab_matches_config(settings.vocab_file,
                                                self.bert_config.vocab_size)
        own = list(method_list)
        if config_methods:
            own += methods.from_config(self.bert_config, exclude=own)
        self.methods = own
        self.task = Task(settings.task_name, settings.data_dir, settings.vocab_file,
                         settings.do_lower_case, settings.max_seq_length,
                         settings.features_dir or settings.output_dir, settings.init_checkpoint)
        self.train_examples = []
        self.num_train_steps = 0
        self.num_warmup_steps = 0
        if settings.do_train:
            self.train_examples = self.task.examples("train", settings.max_train_examples)
            self.num_train_steps = settings.num_train_steps or max(1, int(
                len(self.train_examples) / settings.train_batch_size * settings.num_train_epochs))
            self.num_warmup_steps = (settings.num_warmup_steps
                                     if settings.num_warmup_steps is not None
                                     else int(self.num_train_steps * settings.warmup_proportion))
        self._dev_examples = None
        self._progress = None

    # Pieces ---------------------------------------------------------------------------------
    @property
    def dev_examples(self):
        if self._dev_examples is None:
            self._dev_examples = self.task.examples("dev")
        return self._dev_examples

    def model_fn(self, extra_training_hooks=()):
        s = self.settings
        return model_fn_builder(self.bert_config, self.task.name, self.task.num_labels,
                                self.task.is_regression, s.init_checkpoint,
                                self.num_train_steps, self.num_warmup_steps, s.learning_rate,
                                self.methods, s.train_batch_size, s.log_every_n_steps,
                                extra_training_hooks, s.classifier_dropout, s.weight_decay)

    def estimator(self, seed=None, extra_training_hooks=(), keep_checkpoint_max=None,
                  strategy=None):
        """The Estimator of this run; ``strategy`` distributes its training (evaluation and
        prediction run on one device). TF_CONFIG, when set, places it in its cluster."""
        s = self.settings
        cpus = distribution.cpu_device_count(s.devices)
        session_config = (tf1.ConfigProto(device_count={"CPU": cpus}, allow_soft_placement=True)
                          if cpus > 1 else None)  # mirrored over several CPU devices
        run_config = tf.estimator.RunConfig(
            model_dir=s.output_dir, save_checkpoints_steps=s.save_checkpoints_steps,
            keep_checkpoint_max=keep_checkpoint_max or s.keep_checkpoint_max,
            tf_random_seed=s.seed if seed is None else seed, log_step_count_steps=None,
            save_summary_steps=s.log_every_n_steps, train_distribute=strategy,
            session_config=session_config)
        return tf.estimator.Estimator(model_fn=self.model_fn(extra_training_hooks),
                                      config=run_config)

    def _train_strategy(self):
        """The run's strategy, after checking that the global batch splits over its replicas."""
        s = self.settings
        strategy = distribution.train_strategy(s.distribution, s.devices)
        replicas = distribution.replicas_in_sync(s.distribution, strategy)
        if s.train_batch_size % replicas:
            raise UsageError(f"--train_batch_size={s.train_batch_size} (the global batch) must "
                             f"be a multiple of the {replicas} replicas of --distribution="
                             f"{s.distribution}")
        if s.distribution == distribution.PARAMETER_SERVER:
            log.info("distribution %s: every worker (%d) trains whole batches of %d, "
                     "asynchronously; task %s", s.distribution, distribution.num_workers(),
                     s.train_batch_size, distribution.task_type())
        else:
            where = (f"task {distribution.task_type()}" if distribution.task_type() else
                     ", ".join(strategy.extended.worker_devices) if strategy else "one device")
            log.info("distribution %s: %d replica(s) in sync, global batch %d = %d per replica "
                     "(%s)", s.distribution, replicas, s.train_batch_size,
                     s.train_batch_size // replicas, where)
        return strategy

    def dev_input_fn(self):
        return self.task.input_fn("dev", self.dev_examples, self.settings.eval_batch_size,
                                  False)

    def hparams(self):
        values = dataclasses.asdict(self.settings)
        for method in self.methods:
            values.update(method.hparams())
        values["methods"] = ",".join(method.name for method in self.methods) or "fine_tune"
        return values

    def checkpoint_to_use(self):
        """What was trained here; for eval/predict-only runs, the given checkpoint."""
        if tf.train.latest_checkpoint(self.settings.output_dir):
            return None
        if self.settings.init_checkpoint:
            return checkpoint.resolve_checkpoint(self.settings.init_checkpoint)
        raise UsageError(f"nothing to evaluate: {self.settings.output_dir} has no checkpoint "
                         "and no --init_checkpoint was given")

    # Steps ----------------------------------------------------------------------------------
    def train(self, max_steps=None, seed=None, exporters=(), keep_checkpoint_max=None,
              train_input=None):
        """Train to ``max_steps`` (default: all epochs), resuming from the last good checkpoint.

        ``train_input`` replaces the task's training input_fn: a method whose hooks read extra
        per-example features (e.g. TR-BERT's token importance) brings records that carry them.

        Returns the seconds spent. Raises Interrupted after saving the current step when a
        stop signal arrives, and TrainingDivergedError when the loss stops being finite.
        """
        s = self.settings
        strategy = self._train_strategy()
        os.makedirs(s.output_dir, exist_ok=True)
        checkpoint.latest_good_checkpoint(s.output_dir)
        max_steps = max_steps or self.num_train_steps
        stop_hook = StopOnSignalHook()
        estimator = self.estimator(seed, [stop_hook], keep_checkpoint_max, strategy)
        train_input = train_input or self.task.input_fn(
            "train", self.train_examples, s.train_batch_size, True, s.max_train_examples,
            s.seed if seed is None else seed)
        log.info("training on %d examples to step %d (batch %d, %g epochs)",
                 len(self.train_examples), max_steps, s.train_batch_size, s.num_train_epochs)
        start = time.time()
        before = set(os.listdir(s.output_dir))
        try:
            # In a cluster train_and_evaluate starts this task's server and plays its role
            # (chief, worker, ps, evaluator); the evaluator task evaluates each checkpoint.
            if (s.evaluate_every_checkpoint and s.do_eval
                    or s.distribution in distribution.CLUSTER_DISTRIBUTIONS):
                tf.estimator.train_and_evaluate(
                    estimator, tf.estimator.TrainSpec(train_input, max_steps=max_steps),
                    tf.estimator.EvalSpec(self.dev_input_fn(), steps=None,
                                          exporters=list(exporters), throttle_secs=0,
                                          start_delay_secs=0))
            else:
                estimator.train(train_input, max_steps=max_steps)
        except tf1.train.NanLossDuringTrainingError:
            raise TrainingDivergedError(
                f"the loss became NaN at step {stop_hook.last_step + 1}; lower the learning "
                f"rate (--learning_rate={s.learning_rate:g}); the last good checkpoint is kept: "
                f"{estimator.latest_checkpoint()}") from None
        except tf.errors.OpError as error:
            if NO_SPACE not in error.message:
                raise
            remove_new_temporaries(s.output_dir, before)
            raise OSError(errno.ENOSPC, f"no space left on device while training into "
                                        f"{s.output_dir} ({error.message.splitlines()[0]}); the "
                                        "last complete checkpoint is kept") from None
        finally:
            stop_hook.restore()
        if stop_hook.signal_number is not None:
            name = signal.Signals(stop_hook.signal_number).name
            raise Interrupted(f"stopped by {name}; saved {estimator.latest_checkpoint()}; run "
                              "the same command again to resume", stop_hook.signal_number)
        return time.time() - start

    def evaluate(self, checkpoint_path=None, write=True, train_seconds=None):
        """Full dev-set metrics; writes eval_results.txt unless ``write`` is False."""
        estimator = self.estimator()
        start = time.time()
        result = estimator.evaluate(self.dev_input_fn(),
                                    checkpoint_path=checkpoint_path or self.checkpoint_to_use())
        result = {key: (value.item() if hasattr(value, "item") else value)
                  for key, value in result.items()}
        if write:
            text = format_eval_results(result, train_seconds, time.time() - start)
            path = os.path.join(self.settings.output_dir, EVAL_RESULTS_FILE)
            modeling.write_text_atomic(path, text)
            log.info("eval results (%s):\n%s", path, text)
        return result

    def predict(self, checkpoint_path=None):
        """Write test_results.tsv (scores) and the GLUE submission file for the test split."""
        s = self.settings
        test_examples = self.task.examples("test")
        predict_input = self.task.input_fn("test", test_examples, s.predict_batch_size, False)
        outputs = list(self.estimator().predict(
            predict_input, checkpoint_path=checkpoint_path or self.checkpoint_to_use()))
        if self.task.is_regression:
            rows = [f"{out['predictions']:.6f}" for out in outputs]
        else:
            rows = ["\t".join(f"{p:.6f}" for p in out["probabilities"]) for out in outputs]
        os.makedirs(s.output_dir, exist_ok=True)
        modeling.write_text_atomic(os.path.join(s.output_dir, TEST_RESULTS_FILE),
                                   "\n".join(rows) + "\n")
        written = [TEST_RESULTS_FILE]
        if s.write_submission:
            submission = os.path.join(s.output_dir, glue.SUBMISSION_FILE_NAMES[self.task.name])
            glue.write_submission(submission, self.task.processor, test_examples,
                                  [out["predictions"] for out in outputs])
            written.append(os.path.basename(submission))
        log.info("wrote %s in %s (%d test examples)", " and ".join(written), s.output_dir,
                 len(outputs))
        return outputs

    def describe_output_dir(self):
        """The config and vocabulary beside the checkpoints: output_dir is then a model folder
        that export, benchmark, factorize or a teacher flag take as it is."""
        out = self.settings.output_dir
        os.makedirs(out, exist_ok=True)
        self.bert_config.to_json_file(os.path.join(out, CONFIG_FILE))
        vocab = os.path.join(out, os.path.basename(self.settings.vocab_file))
        if os.path.abspath(vocab) != os.path.abspath(self.settings.vocab_file):
            checkpoint.copy_file_atomic(self.settings.vocab_file, vocab)

    def run(self, exporters=()):
        """do_train, do_eval and do_predict as the settings say; returns the eval result."""
        s = self.settings
        train_seconds = None
        if s.do_train:
            if distribution.is_chief():
                write_hparams_summary(s.output_dir, self.hparams())
                self.describe_output_dir()
            train_seconds = self.train(exporters=exporters)
        if not distribution.is_chief():
            log.info("%s task done; the chief evaluates and writes the results",
                     distribution.task_type())
            return None
        result = self.evaluate(train_seconds=train_seconds) if s.do_eval else None
        if s.do_predict:
            self.predict()
        return result
