"""Masked-LM pre-training of the encoder, in the core so that every method's pre-training run
trains through it (method packages may not import each other).

A run reads the TFRecords of ``bert.pretraining_data`` and trains the encoder on the masked LM
(``bert.masked_lm``) plus the caller's methods (a distillation term, a kernel transform, a token
selector), through the hook phases of a classifier run (``bert.methods``) without a task head.
Training goes through ``bert.training``: it resumes from ``output_dir`` (re-run the same
command) and stops on a NaN loss, a stop signal or a full disk as fine-tuning does. Every input
record is read once before training (``PretrainingRun.validate``), so a damaged file fails
first. ``output_dir``/model is the encoder as a plain model folder (no MLM head, no method's
own variables) that fine-tuning takes as it is; the MLM head stays in the training checkpoints
and starts from the init folder when that has one.

A method's entry point defines ``define_trainer_flags()`` beside its own flags, so every
pre-training command line takes the same trainer flags, builds a ``PretrainingRun`` (or a
dataclass extending it with the method's own settings), validates it before writing anything,
and calls ``pretrain``. Recording settings for re-runs is the entry point's (distill keeps a
run record).
"""
import dataclasses
import logging
import os
from typing import List, Optional

import tensorflow as tf
from absl import flags

from bert import cli, methods, model_fn, model_folder, modeling, optimization, training
from bert.errors import InputError
from bert.masked_lm import MaskedLm
from bert.pretraining_data import DEFAULT_MAX_PREDICTIONS, DEFAULT_MAX_SEQ_LENGTH, DEFAULT_SEED
from bert.training_hooks import StopOnSignalHook

tf1 = tf.compat.v1
log = logging.getLogger("bert")

DEFAULT_TRAIN_STEPS = 10000
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 1e-4  # Google's pre-training rate
DEFAULT_WARMUP_PROPORTION = 0.1
DEFAULT_MLM_WEIGHT = 1.0
SHUFFLE_BUFFER = 10000
MODEL_DIR = "model"
ENCODER_VARIABLES = (r"^bert/",)  # what the model folder keeps of the training checkpoint
PROVENANCE_STEP = "bert/pretraining"
# Help of the trainer's flags; an entry point whose defaults differ replaces a text
# (``define_trainer_flags(help_texts=...)``).
TRAINER_FLAG_HELP = {
    "input_file": "TFRecord file(s) of create_pretraining_data, comma separated or globs.",
    "output_dir": "Checkpoints, TensorBoard events and model/.",
    "init_checkpoint": "The model folder to start from (default: random initialisation from "
                       "--bert_config_file).",
    "bert_config_file": "The model's bert_config.json (default: the one in --init_checkpoint).",
    "vocab_file": "vocab.txt written beside the model (default: --init_checkpoint's).",
    "max_seq_length": "Tokens per instance (as given to create_pretraining_data).",
    "max_predictions_per_seq": "Masked-LM predictions per instance (as given to "
                               "create_pretraining_data).",
    "train_batch_size": "Instances per step.",
    "learning_rate": "Peak AdamW learning rate.",
    "weight_decay": "AdamW's decoupled weight decay (not on biases and LayerNorm).",
    "num_train_steps": "Training steps.",
    "warmup_proportion": "Share of steps with linear warm-up.",
    "mlm_weight": "Weight of the masked-LM loss.",
    "save_checkpoints_steps": "Checkpoint every this many steps.",
    "keep_checkpoint_max": "Checkpoints kept in output_dir.",
    "log_every_n_steps": "Progress and TensorBoard interval (steps).",
    "seed": "Graph-level seed (dropout, init, shuffle).",
}


