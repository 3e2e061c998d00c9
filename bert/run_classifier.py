"""Fine-tune and evaluate BERT on a GLUE task with tf.estimator (Google's flags and outputs).

    python -m bert.run_classifier --task_name=MRPC --do_train --do_eval \\
        --data_dir=datasets/MRPC --vocab_file=$BERT_DIR/vocab.txt \\
        --bert_config_file=$BERT_DIR/bert_config.json --init_checkpoint=$BERT_DIR/bert_model.ckpt \\
        --output_dir=fine_tune_outputs/MRPC

Compression methods reuse everything here and change only what a ``Method`` hooks: the dense
factory, the token selector, extra loss terms, the optimizer groups and extra eval metrics.
Re-running into the same ``output_dir`` resumes from its last checkpoint.
"""
import hashlib
import json
import logging
import os
import sys
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from bert import checkpoint, glue, metrics, modeling, optimization, tokenization

tf1 = tf.compat.v1
FLAGS = flags.FLAGS
log = logging.getLogger("bert")

CLASSIFIER_DROPOUT = 0.1  # Google's head keeps this fixed, whatever the config says.
HEAD_VARIABLES = (r"^output_weights$", r"^output_bias$")  # fresh at fine-tuning start
FEATURE_CACHE_VERSION = 1  # bump when the feature layout changes to invalidate caches
EVAL_RESULTS_FILE = "eval_results.txt"
SECONDS_PER_MINUTE = 60.0

flags.DEFINE_string("task_name", None, "GLUE task: " + ", ".join(glue.TASK_NAMES))
flags.DEFINE_string("data_dir", None, "Folder with the task's train.tsv/dev.tsv/test.tsv.")
flags.DEFINE_string("vocab_file", None, "vocab.txt (WordPiece) or a SentencePiece .model.")
flags.DEFINE_string("bert_config_file", None, "bert_config.json of the model.")
flags.DEFINE_string("init_checkpoint", None, "Checkpoint prefix or model folder to start from.")
flags.DEFINE_string("output_dir", None, "Where checkpoints, features and results are written.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case input (uncased models).")
flags.DEFINE_integer("max_seq_length", 128, "Tokens per example after WordPiece (padded).")
flags.DEFINE_bool("do_train", False, "Fine-tune on train.tsv.")
flags.DEFINE_bool("do_eval", False, "Evaluate on dev.tsv and write eval_results.txt.")
flags.DEFINE_bool("do_predict", False, "Predict test.tsv and write the GLUE submission file.")
flags.DEFINE_integer("train_batch_size", 32, "Training batch size.")
flags.DEFINE_integer("eval_batch_size", 8, "Evaluation batch size.")
flags.DEFINE_integer("predict_batch_size", 8, "Prediction batch size.")
flags.DEFINE_float("learning_rate", 5e-5, "Peak AdamW learning rate.")
flags.DEFINE_float("num_train_epochs", 3.0, "Training epochs.")
flags.DEFINE_float("warmup_proportion", 0.1, "Share of steps with linear warm-up.")
flags.DEFINE_integer("save_checkpoints_steps", 1000, "Checkpoint every this many steps.")
flags.DEFINE_integer("keep_checkpoint_max", 3, "Checkpoints kept in output_dir.")
flags.DEFINE_integer("max_train_examples", 0, "Use only the first N training examples (0: all).")
flags.DEFINE_integer("log_every_n_steps", 20, "Progress log interval (steps).")
flags.DEFINE_integer("seed", 12345, "Graph-level random seed (dropout, head init, shuffling).")


class Method:
    """What a compression method may change about fine-tuning; the defaults are plain BERT."""

    # Regexes of graph variables that may be absent from init_checkpoint.
    allow_missing = HEAD_VARIABLES

    def __init__(self, learning_rate=5e-5):
        self.learning_rate = learning_rate

    def dense_factory(self, bert_config, is_training):
        return None  # the config's own factory (plain, or low-rank from kernel_ranks)

    def token_selector(self, bert_config, is_training):
        return None

    def extra_loss(self, model, logits, features, is_training):
        """Loss terms added to the task loss (e.g. a sparsity Lagrangian or a regulariser)."""
        return tf.constant(0.0)

    def train_op(self, task_loss, total_loss, num_train_steps, num_warmup_steps):
        return optimization.create_optimizer(total_loss, self.learning_rate, num_train_steps,
                                             num_warmup_steps)

    def eval_metric_ops(self, model, logits, features):
        return {}

    def hparams(self):
        """Hyper-parameters recorded once as a text summary (methods add their own)."""
        return {}


