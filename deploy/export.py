"""Export a model folder for serving: a SavedModel that takes raw text, ONNX fp32 and ONNX INT8.

    python -m deploy.export --model_dir models/compact --output_dir exported/compact \\
        [--max_seq_length 128] [--do_lower_case true] [--task_name SST-2 --data_dir data/SST-2]
        [--int8_mode dynamic|static|learned] [--calibration_examples 128]

Any model folder with a classifier head (dense, FLOP-compact, PoWER-BERT, both) is built from
its config alone (``deploy.inference``). The output folder holds:

* ``saved_model/``: TF1 SavedModel, signature ``serving_default``: ``text_a``, ``text_b``
  (tf.string [batch]; an empty ``text_b`` means a single sentence) -> ``logits`` and
  ``probabilities`` (``predictions`` for regression). Tokenization (Google's WordPiece rules,
  as ``bert.tokenization``), truncation and padding to the batch's longest example happen in
  the graph, with tensorflow_text ops: ``import tensorflow_text`` before loading it.
* ``model.onnx``: the token-id graph (``input_ids``, ``input_mask``, ``segment_ids``: int32
  [batch, seq], both dynamic) -> ``logits``, rewritten to fused ops (LayerNormalization,
  ONNX Runtime's Attention and Gelu, ONNX's LayerNormalization: ``deploy.onnx_fusions``);
  ``model.int8.onnx``: it quantized to INT8 by ONNX Runtime, ``--int8_mode dynamic`` (the
  default) or ``static``: activation scales calibrated on the first --calibration_examples
  train examples of --task_name in --data_dir, or ``learned`` (the default for a model trained
  quantization-aware): the scales its training learned (``deploy.onnx_int8``). The ONNX files
  come from the model's float graph; its fake quantization is what the INT8 file runs.
* ``vocab.txt`` and ``export.json`` (inputs, labels, settings and, with --task_name and
  --data_dir, the dev metric of every format and their largest logit difference).

The folder is built under a temporary name and renamed when complete: a failed export leaves
nothing, and an earlier export at that path is replaced only by a complete one.
"""
import contextlib
import gzip
import logging
import os
import shutil
import sys

import numpy as np
import onnx
import tensorflow as tf
import tensorflow_text as tf_text
import tf2onnx

from bert import (checkpoint, cli, deployment, features, files, metrics, tasks, tokenization,
                  user_task)
from bert.classifier import MIN_SEQ_LENGTH
from bert.errors import UsageError
from deploy import inference, onnx_fusions, onnx_int8

tf1 = tf.compat.v1
log = logging.getLogger("deploy")

PROGRAM = "deploy.export"
SAVED_MODEL_DIR = "saved_model"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
VOCAB_FILE = "vocab.txt"
EXPORT_FILE = "export.json"
SERVING_TAG = tf1.saved_model.tag_constants.SERVING
SIGNATURE = tf1.saved_model.signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY
TEXT_INPUTS = ("text_a", "text_b")
PROBABILITIES = "probabilities"
PREDICTIONS = "predictions"
ONNX_OPSET = 17  # the first opset with LayerNormalization (deploy.onnx_graph fuses into it)
ONNX_RUNTIME_OPS = "com.microsoft ops (Attention, Gelu): ONNX Runtime"
TF2ONNX_LOGGER = "tf2onnx"
# One weight scale per output column, not per tensor: on all-MiniLM-L6-v2 it halves the largest
# logit error of the INT8 file (0.35 vs 0.78 on logits up to 4.2) for a 0.5% larger file.
INT8_PER_CHANNEL = True
CALIBRATION_EXAMPLES = 128  # --calibration_examples default: enough for stable MinMax ranges
CALIBRATION_BATCH_SIZE = 16
# The learned mode's calibrator pass needs one batch; every range it quantizes is given.
LEARNED_PLACEHOLDER_FEED = {name: np.ones([1, MIN_SEQ_LENGTH], np.int32)
                            for name in inference.INPUT_NAMES}
