"""Export a SQuAD model folder (``bert.run_squad``'s output_dir/model) for serving.

    python -m deploy.export_squad --model_dir squad_out/model --output_dir exported/squad \\
        [--max_seq_length 384 --max_query_length 64 --max_answer_length 30 \\
         --do_lower_case true --predict_file dev-v1.1.json]

The output folder holds:

* ``saved_model/``: TF1 SavedModel, signature ``serving_default``: ``question`` and ``context``
  (tf.string [batch]) -> ``answer`` (tf.string [batch], a substring of the original context),
  ``score`` (float32: start + end logit of the best span) and ``answer_start`` /
  ``answer_end`` (int64 character offsets of the answer in the context, end exclusive).
  Tokenization happens in the graph with ``deploy.export``'s rules (tensorflow_text ops:
  ``import tensorflow_text`` before loading it), with each word piece's character offsets in
  the original context. The input is ONE window, ``[CLS] question [SEP] context [SEP]`` cut to
  --max_seq_length: a context longer than that is answered from its first window only (run
  ``bert.run_squad --do_predict`` for doc_stride windows). The best span has
  start <= end <= start + max_answer_length - 1, both in the context; a context without
  tokens answers "" with score -inf.
* ``model.onnx``: the token-id graph (``input_ids``, ``input_mask``, ``segment_ids``: int32
  [batch, seq], both dynamic) -> ``start_logits`` and ``end_logits`` (float32 [batch, seq]),
  fused as ``deploy.export``'s; ``model.int8.onnx``: it quantized by ONNX Runtime (dynamic).
* ``vocab.txt`` and ``export.json``: inputs and outputs of each file, the settings, the largest
  start / end logit difference of each ONNX file vs the checkpoint, and how many of the
  SavedModel's answers equal the checkpoint's (``bert.squad`` features and
  ``bert.squad_eval.decode``, restricted to the first window), on built-in questions or on the
  first questions of --predict_file.

The folder is built under a temporary name and renamed when complete: a failed export leaves
nothing, and an earlier export at that path is replaced only by a complete one.
"""
import dataclasses
import logging
import math
import os
import shutil
import sys

import numpy as np
import onnx
import tensorflow as tf
import tensorflow_text as tf_text
import tf2onnx

from bert import checkpoint, cli, files, methods, model_folder, squad, squad_eval, tokenization
from bert.errors import UsageError
from bert.extract_features import session_config
from bert.squad_model import (END_LOGITS, HEAD_WEIGHTS, MIN_SEQ_LENGTH, START_LOGITS,
                              build_qa_logits, check_methods)
from deploy import export, inference, onnx_fusions, onnx_int8
from deploy.onnx_graph import TOKEN_DIMS

tf1 = tf.compat.v1
log = logging.getLogger("deploy")

PROGRAM = "deploy.export_squad"
QUESTION, CONTEXT = "question", "context"
TEXT_INPUTS = (QUESTION, CONTEXT)
ANSWER, SCORE, ANSWER_START, ANSWER_END = "answer", "score", "answer_start", "answer_end"
LOGIT_OUTPUTS = (START_LOGITS, END_LOGITS)
SEQUENCE_AXIS = 1
STRIPPED_MARKS = r"\p{Mn}"  # accents an uncased vocabulary was built without
WORD_DELIMITERS = rf"\s+|{export.SPLIT_OFF_PATTERN}"
QUESTION_SEGMENT_PARTS = 3  # [CLS] question [SEP]
CONTEXT_SEGMENT_PARTS = 2  # context [SEP]
COMPARE_LIMIT = 200  # questions of --predict_file compared
COMPARE_BATCH_SIZE = 16
DIFFERING_SHOWN = 10  # export.json names this many questions whose answers differ
# Compared when no --predict_file is given: accents, punctuation, runs of spaces, a long one.
BUILT_IN_QUESTIONS = [
    ("Who built the tower?", "The Eiffel Tower is a tower in Paris, France. It was built by "
                             "Gustave Eiffel's company in 1889."),
    ("When did the café open?", "Le  Café de   Flore, à Paris, opened in 1887; it is famous."),
    ("Where did the cat sit?", "The cat sat on the mat in the old house."),
    ("What is long?", " ".join(["This context is long and goes on."] * 80)),
]


