"""SQuAD fine-tuning and prediction: BERT with Google's run_squad span head, the Estimator
model_fn that runs every method's phases, cached TFRecord features, and the run itself.

Driven by a plain ``QaRunSettings`` (no flags are read here; ``bert.run_squad`` fills it from
Google's flags):

    run = QaRun(settings, [method, ...])   # reads, converts and checks everything first
    run.run()                              # do_train (-> <output_dir>/model), do_predict

The head is Google's: ``cls/squad/output_weights`` [2, hidden] and ``cls/squad/output_bias``
[2] give a start and an end logit per position; the loss is the mean of the start and end
softmax cross-entropies over all positions, padding included (Google's choice: the gold
positions are never padding, so training pushes padding down by itself). Methods that drop
tokens (PoWER-BERT, TR-BERT) are refused: a shorter sequence has no logit per position.
Re-running into the same ``output_dir`` resumes from its last good checkpoint with the same
data order (the shuffle is seeded and the batches already trained on are skipped).
"""
import dataclasses
import hashlib
import json
import logging
import math
import os
from typing import Optional, Sequence

import tensorflow as tf

from bert import (checkpoint, cli, files, methods, model_folder, modeling, optimization, squad,
                  squad_eval, tokenization, training)
from bert.errors import UsageError
from bert.features import SHUFFLE_BUFFER, file_fingerprint
from bert.model_fn import training_spec
from bert.training_hooks import StopOnSignalHook

tf1 = tf.compat.v1
log = logging.getLogger("bert")

SQUAD_SCOPE = "cls/squad"
HEAD_WEIGHTS = f"{SQUAD_SCOPE}/output_weights"
HEAD_BIAS = f"{SQUAD_SCOPE}/output_bias"
HEAD_VARIABLES = (rf"^{SQUAD_SCOPE}/",)  # fresh at fine-tuning start
QA_MODEL_VARIABLES = (r"^bert/",) + HEAD_VARIABLES  # what <output_dir>/model keeps
SPAN_ENDS = 2  # a start and an end logit per position
HEAD_STDDEV = 0.02  # Google's initializer_range for the head
UNIQUE_IDS, START_LOGITS, END_LOGITS = "unique_ids", "start_logits", "end_logits"
START_POSITIONS, END_POSITIONS = "start_positions", "end_positions"
TOKEN_FEATURES = ("input_ids", "input_mask", "segment_ids")
FEATURE_CACHE_VERSION = 1  # bump when the record layout changes to invalidate caches
TRAIN_RECORD, PREDICT_RECORD = "train.tf_record", "predict.tf_record"
MODEL_DIR = "model"  # <output_dir>/model: the fine-tuned QA model folder
PROVENANCE_STEP = "bert/run_squad"
MIN_SEQ_LENGTH = squad.SPECIAL_TOKENS_PER_FEATURE + 2  # one question and one context piece


# The graph -------------------------------------------------------------------------------------
def qa_head(sequence_output):
    """Google's span head: (start_logits, end_logits), each [batch, seq]."""
    hidden = sequence_output.shape[-1]
    with tf1.variable_scope(SQUAD_SCOPE):
        weights = tf1.get_variable("output_weights", [SPAN_ENDS, hidden],
                                   initializer=tf1.truncated_normal_initializer(
                                       stddev=HEAD_STDDEV))
        bias = tf1.get_variable("output_bias", [SPAN_ENDS], initializer=tf1.zeros_initializer())
    batch, seq = tf.shape(sequence_output)[0], tf.shape(sequence_output)[1]
    flat = tf.reshape(sequence_output, [-1, hidden])
    logits = tf.reshape(tf.nn.bias_add(tf.matmul(flat, weights, transpose_b=True), bias),
                        [batch, seq, SPAN_ENDS])
    start_logits, end_logits = tf.unstack(logits, axis=-1)
    return start_logits, end_logits


def span_loss(start_logits, end_logits, start_positions, end_positions):
    """Per example: the mean of the start and end cross-entropies over positions."""
    start = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=start_positions,
                                                           logits=start_logits)
    end = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=end_positions, logits=end_logits)
    return (start + end) / SPAN_ENDS


def span_logits(start_logits, end_logits):
    """[batch, 2, seq]: what a distilling method compares, a softmax over positions per end."""
    return tf.stack([start_logits, end_logits], axis=1)