# Features ---------------------------------------------------------------------------------------
def convert_example(example, label_map, max_seq_length, tokenizer):
    """Token ids, mask and segment ids for one example ([CLS] a [SEP] b [SEP], padded)."""
    tokens_a = tokenizer.tokenize(example.text_a)
    tokens_b = tokenizer.tokenize(example.text_b) if example.text_b else None
    if tokens_b:
        _truncate_pair(tokens_a, tokens_b, max_seq_length - 3)
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


def _truncate_pair(tokens_a, tokens_b, max_length):
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
    with tf.io.TFRecordWriter(temp) as writer:
        for example in examples:
            feature = convert_example(example, label_map, max_seq_length, tokenizer)
            writer.write(_tf_example(feature, processor.is_regression).SerializeToString())
    os.replace(temp, record_file)
    modeling.write_text_atomic(key_file, json.dumps(cache_key, sort_keys=True))
    return record_file


def input_fn_builder(record_file, seq_length, is_training, batch_size, is_regression, seed=None):
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

    def input_fn(params=None):
        dataset = tf.data.TFRecordDataset(record_file)
        if is_training:
            dataset = dataset.repeat().shuffle(buffer_size=10000, seed=seed)
        dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.batch(batch_size, drop_remainder=is_training).prefetch(tf.data.AUTOTUNE)

    return input_fn


# Model ------------------------------------------------------------------------------------------
def classifier_head(pooled_output, num_labels, is_training):
    """Google's head: ``output_weights`` [num_labels, hidden] and ``output_bias``."""
    hidden = pooled_output.shape[-1]
    weights = tf1.get_variable("output_weights", [num_labels, hidden],
                               initializer=tf1.truncated_normal_initializer(stddev=0.02))
    bias = tf1.get_variable("output_bias", [num_labels], initializer=tf1.zeros_initializer())
    if is_training:
        pooled_output = tf.nn.dropout(pooled_output, rate=CLASSIFIER_DROPOUT)
    return tf.nn.bias_add(tf.matmul(pooled_output, weights, transpose_b=True), bias)