# Tokenization with character offsets, in the graph ---------------------------------------------
def _row_starts(flat_lengths, row_splits):
    """Per flat element: the sum of ``flat_lengths`` before it within its row."""
    before = tf.cumsum(flat_lengths, exclusive=True)
    row_base = tf.gather(tf.concat([before, [tf.reduce_sum(flat_lengths)]], 0), row_splits[:-1])
    rows = tf.ragged.row_splits_to_segment_ids(row_splits)
    return before - tf.gather(row_base, rows)


def _char_parts(text, do_lower_case):
    """(ragged [batch, (chars)] of what the basic tokenizer makes of each char, flat bool: the
    char is an accent that vanished, so it belongs to the char before it).

    Removed chars become "", whitespace " "; uncased, each char is lowered, decomposed (NFD)
    and stripped of nonspacing marks, as ``bert.tokenization.BasicTokenizer``. Lower-casing
    depends on the neighbours only for a final sigma, whose byte length is that of any sigma:
    the whole text is lowered at once and cut at each char's own lowered length."""
    chars = tf.strings.unicode_split(text, "UTF-8")
    flat = chars.flat_values
    removed = tf.strings.regex_full_match(flat, export.REMOVED_CHARS_PATTERN)
    spaces = tf.strings.regex_full_match(flat, export.WHITESPACE_PATTERN)
    cleaned = tf.where(removed, "", tf.where(spaces, " ", flat))
    if not do_lower_case:
        return chars.with_flat_values(cleaned), tf.zeros_like(removed)
    lengths = tf.strings.length(tf.strings.lower(cleaned, encoding="utf-8"))
    whole = tf.strings.lower(tf.strings.reduce_join(chars.with_flat_values(cleaned), axis=1),
                             encoding="utf-8")
    lowered = tf.strings.substr(tf.gather(whole, chars.value_rowids()),
                                _row_starts(lengths, chars.row_splits), lengths)
    normal = tf.strings.regex_replace(tf_text.normalize_utf8(lowered, "NFD"), STRIPPED_MARKS, "")
    accents = tf.equal(tf.strings.length(normal), 0) & ~removed & ~spaces
    return chars.with_flat_values(normal), accents


def tokenize_with_offsets(text, table, do_lower_case):
    """(ids, starts, ends): ragged [batch, (pieces)] int32 word-piece ids of ``text`` (tf.string
    [batch]) as ``bert.tokenization.FullTokenizer`` gives them, and int64 character offsets of
    each piece in the original text (``bert.squad.tokenize_with_offsets``'s spans: a vanished
    accent belongs to the piece before it)."""
    chars, accents = _char_parts(text, do_lower_case)
    char_bytes = tf.cast(tf.strings.length(chars.flat_values), tf.int64)
    normalised = tf.strings.reduce_join(chars, axis=1)
    if do_lower_case:  # the canonical order of marks, which may cross the chars' borders
        normalised = tf_text.normalize_utf8(normalised, "NFD")
    words, word_starts, word_ends = tf_text.regex_split_with_offsets(
        normalised, WORD_DELIMITERS, export.SPLIT_OFF_PATTERN)
    too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > tokenization.MAX_WORD_CHARS
    words = words.with_flat_values(tf.where(too_long, tokenization.UNKNOWN_TOKEN,
                                            words.flat_values))
    wordpiece = tf_text.WordpieceTokenizer(
        table, suffix_indicator=tokenization.CONTINUATION_PREFIX,
        max_bytes_per_word=export.UTF8_MAX_BYTES_PER_CHAR * tokenization.MAX_WORD_CHARS,
        token_out_type=tf.int64, unknown_token=tokenization.UNKNOWN_TOKEN)
    ids, piece_starts, piece_ends = wordpiece.tokenize_with_offsets(words)
    word = ids.values.value_rowids()  # each piece's word, over the whole batch
    long_piece = tf.gather(too_long, word)  # one [UNK] for the whole word
    word_start = tf.gather(word_starts.flat_values, word)
    byte_start = word_start + tf.where(long_piece, tf.zeros_like(word_start),
                                       piece_starts.flat_values)
    byte_end = tf.where(long_piece, tf.gather(word_ends.flat_values, word),
                        word_start + piece_ends.flat_values)
    pieces = ids.merge_dims(1, 2)
    rows = pieces.value_rowids()
    row_bytes = tf.cumsum(tf.reduce_sum(chars.with_flat_values(char_bytes), axis=1),
                          exclusive=True)
    char_ends = tf.cumsum(char_bytes)  # over the whole batch: one sorted sequence
    first = tf.searchsorted(char_ends, tf.gather(row_bytes, rows) + byte_start, side="right",
                            out_type=tf.int64)
    last = tf.searchsorted(char_ends, tf.gather(row_bytes, rows) + byte_end - 1, side="right",
                           out_type=tf.int64)
    # A piece ends where the next char that is no vanished accent (or the next row) starts.
    anchors = tf.sort(tf.concat([tf.where(~accents)[:, 0], chars.row_splits], 0))
    end = tf.gather(anchors, tf.searchsorted(anchors, last, side="right", out_type=tf.int64))
    row_first = tf.gather(chars.row_splits, rows)
    return (tf.cast(pieces, tf.int32), pieces.with_flat_values(first - row_first),
            pieces.with_flat_values(end - row_first))