def teacher_span_logits(teacher_model):
    """A teacher's span logits (its own ``cls/squad`` head, under the teacher's scope)."""
    return span_logits(*qa_head(teacher_model.sequence_output))


def build_qa_logits(bert_config, is_training, input_ids, input_mask, segment_ids, hooks):
    """(BertModel, start_logits, end_logits) in the current graph with the methods' hooks."""
    model = modeling.BertModel(bert_config, is_training, input_ids, input_mask, segment_ids,
                               dense_factory=hooks.dense_factory,
                               token_selector=hooks.token_selector)
    return (model, *qa_head(model.sequence_output))


def check_methods(method_list, bert_config):
    """Refuse methods that drop tokens: span logits need every position (UsageError)."""
    with tf.Graph().as_default():  # a method's hooks may make variables: keep them apart
        for method in method_list:
            if method.build(bert_config, False).token_selector is not None:
                raise UsageError(f"method {method.name} drops tokens (a token selector); SQuAD "
                                 "needs a logit for every position, so it is not supported yet")


@dataclasses.dataclass
class QaModelSettings:
    """The training fields ``bert.model_fn.training_spec`` reads."""
    init_checkpoint: Optional[str]
    num_train_steps: int
    num_warmup_steps: int
    learning_rate: float
    train_batch_size: int
    log_every_n_steps: int
    weight_decay: float = optimization.DEFAULT_WEIGHT_DECAY


def model_fn_builder(bert_config, settings: QaModelSettings, method_list,
                     extra_training_hooks=()):
    """Estimator model_fn: TRAIN runs the methods' phases as the classifier does (the graph
    they see has ``span_logits`` as its logits, so a distilling method's soft-logit loss is
    the KL of the start and of the end distributions, and a teacher gets the span head);
    PREDICT gives unique_ids, start_logits and end_logits. SQuAD is scored on decoded text, so
    there is no EVAL mode."""
    allow_missing = HEAD_VARIABLES + methods.allow_missing(method_list)

    def model_fn(features, labels, mode, params=None):
        is_training = mode == tf.estimator.ModeKeys.TRAIN
        if not is_training and mode != tf.estimator.ModeKeys.PREDICT:
            raise ValueError(f"mode {mode}: SQuAD trains and predicts; it is scored on the "
                             "decoded answers (bert.squad_eval)")
        hooks = methods.build_all(method_list, bert_config, is_training)
        model, start_logits, end_logits = build_qa_logits(
            bert_config, is_training, *(features[name] for name in TOKEN_FEATURES), hooks)
        if not is_training:
            return tf.estimator.EstimatorSpec(mode, predictions={
                UNIQUE_IDS: features[UNIQUE_IDS], START_LOGITS: start_logits,
                END_LOGITS: end_logits})
        per_example_loss = span_loss(start_logits, end_logits, features[START_POSITIONS],
                                     features[END_POSITIONS])
        graph = methods.ClassifierGraph(
            model=model, logits=span_logits(start_logits, end_logits), predictions=None,
            per_example_loss=per_example_loss, features=features, is_training=True,
            is_regression=False, teacher_head=teacher_span_logits, head_weights=HEAD_WEIGHTS)
        hooks.create_variables(graph)
        task_loss = tf.reduce_mean(per_example_loss)
        total_loss = hooks.task_loss_weight * task_loss + hooks.extra_loss(graph)
        return training_spec(hooks, graph, total_loss, settings, allow_missing,
                             extra_training_hooks, task_loss)

    return model_fn


# Features as TFRecords -------------------------------------------------------------------------
def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def _tf_example(feature, is_training):
    fields = {name: _ints(getattr(feature, name)) for name in TOKEN_FEATURES}
    fields[UNIQUE_IDS] = _ints([feature.unique_id])
    if is_training:
        fields[START_POSITIONS] = _ints([feature.start_position])
        fields[END_POSITIONS] = _ints([feature.end_position])
    return tf.train.Example(features=tf.train.Features(feature=fields))


def examples_digest(examples):
    """Of every field of every example: an edited question (same count, same ids) is new data."""
    digest = hashlib.sha1()
    for example in examples:
        digest.update(json.dumps(dataclasses.astuple(example)).encode())
    return digest.hexdigest()