@dataclasses.dataclass(kw_only=True)
class PretrainingRun:
    """One pre-training run's trainer settings (flag names are the field names, but
    ``input_files`` is ``--input_file`` expanded). Keyword-only, so a method's run extends it
    with fields of its own, defaulted or not; ``pretrain`` records them all in the folder's
    provenance. ``bert.model_fn.training_spec`` reads init_checkpoint, learning_rate,
    num_train_steps, num_warmup_steps, weight_decay, train_batch_size and log_every_n_steps."""
    # Weights that must not be negative; an extending run adds its own.
    NON_NEGATIVE = ("learning_rate", "weight_decay", "mlm_weight")
    input_files: List[str]
    output_dir: str
    bert_config_file: str
    vocab_file: str
    init_checkpoint: Optional[str] = None
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    max_predictions_per_seq: int = DEFAULT_MAX_PREDICTIONS
    train_batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    weight_decay: float = optimization.DEFAULT_WEIGHT_DECAY
    num_train_steps: int = DEFAULT_TRAIN_STEPS
    warmup_proportion: float = DEFAULT_WARMUP_PROPORTION
    mlm_weight: float = DEFAULT_MLM_WEIGHT
    save_checkpoints_steps: int = 1000
    keep_checkpoint_max: int = 3
    log_every_n_steps: int = 20
    seed: int = DEFAULT_SEED

    def validate(self):
        """Refuse, naming the flag, values no run can use, an output_dir that is a file, and
        input records that are damaged or of other lengths; writes nothing."""
        self.validate_values()
        cli.require_output_dir(self.output_dir, "output_dir")
        for path in self.input_files:
            check_records(path, self.max_seq_length, self.max_predictions_per_seq)

    def validate_values(self):
        """The numbers alone, checked before any file is read (an extending run adds its own
        checks after these)."""
        for name in ("train_batch_size", "num_train_steps", "save_checkpoints_steps",
                     "keep_checkpoint_max", "log_every_n_steps"):
            cli.require(getattr(self, name) >= 1, f"--{name}={getattr(self, name)}: must be "
                                                  "positive")
        for name in self.NON_NEGATIVE:
            cli.require_in_range(getattr(self, name), name, 0.0)
        cli.require_in_range(self.warmup_proportion, "warmup_proportion", 0.0, 1.0)

    @property
    def num_warmup_steps(self):
        """What the training spec reads (``bert.model_fn.training_spec``)."""
        return int(self.num_train_steps * self.warmup_proportion)

    @property
    def model_dir(self):
        """Where ``pretrain`` writes the encoder's model folder."""
        return os.path.join(self.output_dir, MODEL_DIR)


def record_schema(max_seq_length, max_predictions):
    """The features of one create_pretraining_data record, as the input pipeline parses it."""
    ints = tf.io.FixedLenFeature
    return {"input_ids": ints([max_seq_length], tf.int64),
            "input_mask": ints([max_seq_length], tf.int64),
            "segment_ids": ints([max_seq_length], tf.int64),
            "masked_lm_positions": ints([max_predictions], tf.int64),
            "masked_lm_ids": ints([max_predictions], tf.int64),
            "masked_lm_weights": tf.io.FixedLenFeature([max_predictions], tf.float32)}


def check_records(path, max_seq_length, max_predictions):
    """The file must hold whole records made with this run's lengths: every record is read once
    (its checksum too), so a truncated or damaged file fails now, not mid-training; the first
    one's lengths are compared."""
    first, count = None, 0
    try:
        for record in tf1.io.tf_record_iterator(path):
            first = record if first is None else first
            count += 1
    except tf.errors.OpError as error:
        raise InputError(f"--input_file={path}: not a whole TFRecord file: damaged or truncated "
                         f"after {count} records ({error.message.splitlines()[0]}); write it "
                         "again with create_pretraining_data") from None
    cli.require(first is not None, f"--input_file={path}: holds no records")
    features = tf.train.Example.FromString(first).features.feature
    expected = {"input_ids": ("max_seq_length", max_seq_length),
                "masked_lm_positions": ("max_predictions_per_seq", max_predictions)}
    for key, (flag, length) in expected.items():
        cli.require(key in features, f"--input_file={path}: records lack {key} (expected "
                                     "create_pretraining_data's output)")
        found = len(features[key].int64_list.value)
        cli.require(found == length, f"--{flag}={length}: {path} was made with {found}; use "
                                     "the value given to create_pretraining_data")