def _keep_first(ragged, lengths):
    positions = tf.ragged.range(ragged.row_lengths())
    return tf.ragged.boolean_mask(ragged, positions < lengths[:, None])


def encode_question_context(question, context, table, do_lower_case, max_seq_length,
                            max_query_length):
    """Token features [batch, longest] of ``[CLS] question [SEP] context [SEP]`` (the question
    cut to max_query_length pieces, the context to what fits), the context pieces' character
    offsets, and each row's first context position and context piece count."""
    question_ids = tokenize_with_offsets(question, table, do_lower_case)[0][
        :, :max_query_length]
    context_ids, starts, ends = tokenize_with_offsets(context, table, do_lower_case)
    room = max_seq_length - question_ids.row_lengths() - squad.SPECIAL_TOKENS_PER_FEATURE
    context_ids = _keep_first(context_ids, room)
    batch = tf.shape(question, out_type=tf.int64)[0]
    cls_id, sep_id = (tf.cast(table.lookup(tf.constant(token)), tf.int32)
                      for token in (squad.CLS_TOKEN, squad.SEP_TOKEN))
    ones = tf.ones([batch], tf.int64)
    cls = tf.RaggedTensor.from_row_lengths(tf.fill([batch], cls_id), ones)
    sep = tf.RaggedTensor.from_row_lengths(tf.fill([batch], sep_id), ones)
    parts = [cls, question_ids, sep, context_ids, sep]
    input_ids = tf.concat(parts, axis=1)
    segments = ([squad.QUESTION_SEGMENT] * QUESTION_SEGMENT_PARTS
                + [squad.CONTEXT_SEGMENT] * CONTEXT_SEGMENT_PARTS)
    segment_ids = tf.concat([tf.ones_like(part) * segment
                             for part, segment in zip(parts, segments)], axis=1)
    features = (input_ids.to_tensor(), tf.ones_like(input_ids).to_tensor(),
                segment_ids.to_tensor())
    offset = question_ids.row_lengths() + QUESTION_SEGMENT_PARTS - 1
    return features, (starts, ends), offset, context_ids.row_lengths()


def best_spans(start_logits, end_logits, offset, length, max_answer_length):
    """(start, end, score) of each row's best span: both ends in positions [offset, offset +
    length), start <= end < start + max_answer_length; score -inf when there is none."""
    positions = tf.range(tf.shape(start_logits, out_type=tf.int64)[1])
    inside = ((positions[None] >= offset[:, None])
              & (positions[None] < (offset + length)[:, None]))
    span = positions[None, :] - positions[:, None]  # [start, end]: end - start
    allowed = (span >= 0) & (span < max_answer_length)
    valid = inside[:, :, None] & inside[:, None, :] & allowed[None]
    scores = tf.where(valid, start_logits[:, :, None] + end_logits[:, None, :],
                      tf.constant(-math.inf))
    flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
    best = tf.argmax(flat, axis=1)
    seq = tf.shape(start_logits, out_type=tf.int64)[1]
    return best // seq, best % seq, tf.reduce_max(flat, axis=1)


