"""Bort's pre-training distillation for a user with raw text: masked-LM data, then MLM plus
hidden-state distillation from the teacher's encoder into the student.

    python -m distill.pretraining create_pretraining_data --input_file=corpus.txt \\
        --vocab_file=models/student/vocab.txt --output_file=pretrain/train.tf_record \\
        --max_seq_length=128 --max_predictions_per_seq=20 --dupe_factor=10
    python -m distill.pretraining run_pretraining_distillation \\
        --input_file=pretrain/train.tf_record --init_checkpoint=models/student \\
        --teacher_model_dir=models/teacher --output_dir=pretrain/run --num_train_steps=10000

(console scripts: distill-pretraining-data, distill-pretrain.) The text has one sentence per
line and a blank line between documents. Each instance is [CLS] + consecutive sentences of one
document (up to max_seq_length - 2 pieces, sometimes shorter, as Google's recipe does) +
[SEP]; 15% of its pieces are predicted, of which 80% become [MASK], 10% a random piece and 10%
stay. There is no next-sentence task (Bort, like RoBERTa, pre-trains with MLM alone).

The objective runs through the hook phases of a classifier run (``bert.methods``): the masked
LM (``distill.masked_lm``) and task distillation's hidden-state term are its methods, and
``pretrain(..., method_list)`` adds any other. Training goes through ``bert.training``: it
resumes (re-run the same command) and stops on a NaN loss, a stop signal or a full disk as
fine-tuning does; a complete run re-run with the same settings changes nothing, one with other
settings is refused (``distill.run_record``). Every input record is read once before
training, so a damaged file fails first. TensorBoard shows mlm_loss and distill_hidden_loss.
--output_dir/model is the student's encoder as a plain model folder (no MLM head, no
projections) that distill.run_distill and bert.run_classifier fine-tune. The MLM head has
Google's names (cls/predictions/...; output embeddings tied to word_embeddings) and starts from
the student folder when that has one.
"""
import contextlib
import dataclasses
import glob
import logging
import os
import random
import sys
from typing import List, Optional

import tensorflow as tf
from absl import flags

from bert import (checkpoint, cli, files, methods, model_fn, model_folder, modeling,
                  optimization, tokenization, training)
from bert.errors import InputError, UsageError
from bert.training_hooks import StopOnSignalHook
from distill import run_record
from distill.masked_lm import MaskedLm
from distill.method import (DEFAULT_HIDDEN_WEIGHT, LAYER_MAP_HELP, DistillMethod,
                            DistillSettings, layer_pairs, load_teacher, parse_layer_map,
                            write_student_folder)

tf1 = tf.compat.v1
FLAGS = flags.FLAGS
log = logging.getLogger("distill")

DATA_PROGRAM = "distill.pretraining create_pretraining_data"
TRAIN_PROGRAM = "distill.pretraining run_pretraining_distillation"
MASK_TOKEN, CLS_TOKEN, SEP_TOKEN = "[MASK]", "[CLS]", "[SEP]"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)
SPECIAL_PREFIX = "["  # [unused12] and the like are never drawn as random replacements
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # of the predicted pieces; the other 10% stay
MIN_TARGET_PIECES = 2  # a short instance still holds a pair of pieces
SPECIAL_PER_INSTANCE = 2  # [CLS] and [SEP]
DEFAULT_MAX_SEQ_LENGTH = 128
DEFAULT_MAX_PREDICTIONS = 20
DEFAULT_MASKED_LM_PROB = 0.15
DEFAULT_DUPE_FACTOR = 10
DEFAULT_SHORT_SEQ_PROB = 0.1
DEFAULT_SEED = 12345
DEFAULT_TRAIN_STEPS = 10000
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 1e-4  # Google's pre-training rate
DEFAULT_WARMUP_PROPORTION = 0.1
DEFAULT_MLM_WEIGHT = 1.0
SHUFFLE_BUFFER = 10000
MODEL_DIR = "model"
ENCODER_VARIABLES = (r"^bert/",)
# Settings of how a run proceeds, not of what it learns: a re-run may change them.
PROCEDURE_SETTINGS = ("output_dir", "save_checkpoints_steps", "keep_checkpoint_max",
                      "log_every_n_steps")
