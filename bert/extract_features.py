"""Per-token hidden states of chosen encoder layers, as JSON lines (Google's extract_features).

    python -m bert.extract_features --input_file=in.txt --output_file=out.jsonl \\
        --layers=-1,-2,-3,-4 --vocab_file=$BERT_DIR/vocab.txt \\
        --bert_config_file=$BERT_DIR/bert_config.json --init_checkpoint=$BERT_DIR/bert_model.ckpt \\
        --max_seq_length=128 --do_lower_case=True --batch_size=8

Input: one example per line, either a sentence or a pair written ``text_a ||| text_b``.
Output: one json object per input line, in input order, in the layout Google's script writes
(including its ``linex_index`` key spelling, so existing readers keep working)::

    {"linex_index": 0, "features": [{"token": "[CLS]",
                                     "layers": [{"index": -1, "values": [0.1234, ...]}, ...]},
                                    ...]}

Only real tokens are listed (no padding). Values are rounded to 6 decimals.

Inference runs in a plain session: the encoder is built once with [batch, length] placeholders
and every batch is padded only to its own longest example (the attention mask makes the real
tokens' values independent of padding). Flags shared with fine-tuning (vocab_file,
bert_config_file, init_checkpoint, do_lower_case, max_seq_length) are defined by bert.run_classifier.
"""
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf
from absl import flags
from tensorflow.core.protobuf import rewriter_config_pb2

from bert import checkpoint, classifier, cli, files, modeling, tokenization
from bert import run_classifier as google_flags
from bert.errors import UsageError

tf1 = tf.compat.v1
FLAGS = flags.FLAGS
log = logging.getLogger("bert")

PROGRAM = "extract_features"
PAIR_SEPARATOR = "|||"
DECIMALS = 6
PROGRESS_SECONDS = 10.0  # log progress at most this often
# The pooler is built with the encoder but its output is never read here, so a checkpoint
# without it (an encoder-only export) still extracts features.
UNUSED_VARIABLES = (r"^bert/pooler/",)


def session_config():
    """A session config without grappler's remapper.

    With oneDNN on (TF 2.15's default on x86 Linux), the remapper's LayerNorm fusion kills the
    process (``libprotobuf FATAL ... key not found: value``) when an encoder layer's output is
    fetched, which is exactly what this script does. Turning the remapper off only gives up op
    fusion; the values are the same.
    """
    config = tf1.ConfigProto()
    config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
    return config


def define_flags():
    google_flags.define_model_flags()
    flags.DEFINE_string("input_file", None,
                        "Text file: one sentence per line, or 'text_a ||| text_b' for a pair.")
    flags.DEFINE_string("output_file", None, "Where the JSON lines are written.")
    flags.DEFINE_string("layers", "-1,-2,-3,-4",
                        "Comma-separated encoder layer indexes (Python-style: -1 is the last).")
    flags.DEFINE_integer("batch_size", 32, "Lines per inference batch.")


# Input ------------------------------------------------------------------------------------------
def parse_line(line):
    """(text_a, text_b or None) of one input line; the last '|||' separates a pair."""
    line = line.strip()
    if PAIR_SEPARATOR not in line:
        return line, None
    text_a, _, text_b = line.rpartition(PAIR_SEPARATOR)
    return text_a.strip(), (text_b.strip() or None)