def cached_records(features, is_training, record_file, cache_key):
    """Write the features as a TFRecord once; reuse it while ``cache_key`` is unchanged."""
    key_file = record_file + ".json"
    if os.path.exists(record_file) and os.path.exists(key_file):
        with open(key_file, encoding="utf-8") as handle:
            if json.load(handle) == cache_key:
                return record_file
    with files.atomic_path(record_file) as temp, tf.io.TFRecordWriter(temp) as writer:
        for feature in features:
            writer.write(_tf_example(feature, is_training).SerializeToString())
    files.write_text_atomic(key_file, json.dumps(cache_key, sort_keys=True))
    return record_file


def input_fn_builder(record_file, seq_length, is_training, batch_size, seed=None):
    """Estimator input_fn of a feature record: training repeats and shuffles with ``seed``
    (so a resumed run, skipping the batches it trained on, sees the same order)."""
    schema = {name: tf.io.FixedLenFeature([seq_length], tf.int64) for name in TOKEN_FEATURES}
    schema[UNIQUE_IDS] = tf.io.FixedLenFeature([], tf.int64)
    if is_training:
        schema.update({name: tf.io.FixedLenFeature([], tf.int64)
                       for name in (START_POSITIONS, END_POSITIONS)})

    def parse(record):
        parsed = tf.io.parse_single_example(record, schema)
        return {name: value if name == UNIQUE_IDS else tf.cast(value, tf.int32)
                for name, value in parsed.items()}

    def input_fn(params=None, config=None):
        dataset = tf.data.TFRecordDataset(record_file)
        if is_training:
            dataset = dataset.repeat().shuffle(buffer_size=SHUFFLE_BUFFER, seed=seed)
        dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.batch(batch_size, drop_remainder=is_training).prefetch(tf.data.AUTOTUNE)

    return input_fn


# The run ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class QaRunSettings:
    """Everything a SQuAD run needs; field names are Google's run_squad flag names."""
    vocab_file: str
    bert_config_file: str
    output_dir: str
    init_checkpoint: Optional[str] = None
    train_file: Optional[str] = None
    predict_file: Optional[str] = None
    do_train: bool = False
    do_predict: bool = False
    do_lower_case: bool = True
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    train_batch_size: int = 32
    predict_batch_size: int = 8
    learning_rate: float = 3e-5
    weight_decay: float = optimization.DEFAULT_WEIGHT_DECAY
    num_train_epochs: float = 2.0
    warmup_proportion: float = 0.1
    save_checkpoints_steps: int = 1000
    keep_checkpoint_max: int = 3
    max_train_examples: int = 0  # 0: every question of train_file
    n_best_size: int = 20
    max_answer_length: int = 30
    version_2_with_negative: bool = False
    null_score_diff_threshold: float = 0.0
    log_every_n_steps: int = 20
    seed: int = 12345

    def validate(self):
        """Refuse what no run can use, naming the flag; reads only the flags and file names."""
        cli.require(self.do_train or self.do_predict,
                    "at least one of --do_train, --do_predict must be set")
        cli.require_output_dir(self.output_dir, "output_dir")
        cli.require_file(self.vocab_file, "vocab_file", "the model's vocab.txt")
        cli.require_file(self.bert_config_file, "bert_config_file", "the model's bert_config.json")
        for needed, name in ((self.do_train, "train_file"), (self.do_predict, "predict_file")):
            if needed:
                flag = "do_train" if name == "train_file" else "do_predict"
                cli.require(getattr(self, name), f"--{name} is required with --{flag}")
                cli.require_file(getattr(self, name), name, "a SQuAD json file")
        for name in ("train_batch_size", "predict_batch_size", "save_checkpoints_steps",
                     "keep_checkpoint_max", "log_every_n_steps"):
            cli.require(getattr(self, name) > 0, f"--{name}={getattr(self, name)}: must be "
                                                 "positive")
        cli.require(self.max_train_examples >= 0,
                    f"--max_train_examples={self.max_train_examples}: must be >= 0")
        cli.require(math.isfinite(self.learning_rate) and self.learning_rate >= 0,
                    f"--learning_rate={self.learning_rate}: must be a number >= 0")
        if self.do_train:
            cli.require_positive(self.num_train_epochs, "num_train_epochs")
        cli.require_in_range(self.warmup_proportion, "warmup_proportion", 0, 1)
        cli.require(self.do_train or self.init_checkpoint
                    or tf.train.latest_checkpoint(self.output_dir),
                    "--do_predict without --do_train needs --init_checkpoint (a fine-tuned "
                    "SQuAD model) or a checkpoint in --output_dir")
        cli.require(self.init_checkpoint or not self.do_train,
                    "--init_checkpoint is required with --do_train (fine-tuning starts from a "
                    "pretrained model)")
        try:
            tokenization.validate_case_matches_checkpoint(self.do_lower_case,
                                                          self.init_checkpoint)
        except ValueError as error:
            raise UsageError(f"--do_lower_case: {error}") from None

    def feature_settings(self):
        return squad.QaFeatureSettings(self.max_seq_length, self.doc_stride,
                                       self.max_query_length)

    def decode_settings(self):
        return squad_eval.QaDecodeSettings(self.n_best_size, self.max_answer_length,
                                           self.null_score_diff_threshold,
                                           self.version_2_with_negative)