PATH_SETTINGS = ("input_files", "bert_config_file", "vocab_file", "teacher_model_dir",
                 "init_checkpoint")


# Making the data --------------------------------------------------------------------------------
@dataclasses.dataclass
class MaskingSettings:
    """Google's create_pretraining_data knobs (flag names are the field names)."""
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    max_predictions_per_seq: int = DEFAULT_MAX_PREDICTIONS
    masked_lm_prob: float = DEFAULT_MASKED_LM_PROB
    dupe_factor: int = DEFAULT_DUPE_FACTOR
    short_seq_prob: float = DEFAULT_SHORT_SEQ_PROB
    random_seed: int = DEFAULT_SEED

    def validate(self):
        cli.require(self.max_seq_length >= SPECIAL_PER_INSTANCE + MIN_TARGET_PIECES,
                    f"--max_seq_length={self.max_seq_length}: must be at least "
                    f"{SPECIAL_PER_INSTANCE + MIN_TARGET_PIECES}")
        cli.require(self.max_predictions_per_seq >= 1,
                    f"--max_predictions_per_seq={self.max_predictions_per_seq}: must be >= 1")
        cli.require(0 < self.masked_lm_prob < 1,
                    f"--masked_lm_prob={self.masked_lm_prob}: must be in (0, 1)")
        cli.require(self.dupe_factor >= 1, f"--dupe_factor={self.dupe_factor}: must be >= 1")
        cli.require_in_range(self.short_seq_prob, "short_seq_prob", 0.0, 1.0)


def read_documents(paths, tokenizer):
    """[[pieces of a sentence] per line] per document; a bad line is an InputError naming the
    file and line."""
    documents = []
    for path in paths:
        current = []
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise InputError(f"{path}:{number}: not UTF-8 text (byte {error.start} of "
                                     "the line)") from None
                if "\0" in line:
                    raise InputError(f"{path}:{number}: NUL byte (binary data, expected text "
                                     "with one sentence per line)")
                line = line.strip()
                if not line:
                    if current:
                        documents.append(current)
                    current = []
                    continue
                pieces = tokenizer.tokenize(line)
                if pieces:
                    current.append(pieces)
        if current:
            documents.append(current)
        log.info("read %s: %d documents so far", path, len(documents))
    return documents


def pack_document(document, max_pieces, short_seq_prob, rng):
    """Consecutive sentences of one document cut into runs of a target length: max_pieces,
    or with probability short_seq_prob a random shorter one (so fine-tuning's short inputs
    are not new to the model)."""
    def target():
        if rng.random() < short_seq_prob:
            return rng.randint(MIN_TARGET_PIECES, max_pieces)
        return max_pieces

    runs, chunk, length = [], [], target()
    for sentence in document:
        chunk.extend(sentence)
        while len(chunk) >= length:
            runs.append(chunk[:length])
            chunk, length = chunk[length:], target()
    if chunk:
        runs.append(chunk)
    return runs


def mask_pieces(pieces, settings, rng, replacement_words):
    """[CLS] pieces [SEP] with Google's masking: (tokens, positions, original tokens)."""
    tokens = [CLS_TOKEN] + list(pieces) + [SEP_TOKEN]
    candidates = list(range(1, len(tokens) - 1))
    rng.shuffle(candidates)
    count = min(settings.max_predictions_per_seq,
                max(1, int(round(len(pieces) * settings.masked_lm_prob))))
    positions = sorted(candidates[:count])
    originals = [tokens[position] for position in positions]
    for position in positions:
        draw = rng.random()
        if draw < MASK_SHARE:
            tokens[position] = MASK_TOKEN
        elif draw >= MASK_SHARE + RANDOM_SHARE:
            tokens[position] = replacement_words[rng.randint(0, len(replacement_words) - 1)]
        # else: the piece stays (the model must not learn that a kept piece is never predicted)
    return tokens, positions, originals