def create_model(bert_config, is_training, features, num_labels, is_regression, method):
    """BERT + head. Returns (model, logits, per_example_loss, predictions)."""
    model = modeling.BertModel(
        bert_config, is_training, features["input_ids"], features["input_mask"],
        features["segment_ids"], dense_factory=method.dense_factory(bert_config, is_training),
        token_selector=method.token_selector(bert_config, is_training))
    logits = classifier_head(model.pooled_output, 1 if is_regression else num_labels,
                             is_training)
    labels = features["label_ids"]
    if is_regression:
        predictions = logits[:, 0]
        per_example_loss = tf.square(predictions - labels)
    else:
        predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
        per_example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                          logits=logits)
    return model, logits, per_example_loss, predictions


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

    def begin(self):
        self._step_tensor = tf1.train.get_global_step()

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs([self._step_tensor, self._loss])

    def after_run(self, run_context, run_values):
        step, loss = run_values.results
        now = time.time()
        if self._start is None:
            self._start, self._first_step = now, step
            return
        if step % self._every == 0 and step > self._first_step:
            rate = (step - self._first_step) / (now - self._start)
            eta = (self._total - step) / rate if rate > 0 else float("inf")
            log.info("step %d/%d  loss %.4f  %.1f examples/s  ETA %dm%02ds", step + 1,
                     self._total, loss, rate * self._batch, eta // 60, eta % 60)


def model_fn_builder(bert_config, task_name, num_labels, is_regression, init_checkpoint,
                     num_train_steps, num_warmup_steps, method, train_batch_size=32,
                     log_every_n_steps=20):
    def model_fn(features, labels, mode, params=None):
        is_training = mode == tf.estimator.ModeKeys.TRAIN
        model, logits, per_example_loss, predictions = create_model(
            bert_config, is_training, features, num_labels, is_regression, method)
        task_loss = tf.reduce_mean(per_example_loss)
        total_loss = task_loss + method.extra_loss(model, logits, features, is_training)
        if init_checkpoint and is_training:
            loaded, unexpected = checkpoint.init_from_checkpoint(init_checkpoint,
                                                                 method.allow_missing)
            log.info("initialised %d variables from %s", len(loaded), init_checkpoint)
            if unexpected:
                log.warning("checkpoint variables not used by this model: %s",
                            ", ".join(unexpected))
        if is_training:
            train_op = method.train_op(task_loss, total_loss, num_train_steps, num_warmup_steps)
            hook = ProgressHook(total_loss, num_train_steps, train_batch_size, log_every_n_steps)
            return tf.estimator.EstimatorSpec(mode, loss=total_loss, train_op=train_op,
                                              training_hooks=[hook])
        if mode == tf.estimator.ModeKeys.EVAL:
            ops = task_metric_ops(task_name, predictions, features["label_ids"],
                                  per_example_loss)
            ops.update(method.eval_metric_ops(model, logits, features))
            return tf.estimator.EstimatorSpec(mode, loss=total_loss, eval_metric_ops=ops)
        outputs = {"predictions": predictions}
        if not is_regression:
            outputs["probabilities"] = tf.nn.softmax(logits)
        return tf.estimator.EstimatorSpec(mode, predictions=outputs)

    return model_fn


# Run --------------------------------------------------------------------------------------------
class UsageError(ValueError):
    """A flag or input file is not what the run needs."""


def validate_flags(bert_config):
    if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict):
        raise UsageError("at least one of --do_train, --do_eval, --do_predict must be set")
    for name in ("task_name", "data_dir", "vocab_file", "bert_config_file", "output_dir"):
        if not getattr(FLAGS, name):
            raise UsageError(f"--{name} is required")
    if not os.path.isdir(FLAGS.data_dir):
        raise UsageError(f"--data_dir={FLAGS.data_dir}: folder not found")
    if not os.path.isfile(FLAGS.vocab_file):
        raise UsageError(f"--vocab_file={FLAGS.vocab_file}: file not found (expected vocab.txt "
                         "or a SentencePiece .model)")
    if os.path.isfile(FLAGS.output_dir):
        raise UsageError(f"--output_dir={FLAGS.output_dir} is a file; expected a folder")
    if FLAGS.max_seq_length > bert_config.max_position_embeddings:
        raise UsageError(f"--max_seq_length={FLAGS.max_seq_length} is above the model's "
                         f"max_position_embeddings={bert_config.max_position_embeddings}")
    if FLAGS.max_seq_length < 3:
        raise UsageError(f"--max_seq_length={FLAGS.max_seq_length}: need at least 3 "
                         "([CLS] x [SEP])")
    for name in ("train_batch_size", "eval_batch_size", "predict_batch_size",
                 "save_checkpoints_steps"):
        if getattr(FLAGS, name) <= 0:
            raise UsageError(f"--{name}={getattr(FLAGS, name)}: must be positive")
    if FLAGS.learning_rate < 0:
        raise UsageError(f"--learning_rate={FLAGS.learning_rate}: must be >= 0")
    if FLAGS.do_train and FLAGS.num_train_epochs <= 0:
        raise UsageError(f"--num_train_epochs={FLAGS.num_train_epochs}: must be positive")
    if not 0 <= FLAGS.warmup_proportion <= 1:
        raise UsageError(f"--warmup_proportion={FLAGS.warmup_proportion}: must be in [0, 1]")
    if FLAGS.init_checkpoint:
        try:
            checkpoint.resolve_checkpoint(FLAGS.init_checkpoint)
        except FileNotFoundError as error:
            raise UsageError(str(error)) from None
    elif FLAGS.do_train:
        raise UsageError("--init_checkpoint is required with --do_train (fine-tuning starts "
                         "from a pretrained model)")


def file_fingerprint(path):
    stat = os.stat(path)
    return f"{os.path.abspath(path)}:{stat.st_size}:{int(stat.st_mtime)}"