def input_fn_builder(settings: PretrainingRun):
    """The records repeated and shuffled (seeded), in whole batches."""
    schema = record_schema(settings.max_seq_length, settings.max_predictions_per_seq)

    def parse(record):
        example = tf.io.parse_single_example(record, schema)
        return {key: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value
                for key, value in example.items()}

    def input_fn(params=None, config=None):
        dataset = tf.data.TFRecordDataset(settings.input_files).repeat()
        dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=settings.seed)
        dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.batch(settings.train_batch_size, drop_remainder=True).prefetch(
            tf.data.AUTOTUNE)

    return input_fn


def model_fn_builder(settings: PretrainingRun, bert_config, method_list, stop_hook):
    """The encoder built with the methods' kernel transforms and token selector, then the
    methods' phases as in a classifier run (``bert.model_fn``); there is no task head, so the
    loss is the methods' terms alone (the masked LM's among them)."""
    allow_missing = methods.allow_missing(method_list)

    def build(features, labels, mode, params=None):
        hooks = methods.build_all(method_list, bert_config, True)
        model = modeling.BertModel(bert_config, True, features["input_ids"],
                                   features["input_mask"], features["segment_ids"],
                                   dense_factory=hooks.dense_factory,
                                   token_selector=hooks.token_selector)
        graph = methods.ClassifierGraph(model=model, logits=None, predictions=None,
                                        per_example_loss=None, features=features,
                                        is_training=True, is_regression=False)
        hooks.create_variables(graph)
        return model_fn.training_spec(hooks, graph, hooks.extra_loss(graph), settings,
                                      allow_missing, [stop_hook])

    return build


def pretrain(settings: PretrainingRun, bert_config, method_list=(), step=PROVENANCE_STEP):
    """Train to num_train_steps (resuming), then write ``settings.model_dir``. Returns its path.

    The objective is the masked LM (weight ``settings.mlm_weight``), added here, first: every
    run has the loss its records are made for, built before any other method's graph parts.
    ``method_list``: the caller's methods after it (never another MaskedLm), composed as in a
    classifier run. ``settings`` must be validated first (``settings.validate()``). ``step``
    names the run in the folder's provenance."""
    stop_hook = StopOnSignalHook()
    run_config = tf.estimator.RunConfig(
        model_dir=settings.output_dir, save_checkpoints_steps=settings.save_checkpoints_steps,
        keep_checkpoint_max=settings.keep_checkpoint_max, tf_random_seed=settings.seed,
        log_step_count_steps=None, save_summary_steps=settings.log_every_n_steps)
    objective = [MaskedLm(settings.mlm_weight)] + list(method_list)
    estimator = tf.estimator.Estimator(
        model_fn_builder(settings, bert_config, objective, stop_hook), config=run_config)
    seconds = training.train_estimator(estimator, input_fn_builder(settings),
                                       settings.num_train_steps, settings.output_dir,
                                       stop_hook, settings.learning_rate)
    log.info("trained to step %d in %.0f s", settings.num_train_steps, seconds)
    model_folder.write_from_training_checkpoint(
        estimator.latest_checkpoint(), settings.model_dir, bert_config, settings.vocab_file,
        ENCODER_VARIABLES, step=step, source=settings.init_checkpoint or "random initialisation",
        flags=dataclasses.asdict(settings))
    log.info("pre-trained encoder: %s", settings.model_dir)
    return settings.model_dir


def define_trainer_flags(help_texts=None):
    """The trainer's flags, one per ``PretrainingRun`` field (``--input_file`` for
    input_files), with its defaults: every pre-training entry point defines these, so the
    same flag means the same setting in each. ``help_texts``: {flag: text} replacing the help
    of a flag whose default the entry point resolves otherwise."""
    text = {**TRAINER_FLAG_HELP, **(help_texts or {})}
    for name in ("input_file", "output_dir", "init_checkpoint", "bert_config_file",
                 "vocab_file"):
        flags.DEFINE_string(name, None, text[name])
    for name in ("max_seq_length", "max_predictions_per_seq", "train_batch_size",
                 "num_train_steps", "save_checkpoints_steps", "keep_checkpoint_max",
                 "log_every_n_steps", "seed"):
        flags.DEFINE_integer(name, cli.field_default(PretrainingRun, name), text[name])
    for name in ("learning_rate", "weight_decay", "warmup_proportion", "mlm_weight"):
        flags.DEFINE_float(name, cli.field_default(PretrainingRun, name), text[name])