def instance_features(tokens, positions, originals, tokenizer, settings):
    """The padded int lists of one TFRecord instance."""
    ids = tokenizer.convert_tokens_to_ids(tokens)
    padding = settings.max_seq_length - len(ids)
    spare = settings.max_predictions_per_seq - len(positions)
    return {"input_ids": ids + [0] * padding,
            "input_mask": [1] * len(ids) + [0] * padding,
            "segment_ids": [0] * settings.max_seq_length,
            "masked_lm_positions": positions + [0] * spare,
            "masked_lm_ids": tokenizer.convert_tokens_to_ids(originals) + [0] * spare,
            "masked_lm_weights": [1.0] * len(positions) + [0.0] * spare}


def _tf_example(features):
    def feature(values):
        if isinstance(values[0], float):
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Example(features=tf.train.Features(
        feature={key: feature(values) for key, values in features.items()}))


def create_instances(documents, tokenizer, settings):
    """Every document packed and masked dupe_factor times (new masks each time), shuffled."""
    rng = random.Random(settings.random_seed)
    replacement_words = [word for word in tokenizer.vocab
                         if not word.startswith(SPECIAL_PREFIX)]
    max_pieces = settings.max_seq_length - SPECIAL_PER_INSTANCE
    instances = []
    for _ in range(settings.dupe_factor):
        for document in documents:
            for pieces in pack_document(document, max_pieces, settings.short_seq_prob, rng):
                instances.append(instance_features(
                    *mask_pieces(pieces, settings, rng, replacement_words), tokenizer, settings))
    rng.shuffle(instances)
    return instances


def write_instances(instances, output_files):
    """Round-robin over the output files, each written to a temp file and renamed."""
    with contextlib.ExitStack() as stack:  # unwinds writers (closed) before renames
        temps = [stack.enter_context(files.atomic_path(path)) for path in output_files]
        writers = [stack.enter_context(tf.io.TFRecordWriter(temp)) for temp in temps]
        for index, instance in enumerate(instances):
            writers[index % len(writers)].write(_tf_example(instance).SerializeToString())


def expand_files(text, flag):
    """Comma-separated files or glob patterns; each must match at least one file."""
    paths = []
    for pattern in (part for part in (text or "").split(",") if part):
        matched = sorted(glob.glob(pattern))
        cli.require(matched, f"--{flag}={pattern}: no such file")
        paths += matched
    cli.require(paths, f"--{flag} is required")
    return paths


def output_files(text, inputs):
    """The comma-separated --output_file names: each a new name for a file (not a folder, not
    one of the ``inputs`` texts), none given twice."""
    outputs = [part for part in (text or "").split(",") if part]
    cli.require(outputs, "--output_file is required")
    texts = {os.path.realpath(path) for path in inputs}
    seen = set()
    for path in outputs:
        cli.require(not os.path.isdir(path), f"--output_file={path} is a folder; expected a "
                                             "file name")
        cli.require(os.path.realpath(path) not in texts, f"--output_file={path} is one of the "
                                                         "--input_file texts; choose another name")
        cli.require(os.path.realpath(path) not in seen, f"--output_file={path} is named twice")
        seen.add(os.path.realpath(path))
    return outputs


def define_data_flags():
    flags.DEFINE_string("input_file", None, "Text file(s), comma separated or globs: one "
                        "sentence per line, a blank line between documents.")
    flags.DEFINE_string("output_file", None, "TFRecord file(s) to write, comma separated "
                        "(instances are dealt round-robin).")
    flags.DEFINE_string("vocab_file", None, "The student's vocab.txt.")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case the text (uncased models).")
    flags.DEFINE_integer("max_seq_length", DEFAULT_MAX_SEQ_LENGTH, "Tokens per instance.")
    flags.DEFINE_integer("max_predictions_per_seq", DEFAULT_MAX_PREDICTIONS,
                         "Most masked-LM predictions per instance.")
    flags.DEFINE_float("masked_lm_prob", DEFAULT_MASKED_LM_PROB, "Share of pieces predicted.")
    flags.DEFINE_integer("dupe_factor", DEFAULT_DUPE_FACTOR,
                         "Times the text is used, with different masks each time.")
    flags.DEFINE_float("short_seq_prob", DEFAULT_SHORT_SEQ_PROB,
                       "Share of instances cut to a random shorter length.")
    flags.DEFINE_integer("random_seed", DEFAULT_SEED, "Seed of packing, masking and shuffling.")