class Task:
    """Everything about the data side of a run, shared by every method's entry point."""

    def __init__(self, task_name, data_dir, vocab_file, do_lower_case, max_seq_length,
                 output_dir, init_checkpoint=None):
        self.name = glue.canonical_task_name(task_name)
        self.processor = glue.get_processor(task_name)
        self.data_dir = data_dir
        self.max_seq_length = max_seq_length
        self.output_dir = output_dir
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
        """TFRecord of a split (cached in output_dir)."""
        key = dict(self._cache_key_base, split=split, limit=limit, count=len(examples),
                   data=hashlib.sha1("".join(e.guid for e in examples).encode()).hexdigest())
        os.makedirs(self.output_dir, exist_ok=True)
        return cached_features(examples, self.processor, self.tokenizer, self.max_seq_length,
                               os.path.join(self.output_dir, f"{split}.tf_record"), key)

    def input_fn(self, split, examples, batch_size, is_training, limit=0, seed=None):
        return input_fn_builder(self.records(split, examples, limit), self.max_seq_length,
                                is_training, batch_size, self.is_regression, seed)


def make_estimator(model_fn, output_dir, save_checkpoints_steps, keep_checkpoint_max, seed,
                   save_summary_steps=20):
    run_config = tf.estimator.RunConfig(
        model_dir=output_dir, save_checkpoints_steps=save_checkpoints_steps,
        keep_checkpoint_max=keep_checkpoint_max, tf_random_seed=seed,
        log_step_count_steps=None, save_summary_steps=save_summary_steps)
    return tf.estimator.Estimator(model_fn=model_fn, config=run_config)


def eval_checkpoint(output_dir, init_checkpoint):
    """Evaluate what was trained here; for eval-only runs, the given checkpoint."""
    if tf.train.latest_checkpoint(output_dir):
        return None
    if init_checkpoint:
        return checkpoint.resolve_checkpoint(init_checkpoint)
    raise UsageError(f"nothing to evaluate: {output_dir} has no checkpoint and no "
                     "--init_checkpoint was given")


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
    modeling.write_text_atomic(os.path.join(output_dir, "hparams.json"),
                               json.dumps(hparams, indent=2, sort_keys=True, default=str) + "\n")
    table = "\n".join(f"| {key} | {value} |" for key, value in sorted(hparams.items()))
    with tf.Graph().as_default():
        summary = tf1.summary.text("hyperparameters",
                                   tf.constant("| flag | value |\n|---|---|\n" + table))
        with tf1.Session() as session:
            writer = tf1.summary.FileWriter(output_dir)
            writer.add_summary(session.run(summary), 0)
            writer.close()