def _piece_offsets(offsets, pieces, has_span):
    """Per row, the ``pieces``-th value of ragged ``offsets`` (0 for rows without a span)."""
    values = tf.concat([offsets.flat_values, tf.zeros([1], tf.int64)], 0)
    index = tf.where(has_span, offsets.row_splits[:-1] + pieces,
                     tf.size(offsets.flat_values, out_type=tf.int64))
    return tf.gather(values, index)


def answer_graph(model, question, context, table, settings):
    """The SavedModel's outputs for tf.string [batch] ``question`` and ``context``."""
    features, (starts, ends), offset, length = encode_question_context(
        question, context, table, settings.do_lower_case, settings.max_seq_length,
        settings.max_query_length)
    start_logits, end_logits = qa_logits(model, *features)
    start, end, score = best_spans(start_logits, end_logits, offset, length,
                                   settings.max_answer_length)
    has_span = length > 0
    answer_start = _piece_offsets(starts, start - offset, has_span)
    answer_end = _piece_offsets(ends, end - offset, has_span)
    answer = tf.strings.substr(context, answer_start, answer_end - answer_start,
                               unit="UTF8_CHAR")
    return {ANSWER: answer, SCORE: score, ANSWER_START: answer_start, ANSWER_END: answer_end}


# The model and its three formats ---------------------------------------------------------------
def qa_logits(model, input_ids, input_mask, segment_ids, simulated_int8=True):
    """(start_logits, end_logits) of the model folder in the current graph; its config's
    methods included (``simulated_int8=False`` leaves out a simulated INT8, as
    ``deploy.inference.build_logits``)."""
    method_list = [method for method in methods.from_config(model.bert_config)
                   if simulated_int8 or not method.simulates_int8]
    hooks = methods.build_all(method_list, model.bert_config, False)
    _, start_logits, end_logits = build_qa_logits(model.bert_config, False, input_ids,
                                                  input_mask, segment_ids, hooks)
    return start_logits, end_logits


class TokenRunner:
    """The checkpoint's start/end logits in one TF session with [batch, length] inputs."""

    def __init__(self, model, simulated_int8=True):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.inputs = [tf1.placeholder(tf.int32, [None, None], name)
                           for name in inference.INPUT_NAMES]
            logits = qa_logits(model, *self.inputs, simulated_int8=simulated_int8)
            self.outputs = [tf.identity(tensor, name) for tensor, name
                            in zip(logits, LOGIT_OUTPUTS)]
            saver = tf1.train.Saver()
            # oneDNN's LayerNorm fusion kills the process on this graph's fetches.
            self.session = tf1.Session(graph=self.graph, config=session_config())
            saver.restore(self.session, model.checkpoint_prefix)

    def __call__(self, input_ids, input_mask, segment_ids):
        return self.session.run(self.outputs, dict(zip(self.inputs, (input_ids, input_mask,
                                                                     segment_ids))))

    def close(self):
        self.session.close()


def write_onnx(runner, path):
    """The runner's graph through tf2onnx, fused as deploy.export's (``onnx_fusions``)."""
    frozen = tf1.graph_util.convert_variables_to_constants(
        runner.session, runner.graph.as_graph_def(), list(LOGIT_OUTPUTS))
    names = inference.INPUT_NAMES + LOGIT_OUTPUTS
    model, _ = tf2onnx.convert.from_graph_def(
        frozen, input_names=[f"{name}:0" for name in inference.INPUT_NAMES],
        output_names=[f"{name}:0" for name in LOGIT_OUTPUTS], opset=export.ONNX_OPSET,
        tensors_to_rename={f"{name}:0": name for name in names})
    onnx_fusions.optimize(model, export.static_shapes(runner))
    for value in model.graph.output:  # [batch, sequence] like the inputs
        value.type.tensor_type.shape.dim[SEQUENCE_AXIS].dim_param = TOKEN_DIMS[SEQUENCE_AXIS]
    onnx.save(model, path)