def read_examples(input_file):
    """Every line of the file as (text_a, text_b); a blank line is kept (its output is too)."""
    if not input_file:
        raise UsageError("--input_file is required")
    if not os.path.isfile(input_file):
        raise UsageError(f"--input_file={input_file}: file not found")
    try:
        with open(input_file, encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except UnicodeDecodeError as error:
        raise UsageError(f"--input_file={input_file}: not UTF-8 text "
                                        f"({error.reason} at byte {error.start})") from None
    if lines and lines[-1] == "":
        lines.pop()  # the newline ending the last line does not start another one
    if not any(line.strip() for line in lines):
        raise UsageError(
            f"--input_file={input_file}: no text (expected one sentence per line, or "
            f"'text_a {PAIR_SEPARATOR} text_b' for a pair)")
    return [parse_line(line) for line in lines]


def convert_example(text_a, text_b, tokenizer, max_seq_length):
    """(tokens, input_ids, segment_ids, truncated) of ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``.

    Truncation as in fine-tuning: a pair loses tokens from its longer side first.
    """
    tokens_a = tokenizer.tokenize(text_a)
    tokens_b = tokenizer.tokenize(text_b) if text_b else []
    length = len(tokens_a) + len(tokens_b)
    if tokens_b:
        classifier.truncate_pair(tokens_a, tokens_b, max_seq_length - 3)
    else:
        del tokens_a[max_seq_length - 2:]
    truncated = len(tokens_a) + len(tokens_b) < length
    tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
    segment_ids = [0] * len(tokens)
    if tokens_b:
        tokens += tokens_b + ["[SEP]"]
        segment_ids += [1] * (len(tokens_b) + 1)
    return tokens, tokenizer.convert_tokens_to_ids(tokens), segment_ids, truncated


def pad_batch(id_lists, segment_lists):
    """int32 arrays [batch, longest] of ids, mask and segment ids (padding is 0)."""
    longest = max(len(ids) for ids in id_lists)
    input_ids = np.zeros([len(id_lists), longest], np.int32)
    input_mask = np.zeros_like(input_ids)
    segment_ids = np.zeros_like(input_ids)
    for row, (ids, segments) in enumerate(zip(id_lists, segment_lists)):
        input_ids[row, :len(ids)] = ids
        input_mask[row, :len(ids)] = 1
        segment_ids[row, :len(ids)] = segments
    return input_ids, input_mask, segment_ids


# Flags ------------------------------------------------------------------------------------------
def parse_layers(text, num_layers):
    """Layer indexes of --layers, each checked against the model's depth."""
    try:
        layers = [int(part) for part in (text or "").split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--layers={text}: expected comma-separated integers "
                                        "such as -1,-2,-3,-4") from None
    if not layers:
        raise UsageError(f"--layers={text}: no layer given (e.g. -1,-2,-3,-4)")
    for layer in layers:
        if not -num_layers <= layer < num_layers:
            raise UsageError(
                f"--layers={text}: layer {layer} is out of range for this {num_layers}-layer "
                f"model (valid: -{num_layers}..-1 or 0..{num_layers - 1})")
    return layers


def validate_flags(bert_config):
    for name in ("output_file", "vocab_file", "init_checkpoint"):
        if not getattr(FLAGS, name):
            raise UsageError(f"--{name} is required")
    if not os.path.isfile(FLAGS.vocab_file):
        raise UsageError(f"--vocab_file={FLAGS.vocab_file}: file not found "
                                        "(expected vocab.txt or a SentencePiece .model)")
    if os.path.isdir(FLAGS.output_file):
        raise UsageError(f"--output_file={FLAGS.output_file} is a folder; "
                                        "expected a file name")
    if FLAGS.max_seq_length > bert_config.max_position_embeddings:
        raise UsageError(
            f"--max_seq_length={FLAGS.max_seq_length} is above the model's "
            f"max_position_embeddings={bert_config.max_position_embeddings}")
    if FLAGS.max_seq_length < 3:
        raise UsageError(f"--max_seq_length={FLAGS.max_seq_length}: need at "
                                        "least 3 ([CLS] x [SEP])")
    if FLAGS.batch_size <= 0:
        raise UsageError(f"--batch_size={FLAGS.batch_size}: must be positive")
    try:
        checkpoint.resolve_checkpoint(FLAGS.init_checkpoint)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    return parse_layers(FLAGS.layers, bert_config.num_hidden_layers)


# Output -----------------------------------------------------------------------------------------
def feature_json(line_index, tokens, layer_values, layers):
    """One output line: every real token with the requested layers' rounded values.

    ``layer_values`` holds one [tokens, hidden] array per entry of ``layers``.
    """
    rows = [np.asarray(values, np.float64).tolist() for values in layer_values]
    features = []
    for position, token in enumerate(tokens):
        features.append({"token": token, "layers": [
            {"index": layer, "values": [round(value, DECIMALS) for value in rows[k][position]]}
            for k, layer in enumerate(layers)]})
    return json.dumps({"linex_index": line_index, "features": features})


class Progress:
    """Lines done / total with rate and ETA, at most every PROGRESS_SECONDS, and at the end."""

    def __init__(self, total):
        self.total = total
        self.start = self.last = time.time()

    def update(self, done):
        now = time.time()
        if done < self.total and now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        log.info("extracted %d/%d lines (%.1f lines/s, ETA %dm%02ds)", done, self.total, rate,
                 eta // 60, eta % 60)


# Run --------------------------------------------------------------------------------------------
def extract(bert_config, init_checkpoint, tokenizer, examples, layers, max_seq_length,
            batch_size, output_file):
    """Write the features of every example to output_file (atomically); returns lines written."""
    needed = sorted(set(layers))
    slot = {layer: needed.index(layer) for layer in layers}
    output_file = os.path.abspath(output_file)
    os.makedirs(os.path.dirname(output_file), exist_ok=True)
    truncated = 0
    with tf.Graph().as_default() as graph:
        input_ids = tf1.placeholder(tf.int32, [None, None], "input_ids")
        input_mask = tf1.placeholder(tf.int32, [None, None], "input_mask")
        segment_ids = tf1.placeholder(tf.int32, [None, None], "segment_ids")
        model = modeling.BertModel(bert_config, False, input_ids, input_mask, segment_ids)
        loaded, unexpected = checkpoint.init_from_checkpoint(init_checkpoint, UNUSED_VARIABLES)
        log.info("initialised %d variables from %s", len(loaded), init_checkpoint)
        if unexpected:
            log.info("checkpoint variables not used for features: %s", ", ".join(unexpected))
        fetches = [model.all_encoder_layers[layer] for layer in needed]
        initialize = tf1.global_variables_initializer()
        graph.finalize()
        progress = Progress(len(examples))
        log.info("extracting layers %s for %d lines (batch %d)",
                 ",".join(map(str, layers)), len(examples), batch_size)
        with files.atomic_path(output_file) as temp, \
                tf1.Session(graph=graph, config=session_config()) as session, \
                open(temp, "w", encoding="utf-8") as writer:
            session.run(initialize)
            for start in range(0, len(examples), batch_size):
                batch = [convert_example(text_a, text_b, tokenizer, max_seq_length)
                         for text_a, text_b in examples[start:start + batch_size]]
                truncated += sum(item[3] for item in batch)
                ids, mask, segments = pad_batch([item[1] for item in batch],
                                                [item[2] for item in batch])
                outputs = session.run(fetches, {input_ids: ids, input_mask: mask,
                                                segment_ids: segments})
                for row, (tokens, _, _, _) in enumerate(batch):
                    values = [outputs[slot[layer]][row, :len(tokens)] for layer in layers]
                    writer.write(feature_json(start + row, tokens, values, layers) + "\n")
                progress.update(start + len(batch))
    if truncated:
        log.warning("%d of %d lines were longer than --max_seq_length=%d and were truncated",
                    truncated, len(examples), max_seq_length)
    log.info("wrote %s (%d lines)", output_file, len(examples))
    return len(examples)


def run():
    """Extract features as the flags say."""
    if not FLAGS.bert_config_file or not os.path.isfile(FLAGS.bert_config_file):
        raise UsageError(f"--bert_config_file={FLAGS.bert_config_file}: "
                                        "file not found")
    bert_config = modeling.BertConfig.from_json_file(FLAGS.bert_config_file)
    layers = validate_flags(bert_config)
    examples = read_examples(FLAGS.input_file)
    tokenization.validate_case_matches_checkpoint(FLAGS.do_lower_case, FLAGS.init_checkpoint)
    tokenizer = tokenization.create_tokenizer(FLAGS.vocab_file, FLAGS.do_lower_case)
    return extract(bert_config, FLAGS.init_checkpoint, tokenizer, examples, layers,
                   FLAGS.max_seq_length, FLAGS.batch_size, FLAGS.output_file)


main = cli.absl_main(PROGRAM, run)  # what app.run calls (tests call it directly)


def console_main():
    cli.run_absl(PROGRAM, define_flags, run)


if __name__ == "__main__":
    console_main()