def run(method=None, output_dir=None, evaluate_every_checkpoint=False, exporters=()):
    """The whole fine-tune/eval/predict flow from FLAGS; methods pass their hooks."""
    method = method or Method(FLAGS.learning_rate)
    output_dir = output_dir or FLAGS.output_dir
    if not FLAGS.bert_config_file or not os.path.isfile(FLAGS.bert_config_file):
        raise UsageError(f"--bert_config_file={FLAGS.bert_config_file}: file not found")
    bert_config = modeling.BertConfig.from_json_file(FLAGS.bert_config_file)
    validate_flags(bert_config)
    task = Task(FLAGS.task_name, FLAGS.data_dir, FLAGS.vocab_file, FLAGS.do_lower_case,
                FLAGS.max_seq_length, output_dir, FLAGS.init_checkpoint)
    train_examples, num_train_steps, num_warmup_steps = [], 0, 0
    if FLAGS.do_train:
        train_examples = task.examples("train", FLAGS.max_train_examples)
        num_train_steps = max(1, int(len(train_examples) / FLAGS.train_batch_size
                                     * FLAGS.num_train_epochs))
        num_warmup_steps = int(num_train_steps * FLAGS.warmup_proportion)
        hparams = {name: FLAGS[name].value for name in FLAGS if name in _own_flag_names()}
        hparams.update(method.hparams())
        write_hparams_summary(output_dir, hparams)
    model_fn = model_fn_builder(bert_config, task.name, task.num_labels, task.is_regression,
                                FLAGS.init_checkpoint, num_train_steps, num_warmup_steps,
                                method, FLAGS.train_batch_size, FLAGS.log_every_n_steps)
    estimator = make_estimator(model_fn, output_dir, FLAGS.save_checkpoints_steps,
                               FLAGS.keep_checkpoint_max, FLAGS.seed, FLAGS.log_every_n_steps)
    dev_examples = task.examples("dev") if FLAGS.do_eval else []
    train_seconds = None
    if FLAGS.do_train:
        log.info("training on %d examples, %d steps (batch %d, %g epochs)", len(train_examples),
                 num_train_steps, FLAGS.train_batch_size, FLAGS.num_train_epochs)
        train_input = task.input_fn("train", train_examples, FLAGS.train_batch_size, True,
                                    FLAGS.max_train_examples, FLAGS.seed)
        start = time.time()
        if evaluate_every_checkpoint and FLAGS.do_eval:
            eval_input = task.input_fn("dev", dev_examples, FLAGS.eval_batch_size, False)
            tf.estimator.train_and_evaluate(
                estimator, tf.estimator.TrainSpec(train_input, max_steps=num_train_steps),
                tf.estimator.EvalSpec(eval_input, steps=None, exporters=list(exporters),
                                      throttle_secs=0, start_delay_secs=0))
        else:
            estimator.train(train_input, max_steps=num_train_steps)
        train_seconds = time.time() - start
    result = None
    if FLAGS.do_eval:
        eval_input = task.input_fn("dev", dev_examples, FLAGS.eval_batch_size, False)
        start = time.time()
        result = estimator.evaluate(eval_input, checkpoint_path=eval_checkpoint(
            output_dir, FLAGS.init_checkpoint))
        eval_seconds = time.time() - start
        result = {key: value for key, value in result.items()}
        text = format_eval_results(result, train_seconds, eval_seconds)
        modeling.write_text_atomic(os.path.join(output_dir, EVAL_RESULTS_FILE), text)
        log.info("eval results (%s):\n%s", os.path.join(output_dir, EVAL_RESULTS_FILE), text)
    if FLAGS.do_predict:
        predict(estimator, task, output_dir)
    return result


def predict(estimator, task, output_dir):
    """Write test_results.tsv (scores) and the GLUE-submission file for the test split."""
    test_examples = task.examples("test")
    predict_input = task.input_fn("test", test_examples, FLAGS.predict_batch_size, False)
    outputs = list(estimator.predict(predict_input, checkpoint_path=eval_checkpoint(
        output_dir, FLAGS.init_checkpoint)))
    if task.is_regression:
        rows = [f"{out['predictions']:.6f}" for out in outputs]
    else:
        rows = ["\t".join(f"{p:.6f}" for p in out["probabilities"]) for out in outputs]
    modeling.write_text_atomic(os.path.join(output_dir, "test_results.tsv"),
                               "\n".join(rows) + "\n")
    submission = os.path.join(output_dir, glue.SUBMISSION_FILE_NAMES[task.name])
    glue.write_submission(submission, task.processor, test_examples,
                          [out["predictions"] for out in outputs])
    log.info("wrote %s and test_results.tsv (%d test examples)", submission, len(outputs))


def _own_flag_names():
    """Flags defined by this project's modules (not absl's or TF's own)."""
    own = set()
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        if module.startswith(("bert", "flop", "power_bert", "__main__")):
            own.update(flag.name for flag in module_flags)
    return own


def configure_logging():
    """Progress to stderr: our own log lines and TF errors (not its deprecation chatter)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    tf1.logging.set_verbosity(tf1.logging.ERROR)


# Errors that mean "the input is wrong", reported as one line; anything else is a bug and keeps
# its traceback.
INPUT_ERRORS = (UsageError, OSError, glue.GlueFormatError, glue.TaskError, modeling.ConfigError,
                checkpoint.CheckpointMismatchError)


def main_with_errors(run_function, program, input_errors=()):
    """Run; turn bad input into one line naming the problem and a non-zero exit."""
    try:
        return run_function()
    except INPUT_ERRORS + tuple(input_errors) as error:
        sys.exit(f"{program}: error: {error}")


def main(_):
    configure_logging()
    main_with_errors(run, "run_classifier")


if __name__ == "__main__":
    app.run(main)