def write_saved_model(model, path, vocab_file, settings):
    """TF1 SavedModel whose ``serving_default`` answers raw questions about raw contexts."""
    with tf.Graph().as_default() as graph:
        texts = {name: tf1.placeholder(tf.string, [None], name) for name in TEXT_INPUTS}
        table = export.vocab_table(vocab_file)
        outputs = answer_graph(model, texts[QUESTION], texts[CONTEXT], table, settings)
        signature = tf1.saved_model.signature_def_utils.predict_signature_def(texts, outputs)
        main_op = tf1.tables_initializer()
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as session:
            saver.restore(session, model.checkpoint_prefix)
            builder = tf1.saved_model.Builder(path)
            builder.add_meta_graph_and_variables(
                session, [export.SERVING_TAG], signature_def_map={export.SIGNATURE: signature},
                assets_collection=tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS),
                main_op=main_op)
            builder.save()


class SavedModelRunner:
    """The exported SavedModel's outputs on raw text, loaded back into a TF1 session."""

    def __init__(self, path):
        self.graph = tf.Graph()
        self.session = tf1.Session(graph=self.graph)
        with self.graph.as_default():
            meta_graph = tf1.saved_model.loader.load(self.session, [export.SERVING_TAG], path)
        signature = meta_graph.signature_def[export.SIGNATURE]
        self.inputs = [signature.inputs[name].name for name in TEXT_INPUTS]
        self.outputs = {name: info.name for name, info in signature.outputs.items()}

    def __call__(self, questions, contexts):
        """{output name: array} for lists of questions and contexts; answers as str."""
        values = self.session.run(self.outputs, dict(zip(self.inputs, (questions, contexts))))
        values[ANSWER] = [answer.decode("utf-8") for answer in values[ANSWER]]
        return values

    def close(self):
        self.session.close()


# Checks ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class ExportSettings:
    """What the export cuts and decodes with."""
    max_seq_length: int = 384
    max_query_length: int = 64
    max_answer_length: int = 30
    do_lower_case: bool = True

    def feature_settings(self):
        """One window's cut; doc_stride is the context room (only the first window counts)."""
        room = self.max_seq_length - self.max_query_length - squad.SPECIAL_TOKENS_PER_FEATURE
        return squad.QaFeatureSettings(self.max_seq_length, max(1, room),
                                       self.max_query_length)

    def decode_settings(self):
        """Every span the SavedModel considers: n-best over all positions."""
        return squad_eval.QaDecodeSettings(n_best_size=self.max_seq_length,
                                           max_answer_length=self.max_answer_length)


def first_windows(examples, tokenizer, settings):
    """Each example's first window, where every context piece counts as its best context, and
    how many examples have more than one window."""
    features = squad.convert_examples(examples, tokenizer, settings.feature_settings(), False)
    first = [dataclasses.replace(feature, token_is_max_context=[
        span is not None for span in feature.token_spans])
        for feature in features if feature.window_index == 0]
    return first, sum(1 for feature in features if feature.window_index == 1)


def _batches(features):
    """Token arrays of ``features`` in batches, each cut to its longest example."""
    for start in range(0, len(features), COMPARE_BATCH_SIZE):
        batch = features[start:start + COMPARE_BATCH_SIZE]
        longest = max(sum(feature.input_mask) for feature in batch)
        yield tuple(np.array([getattr(feature, name)[:longest] for feature in batch], np.int32)
                    for name in inference.INPUT_NAMES)


def compare_formats(model, folder, examples, settings):
    """Logit differences of the ONNX files and the SavedModel's answer agreement with the
    checkpoint, on the first window of each example."""
    tokenizer = tokenization.create_tokenizer(model.vocab_file, settings.do_lower_case)
    features, longer = first_windows(examples, tokenizer, settings)
    runners = {name: inference.OnnxRunner(os.path.join(folder, file)).session
               for name, file in (("onnx", export.ONNX_FILE), ("onnx_int8", export.INT8_FILE))}
    diffs = {name: dict.fromkeys(LOGIT_OUTPUTS, 0.0) for name in runners}
    checkpoint_logits = {name: [] for name in LOGIT_OUTPUTS}
    runner = TokenRunner(model)
    try:
        for arrays in _batches(features):
            reference = runner(*arrays)
            real = arrays[1].astype(bool)
            for name, logits in zip(LOGIT_OUTPUTS, reference):
                checkpoint_logits[name].extend(list(logits))
            for format_name, session in runners.items():
                outputs = session.run(list(LOGIT_OUTPUTS),
                                      dict(zip(inference.INPUT_NAMES, arrays)))
                for name, logits, expected in zip(LOGIT_OUTPUTS, outputs, reference):
                    diffs[format_name][name] = max(diffs[format_name][name], float(
                        np.max(np.abs(logits - expected)[real])))
    finally:
        runner.close()
    decoded = squad_eval.decode(examples, features, checkpoint_logits[START_LOGITS],
                                checkpoint_logits[END_LOGITS], settings.decode_settings())
    saved_model = SavedModelRunner(os.path.join(folder, export.SAVED_MODEL_DIR))
    try:
        answers = []
        for start in range(0, len(examples), COMPARE_BATCH_SIZE):
            batch = examples[start:start + COMPARE_BATCH_SIZE]
            answers += saved_model([example.question for example in batch],
                                   [example.context for example in batch])[ANSWER]
    finally:
        saved_model.close()
    differing = [example.qas_id for example, answer in zip(examples, answers)
                 if answer != decoded[example.qas_id].text]
    return diffs, {"agree": len(examples) - len(differing), "total": len(examples),
                   "longer_than_one_window": longer, "differing": differing[:DIFFERING_SHOWN]}