def _resolved_checkpoint(path):
    """A checkpoint prefix read whole, or UsageError naming --init_checkpoint."""
    try:
        prefix = checkpoint.resolve_checkpoint(path)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    checkpoint.verify_checkpoint(prefix)
    return prefix


class QaRun:
    """One model, one SQuAD train and/or predict file, one output folder.

    The constructor reads and converts both files and checks every setting, so bad input fails
    before anything is written. ``methods`` are the run's own; the config's are added."""

    def __init__(self, settings: QaRunSettings, method_list: Sequence = ()):
        settings.validate()
        self.settings = settings
        self.feature_settings = settings.feature_settings()
        self.decode_settings = settings.decode_settings()
        self.bert_config = modeling.BertConfig.from_json_file(settings.bert_config_file)
        cli.require_in_range(settings.max_seq_length, "max_seq_length", MIN_SEQ_LENGTH,
                             self.bert_config.max_position_embeddings)
        tokenization.check_vocab_matches_config(settings.vocab_file, self.bert_config.vocab_size)
        own = list(method_list)
        self.methods = own + methods.from_config(self.bert_config, exclude=own)
        check_methods(self.methods, self.bert_config)
        self.init_prefix = (_resolved_checkpoint(settings.init_checkpoint)
                            if settings.init_checkpoint else None)
        if settings.do_predict and not settings.do_train:
            self._check_head(self.predict_checkpoint())
        self.tokenizer = tokenization.create_tokenizer(settings.vocab_file,
                                                       settings.do_lower_case)
        self.train_examples, self.train_features = [], []
        if settings.do_train:
            self.train_examples = squad.read_squad(settings.train_file, is_training=True)
            if settings.max_train_examples:
                self.train_examples = self.train_examples[:settings.max_train_examples]
            self.train_features = squad.convert_examples(
                self.train_examples, self.tokenizer, self.feature_settings, is_training=True)
        self.predict_examples, self.predict_features = [], []
        if settings.do_predict:
            self.predict_examples = squad.read_squad(settings.predict_file, is_training=False)
            self.predict_features = squad.convert_examples(
                self.predict_examples, self.tokenizer, self.feature_settings, is_training=False)
        # Each window is one training item (Google counted questions).
        self.num_train_steps = max(1, int(len(self.train_features) / settings.train_batch_size
                                          * settings.num_train_epochs))
        self.num_warmup_steps = int(self.num_train_steps * settings.warmup_proportion)

    @staticmethod
    def _check_head(prefix):
        cli.require(HEAD_WEIGHTS in checkpoint.list_checkpoint(prefix),
                    f"--init_checkpoint={prefix}: no SQuAD head ({HEAD_WEIGHTS}); fine-tune it "
                    "with --do_train first")

    def predict_checkpoint(self):
        """What predicts: output_dir's model folder or last checkpoint, else the given one."""
        model_dir = os.path.join(self.settings.output_dir, MODEL_DIR)
        if os.path.isdir(model_dir):
            return checkpoint.resolve_checkpoint(model_dir)
        return tf.train.latest_checkpoint(self.settings.output_dir) or self.init_prefix

    def estimator(self, extra_training_hooks=()):
        s = self.settings
        settings = QaModelSettings(self.init_prefix, self.num_train_steps,
                                   self.num_warmup_steps, s.learning_rate, s.train_batch_size,
                                   s.log_every_n_steps, s.weight_decay)
        run_config = tf.estimator.RunConfig(
            model_dir=s.output_dir, save_checkpoints_steps=s.save_checkpoints_steps,
            keep_checkpoint_max=s.keep_checkpoint_max, tf_random_seed=s.seed,
            log_step_count_steps=None, save_summary_steps=s.log_every_n_steps)
        return tf.estimator.Estimator(
            model_fn=model_fn_builder(self.bert_config, settings, self.methods,
                                      extra_training_hooks), config=run_config)

    def records(self, name, features, examples, is_training):
        """The split's TFRecord in output_dir, keyed by everything that made it."""
        s = self.settings
        key = {"version": FEATURE_CACHE_VERSION, "vocab": file_fingerprint(s.vocab_file),
               "lower_case": s.do_lower_case, "is_training": is_training,
               "settings": dataclasses.asdict(self.feature_settings),
               "count": len(features), "data": examples_digest(examples)}
        os.makedirs(s.output_dir, exist_ok=True)
        return cached_records(features, is_training, os.path.join(s.output_dir, name), key)

    def train(self, max_steps=None):
        """Train to ``max_steps`` (default: num_train_steps), resuming from output_dir's last
        checkpoint; a run that reaches num_train_steps writes <output_dir>/model and returns
        its path (None before)."""
        s = self.settings
        max_steps = max_steps or self.num_train_steps
        stop_hook = StopOnSignalHook()
        estimator = self.estimator([stop_hook])
        record = self.records(TRAIN_RECORD, self.train_features, self.train_examples, True)
        log.info("training on %d windows of %d questions to step %d (batch %d, %g epochs)",
                 len(self.train_features), len(self.train_examples), self.num_train_steps,
                 s.train_batch_size, s.num_train_epochs)
        seconds = training.train_estimator(
            estimator, input_fn_builder(record, s.max_seq_length, True, s.train_batch_size,
                                        s.seed),
            max_steps, s.output_dir, stop_hook, s.learning_rate)
        log.info("trained to step %d in %.0f s", max_steps, seconds)
        if max_steps < self.num_train_steps:
            return None
        return model_folder.write_from_training_checkpoint(
            estimator.latest_checkpoint(), os.path.join(s.output_dir, MODEL_DIR),
            self.bert_config, s.vocab_file, QA_MODEL_VARIABLES, step=PROVENANCE_STEP,
            source=s.init_checkpoint, flags=dataclasses.asdict(s))

    def logits(self, checkpoint_path):
        """(start_logits, end_logits): one array per predict feature, in feature order."""
        s = self.settings
        record = self.records(PREDICT_RECORD, self.predict_features, self.predict_examples,
                              False)
        by_id = {}
        for output in self.estimator().predict(
                input_fn_builder(record, s.max_seq_length, False, s.predict_batch_size),
                checkpoint_path=checkpoint_path):
            by_id[int(output[UNIQUE_IDS])] = (output[START_LOGITS], output[END_LOGITS])
        ordered = [by_id[feature.unique_id] for feature in self.predict_features]
        return [start for start, _ in ordered], [end for _, end in ordered]

    def predict(self):
        """predictions.json, nbest_predictions.json, (v2) null_odds.json and, when the file
        has answers, eval_results.txt. Returns the metrics (None without answers)."""
        s = self.settings
        prefix = self.predict_checkpoint()
        log.info("predicting %d questions (%d windows) with %s", len(self.predict_examples),
                 len(self.predict_features), prefix)
        start_logits, end_logits = self.logits(prefix)
        predictions = squad_eval.decode(self.predict_examples, self.predict_features,
                                        start_logits, end_logits, self.decode_settings)
        labelled = any(example.answer_texts or example.is_impossible
                       for example in self.predict_examples)
        metrics = (squad_eval.score_predictions(
            self.predict_examples, {qas_id: prediction.text
                                    for qas_id, prediction in predictions.items()},
            s.version_2_with_negative) if labelled else None)
        squad_eval.write_predictions(s.output_dir, predictions, metrics)
        if metrics:
            log.info("%s: exact_match %.2f, f1 %.2f", s.predict_file, metrics["exact_match"],
                     metrics["f1"])
        return metrics

    def run(self):
        """do_train then do_predict, as the settings say; returns the metrics or None."""
        if self.settings.do_train:
            self.train()
        return self.predict() if self.settings.do_predict else None