def create_pretraining_data():
    settings = MaskingSettings(**{field.name: FLAGS[field.name].value
                                  for field in dataclasses.fields(MaskingSettings)})
    settings.validate()
    inputs = expand_files(FLAGS.input_file, "input_file")
    outputs = output_files(FLAGS.output_file, inputs)
    tokenizer = tokenization.create_tokenizer(
        cli.require_file(FLAGS.vocab_file, "vocab_file", "the student's vocab.txt"),
        FLAGS.do_lower_case)
    missing = [token for token in SPECIAL_TOKENS if token not in tokenizer.vocab]
    cli.require(not missing, f"--vocab_file={FLAGS.vocab_file}: lacks {', '.join(missing)}")
    documents = read_documents(inputs, tokenizer)
    cli.require(documents, f"--input_file={FLAGS.input_file}: no text found")
    instances = create_instances(documents, tokenizer, settings)
    for path in outputs:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_instances(instances, outputs)
    log.info("wrote %d instances from %d documents to %s", len(instances), len(documents),
             ", ".join(outputs))


# Training ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class PretrainingSettings:
    """One pre-training distillation run (flag names are the field names)."""
    input_files: List[str]
    output_dir: str
    bert_config_file: str
    vocab_file: str
    teacher_model_dir: str
    init_checkpoint: Optional[str] = None
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    max_predictions_per_seq: int = DEFAULT_MAX_PREDICTIONS
    train_batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    weight_decay: float = optimization.DEFAULT_WEIGHT_DECAY
    num_train_steps: int = DEFAULT_TRAIN_STEPS
    warmup_proportion: float = DEFAULT_WARMUP_PROPORTION
    mlm_weight: float = DEFAULT_MLM_WEIGHT
    hidden_weight: float = DEFAULT_HIDDEN_WEIGHT
    layer_map: Optional[str] = None
    save_checkpoints_steps: int = 1000
    keep_checkpoint_max: int = 3
    log_every_n_steps: int = 20
    seed: int = DEFAULT_SEED

    def validate(self):
        for name in ("train_batch_size", "num_train_steps", "save_checkpoints_steps",
                     "keep_checkpoint_max", "log_every_n_steps"):
            cli.require(getattr(self, name) >= 1, f"--{name}={getattr(self, name)}: must be "
                                                  "positive")
        for name in ("learning_rate", "weight_decay", "mlm_weight", "hidden_weight"):
            cli.require_in_range(getattr(self, name), name, 0.0)
        cli.require_in_range(self.warmup_proportion, "warmup_proportion", 0.0, 1.0)
        cli.require(self.mlm_weight or self.hidden_weight,
                    "--mlm_weight and --hidden_weight are both 0: nothing would be learned")
        cli.require_output_dir(self.output_dir, "output_dir")
        for path in self.input_files:
            check_records(path, self.max_seq_length, self.max_predictions_per_seq)

    @property
    def num_warmup_steps(self):
        """What the training spec reads (``bert.model_fn.training_spec``)."""
        return int(self.num_train_steps * self.warmup_proportion)


def record_schema(max_seq_length, max_predictions):
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


def input_fn_builder(settings):
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


def objective_methods(settings, teacher_config, teacher_prefix):
    """The pre-training objective as methods: the masked LM, and task distillation's
    hidden-state term alone (no logits to match); a term of weight 0 builds no teacher."""
    objective = [MaskedLm(settings.mlm_weight)]
    if settings.hidden_weight:
        objective.append(DistillMethod(DistillSettings(
            teacher_config, teacher_prefix, logit_weight=0.0,
            hidden_weight=settings.hidden_weight, attention_weight=0.0,
            layer_map=parse_layer_map(settings.layer_map) if settings.layer_map else None)))
    return objective