# The command -----------------------------------------------------------------------------------
def validate(args):
    """Every check before anything is written; returns (model folder, settings, examples)."""
    cli.require_output_dir(args.output_dir, "output_dir")
    model = model_folder.load(args.model_dir, "model_dir", verify_weights=True)
    cli.require(model.vocab_file.endswith(export.VOCAB_FILE),
                f"--model_dir={args.model_dir}: the exported tokenizer needs a WordPiece "
                f"{export.VOCAB_FILE}, found {os.path.basename(model.vocab_file)}")
    tokenization.check_vocab_matches_config(model.vocab_file, model.bert_config.vocab_size,
                                            "model_dir")
    cli.require(os.path.realpath(args.output_dir) != os.path.realpath(args.model_dir),
                f"--output_dir={args.output_dir} is the model folder itself; choose another")
    cli.require(HEAD_WEIGHTS in checkpoint.list_checkpoint(model.checkpoint_prefix),
                f"--model_dir={args.model_dir}: the checkpoint has no SQuAD head "
                f"({HEAD_WEIGHTS}); fine-tune it with bert.run_squad first")
    check_methods(methods.from_config(model.bert_config), model.bert_config)
    cli.require_in_range(args.max_seq_length, "max_seq_length", MIN_SEQ_LENGTH,
                         model.bert_config.max_position_embeddings)
    settings = ExportSettings(args.max_seq_length, args.max_query_length,
                              args.max_answer_length, args.do_lower_case)
    settings.feature_settings()  # raises UsageError naming the flag
    settings.decode_settings()
    try:
        tokenization.validate_case_matches_checkpoint(args.do_lower_case, args.model_dir)
    except ValueError as error:
        raise UsageError(f"--do_lower_case: {error}") from None
    if args.predict_file:
        cli.require_file(args.predict_file, "predict_file", "a SQuAD json file")
        examples = squad.read_squad(args.predict_file, is_training=False)[:COMPARE_LIMIT]
    else:
        examples = [squad.QaExample(f"built_in_{index}", question, context, [])
                    for index, (question, context) in enumerate(BUILT_IN_QUESTIONS)]
    return model, settings, examples