COMPARE_BATCH_SIZE = 32
CLS_TOKEN, SEP_TOKEN = "[CLS]", "[SEP]"
PAIR_SPECIAL_TOKENS = features.PAIR_SPECIAL_TOKENS
SINGLE_SPECIAL_TOKENS = features.SINGLE_SPECIAL_TOKENS
HEAD = features.HEAD
UTF8_MAX_BYTES_PER_CHAR = 4
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes"), ("false", "0", "no")


# Tokenization in the graph ----------------------------------------------------------------------
def _char_ranges(ranges):
    return "|".join(f"[\\x{{{low:X}}}-\\x{{{high:X}}}]" for low, high in ranges)


# bert.tokenization's rules as RE2 patterns. Removed: NUL, U+FFFD and every Unicode "other"
# (category C) char but tab, newline and return, which like category Z separate words.
REMOVED_CHARS_PATTERN = r"[\x{0}\x{FFFD}]|[^\PC\t\n\r]"
WHITESPACE_PATTERN = r"[\t\n\r\p{Z}]"  # Zl, Zp too: str.split() splits at U+2028, U+2029
# Each punctuation char (ASCII symbols included) and each CJK ideograph is a word of its own.
SPLIT_OFF_PATTERN = "|".join([_char_ranges(tokenization.ASCII_PUNCTUATION_RANGES), r"\p{P}",
                              _char_ranges(tokenization.CJK_IDEOGRAPH_RANGES)])


def basic_tokenize(text, do_lower_case):
    """[batch] strings -> ragged [batch, (words)], as ``tokenization.BasicTokenizer``.

    tensorflow_text's own BertTokenizer differs on real text: it case-folds with NFKC ("µ"
    becomes Greek "μ", "…" three periods, "ß" "ss"), turns NUL into a space instead of deleting
    it and keeps U+FFFD and private-use chars, so its ids are not the ones the model learned.
    """
    text = tf.strings.regex_replace(text, REMOVED_CHARS_PATTERN, "")
    text = tf.strings.regex_replace(text, WHITESPACE_PATTERN, " ")
    if do_lower_case:
        text = tf.strings.lower(text, encoding="utf-8")
        text = tf.strings.regex_replace(tf_text.normalize_utf8(text, "NFD"), r"\p{Mn}", "")
    return tf_text.regex_split(text, rf"\s+|{SPLIT_OFF_PATTERN}", SPLIT_OFF_PATTERN)


