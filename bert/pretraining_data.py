"""Google's create_pretraining_data, kept in the core as Google keeps it: masked-LM instances
from raw text, as the TFRecords every pre-training run reads (``bert.pretraining``) whichever
method trains on them.

    python -m bert.pretraining_data --input_file=corpus.txt --vocab_file=models/m/vocab.txt \\
        --output_file=pretrain/train.tf_record --max_seq_length=128 \\
        --max_predictions_per_seq=20 --dupe_factor=10

(console script: bert-pretraining-data; ``distill.pretraining create_pretraining_data`` and
distill-pretraining-data run the same tool.) The text has one sentence per line and a blank
line between documents. Each instance is [CLS] + consecutive sentences of one document (up to
max_seq_length - 2 pieces, sometimes shorter, as Google's recipe does) + [SEP]; 15% of its
pieces are predicted, of which 80% become [MASK], 10% a random piece and 10% stay. There is no
next-sentence task (Bort, like RoBERTa, pre-trains with MLM alone). A bad line fails in one
line naming the file and line, before anything is written; each output file is written whole
(a temp file renamed).
"""
import contextlib
import dataclasses
import glob
import logging
import os
import random

import tensorflow as tf
from absl import flags

from bert import cli, files, tokenization
from bert.errors import InputError

FLAGS = flags.FLAGS
log = logging.getLogger("bert")

PROGRAM = "bert.pretraining_data"
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
VOCAB_EXPECTED = "the model's vocab.txt"


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
    """Google's create_pretraining_data flags (the MaskingSettings fields among them)."""
    flags.DEFINE_string("input_file", None, "Text file(s), comma separated or globs: one "
                        "sentence per line, a blank line between documents.")
    flags.DEFINE_string("output_file", None, "TFRecord file(s) to write, comma separated "
                        "(instances are dealt round-robin).")
    flags.DEFINE_string("vocab_file", None, "The model's vocab.txt.")
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
    """The command's body: every input read and checked, then the output files written."""
    settings = MaskingSettings(**{field.name: FLAGS[field.name].value
                                  for field in dataclasses.fields(MaskingSettings)})
    settings.validate()
    inputs = expand_files(FLAGS.input_file, "input_file")
    outputs = output_files(FLAGS.output_file, inputs)
    tokenizer = tokenization.create_tokenizer(
        cli.require_file(FLAGS.vocab_file, "vocab_file", VOCAB_EXPECTED),
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


def main():
    """``python -m bert.pretraining_data`` and the bert-pretraining-data console script."""
    cli.run_absl(PROGRAM, define_data_flags, create_pretraining_data)


if __name__ == "__main__":
    main()