def describe(model, args, settings):
    """export.json's description of the files (the comparisons are added to it)."""
    token_input = "int32 [batch, seq] (both dynamic; pad to the batch's longest)"
    logits = "float32 [batch, seq]"
    onnx_file = {"inputs": {name: token_input for name in inference.INPUT_NAMES},
                 "outputs": {name: logits for name in LOGIT_OUTPUTS},
                 "opset": export.ONNX_OPSET, "runs_on": export.ONNX_RUNTIME_OPS}
    return {
        "source_model_dir": os.path.abspath(args.model_dir),
        "checkpoint": os.path.abspath(model.checkpoint_prefix),
        "methods": [method.name for method in methods.from_config(model.bert_config)],
        "settings": dataclasses.asdict(settings),
        "files": {
            export.SAVED_MODEL_DIR: {
                "tag": export.SERVING_TAG, "signature": export.SIGNATURE,
                "inputs": {QUESTION: "string [batch]", CONTEXT: "string [batch]"},
                "outputs": {ANSWER: "string [batch] (a substring of the context)",
                            SCORE: "float32 [batch] (start + end logit of the best span)",
                            ANSWER_START: "int64 [batch] (character offset in the context)",
                            ANSWER_END: "int64 [batch] (character offset, exclusive)"},
                "window": "one: [CLS] question [SEP] context [SEP] cut to max_seq_length; a "
                          "longer context is answered from its first window",
                "load": "import tensorflow_text (registers the tokenizer's ops), then "
                        f"tf.saved_model.load(path).signatures['{export.SIGNATURE}']"
                        f"({QUESTION}=..., {CONTEXT}=...)"},
            export.ONNX_FILE: onnx_file,
            export.INT8_FILE: dict(onnx_file, quantization=(
                "onnxruntime quantize_dynamic, QInt8 weights, "
                f"per_channel={export.INT8_PER_CHANNEL}")),
            export.VOCAB_FILE: "the model's WordPiece vocabulary (ids are line numbers)"},
    }


def write_export(model, args, settings, examples, folder):
    """Everything into ``folder``; returns export.json's content."""
    vocab_file = os.path.join(folder, export.VOCAB_FILE)
    shutil.copyfile(model.vocab_file, vocab_file)
    log.info("writing the SavedModel")
    write_saved_model(model, os.path.join(folder, export.SAVED_MODEL_DIR), vocab_file, settings)
    float_runner = TokenRunner(model, simulated_int8=False)
    try:
        log.info("converting to ONNX and quantizing to INT8")
        with export.quiet_converters():
            write_onnx(float_runner, os.path.join(folder, export.ONNX_FILE))
            onnx_int8.write_dynamic(os.path.join(folder, export.ONNX_FILE),
                                    os.path.join(folder, export.INT8_FILE),
                                    export.INT8_PER_CHANNEL)
    finally:
        float_runner.close()
    diffs, agreement = compare_formats(model, folder, examples, settings)
    summary = describe(model, args, settings)
    summary["compared_on"] = (f"the first {len(examples)} questions of {args.predict_file}"
                              if args.predict_file else
                              f"{len(examples)} built-in questions")
    summary["max_abs_logit_diff_vs_checkpoint"] = diffs
    summary["saved_model_answers_equal_checkpoint"] = agreement
    files.write_json_atomic(os.path.join(folder, export.EXPORT_FILE), summary)
    return summary


def format_summary(summary, output_dir):
    agreement = summary["saved_model_answers_equal_checkpoint"]
    return "\n".join([
        f"exported {summary['source_model_dir']} to {output_dir}: {export.SAVED_MODEL_DIR}/, "
        f"{export.ONNX_FILE}, {export.INT8_FILE}",
        f"max |logit - checkpoint logit| on {summary['compared_on']}: " + ", ".join(
            f"{name} {output} {value:.2e}" for name, outputs
            in summary["max_abs_logit_diff_vs_checkpoint"].items()
            for output, value in outputs.items()),
        f"SavedModel answer = checkpoint answer (first window) on {agreement['agree']} of "
        f"{agreement['total']} questions"])


def run(args):
    model, settings, examples = validate(args)
    with files.atomic_folder(args.output_dir) as folder:
        summary = write_export(model, args, settings, examples, folder)
    print(format_summary(summary, args.output_dir))


def main(argv=None):
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--model_dir", required=True,
                        help="SQuAD model folder (bert.run_squad's output_dir/model)")
    parser.add_argument("--output_dir", required=True, help="folder to write (replaced whole)")
    for name, help_text in (
            ("max_seq_length", "tokens of the one window: [CLS] question [SEP] context [SEP]"),
            ("max_query_length", "question pieces kept"),
            ("max_answer_length", "longest answer in word pieces")):
        parser.add_argument(f"--{name}", type=int,
                            default=cli.field_default(ExportSettings, name), help=help_text)
    parser.add_argument("--do_lower_case", type=export.parse_bool, default=True,
                        help="true for uncased models (the default), false for cased ones")
    parser.add_argument("--predict_file", help="SQuAD json whose first questions compare the "
                                               "formats (default: built-in questions)")
    args = parser.parse_args(argv)
    cli.configure_logging()
    return cli.run_main(lambda: run(args), PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