def vocab_table(vocab_file):
    """Token -> id (its line number); -1 for anything else (WordPiece then tries shorter)."""
    initializer = tf.lookup.TextFileInitializer(
        vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
        tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
    return tf.lookup.StaticHashTable(initializer, default_value=-1)


def wordpiece_ids(words, table):
    """Ragged [batch, (words)] -> ragged [batch, (pieces)] int32 ids.

    A word longer than ``tokenization.MAX_WORD_CHARS`` characters is one [UNK], as in
    ``WordpieceTokenizer`` (tensorflow_text would count bytes, not characters).
    """
    too_long = tf.strings.length(words, unit="UTF8_CHAR") > tokenization.MAX_WORD_CHARS
    words = tf.ragged.map_flat_values(
        lambda flat: tf.where(too_long.flat_values, tokenization.UNKNOWN_TOKEN, flat), words)
    wordpiece = tf_text.WordpieceTokenizer(
        table, suffix_indicator=tokenization.CONTINUATION_PREFIX,
        max_bytes_per_word=UTF8_MAX_BYTES_PER_CHAR * tokenization.MAX_WORD_CHARS,
        token_out_type=tf.int64, unknown_token=tokenization.UNKNOWN_TOKEN)
    return tf.cast(wordpiece.tokenize(words).merge_dims(1, 2), tf.int32)


def truncation_lengths(length_a, length_b, budget):
    """Closed form of ``classifier.truncate_pair`` (pops the longer side, ties pop b).

    The longer side loses tokens until the pair fits or both are equally long; from then on
    they alternate, b first, so a keeps ceil(budget / 2) and b floor(budget / 2).
    """
    fits = length_a + length_b <= budget
    excess = length_a + length_b - budget
    only_a = (length_a >= length_b) & (length_a - length_b >= excess)
    only_b = (length_b > length_a) & (length_b - length_a >= excess)
    kept_a = tf.where(fits | only_b, length_a,
                      tf.where(only_a, budget - length_b, (budget + 1) // 2))
    kept_b = tf.where(fits | only_a, length_b,
                      tf.where(only_b, budget - length_a, budget // 2))
    return kept_a, kept_b


def _keep_first(ragged, lengths):
    positions = tf.ragged.range(ragged.row_lengths())
    return tf.ragged.boolean_mask(ragged, positions < tf.cast(lengths, positions.dtype)[:, None])


def _keep_head_tail(ragged, kept, head_tail_rows, head, tail):
    """``_keep_first`` of ``kept`` tokens, but the rows ``head_tail_rows`` keep their first
    ``head`` and last ``tail`` tokens (``features.truncate_single``'s head_tail)."""
    positions = tf.ragged.range(ragged.row_lengths())
    flat, rows = positions.flat_values, positions.value_rowids()
    keep = flat < tf.gather(tf.cast(kept, flat.dtype), rows)
    ends = (flat < head) | (flat >= tf.gather(ragged.row_lengths(), rows) - tail)
    keep = tf.where(tf.gather(head_tail_rows, rows), ends, keep)
    return tf.ragged.boolean_mask(ragged, positions.with_flat_values(keep))


def encode_text(text_a, text_b, table, do_lower_case, max_seq_length, truncation=HEAD):
    """(input_ids, input_mask, segment_ids) int32 [batch, longest] of raw text, exactly as
    ``classifier.convert_example``: a text_b without tokens makes a single-sentence input."""
    ids_a, ids_b = (wordpiece_ids(basic_tokenize(text, do_lower_case), table)
                    for text in (text_a, text_b))
    length_a, length_b = ids_a.row_lengths(), ids_b.row_lengths()
    is_pair = length_b > 0
    budget = tf.where(is_pair, np.int64(max_seq_length - PAIR_SPECIAL_TOKENS),
                      np.int64(max_seq_length - SINGLE_SPECIAL_TOKENS))
    kept_a, kept_b = truncation_lengths(length_a, length_b, budget)
    if truncation == features.HEAD_TAIL:
        single_budget = max_seq_length - SINGLE_SPECIAL_TOKENS
        head, tail = features.head_tail_split(single_budget)
        ids_a = _keep_head_tail(ids_a, kept_a, ~is_pair & (length_a > single_budget),
                                head, tail)
    else:
        ids_a = _keep_first(ids_a, kept_a)
    ids_b = _keep_first(ids_b, kept_b)
    batch = tf.shape(text_a, out_type=tf.int64)[0]
    cls_id, sep_id = (tf.cast(table.lookup(tf.constant(token)), tf.int32)
                      for token in (CLS_TOKEN, SEP_TOKEN))
    cls = tf.RaggedTensor.from_row_lengths(tf.fill([batch], cls_id), tf.ones([batch], tf.int64))
    sep = tf.RaggedTensor.from_row_lengths(tf.fill([batch], sep_id), tf.ones([batch], tf.int64))
    pair_sep = _keep_first(sep, tf.cast(is_pair, tf.int64))
    parts = [cls, ids_a, sep, ids_b, pair_sep]
    segments = [0, 0, 0, 1, 1]
    input_ids = tf.concat(parts, axis=1)
    segment_ids = tf.concat([tf.ones_like(part) * segment for part, segment
                             in zip(parts, segments)], axis=1)
    return (input_ids.to_tensor(), tf.ones_like(input_ids).to_tensor(),
            segment_ids.to_tensor())


def serving_outputs(logits, num_labels):
    """``logits`` plus ``probabilities`` (softmax), or ``predictions`` for regression."""
    if num_labels == 1:
        return {inference.LOGITS: logits, PREDICTIONS: logits[:, 0]}
    return {inference.LOGITS: logits, PROBABILITIES: tf.nn.softmax(logits)}


# The three formats ------------------------------------------------------------------------------
def write_saved_model(model, path, vocab_file, do_lower_case, max_seq_length, truncation=HEAD):
    """TF1 SavedModel whose ``serving_default`` takes raw text; the vocab travels as an asset."""
    with tf.Graph().as_default() as graph:
        texts = {name: tf1.placeholder(tf.string, [None], name) for name in TEXT_INPUTS}
        table = vocab_table(vocab_file)
        token_features = encode_text(texts["text_a"], texts["text_b"], table, do_lower_case,
                                     max_seq_length, truncation)
        outputs = serving_outputs(inference.build_logits(model, *token_features),
                                  model.num_labels)
        signature = tf1.saved_model.signature_def_utils.predict_signature_def(texts, outputs)
        main_op = tf1.tables_initializer()  # the graph must be complete before a session runs
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as session:
            saver.restore(session, model.checkpoint_prefix)
            builder = tf1.saved_model.Builder(path)
            builder.add_meta_graph_and_variables(
                session, [SERVING_TAG], signature_def_map={SIGNATURE: signature},
                assets_collection=tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS),
                main_op=main_op)
            builder.save()


@contextlib.contextmanager
def quiet_converters():
    """tf2onnx and ONNX Runtime's quantizer log every node at INFO (the latter on the root
    logger): keep the export's own log readable."""
    loggers = [logging.getLogger(), logging.getLogger(TF2ONNX_LOGGER)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def convert_to_onnx(runner):
    """tf2onnx's ModelProto of the runner's token-id graph, variables frozen to constants."""
    frozen = tf1.graph_util.convert_variables_to_constants(
        runner.session, runner.graph.as_graph_def(), [inference.LOGITS])
    names = inference.INPUT_NAMES + (inference.LOGITS,)
    model, _ = tf2onnx.convert.from_graph_def(
        frozen, input_names=[f"{name}:0" for name in inference.INPUT_NAMES],
        output_names=[f"{inference.LOGITS}:0"], opset=ONNX_OPSET,
        tensors_to_rename={f"{name}:0": name for name in names})
    return model


def static_shapes(runner):
    """{tensor name: [int or None per dim]} TensorFlow knows of the runner's graph: the ONNX
    shape inference of ``onnx_fusions.optimize`` starts again from them where it gives up."""
    return {tensor.name: tensor.shape.as_list() for operation in runner.graph.get_operations()
            for tensor in operation.outputs if tensor.shape.rank is not None}


def write_onnx(runner, path):
    """The runner's graph converted by tf2onnx and rewritten to fused ops
    (``onnx_fusions.optimize``); returns {rewrite: nodes rewritten}."""
    model = convert_to_onnx(runner)
    rewrites = onnx_fusions.optimize(model, static_shapes(runner))
    onnx.save(model, path)
    return rewrites


def calibration_feeds(model, args):
    """Static INT8's calibration batches: the first --calibration_examples train examples of
    the task, tokenized as served (each batch padded to its longest)."""
    examples = tasks.get_processor(args.task_name).get_train_examples(args.data_dir)
    pairs = [(example.text_a, example.text_b) for example in
             examples[:args.calibration_examples]]
    tokenizer = model.tokenizer(args.do_lower_case)
    return [dict(zip(inference.INPUT_NAMES,
                     inference.encode(tokenizer, pairs[start:start + CALIBRATION_BATCH_SIZE],
                                      args.max_seq_length, truncation_of(args))))
            for start in range(0, len(pairs), CALIBRATION_BATCH_SIZE)]


def write_int8(onnx_path, path, mode=onnx_int8.DYNAMIC, feeds=None, learned=None):
    """``onnx_path`` quantized to INT8 (``mode``: onnx_int8.MODES): weights per output column,
    ``feeds`` calibrate the static mode; the learned mode takes ``learned`` (LearnedInt8)."""
    if mode == onnx_int8.LEARNED:
        onnx_int8.write_learned(onnx_path, path, learned.ranges, learned.kernels,
                                feeds or [LEARNED_PLACEHOLDER_FEED])
    else:
        onnx_int8.write(mode, onnx_path, path, INT8_PER_CHANNEL, feeds)


class LearnedInt8:
    """The INT8 ranges a model folder's quantization-aware training learned (every method's
    ``bert.deployment.Deployment.int8_ranges``) and the kernels they belong to."""

    def __init__(self, model):
        values = checkpoint.read_checkpoint(model.checkpoint_prefix)
        self.ranges = {}
        for description in deployment.descriptions():
            self.ranges.update(description.int8_ranges(model.bert_config, values) or {})
        self.kernels = {name: values[name] for name in self.ranges}


class SavedModelRunner:
    """Logits of the exported SavedModel on raw text, loaded back into a TF1 session."""

    def __init__(self, path):
        self.graph = tf.Graph()
        self.session = tf1.Session(graph=self.graph)
        with self.graph.as_default():
            meta_graph = tf1.saved_model.loader.load(self.session, [SERVING_TAG], path)
        signature = meta_graph.signature_def[SIGNATURE]
        self.inputs = [signature.inputs[name].name for name in TEXT_INPUTS]
        self.logits = signature.outputs[inference.LOGITS].name

    def __call__(self, text_a, text_b):
        return self.session.run(self.logits, dict(zip(self.inputs, (text_a, text_b))))

    def close(self):
        self.session.close()


# Checks -----------------------------------------------------------------------------------------
# Compared formats when no dev set is given: a pair, single sentences and a long one.
SAMPLE_PAIRS = [("The cat sat on the mat.", "A dog sat on it."), ("It was a good movie.", None),
                ("Not very fun, and the plot is dull!", None),
                (" ".join(["the film is great and the plot is not bad ."] * 20), "who sat ?")]


def compare_formats(model, runner, folder, pairs, max_seq_length, do_lower_case, truncation):
    """Logits of the checkpoint, ONNX fp32, ONNX INT8 and the SavedModel on ``pairs``, in
    batches padded to their longest (the checkpoint and ONNX get ids from our tokenizer)."""
    tokenizer = model.tokenizer(do_lower_case)
    onnx_runners = {name: inference.OnnxRunner(os.path.join(folder, file))
                    for name, file in (("onnx", ONNX_FILE), ("onnx_int8", INT8_FILE))}
    saved_model = SavedModelRunner(os.path.join(folder, SAVED_MODEL_DIR))
    logits = {name: [] for name in ("checkpoint", "onnx", "onnx_int8", "saved_model")}
    try:
        for start in range(0, len(pairs), COMPARE_BATCH_SIZE):
            batch = pairs[start:start + COMPARE_BATCH_SIZE]
            token_features = inference.encode(tokenizer, batch, max_seq_length, truncation)
            logits["checkpoint"].append(runner(*token_features))
            for name, onnx_runner in onnx_runners.items():
                logits[name].append(onnx_runner(*token_features))
            logits["saved_model"].append(saved_model([text_a for text_a, _ in batch],
                                                     [text_b or "" for _, text_b in batch]))
    finally:
        saved_model.close()
    return {name: np.concatenate(values) for name, values in logits.items()}


def dev_metrics(task_name, examples, logits, labels):
    """The task's primary dev metric of each format's logits."""
    if labels is None:
        gold = np.array([float(example.label) for example in examples])
    else:
        label_ids = {label: index for index, label in enumerate(labels)}
        gold = np.array([label_ids[example.label] for example in examples])
    metric = tasks.primary_metric(task_name)
    values = {}
    for name, format_logits in logits.items():
        predicted = format_logits[:, 0] if labels is None else np.argmax(format_logits, -1)
        values[name] = metrics.compute_task_metrics(task_name, predicted, gold)[metric]
    return metric, values


# The command ------------------------------------------------------------------------------------
def parse_bool(text):
    value = text.strip().lower()
    if value not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError(text)  # argparse reports it as an invalid value of the flag
    return value in TRUE_WORDS


def validate(args):
    """Every check on the flags, before anything is written; returns the model folder."""
    cli.require_output_dir(args.output_dir, "output_dir")
    model = inference.load_model_folder(args.model_dir)
    cli.require(model.vocab_file.endswith(VOCAB_FILE),
                f"--model_dir={args.model_dir}: the exported tokenizer needs a WordPiece "
                f"{VOCAB_FILE}, found {os.path.basename(model.vocab_file)}")
    tokenization.check_vocab_matches_config(model.vocab_file, model.bert_config.vocab_size,
                                            "model_dir")
    cli.require(os.path.realpath(args.output_dir) != os.path.realpath(args.model_dir),
                f"--output_dir={args.output_dir} is the model folder itself; choose another")
    cli.require_in_range(args.max_seq_length, "max_seq_length", MIN_SEQ_LENGTH,
                         model.bert_config.max_position_embeddings)
    try:
        tokenization.validate_case_matches_checkpoint(args.do_lower_case, args.model_dir)
    except ValueError as error:
        raise UsageError(f"--do_lower_case: {error}") from None
    cli.resolve_task_arguments(args)
    cli.require((args.task_name is None) == (args.data_dir is None),
                "--task_name and --data_dir go together (the dev metric needs both)")
    name = args.task_name and tasks.display_name(args.task_name)
    if args.task_name is not None:
        task_labels = tasks.get_processor(args.task_name).get_labels()
        task_num_labels = 1 if task_labels is None else len(task_labels)
        cli.require(task_num_labels == model.num_labels, f"--task_name={name} has "
                    f"{task_num_labels} labels but the model's head has {model.num_labels}")
        cli.require_dir(args.data_dir, "data_dir", f"the {name} data")
    learned = LearnedInt8(model)
    if args.int8_mode is None:
        args.int8_mode = onnx_int8.LEARNED if learned.ranges else onnx_int8.DYNAMIC
    cli.require(args.int8_mode != onnx_int8.LEARNED or learned.ranges,
                f"--int8_mode learned: --model_dir={args.model_dir} has no learned INT8 ranges "
                "(it was not trained quantization-aware)")
    if args.int8_mode == onnx_int8.STATIC:
        cli.require(args.task_name is not None, "--int8_mode static calibrates on train "
                                                "examples: give --task_name and --data_dir")
        train_file = tasks.get_processor(args.task_name).train_file
        cli.require_file(os.path.join(args.data_dir, train_file), "data_dir",
                         f"the {name} {train_file} that calibrates --int8_mode static")
    cli.require_in_range(args.calibration_examples, "calibration_examples", 1)
    return model, learned


def describe(model, args, labels):
    """export.json's description of the files (the comparisons are added to it)."""
    token_input = "int32 [batch, seq] (both dynamic; pad to the batch's longest)"
    logits = f"float32 [batch, {model.num_labels}]"
    text_outputs = {inference.LOGITS: logits}
    if model.num_labels == 1:
        text_outputs[PREDICTIONS] = "float32 [batch] (logits[:, 0])"
    else:
        text_outputs[PROBABILITIES] = f"float32 [batch, {model.num_labels}] (softmax)"
    onnx_file = {"inputs": {name: token_input for name in inference.INPUT_NAMES},
                 "outputs": {inference.LOGITS: logits}, "opset": ONNX_OPSET,
                 "runs_on": ONNX_RUNTIME_OPS}
    return {
        "source_model_dir": os.path.abspath(args.model_dir),
        "checkpoint": os.path.abspath(model.checkpoint_prefix),
        "methods": [method.name for method in model.method_list],
        "num_labels": model.num_labels, "labels": labels,
        "max_seq_length": args.max_seq_length, "do_lower_case": args.do_lower_case,
        "task_name": args.task_name, "truncation": truncation_of(args),
        "files": {
            SAVED_MODEL_DIR: {
                "tag": SERVING_TAG, "signature": SIGNATURE,
                "inputs": {"text_a": "string [batch]",
                           "text_b": "string [batch] (empty: single sentence)"},
                "outputs": text_outputs,
                "load": "import tensorflow_text (registers the tokenizer's ops), then "
                        f"tf.saved_model.load(path).signatures['{SIGNATURE}'](text_a=..., "
                        "text_b=...)"},
            ONNX_FILE: onnx_file,
            INT8_FILE: dict(onnx_file, quantization=int8_description(args)),
            VOCAB_FILE: "the model's WordPiece vocabulary (ids are line numbers)"},
    }


def int8_description(args):
    if args.int8_mode == onnx_int8.LEARNED:
        return ("onnxruntime quantize_static (QDQ) of every encoder kernel's MatMul with the "
                "UInt8 activation scales and zero points its quantization-aware training "
                "learned, QInt8 weights per tensor (symmetric, max|w|/127)")
    if args.int8_mode == onnx_int8.STATIC:
        return (f"onnxruntime quantize_static (QDQ) of every MatMul (Attention split into "
                f"MatMuls and MultiHeadAttention): UInt8 activations calibrated (MinMax) on "
                f"{args.calibration_examples} {tasks.display_name(args.task_name)} train "
                f"examples, QInt8 weights, per_channel={INT8_PER_CHANNEL}")
    return f"onnxruntime quantize_dynamic, QInt8 weights, per_channel={INT8_PER_CHANNEL}"


def truncation_of(args):
    """How a long single text is cut: as the task's training cut it (head without a task)."""
    return tasks.get_processor(args.task_name).truncation if args.task_name else HEAD


def read_task(model, args):
    """(labels, dev examples or None, static INT8's calibration feeds or None): every data
    file read, and so checked, before anything is written."""
    if args.task_name is None:
        return list(range(model.num_labels)), None, None
    processor = tasks.get_processor(args.task_name)
    feeds = calibration_feeds(model, args) if args.int8_mode == onnx_int8.STATIC else None
    return processor.get_labels(), processor.get_dev_examples(args.data_dir), feeds


def write_export(model, args, folder, task, learned=None):
    """Everything into ``folder`` (``task``: read_task's; ``learned``: LearnedInt8); returns
    export.json's content. The ONNX files come from the float graph: a simulated INT8 is the
    INT8 file's, and the checkpoint's logits (with it) are what that file is compared to."""
    labels, examples, feeds = task
    vocab_file = os.path.join(folder, VOCAB_FILE)
    shutil.copyfile(model.vocab_file, vocab_file)
    log.info("writing the SavedModel")
    write_saved_model(model, os.path.join(folder, SAVED_MODEL_DIR), vocab_file,
                      args.do_lower_case, args.max_seq_length, truncation_of(args))
    runner = inference.TensorFlowRunner(model)
    float_runner = (inference.TensorFlowRunner(model, simulated_int8=False)
                    if any(method.simulates_int8 for method in model.method_list) else runner)
    try:
        log.info("converting to ONNX and quantizing to INT8")
        with quiet_converters():
            write_onnx(float_runner, os.path.join(folder, ONNX_FILE))
            write_int8(os.path.join(folder, ONNX_FILE), os.path.join(folder, INT8_FILE),
                       args.int8_mode, feeds, learned)
        pairs = (SAMPLE_PAIRS if examples is None
                 else [(example.text_a, example.text_b) for example in examples])
        logits = compare_formats(model, runner, folder, pairs, args.max_seq_length,
                                 args.do_lower_case, truncation_of(args))
    finally:
        runner.close()
        float_runner.close()
    summary = describe(model, args, labels)
    summary["compared_on"] = (f"{len(pairs)} built-in sample sentences" if examples is None else
                              f"{len(pairs)} {tasks.display_name(args.task_name)} dev examples")
    summary["max_abs_logit_diff_vs_checkpoint"] = {
        name: float(np.max(np.abs(values - logits["checkpoint"])))
        for name, values in logits.items() if name != "checkpoint"}
    if model.num_labels > 1:
        summary["int8_argmax_agreement"] = float(np.mean(
            np.argmax(logits["onnx_int8"], -1) == np.argmax(logits["checkpoint"], -1)))
    if examples is not None:
        metric, values = dev_metrics(args.task_name, examples, logits, labels)
        summary["dev"] = {"metric": metric, "examples": len(examples), **values}
    summary["sizes"] = file_sizes(folder, model)
    files.write_json_atomic(os.path.join(folder, EXPORT_FILE), summary)
    return summary


def file_sizes(folder, model):
    """Bytes of each file, stored and gzip'd (level 9): a sparse model's zeros cost little
    space only once compressed. The checkpoint is the model folder's weights."""
    paths = {name: [os.path.join(folder, name)] for name in (ONNX_FILE, INT8_FILE)}
    paths["checkpoint"] = sorted(tf.io.gfile.glob(f"{model.checkpoint_prefix}.data-*"))
    sizes = {}
    for name, shards in paths.items():
        content = b"".join(open_bytes(path) for path in shards)
        sizes[name] = {"bytes": len(content), "gzip_bytes": len(gzip.compress(content, 9))}
    return sizes


def open_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def format_summary(summary, output_dir):
    lines = [f"exported {summary['source_model_dir']} to {output_dir}: {SAVED_MODEL_DIR}/, "
             f"{ONNX_FILE}, {INT8_FILE}",
             f"max |logit - checkpoint logit| on {summary['compared_on']}: " + ", ".join(
                 f"{name} {value:.2e}" for name, value
                 in summary["max_abs_logit_diff_vs_checkpoint"].items())]
    lines.append("sizes (gzip'd): " + ", ".join(
        f"{name} {size['bytes'] / 1e6:.2f} MB ({size['gzip_bytes'] / 1e6:.2f} MB)"
        for name, size in summary["sizes"].items()))
    if "int8_argmax_agreement" in summary:
        lines.append(f"INT8 argmax = checkpoint argmax on {summary['int8_argmax_agreement']:.1%}")
    dev = summary.get("dev")
    if dev:
        lines.append(f"dev {dev['metric']} ({dev['examples']} examples): " + ", ".join(
            f"{name} {dev[name]:.4f}" for name in ("checkpoint", "onnx", "onnx_int8",
                                                   "saved_model")))
    return "\n".join(lines)


def run(args):
    model, learned = validate(args)
    task = read_task(model, args)
    with files.atomic_folder(args.output_dir) as folder:
        summary = write_export(model, args, folder, task, learned)
    print(format_summary(summary, args.output_dir))


def main(argv=None):
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--model_dir", required=True,
                        help="model folder with a classifier head (config, vocab, checkpoint)")
    parser.add_argument("--output_dir", required=True, help="folder to write (replaced whole)")
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="longest input in tokens; longer text is truncated as in training")
    parser.add_argument("--do_lower_case", type=parse_bool, default=True,
                        help="true for uncased models (the default), false for cased ones")
    parser.add_argument("--task_name", help="GLUE task, a name for your own data (with the "
                                            "flags below) or a task .json file: labels and the "
                                            "dev metric of each file")
    parser.add_argument("--data_dir", help="the task's data folder (with dev.tsv, and "
                                           "train.tsv for --int8_mode static)")
    parser.add_argument("--int8_mode", choices=onnx_int8.MODES,
                        help="INT8 activation scales found per call (dynamic), calibrated "
                             "once on train examples (static: needs --task_name, --data_dir) "
                             "or learned by quantization-aware training (learned); default: "
                             "learned for such a model, else dynamic")
    parser.add_argument("--calibration_examples", type=int, default=CALIBRATION_EXAMPLES,
                        help="train examples that calibrate --int8_mode static")
    user_task.add_arguments(parser)
    args = parser.parse_args(argv)
    cli.configure_logging()
    return cli.run_main(lambda: run(args), PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