def model_fn_builder(settings, student_config, method_list, stop_hook):
    """The student encoder built with the methods' kernel transforms and token selector, then
    the methods' phases as in a classifier run (``bert.model_fn``); there is no task head."""
    allow_missing = methods.allow_missing(method_list)

    def build(features, labels, mode, params=None):
        hooks = methods.build_all(method_list, student_config, True)
        model = modeling.BertModel(student_config, True, features["input_ids"],
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


def pretrain(settings, student_config, teacher_config, teacher_prefix, method_list=()):
    """Train to num_train_steps (resuming), then write output_dir/model. Returns its path.

    ``method_list``: methods added to the objective (a kernel transform, a token selector),
    composed as in a classifier run."""
    stop_hook = StopOnSignalHook()
    run_config = tf.estimator.RunConfig(
        model_dir=settings.output_dir, save_checkpoints_steps=settings.save_checkpoints_steps,
        keep_checkpoint_max=settings.keep_checkpoint_max, tf_random_seed=settings.seed,
        log_step_count_steps=None, save_summary_steps=settings.log_every_n_steps)
    objective = objective_methods(settings, teacher_config, teacher_prefix) + list(method_list)
    estimator = tf.estimator.Estimator(
        model_fn_builder(settings, student_config, objective, stop_hook), config=run_config)
    seconds = training.train_estimator(estimator, input_fn_builder(settings),
                                       settings.num_train_steps, settings.output_dir,
                                       stop_hook, settings.learning_rate)
    log.info("trained to step %d in %.0f s", settings.num_train_steps, seconds)
    model_dir = os.path.join(settings.output_dir, MODEL_DIR)
    write_student_folder(estimator.latest_checkpoint(), model_dir, student_config,
                         settings.vocab_file, ENCODER_VARIABLES, step="distill/pretraining",
                         source=settings.init_checkpoint or "random initialisation",
                         flags=dataclasses.asdict(settings))
    log.info("student encoder: %s", model_dir)
    return model_dir


def define_train_flags():
    flags.DEFINE_string("input_file", None, "TFRecord file(s) of create_pretraining_data, "
                        "comma separated or globs.")
    flags.DEFINE_string("output_dir", None, "Checkpoints, TensorBoard events and model/.")
    flags.DEFINE_string("init_checkpoint", None, "The student's model folder (default: "
                        "random initialisation from --bert_config_file).")
    flags.DEFINE_string("bert_config_file", None, "The student's bert_config.json (default: "
                        "the one in --init_checkpoint).")
    flags.DEFINE_string("vocab_file", None, "vocab.txt written beside the student (default: "
                        "--init_checkpoint's, else the teacher's).")
    flags.DEFINE_string("teacher_model_dir", None, "Model folder of the teacher.")
    flags.DEFINE_integer("max_seq_length", DEFAULT_MAX_SEQ_LENGTH,
                         "Tokens per instance (as given to create_pretraining_data).")
    flags.DEFINE_integer("max_predictions_per_seq", DEFAULT_MAX_PREDICTIONS,
                         "Masked-LM predictions per instance (as given to "
                         "create_pretraining_data).")
    flags.DEFINE_integer("train_batch_size", DEFAULT_BATCH_SIZE, "Instances per step.")
    flags.DEFINE_float("learning_rate", DEFAULT_LEARNING_RATE, "Peak AdamW learning rate.")
    flags.DEFINE_float("weight_decay", optimization.DEFAULT_WEIGHT_DECAY,
                       "AdamW's decoupled weight decay (not on biases and LayerNorm).")
    flags.DEFINE_integer("num_train_steps", DEFAULT_TRAIN_STEPS, "Training steps.")
    flags.DEFINE_float("warmup_proportion", DEFAULT_WARMUP_PROPORTION,
                       "Share of steps with linear warm-up.")
    flags.DEFINE_float("mlm_weight", DEFAULT_MLM_WEIGHT, "Weight of the masked-LM loss.")
    flags.DEFINE_float("hidden_weight", DEFAULT_HIDDEN_WEIGHT,
                       "Weight of the hidden-state distillation loss.")
    flags.DEFINE_string("layer_map", None, LAYER_MAP_HELP)
    for name, text in (("save_checkpoints_steps", "Checkpoint every this many steps."),
                       ("keep_checkpoint_max", "Checkpoints kept in output_dir."),
                       ("log_every_n_steps", "Progress and TensorBoard interval (steps).")):
        flags.DEFINE_integer(name, cli.field_default(PretrainingSettings, name), text)
    flags.DEFINE_integer("seed", DEFAULT_SEED, "Graph-level seed (dropout, init, shuffle).")


def run_pretraining_distillation():
    init = FLAGS.init_checkpoint
    config_file = model_folder.file_from_folder(
        FLAGS.bert_config_file, "bert_config_file", init, "init_checkpoint",
        model_folder.find_config, "the student's bert_config.json")
    teacher_config, teacher_prefix = load_teacher(FLAGS.teacher_model_dir)
    try:
        if init:
            checkpoint.resolve_checkpoint(init)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    folder_flag, folder = (("init_checkpoint", init) if init and os.path.isdir(init)
                           else ("teacher_model_dir", FLAGS.teacher_model_dir))
    vocab_file = model_folder.file_from_folder(FLAGS.vocab_file, "vocab_file", folder,
                                               folder_flag, checkpoint.find_vocab,
                                               model_folder.VOCAB_EXPECTED)
    student_config = modeling.BertConfig.from_json_file(config_file)
    cli.require(student_config.vocab_size == teacher_config.vocab_size,
                f"--teacher_model_dir: the teacher's vocab_size {teacher_config.vocab_size} "
                f"differs from the student's {student_config.vocab_size}")
    tokenization.check_vocab_matches_config(vocab_file, student_config.vocab_size)
    values = {field.name: FLAGS[field.name].value
              for field in dataclasses.fields(PretrainingSettings)
              if field.name in FLAGS and field.name != "input_files"}
    values.update(bert_config_file=config_file, vocab_file=vocab_file)
    settings = PretrainingSettings(input_files=expand_files(FLAGS.input_file, "input_file"),
                                   **values)
    settings.validate()
    layer_pairs(student_config.num_hidden_layers, teacher_config.num_hidden_layers,
                parse_layer_map(settings.layer_map) if settings.layer_map else None)
    pretrain_once(settings, student_config, teacher_config, teacher_prefix)


def pretrain_once(settings, student_config, teacher_config, teacher_prefix):
    """``pretrain`` unless a complete run with these settings is in output_dir already."""
    recorded = run_record.comparable(
        {key: value for key, value in dataclasses.asdict(settings).items()
         if key not in PROCEDURE_SETTINGS}, PATH_SETTINGS)
    model_dir = os.path.join(settings.output_dir, MODEL_DIR)
    done = run_record.completed(settings.output_dir, recorded, model_dir)
    if done:
        log.info("%s is already done (%s); nothing to do", settings.output_dir,
                 done["summary"])
        return
    run_record.start(settings.output_dir, recorded)
    pretrain(settings, student_config, teacher_config, teacher_prefix)
    run_record.finish(settings.output_dir, recorded,
                      f"trained to step {settings.num_train_steps}", model_dir)


def data_main():
    cli.run_absl(DATA_PROGRAM, define_data_flags, create_pretraining_data)


def train_main():
    cli.run_absl(TRAIN_PROGRAM, define_train_flags, run_pretraining_distillation)


COMMANDS = {"create_pretraining_data": data_main, "run_pretraining_distillation": train_main}


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command in ("-h", "--help"):
        print(f"usage: python -m distill.pretraining {{{','.join(COMMANDS)}}} [--flags]\n\n"
              f"{__doc__}\nEach command's own flags: python -m distill.pretraining COMMAND "
              "--help")
        sys.exit(cli.EXIT_OK)
    if command not in COMMANDS:
        sys.exit(cli.fail("distill.pretraining", f"expected a command, one of "
                                                 f"{', '.join(COMMANDS)}; got {command!r}"))
    sys.argv = [f"{sys.argv[0]} {command}"] + sys.argv[2:]
    COMMANDS[command]()
